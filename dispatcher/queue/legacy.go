package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Releases before endpoints were keyed by UID stored an endpoint's data under its
// namespace and name alone: herald.dlv.<ns>.<name>, herald.dlq.<ns>.<name>,
// herald.{done,att}.<ns>.<name>.<bucket>, and the keys ep.<ns>.<name> and
// head.<ns>.<name>. Each is one token shorter than its successor, so a filter of the old
// length matches old records only. MigrateLegacy moves them to the endpoint of that name
// that exists now, which is what the previous release would have delivered them to.

// LegacyOwner tells whom the data of an endpoint name, stored before UIDs, belongs to
// now. ok is false while that cannot be told (a namespace this dispatcher does not
// serve, the API server unreachable): the data then stays for a later pass. An owner
// with an empty UID means no endpoint of that name exists: the data is dropped. created
// is the owner's creation time: records stored well before it (clockSkewMargin) were an
// earlier object's, and are dropped too.
type LegacyOwner func(ctx context.Context, namespace, name string) (owner Endpoint, created time.Time, ok bool)

// LegacyReport says what a migration did.
type LegacyReport struct {
	// Moved and Dropped count records per kind (pending, dead letters, delivered,
	// attempts, keys); Left counts those whose owner could not be told.
	Moved, Dropped, Left map[string]int
}

func (r *LegacyReport) add(m map[string]int, kind string) {
	if m == nil {
		return
	}
	m[kind]++
}

// Empty reports whether the migration found nothing.
func (r LegacyReport) Empty() bool { return len(r.Moved)+len(r.Dropped)+len(r.Left) == 0 }

// owners caches the answers of a LegacyOwner for one pass.
type owners struct {
	ask LegacyOwner
	m   map[[2]string]ownerAnswer
}

type ownerAnswer struct {
	ep      Endpoint
	created time.Time
	ok      bool
}

func (o *owners) get(ctx context.Context, ns, nameTok string) ownerAnswer {
	k := [2]string{ns, nameTok}
	if a, ok := o.m[k]; ok {
		return a
	}
	var a ownerAnswer
	a.ep, a.created, a.ok = o.ask(ctx, ns, nameOfToken(nameTok))
	o.m[k] = a
	return a
}

// fenced reports whether a record stored at t cannot be the owner's.
func (a ownerAnswer) fenced(t time.Time) bool {
	return a.ep.UID == "" || (!a.created.IsZero() && t.Before(a.created.Add(-clockSkewMargin)))
}

// MigrateLegacy moves what a release before UIDs stored to the endpoints of the same
// names that exist now: pending deliveries (with the retry state of an ordered head),
// dead letters, retained deliveries, attempt records and shared state; what belongs to
// no endpoint now is dropped. A record is moved by publishing it under the new key and
// then purging the old one, so a migration cut short is taken up by the next; two at
// once (two replicas) store each record once (the same message id within the stream's
// duplicate window; the reclaimer migrates under its lease anyway). It is cheap when
// there is nothing to move: a few requests.
func (s *jsStore) MigrateLegacy(ctx context.Context, owner LegacyOwner) (LegacyReport, error) {
	rep := LegacyReport{Moved: map[string]int{}, Dropped: map[string]int{}, Left: map[string]int{}}
	o := &owners{ask: owner, m: map[[2]string]ownerAnswer{}}
	if err := s.migratePending(ctx, o, &rep); err != nil {
		return rep, err
	}
	if err := s.migrateKeys(ctx, o, &rep); err != nil {
		return rep, err
	}
	for _, h := range []struct {
		kind, prefix string
		stream       jetstream.Stream
		tokens       int // after the prefix
	}{
		{"dead letters", deadLetterSubjectPrefix, s.deadLetters, 2},
		{"delivered", deliveredSubjectPrefix, s.delivered, 3},
		{"attempts", attemptSubjectPrefix, s.attempts, 3},
	} {
		if err := s.migrateStream(ctx, o, &rep, h.kind, h.prefix, h.stream, h.tokens); err != nil {
			return rep, err
		}
	}
	if err := s.dropLegacyConsumers(ctx); err != nil {
		return rep, err
	}
	return rep, nil
}

