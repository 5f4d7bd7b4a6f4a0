package queue

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Idempotent ingest: every event id accepted within the dedupe window (DedupeWindow, at
// most MaxDedupeRecords of them) is remembered with what ingesting it returned (how many
// endpoints it was routed to), so that a repeat returns the first result and stores
// nothing.
//
// Since layout 2 the ids are remembered in the dispatcher's memory, as 64-bit
// fingerprints (about 30 bytes each), indexed from the stream HERALD_ACCEPTED: one
// message per ingest request and namespace, holding the fingerprints of the events it
// accepted. Each dispatcher reads the stream at start (before ingest opens) and follows
// it, so it knows what every replica accepted within moments; a look-up costs no store
// request, and recording a batch of events costs one write. The releases before kept
// one key-value record per event id (bucket HERALD_INGEST): a write per event, a
// request per batch to look them up, and about 350 bytes of the server's memory per id
// for the whole window, the largest part of a busy dispatcher's heap. Its records are
// read (and followed, while older replicas still write them during a rolling upgrade)
// until they expire.
//
// A repeat that comes before its first ingest's record is known here (the same event
// through two replicas at the same moment, or a producer's retry after a crash between
// storing the deliveries and the record) is caught by the delivery stream, which stores
// a delivery published twice within its duplicate window once and says so.
const (
	AcceptedStream        = "HERALD_ACCEPTED"
	acceptedSubjectPrefix = "herald.acc."

	// IngestBucket is the key-value bucket of the releases before layout 2.
	IngestBucket        = "HERALD_INGEST"
	ingestSubjectPrefix = "$KV." + IngestBucket + "."
)

// acceptedMagic starts a message of HERALD_ACCEPTED; records follow, each a fingerprint
// (8 bytes, big-endian) and the number of endpoints matched (uvarint).
var acceptedMagic = [...]byte{0, 'H', 'A'}

// fingerprint is the remembered form of an event id in a namespace: the first 8 bytes
// of the id's SHA-256 (as the keys of HERALD_INGEST began), mixed with the namespace's.
func fingerprint(namespace, eventID string) uint64 {
	sum := sha256.Sum256([]byte(eventID))
	return binary.BigEndian.Uint64(sum[:8]) ^ namespaceHash(namespace)
}

func namespaceHash(namespace string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(namespace))
	return h.Sum64()
}

// seen is the index of remembered event ids.
type seen struct {
	mu      sync.RWMutex
	m       map[uint64]seenEntry
	batches []seenBatch // oldest first, from head
	head    int
	n       int
	gen     uint32
	max     int
	window  time.Duration
	// forgotAt is when the newest batch forgotten for room was accepted: an id
	// accepted no later is not added again. The same ids come twice, from the write
	// and from following the stream; the second, late, would come back as the newest
	// and push out ids younger than itself.
	forgotAt time.Time
}

type seenEntry struct {
	matched uint32
	gen     uint32
}

type seenBatch struct {
	at  time.Time
	gen uint32
	fps []uint64
}

func newSeen(max int64, window time.Duration) *seen {
	return &seen{m: map[uint64]seenEntry{}, max: int(max), window: window}
}

// add remembers what is not remembered yet, as accepted at at.
func (s *seen) add(at time.Time, fps []uint64, matched []uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(at) > s.window || !at.After(s.forgotAt) {
		return
	}
	s.gen++
	b := seenBatch{at: at, gen: s.gen}
	for i, fp := range fps {
		if _, ok := s.m[fp]; ok {
			continue
		}
		s.m[fp] = seenEntry{matched: matched[i], gen: s.gen}
		b.fps = append(b.fps, fp)
	}
	if len(b.fps) == 0 {
		return
	}
	s.batches = append(s.batches, b)
	s.n += len(b.fps)
	s.pruneLocked(time.Now())
}

// pruneLocked forgets the oldest batches while there are too many ids or they are older
// than the window.
func (s *seen) pruneLocked(now time.Time) {
	for s.head < len(s.batches) {
		b := &s.batches[s.head]
		if s.n <= s.max && now.Sub(b.at) <= s.window {
			break
		}
		if s.n > s.max && b.at.After(s.forgotAt) {
			s.forgotAt = b.at
		}
		for _, fp := range b.fps {
			if e, ok := s.m[fp]; ok && e.gen == b.gen {
				delete(s.m, fp)
			}
		}
		s.n -= len(b.fps)
		*b = seenBatch{}
		s.head++
	}
	if s.head > 1024 && s.head*2 > len(s.batches) {
		s.batches = append([]seenBatch(nil), s.batches[s.head:]...)
		s.head = 0
	}
}

func (s *seen) prune() {
	s.mu.Lock()
	s.pruneLocked(time.Now())
	s.mu.Unlock()
}

func (s *seen) lookup(fp uint64) (uint32, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.m[fp]
	return e.matched, ok
}

func (s *seen) size() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// Seen returns, for each event id of a namespace, whether it was accepted within the
// dedupe window and how many endpoints it was routed to then. It asks no store.
func (s *jsStore) Seen(namespace string, ids []string) (matched []int, found []bool) {
	matched, found = make([]int, len(ids)), make([]bool, len(ids))
	for i, id := range ids {
		m, ok := s.seen.lookup(fingerprint(namespace, id))
		matched[i], found[i] = int(m), ok
	}
	return matched, found
}

