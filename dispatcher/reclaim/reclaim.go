// Package reclaim makes an endpoint's stored data die with it. The store keys every
// record by the WebhookEndpoint's UID, so nothing of a deleted endpoint is reachable by
// one created later under its name from the moment of the deletion; reclaim removes
// what is left:
//
//   - when a dispatcher sees an endpoint deleted or replaced (the engine retires it),
//     the first replica to claim its tombstone purges its data (queue.Store.Reclaim);
//   - at start-up, before ingest opens, and then every Interval, a sweep compares what
//     the store holds with the endpoints that exist and purges what belongs to none
//     (deletions while every dispatcher was down, records written by a replica that had
//     not yet seen a deletion), and moves what a release before UIDs stored to the
//     endpoint of that name that exists now (queue.Store.MigrateLegacy).
//
// An endpoint counts as gone only when the API server itself says so (read directly,
// not from the informer cache, which may lag behind a creation), and only in the
// namespaces this dispatcher serves. One sweep runs at a time across replicas (a lease
// in the store). No finalizer is used: the data is fenced off by the UID the moment the
// object goes, so the purge is garbage collection, and a finalizer would only make
// deletions (and namespace deletions) hang while no dispatcher runs, and need a right to
// update WebhookEndpoints that the dispatcher otherwise does without.
package reclaim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// Store is what reclaiming needs of the queue.
type Store interface {
	Reclaim(ctx context.Context, ep queue.Endpoint, by string) (bool, error)
	Purge(ctx context.Context, ep queue.Endpoint) error
	StoredEndpoints(ctx context.Context) (map[queue.Endpoint]bool, error)
	ConsumerEndpoints(ctx context.Context, live func(uid string) bool) ([]queue.Endpoint, error)
	DropOldTombstones(ctx context.Context) error
	MigrateLegacy(ctx context.Context, owner queue.LegacyOwner) (queue.LegacyReport, error)
	Lease(ctx context.Context, key, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, key, holder string) error
}

// Options configure a Reclaimer.
type Options struct {
	Store Store
	// Cached returns the endpoint of a name as the informer cache has it: a stored
	// endpoint it names is alive without asking the API server.
	Cached func(namespace, name string) (queue.Endpoint, bool)
	// Known lists the endpoints this replica knows (the engine's).
	Known func() []queue.Endpoint
	// Reader reads WebhookEndpoints from the API server itself (the manager's API
	// reader): the judge of whether an endpoint is gone.
	Reader client.Reader
	// Namespaces are the namespaces served; empty is all. Data of other namespaces is
	// never touched: another dispatcher may serve them.
	Namespaces []string
	// Retired carries the endpoints the engine retired (deleted or replaced).
	Retired <-chan queue.Endpoint
	// Instance names this replica in tombstones and the sweep lease.
	Instance string
	// Interval between sweeps (default 10 minutes).
	Interval time.Duration
	Log      logr.Logger
}

// Reclaimer purges the data of deleted endpoints.
type Reclaimer struct {
	opts     Options
	migrated chan struct{}
	once     sync.Once
}

// New returns a Reclaimer; Start sweeps once, Run follows retirements and sweeps.
func New(o Options) *Reclaimer {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Minute
	}
	return &Reclaimer{opts: o, migrated: make(chan struct{})}
}

// sweepLease is held by the replica sweeping; sweepTTL is how long it outlives its last
// renewal.
const sweepTTL = time.Minute

var sweepLease = queue.LeaseKey("reclaim")

// Start runs the start-up sweep around prime (which makes the engine know every
// endpoint): what a release before UIDs stored moves to the endpoints of its names
// before prime, so that nothing acts on an endpoint before its state is where this
// release reads it (a replay annotation handled before the upgrade stays handled); the
// data of endpoints deleted while no dispatcher ran goes after prime, before ingest
// opens. It waits for another replica's sweep to end, at most about two lease periods.
// Its own failures are logged, not returned (the next sweep takes them up; deliveries
// need not wait); prime's are returned.
func (r *Reclaimer) Start(ctx context.Context, prime func(context.Context) error) error {
	release, leased := r.hold(ctx, 2*sweepTTL)
	if leased {
		defer release()
		r.migrate(ctx)
	}
	r.once.Do(func() { close(r.migrated) })
	if err := prime(ctx); err != nil {
		return err
	}
	if leased {
		if err := r.sweep(ctx); err != nil {
			r.opts.Log.Error(err, "sweeping the store for deleted endpoints' data; sweeping again in a while")
		}
	}
	return nil
}

// Migrated is closed once the start-up migration is done (or skipped): until then
// nothing should act on an endpoint's shared state.
func (r *Reclaimer) Migrated() <-chan struct{} { return r.migrated }

// Run follows the endpoints the engine retires and sweeps every Interval, until ctx
// ends.
func (r *Reclaimer) Run(ctx context.Context) error {
	tick := time.NewTicker(r.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ep := <-r.opts.Retired:
			r.retired(ctx, ep)
		case <-tick.C:
			if release, ok := r.hold(ctx, 0); ok {
				if err := r.Sweep(ctx); err != nil {
					r.opts.Log.Error(err, "sweeping the store for deleted endpoints' data; sweeping again in a while")
				}
				release()
			}
		}
	}
}