// migratePending moves the pending deliveries. The delivery stream is a work queue,
// whose durable consumers may not overlap another consumer, so the old subjects are read
// message by message (there are few: a backlog at the moment of the upgrade).
func (s *jsStore) migratePending(ctx context.Context, o *owners, rep *LegacyReport) error {
	const kind = "pending"
	filter := deliverySubjectPrefix + "*.*"
	last := map[string]uint64{} // old subject → the last sequence handled
	var futures []jetstream.PubAckFuture
	heads := map[string]*Head{}
	for seq := uint64(1); ; {
		m, err := s.deliveries.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading pending deliveries stored before UIDs: %w", s.storeError(err))
		}
		seq = m.Sequence + 1
		t := strings.Split(strings.TrimPrefix(m.Subject, deliverySubjectPrefix), ".")
		a := o.get(ctx, t[0], t[1])
		if !a.ok {
			rep.add(rep.Left, kind)
			continue
		}
		last[m.Subject] = m.Sequence
		d, err := parseDelivery(m.Subject, m.Header, m.Data)
		if err != nil || a.fenced(m.Time) {
			rep.add(rep.Dropped, kind)
			continue
		}
		d.Namespace, d.Endpoint, d.EndpointUID = a.ep.Namespace, a.ep.Name, a.ep.UID
		// An ordered head retried in place kept its attempt number and retry time
		// beside the message; the moved message carries them itself.
		h, ok := heads[m.Subject]
		if !ok {
			h = s.legacyHead(ctx, t[0], t[1])
			heads[m.Subject] = h
		}
		if h != nil && h.Sequence == m.Sequence {
			d.Attempt, d.NotBefore = h.Attempt, h.NotBefore
		}
		if err := s.registerOne(ctx, a.ep); err != nil {
			return err
		}
		msg := d.toMsg(DeliverySubject(a.ep))
		msg.Header[nats.MsgIdHdr] = []string{fmt.Sprintf("migrate/%d", m.Sequence)}
		f, err := s.js.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("moving a pending delivery: %w", s.storeError(err))
		}
		futures = append(futures, f)
		rep.add(rep.Moved, kind)
	}
	if err := wait(ctx, futures); err != nil {
		return fmt.Errorf("moving pending deliveries: %w", s.storeError(err))
	}
	for subject, seq := range last {
		if err := s.deliveries.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(seq+1)); err != nil {
			return fmt.Errorf("removing moved deliveries of %s: %w", subject, s.storeError(err))
		}
		t := strings.Split(strings.TrimPrefix(subject, deliverySubjectPrefix), ".")
		if err := s.deliveries.DeleteConsumer(ctx, legacyConsumerName(t[0], nameOfToken(t[1]))); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("removing the consumer of %s: %w", subject, s.storeError(err))
		}
	}
	// The engine wakes the endpoints at once rather than at its next scan.
	for _, a := range o.m {
		if a.ok && a.ep.UID != "" {
			s.notifyStored(a.ep)
		}
	}
	return nil
}

// legacyHead reads the retry state an ordered endpoint's head had before UIDs.
func (s *jsStore) legacyHead(ctx context.Context, ns, nameTok string) *Head {
	e, err := s.state.Get(ctx, "head."+ns+"."+nameTok)
	if err != nil {
		return nil
	}
	var h Head
	if json.Unmarshal(e.Value(), &h) != nil {
		return nil
	}
	return &h
}

// migrateKeys moves the per-endpoint keys of the state bucket (kind.ns.name). An
// ordered head's state went with its message (migratePending), so heads are dropped.
func (s *jsStore) migrateKeys(ctx context.Context, o *owners, rep *LegacyReport) error {
	const kind = "keys"
	keys, err := s.listKeys(ctx, "*.*.*")
	if err != nil {
		return fmt.Errorf("listing keys stored before UIDs: %w", err)
	}
	for _, key := range keys {
		t := strings.Split(key, ".")
		a := o.get(ctx, t[1], t[2])
		if !a.ok {
			rep.add(rep.Left, kind)
			continue
		}
		if a.ep.UID != "" && t[0] != "head" {
			e, err := s.state.Get(ctx, key)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("reading %s: %w", key, s.storeError(err))
			}
			if _, err := s.state.Create(ctx, EndpointKey(t[0], a.ep), e.Value()); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
				return fmt.Errorf("moving %s: %w", key, s.storeError(err))
			}
			rep.add(rep.Moved, kind)
		} else {
			rep.add(rep.Dropped, kind)
		}
		if err := s.stateStream.Purge(ctx, jetstream.WithPurgeSubject(stateSubjectPrefix+key)); err != nil {
			return fmt.Errorf("removing %s: %w", key, s.storeError(err))
		}
	}
	return nil
}

