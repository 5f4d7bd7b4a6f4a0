package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// An endpoint's data dies with it. Every record is keyed by the endpoint's UID (see
// Endpoint), so the data of a deleted endpoint is unreachable by a successor of the same
// name from the moment it is deleted; Reclaim then removes it (Purge), once across
// replicas. So that nothing escapes the sweep that finds what a missed deletion left
// (StoredEndpoints), an endpoint is registered in the state bucket before anything is
// stored for it (Register): histories cannot be listed by endpoint cheaply, registrations
// can.

// Kinds of per-endpoint keys the queue keeps in the state bucket (see EndpointKey).
const (
	registryKind = "known"
	goneKind     = "gone"
)

// registry remembers the endpoints this process registered, so that registering costs a
// map lookup per delivery after the first (a typed map: a sync.Map would box the key,
// an allocation per delivery).
type registry struct {
	mu sync.RWMutex
	m  map[Endpoint]struct{}
}

func (r *registry) has(ep Endpoint) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.m[ep]
	return ok
}

func (r *registry) add(eps ...Endpoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[Endpoint]struct{}{}
	}
	for _, ep := range eps {
		r.m[ep] = struct{}{}
	}
}

func (r *registry) drop(ep Endpoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, ep)
}

// registerOne records, before anything is stored for ep, that the store may hold its data.
func (s *jsStore) registerOne(ctx context.Context, ep Endpoint) error {
	return s.register(ctx, []Endpoint{ep})
}

// register records endpoints this process has not registered yet, pipelined: a batch of
// events for many new endpoints costs one round trip. A registration is a plain put
// (its value, when it was written, is for people): writing it twice is harmless.
func (s *jsStore) register(ctx context.Context, eps []Endpoint) error {
	var futures []jetstream.PubAckFuture
	var fresh []Endpoint
	seen := make(map[Endpoint]bool, len(eps))
	for _, ep := range eps {
		if s.registered.has(ep) || seen[ep] {
			continue
		}
		seen[ep] = true
		if ep.UID == "" || strings.ContainsAny(ep.UID, ".*> ") {
			return fmt.Errorf("endpoint %s has no usable UID (%q)", ep, ep.UID)
		}
		at, _ := time.Now().UTC().MarshalText()
		f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: stateSubjectPrefix + EndpointKey(registryKind, ep), Data: at})
		if err != nil {
			return fmt.Errorf("registering endpoint %s: %w", ep, s.storeError(err))
		}
		futures, fresh = append(futures, f), append(fresh, ep)
	}
	if err := wait(ctx, futures); err != nil {
		return fmt.Errorf("registering endpoints: %w", s.storeError(err))
	}
	s.registered.add(fresh...)
	return nil
}

func (s *jsStore) registerAll(ctx context.Context, deliveries []Delivery) error {
	var eps []Endpoint
	var last Endpoint
	for i := range deliveries {
		if ep := deliveries[i].Ref(); ep != last {
			if !s.registered.has(ep) {
				eps = append(eps, ep)
			}
			last = ep
		}
	}
	if len(eps) == 0 {
		return nil
	}
	return s.register(ctx, eps)
}

// forget drops this process's memory of having registered ep: its endpoint is gone, and
// anything stored for it after the purge must register it again to be found.
func (s *jsStore) forget(ep Endpoint) {
	s.registered.drop(ep)
	if s.journal != nil {
		s.journal.forget(ep)
	}
}

// Purge removes everything stored for ep: its consumer, pending deliveries, dead
// letters, retained deliveries, attempt records and its keys in the state bucket (its
// registration last, so that a purge cut short is found again by the sweep). It is
// idempotent.
func (s *jsStore) Purge(ctx context.Context, ep Endpoint) error {
	s.forget(ep)
	if ep.UID == "" {
		return fmt.Errorf("purging %s: no UID", ep)
	}
	if err := s.deliveries.DeleteConsumer(ctx, consumerName(ep)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("purging %s: deleting its consumer: %w", ep, s.storeError(err))
	}
	for _, p := range []struct {
		stream  jetstream.Stream
		subject string
	}{
		{s.deliveries, DeliverySubject(ep)},
		{s.deadLetters, DeadLetterSubject(ep)},
		{s.delivered, deliveredSubjectPrefix + ep.tokens() + ".>"},
		{s.attempts, attemptSubjectPrefix + ep.tokens() + ".>"},
		// Purged through the bucket's stream rather than deleted key by key: no
		// delete marker is left behind, and no kind needs to be known here.
		{s.stateStream, stateSubjectPrefix + "*." + ep.tokens()},
	} {
		if err := p.stream.Purge(ctx, jetstream.WithPurgeSubject(p.subject)); err != nil {
			return fmt.Errorf("purging %s from %s: %w", ep, p.stream.CachedInfo().Config.Name, s.storeError(err))
		}
	}
	return nil
}