// hold takes the sweep lease, waiting for it at most wait, and keeps it renewed until
// release.
func (r *Reclaimer) hold(ctx context.Context, wait time.Duration) (release func(), ok bool) {
	deadline := time.Now().Add(wait)
	for {
		got, err := r.opts.Store.Lease(ctx, sweepLease, r.opts.Instance, sweepTTL)
		if err != nil {
			r.opts.Log.Error(err, "taking the sweep lease; the sweep waits for the next one")
			return nil, false
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			if wait > 0 {
				r.opts.Log.Info("another replica sweeps the store for deleted endpoints' data; going on without waiting for it")
			}
			return nil, false
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(time.Second):
		}
	}
	lctx, stop := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		tick := time.NewTicker(sweepTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
				_, _ = r.opts.Store.Lease(lctx, sweepLease, r.opts.Instance, sweepTTL)
			}
		}
	}()
	return func() {
		stop()
		<-renewed
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.opts.Store.ReleaseLease(rctx, sweepLease, r.opts.Instance)
	}, true
}

// retired reclaims the data of an endpoint the engine retired, once across replicas.
func (r *Reclaimer) retired(ctx context.Context, ep queue.Endpoint) {
	gone, err := r.gone(ctx, ep)
	if err != nil || !gone {
		if err != nil {
			r.opts.Log.Error(err, "cannot tell whether the endpoint is gone; its data waits for the next sweep", "endpoint", ep.String(), "uid", ep.UID)
		}
		return
	}
	purged, err := r.opts.Store.Reclaim(ctx, ep, r.opts.Instance)
	switch {
	case err != nil:
		r.opts.Log.Error(err, "reclaiming a deleted endpoint's data; the next sweep takes it up", "endpoint", ep.String(), "uid", ep.UID)
	case purged:
		r.opts.Log.Info("deleted endpoint's data purged (pending deliveries, dead letters, history, state)", "endpoint", ep.String(), "uid", ep.UID)
	}
}

// Sweep moves what a release before UIDs stored (left by an older replica still
// running during a rolling upgrade, say) and purges what the store holds of endpoints
// that no longer exist. It is idempotent; Start and Run call it under the sweep lease.
func (r *Reclaimer) Sweep(ctx context.Context) error {
	r.migrate(ctx)
	return r.sweep(ctx)
}

func (r *Reclaimer) migrate(ctx context.Context) {
	rep, err := r.opts.Store.MigrateLegacy(ctx, r.legacyOwner)
	if !rep.Empty() {
		r.opts.Log.Info("records stored before endpoints were keyed by UID moved to the endpoints of their names",
			"moved", rep.Moved, "dropped (no such endpoint now, or older than it)", rep.Dropped, "left (namespace not served)", rep.Left)
	}
	if err != nil {
		r.opts.Log.Error(err, "moving records stored before endpoints were keyed by UID; the next sweep goes on")
	}
}

func (r *Reclaimer) sweep(ctx context.Context) error {
	var errs []error
	stored, err := r.opts.Store.StoredEndpoints(ctx)
	if err != nil {
		return err
	}
	if r.opts.Known != nil {
		live := map[string]bool{}
		for _, ep := range r.opts.Known() {
			live[ep.UID] = true
		}
		consumers, err := r.opts.Store.ConsumerEndpoints(ctx, func(uid string) bool { return live[uid] })
		errs = append(errs, err)
		for _, ep := range consumers {
			stored[ep] = true
		}
	}
	purged := 0
	for ep := range stored {
		if !r.serves(ep.Namespace) {
			continue
		}
		if cur, ok := r.opts.Cached(ep.Namespace, ep.Name); ok && cur.UID == ep.UID {
			continue
		}
		gone, err := r.gone(ctx, ep)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !gone {
			continue
		}
		// Forced, whatever its tombstone says: what is found now was written after its
		// purge (a replica that had not yet seen the deletion) or the purge never ran.
		if err := r.opts.Store.Purge(ctx, ep); err != nil {
			errs = append(errs, err)
			continue
		}
		purged++
		r.opts.Log.Info("data of a deleted endpoint purged by the sweep", "endpoint", ep.String(), "uid", ep.UID)
	}
	errs = append(errs, r.opts.Store.DropOldTombstones(ctx))
	r.opts.Log.V(1).Info("store swept for deleted endpoints' data", "endpoints", len(stored), "purged", purged)
	return errors.Join(errs...)
}

func (r *Reclaimer) serves(namespace string) bool {
	return len(r.opts.Namespaces) == 0 || slices.Contains(r.opts.Namespaces, namespace)
}

// gone asks the API server whether the endpoint object ep names no longer exists: none
// of its name, or one with another UID. UIDs are never reused, so the answer is final.
func (r *Reclaimer) gone(ctx context.Context, ep queue.Endpoint) (bool, error) {
	var cur heraldv1.WebhookEndpoint
	err := r.opts.Reader.Get(ctx, types.NamespacedName{Namespace: ep.Namespace, Name: ep.Name}, &cur)
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading WebhookEndpoint %s: %w", ep, err)
	}
	return string(cur.UID) != ep.UID, nil
}

// legacyOwner tells MigrateLegacy whom a name's records belong to now, from the API
// server.
func (r *Reclaimer) legacyOwner(ctx context.Context, namespace, name string) (queue.Endpoint, time.Time, bool) {
	if !r.serves(namespace) {
		return queue.Endpoint{}, time.Time{}, false
	}
	var cur heraldv1.WebhookEndpoint
	err := r.opts.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &cur)
	switch {
	case apierrors.IsNotFound(err):
		return queue.Endpoint{}, time.Time{}, true
	case err != nil:
		r.opts.Log.Error(err, "cannot tell whom records stored before UIDs belong to; they stay for the next sweep", "endpoint", namespace+"/"+name)
		return queue.Endpoint{}, time.Time{}, false
	}
	return queue.Endpoint{Namespace: namespace, Name: name, UID: string(cur.UID)}, cur.CreationTimestamp.Time, true
}