// migrateStream moves the records of a stream with the limits policy (dead letters and
// the history), read through one ordered consumer over every old subject at once.
func (s *jsStore) migrateStream(ctx context.Context, o *owners, rep *LegacyReport, kind, prefix string, st jetstream.Stream, tokens int) error {
	filter := prefix + strings.TrimSuffix(strings.Repeat("*.", tokens), ".")
	// Cheap when there is nothing: the first old record, if any.
	if _, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(filter)); errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("reading %s stored before UIDs: %w", kind, s.storeError(err))
	}
	name := st.CachedInfo().Config.Name
	last := map[[2]string]uint64{}
	var futures []jetstream.PubAckFuture
	err := s.scan(ctx, name, []string{filter}, time.Time{}, func(seq uint64, msg jetstream.Msg) (bool, error) {
		t := strings.Split(strings.TrimPrefix(msg.Subject(), prefix), ".")
		a := o.get(ctx, t[0], t[1])
		if !a.ok {
			rep.add(rep.Left, kind)
			return true, nil
		}
		last[[2]string{t[0], t[1]}] = seq
		md, err := msg.Metadata()
		if err != nil || a.fenced(md.Timestamp) {
			rep.add(rep.Dropped, kind)
			return true, nil
		}
		subject := prefix + a.ep.tokens()
		if tokens == 3 {
			subject += "." + t[2]
		}
		h := nats.Header{}
		for k, v := range msg.Headers() {
			h[k] = v
		}
		// Two replicas moving at once (the reclaimer moves under a lease, so only if
		// one lost it) store a record once: within the stream's duplicate window.
		h[nats.MsgIdHdr] = []string{fmt.Sprintf("migrate/%d", seq)}
		f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: subject, Header: h, Data: msg.Data()})
		if err != nil {
			return false, err
		}
		futures = append(futures, f)
		rep.add(rep.Moved, kind)
		if len(futures) >= 1024 {
			if err := wait(ctx, futures); err != nil {
				return false, err
			}
			futures = futures[:0]
		}
		return true, nil
	})
	if err == nil {
		err = wait(ctx, futures)
	}
	if err != nil {
		return fmt.Errorf("moving %s stored before UIDs: %w", kind, s.storeError(err))
	}
	for k, seq := range last {
		subject := prefix + k[0] + "." + k[1]
		if tokens == 3 {
			subject += ".*"
		}
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(seq+1)); err != nil {
			return fmt.Errorf("removing moved %s of %s/%s: %w", kind, k[0], nameOfToken(k[1]), s.storeError(err))
		}
	}
	return nil
}

// uidShaped matches a Kubernetes UID.
var uidShaped = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// dropLegacyConsumers removes the consumers of old subjects that had no pending
// delivery to move (an idle ordered endpoint keeps its consumer).
func (s *jsStore) dropLegacyConsumers(ctx context.Context) error {
	names := s.deliveries.ConsumerNames(ctx)
	var legacy []string
	for n := range names.Name() {
		if uid, ok := strings.CutPrefix(n, "ep_"); ok && !uidShaped.MatchString(uid) {
			legacy = append(legacy, n)
		}
	}
	if err := names.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return fmt.Errorf("listing consumers: %w", s.storeError(err))
	}
	for _, n := range legacy {
		c, err := s.deliveries.Consumer(ctx, n)
		if err != nil {
			continue
		}
		// Only a consumer of an old subject (herald.dlv.<ns>.<name>).
		if f := c.CachedInfo().Config.FilterSubject; strings.Count(strings.TrimPrefix(f, deliverySubjectPrefix), ".") != 1 {
			continue
		}
		if err := s.deliveries.DeleteConsumer(ctx, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("removing consumer %s: %w", n, s.storeError(err))
		}
	}
	return nil
}

// legacyConsumerName is the durable consumer an endpoint had before UIDs.
func legacyConsumerName(namespace, endpoint string) string {
	name := "ep_" + namespace + "_" + strings.ReplaceAll(endpoint, ".", "_")
	if len(name) <= 120 {
		return name
	}
	sum := sha256.Sum256([]byte(namespace + "/" + endpoint))
	return "ep_" + hex.EncodeToString(sum[:16])
}

func wait(ctx context.Context, futures []jetstream.PubAckFuture) error {
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