const stateSubjectPrefix = "$KV." + StateBucket + "."

// goneMark is the tombstone of a deleted endpoint: who claimed its purge, when, and
// whether it is done.
type goneMark struct {
	By   string    `json:"by"`
	At   time.Time `json:"at"`
	Done bool      `json:"done,omitempty"`
}

// claimStale is how long a claimed purge may stay unfinished before another replica
// takes it over: a purge takes well under a second unless its replica stopped.
const claimStale = time.Minute

// tombstoneTTL is how long the tombstone of a finished purge is kept, so that replicas
// learning of the deletion later do not purge again; every replica hears of a deletion
// within moments, or at its next start, which sweeps anyway.
const tombstoneTTL = time.Hour

// Reclaim purges the data of a deleted endpoint once across replicas: the replica whose
// compare-and-set creates the endpoint's tombstone purges, the others find it and leave
// it (unless it went stale: its replica stopped midway). by names this replica in the
// tombstone. It reports whether this call purged.
func (s *jsStore) Reclaim(ctx context.Context, ep Endpoint, by string) (bool, error) {
	s.forget(ep)
	key := EndpointKey(goneKind, ep)
	now := time.Now().UTC()
	claim, _ := json.Marshal(goneMark{By: by, At: now})
	_, err := s.state.Create(ctx, key, claim)
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := s.state.Get(ctx, key)
		if gerr != nil {
			return false, fmt.Errorf("reading the tombstone of %s: %w", ep, s.storeError(gerr))
		}
		var m goneMark
		_ = json.Unmarshal(e.Value(), &m)
		if m.Done || now.Sub(m.At) < claimStale {
			return false, nil
		}
		_, err = s.state.Update(ctx, key, claim, e.Revision())
		if isWrongLastSequence(err) {
			return false, nil // another replica took it over first
		}
	}
	if err != nil {
		return false, fmt.Errorf("claiming the purge of %s: %w", ep, s.storeError(err))
	}
	if err := s.Purge(ctx, ep); err != nil {
		return false, err
	}
	done, _ := json.Marshal(goneMark{By: by, At: now, Done: true})
	if _, err := s.state.Put(ctx, key, done); err != nil {
		return true, fmt.Errorf("marking the purge of %s done: %w", ep, s.storeError(err))
	}
	return true, nil
}

func isWrongLastSequence(err error) bool {
	if err == nil {
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists) || strings.Contains(err.Error(), "wrong last sequence")
}

// StoredEndpoints lists the endpoints the store holds anything of: registered, with keys
// in the state bucket, pending deliveries or dead letters. Endpoints whose purge is done
// are left out unless something was stored for them since.
func (s *jsStore) StoredEndpoints(ctx context.Context) (map[Endpoint]bool, error) {
	out := map[Endpoint]bool{}
	keys, err := s.listKeys(ctx, "*.*.*.*")
	if err != nil {
		return nil, fmt.Errorf("listing endpoint keys: %w", err)
	}
	for _, key := range keys {
		if kind, ep, ok := ParseEndpointKey(key); ok && kind != goneKind {
			out[ep] = true
		}
	}
	for _, p := range []struct {
		stream jetstream.Stream
		prefix string
	}{{s.deliveries, deliverySubjectPrefix}, {s.deadLetters, deadLetterSubjectPrefix}} {
		info, err := p.stream.Info(ctx, jetstream.WithSubjectFilter(p.prefix+"*.*.*"))
		if err != nil {
			return nil, fmt.Errorf("listing endpoint subjects: %w", s.storeError(err))
		}
		for subject := range info.State.Subjects {
			t := strings.Split(strings.TrimPrefix(subject, p.prefix), ".")
			if len(t) == 3 {
				out[endpointOfTokens(t[0], t[1], t[2])] = true
			}
		}
	}
	return out, nil
}

// ConsumerEndpoints lists the endpoints that have a consumer of the delivery stream,
// but for those whose UID live reports (the endpoints this replica knows): an ordered
// endpoint's consumer stays when idle, and one made again after its endpoint's purge,
// by a replica that had not yet seen the deletion, would stay for ever.
func (s *jsStore) ConsumerEndpoints(ctx context.Context, live func(uid string) bool) ([]Endpoint, error) {
	names := s.deliveries.ConsumerNames(ctx)
	var others []string
	for n := range names.Name() {
		if uid, ok := strings.CutPrefix(n, "ep_"); ok && uidShaped.MatchString(uid) && !live(uid) {
			others = append(others, n)
		}
	}
	if err := names.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return nil, fmt.Errorf("listing consumers: %w", s.storeError(err))
	}
	var out []Endpoint
	for _, n := range others {
		c, err := s.deliveries.Consumer(ctx, n)
		if err != nil {
			continue // gone meanwhile
		}
		t := strings.Split(strings.TrimPrefix(c.CachedInfo().Config.FilterSubject, deliverySubjectPrefix), ".")
		if len(t) == 3 {
			out = append(out, endpointOfTokens(t[0], t[1], t[2]))
		}
	}
	return out, nil
}