// Remember records that events of a namespace were accepted, with the number of
// endpoints each was routed to, and returns once that is stored: in one write, shared
// with the other requests of the namespace that come while its last write is out (see
// accepted.go). It is called after their deliveries are stored: a crash in between
// makes the producer's retry store them again, which the delivery stream's duplicate
// window absorbs.
func (s *jsStore) Remember(ctx context.Context, namespace string, ids []string, matched []int) error {
	if len(ids) == 0 {
		return nil
	}
	fps := make([]uint64, len(ids))
	ms := make([]uint32, len(ids))
	for i, id := range ids {
		fps[i], ms[i] = fingerprint(namespace, id), uint32(max(matched[i], 0))
	}
	return s.acceptedW.remember(ctx, namespace, fps, ms)
}

// ensureAccepted makes the stream of accepted event ids: bounded by the dedupe window
// and, generously, by the bytes MaxDedupeRecords records take (the index in memory is
// what forgets the oldest beyond MaxDedupeRecords).
func (s *jsStore) ensureAccepted(ctx context.Context, replicas int) error {
	var err error
	s.accepted, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        AcceptedStream,
		Description: "Herald: the ids of the events accepted within the dedupe window, as fingerprints, for idempotent ingest",
		Subjects:    []string{acceptedSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      s.opts.DedupeWindow,
		MaxBytes:    s.opts.MaxDedupeRecords*16 + 8<<20,
		Discard:     jetstream.DiscardOld,
		Duplicates:  time.Second,
	})
	if err != nil {
		return fmt.Errorf("creating stream %s: %w", AcceptedStream, err)
	}
	return nil
}

// followAccepted reads what was accepted (the stream of layout 2 and, while it exists,
// the bucket of the releases before) into the index and keeps following both; it
// returns once what was stored when it began is read.
func (s *jsStore) followAccepted(ctx context.Context) error {
	var waits []func() bool
	for _, src := range []struct {
		stream, filter string
		read           func(msg jetstream.Msg, at time.Time)
	}{
		{AcceptedStream, acceptedSubjectPrefix + ">", s.readAccepted},
		{"KV_" + IngestBucket, ingestSubjectPrefix + ">", s.readIngestRecord},
	} {
		st, err := s.js.Stream(ctx, src.stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", src.stream, s.storeError(err))
		}
		last := st.CachedInfo().State.LastSeq
		start := time.Now().Add(-s.opts.DedupeWindow)
		cons, err := s.js.OrderedConsumer(ctx, src.stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{src.filter}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
		})
		if err != nil {
			return fmt.Errorf("following %s: %w", src.stream, s.storeError(err))
		}
		var handled atomic.Uint64
		read := src.read
		cc, err := cons.Consume(func(msg jetstream.Msg) {
			md, err := msg.Metadata()
			if err != nil {
				return
			}
			read(msg, md.Timestamp)
			handled.Store(md.Sequence.Stream)
		})
		if err != nil {
			return fmt.Errorf("following %s: %w", src.stream, s.storeError(err))
		}
		s.followers = append(s.followers, cc)
		// Caught up once what was stored when it began is read, or nothing (in the
		// window) is left to read.
		waits = append(waits, func() bool {
			if last == 0 || handled.Load() >= last {
				return true
			}
			info, err := cons.Info(ctx)
			return err == nil && info.NumPending == 0 && handled.Load() >= info.Delivered.Stream
		})
	}
	deadline := time.After(ensureSetupBudget)
	for _, caught := range waits {
		for !caught() {
			select {
			case <-time.After(20 * time.Millisecond):
			case <-deadline:
				return fmt.Errorf("%w: reading the accepted event ids did not finish within %s", ErrUnavailable, ensureSetupBudget)
			case <-ctx.Done():
				return fmt.Errorf("reading the accepted event ids: %w", ctx.Err())
			}
		}
	}
	return nil
}

// readAccepted indexes a message of HERALD_ACCEPTED.
func (s *jsStore) readAccepted(msg jetstream.Msg, at time.Time) {
	b := msg.Data()
	if len(b) < len(acceptedMagic) || [3]byte(b[:3]) != acceptedMagic {
		return
	}
	b = b[len(acceptedMagic):]
	var fps []uint64
	var ms []uint32
	for len(b) >= 8 {
		fp := binary.BigEndian.Uint64(b)
		m, k := binary.Uvarint(b[8:])
		if k <= 0 {
			return
		}
		fps, ms = append(fps, fp), append(ms, uint32(m))
		b = b[8+k:]
	}
	s.seen.add(at, fps, ms)
}

// readIngestRecord indexes a record of the bucket of the releases before layout 2
// ($KV.HERALD_INGEST.<namespace>.<40 hex digits of the id's SHA-256>, {"m": matched}).
func (s *jsStore) readIngestRecord(msg jetstream.Msg, at time.Time) {
	if op := msg.Headers().Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return
	}
	ns, key, ok := strings.Cut(strings.TrimPrefix(msg.Subject(), ingestSubjectPrefix), ".")
	if !ok || len(key) < 16 {
		return
	}
	head, err := hex.DecodeString(key[:16])
	if err != nil {
		return
	}
	var rec struct {
		Matched uint32 `json:"m"`
	}
	_ = json.Unmarshal(msg.Data(), &rec)
	s.seen.add(at, []uint64{binary.BigEndian.Uint64(head) ^ namespaceHash(ns)}, []uint32{rec.Matched})
}