// DropOldTombstones removes the tombstones of purges finished more than tombstoneTTL
// ago.
func (s *jsStore) DropOldTombstones(ctx context.Context) error {
	keys, err := s.listKeys(ctx, goneKind+".*.*.*")
	if err != nil {
		return fmt.Errorf("listing tombstones: %w", err)
	}
	var old []string
	for _, key := range keys {
		e, err := s.state.Get(ctx, key)
		if err != nil {
			continue
		}
		var m goneMark
		if json.Unmarshal(e.Value(), &m) == nil && m.Done && time.Since(m.At) > tombstoneTTL {
			old = append(old, key)
		}
	}
	for _, key := range old {
		if err := s.stateStream.Purge(ctx, jetstream.WithPurgeSubject(stateSubjectPrefix+key)); err != nil {
			return fmt.Errorf("dropping tombstone %s: %w", key, s.storeError(err))
		}
	}
	return nil
}

// LeaseKey is the key of a lease of the whole store (one token, no '.').
func LeaseKey(name string) string { return "lease." + name }

// lease is a lease in the state bucket: who holds it, until when.
type lease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// Lease takes or renews the lease under key (see LeaseKey) for holder for ttl, by
// compare-and-set, and reports whether holder has it. A holder that stops renewing loses
// it after ttl; a lease of an endpoint (EndpointKey) goes with its purge.
func (s *jsStore) Lease(ctx context.Context, key, holder string, ttl time.Duration) (bool, error) {
	now := time.Now()
	raw, _ := json.Marshal(lease{Holder: holder, Until: now.Add(ttl)})
	e, err := s.state.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = s.state.Create(ctx, key, raw)
	case err != nil:
		return false, fmt.Errorf("reading lease %s: %w", key, s.storeError(err))
	default:
		var cur lease
		_ = json.Unmarshal(e.Value(), &cur)
		if cur.Holder != holder && now.Before(cur.Until) {
			return false, nil
		}
		_, err = s.state.Update(ctx, key, raw, e.Revision())
	}
	if isWrongLastSequence(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("taking lease %s: %w", key, s.storeError(err))
	}
	return true, nil
}

// ReleaseLease gives up the lease if holder has it.
func (s *jsStore) ReleaseLease(ctx context.Context, key, holder string) error {
	e, err := s.state.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading lease %s: %w", key, s.storeError(err))
	}
	var cur lease
	if json.Unmarshal(e.Value(), &cur) != nil || cur.Holder != holder {
		return nil
	}
	if err := s.state.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil && !isWrongLastSequence(err) {
		return fmt.Errorf("releasing lease %s: %w", key, s.storeError(err))
	}
	return nil
}

// Held counts what the store holds of one endpoint, per kind: for tests and for people
// checking that a deleted endpoint left nothing.
type Held struct {
	Pending, DeadLetters, Delivered, Attempts, Keys uint64
}

// holds counts the messages stored for ep in each of Herald's streams, and its keys in
// the state bucket.
func (s *jsStore) holds(ctx context.Context, ep Endpoint) (Held, error) {
	var h Held
	for _, p := range []struct {
		stream  jetstream.Stream
		subject string
		n       *uint64
	}{
		{s.deliveries, DeliverySubject(ep), &h.Pending},
		{s.deadLetters, DeadLetterSubject(ep), &h.DeadLetters},
		{s.delivered, deliveredSubjectPrefix + ep.tokens() + ".>", &h.Delivered},
		{s.attempts, attemptSubjectPrefix + ep.tokens() + ".>", &h.Attempts},
	} {
		info, err := p.stream.Info(ctx, jetstream.WithSubjectFilter(p.subject))
		if err != nil {
			return h, fmt.Errorf("counting what %s holds of %s: %w", p.stream.CachedInfo().Config.Name, ep, s.storeError(err))
		}
		for _, n := range info.State.Subjects {
			*p.n += n
		}
	}
	// Its tombstone (who purged it, when) is not its data.
	keys, err := s.listKeys(ctx, "*."+ep.tokens())
	if err != nil {
		return h, fmt.Errorf("listing the keys of %s: %w", ep, err)
	}
	for _, key := range keys {
		if !strings.HasPrefix(key, goneKind+".") {
			h.Keys++
		}
	}
	return h, nil
}
