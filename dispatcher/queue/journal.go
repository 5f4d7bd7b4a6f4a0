package queue

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The journal settles deliveries and writes the history, per endpoint and in batches,
// off the delivery's path. A worker that settles a delivery hands it over and goes on;
// every journalInterval (or sooner, when a batch fills up or a caller waits), one flush
// per endpoint:
//
//  1. publishes the attempt records and the delivered deliveries retained for replay
//     gathered since the last flush, one message per bucket of event ids (at most
//     historyBuckets per stream) instead of one per record;
//  2. adds what was settled to the endpoint's tally (its counters, last attempt and
//     last success) by compare-and-set, naming the settled deliveries as open: counted,
//     their acknowledgement not yet confirmed;
//  3. acknowledges them, waiting only for the last acknowledgement (the server handles
//     a consumer's acknowledgements in the order they come), then, at the next flush,
//     closes them.
//
// So the counters are exact across crashes: a delivery is counted once, before it is
// acknowledged. A dispatcher killed before step 2 never counted it; the delivery is
// handed out again, attempted again, and counted then. One killed between steps 2 and 3
// left it open; whoever is handed it again finds it open in the tally and only
// acknowledges it. A tally write whose answer is lost (a timeout across a leader change)
// may have been stored: the journal numbers its writes in its open set, and the next
// read of the tally tells whether it was, so that a failed flush's counts, carried into
// the next, are added once. What a receiver may see twice is an attempt whose
// dispatcher was killed after the answer and before step 2 (at most journalInterval
// plus a round trip): at-least-once, with the same event id and attempt number.
//
// A retry or a dead letter is stored before its delivery is handed to the journal, so
// that a delivery found open never needs its next step done again.

// journalInterval is how long a settled delivery waits for its flush at most.
const journalInterval = 50 * time.Millisecond

// historyInterval is how long a history record waits for its batch to be written at
// most (unless the batch fills up first): long enough that an endpoint busy at a few
// hundred deliveries a second writes batches of tens of records per bucket.
const historyInterval = time.Second

// journalMaxAcks is how many settled deliveries make a flush due at once.
const journalMaxAcks = 512

// openStale is how old another journal's open deliveries must be before a flush checks
// whether they are gone from the stream (settled by someone, or purged).
const openStale = 5 * time.Minute

// Counts are what the tally of an endpoint counts.
type Counts struct {
	Delivered      int64 `json:"delivered"`
	FailedAttempts int64 `json:"failedAttempts"`
	DeadLettered   int64 `json:"deadLettered"`
}

func (c *Counts) add(o Counts) {
	c.Delivered += o.Delivered
	c.FailedAttempts += o.FailedAttempts
	c.DeadLettered += o.DeadLettered
}

func (c *Counts) sub(o Counts) {
	c.Delivered -= o.Delivered
	c.FailedAttempts -= o.FailedAttempts
	c.DeadLettered -= o.DeadLettered
}

func (c Counts) zero() bool { return c == Counts{} }

// AttemptSummary is an endpoint's last attempt as its status shows it.
type AttemptSummary struct {
	Time       time.Time `json:"time"`
	EventID    string    `json:"eventId"`
	DeliveryID string    `json:"deliveryId"`
	StatusCode int       `json:"statusCode,omitempty"`
	Latency    int64     `json:"latencyMicros"`
	// Error is why it failed, at most 256 bytes; empty for a success.
	Error string `json:"error,omitempty"`
}

// Tally is what the store knows of an endpoint's deliveries for its status: its
// counters summed over every dispatcher replica and restart, and its last attempt and
// success.
type Tally struct {
	Counts
	LastAttempt *AttemptSummary `json:"lastAttempt,omitempty"`
	LastSuccess time.Time       `json:"lastSuccess,omitzero"`
	// Open are, per journal (one per dispatcher process), the deliveries of its last
	// flush: counted, their acknowledgement not yet seen confirmed.
	Open map[string]openSet `json:"open,omitempty"`
}

type openSet struct {
	At   time.Time `json:"at"`
	Seqs []uint64  `json:"seqs,omitempty"`
	// Write numbers the journal's writes of the tally. A write whose answer is lost (a
	// timeout across a leader change or a partition) may have been stored all the same;
	// the next read of the tally tells by its number, so that its counts are not added
	// a second time.
	Write uint64 `json:"write,omitempty"`
}

// TallyKind is the kind of an endpoint's tally record in the state bucket (EndpointKey,
// WatchState).
const TallyKind = "tally"

// unsureWrite is a write of the tally whose answer was lost: its number, what its batch
// counted, and how many deliveries its batch had (the failed flush puts them first in
// the next).
type unsureWrite struct {
	id     uint64
	counts Counts
	n      int
}

// maxUnsure bounds the unsure writes remembered through a long outage: only the last
// ones can still be stored when it ends (each expected the same revision).
const maxUnsure = 64

// journal is the store's journal; see above.
type journal struct {
	s *jsStore
	// session names this journal in the tallies' open sets.
	session    string
	attemptLog bool

	mu   sync.Mutex
	eps  map[Endpoint]*epJournal
	kick chan struct{}
	// flushNow asks the loop to flush everything; it closes the channel sent when done.
	flushNow chan chan struct{}
	stop     chan struct{}
	done     chan struct{}
	// flushes bounds the flushes running at once.
	flushes chan struct{}
	wg      sync.WaitGroup

	failMu  sync.Mutex
	failed  int64
	lastErr error
}

// epJournal is what waits for the next flush of one endpoint, and what its journal
// knows of the endpoint's tally.
type epJournal struct {
	ep Endpoint

	mu        sync.Mutex
	acks      []jetstream.Msg
	seqs      []uint64
	seqCounts []Counts // what each of seqs counts
	counts    Counts
	last      *AttemptSummary
	success   time.Time
	attempts  history
	delivered history
	since     time.Time // the first settlement waiting
	hsince    time.Time // the first history record waiting
	urgent    bool
	waiters   []chan error
	flushing  bool
	// mine are the deliveries this journal holds: handed over, or flushed without a
	// confirmed acknowledgement. carry are those whose acknowledgement failed: they
	// stay open in the tally.
	mine    map[uint64]struct{}
	carry   []uint64
	carryAt time.Time

	// writes numbers this journal's writes of the tally; unsure are those whose answer
	// was lost, each with the counts it added: at most one of them was stored (each
	// expected the revision the journal knew), and a later read names it.
	writes uint64
	unsure []unsureWrite

	// What the journal last read or wrote of the tally.
	tally    Tally
	rev      uint64
	loaded   bool
	others   map[uint64]struct{}
	othersAt time.Time
}

func newJournal(s *jsStore, attemptLog bool) *journal {
	j := &journal{s: s, session: newSession(), attemptLog: attemptLog, eps: map[Endpoint]*epJournal{},
		kick: make(chan struct{}, 1), flushNow: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		flushes: make(chan struct{}, 8)}
	go j.run()
	return j
}

func (j *journal) get(ep Endpoint) *epJournal {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.eps[ep]
	if e == nil {
		e = &epJournal{ep: ep, mine: map[uint64]struct{}{}}
		j.eps[ep] = e
	}
	return e
}

// forget drops an endpoint's journal: the endpoint is gone, and so is what it held.
func (j *journal) forget(ep Endpoint) {
	j.mu.Lock()
	e := j.eps[ep]
	delete(j.eps, ep)
	j.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		for _, w := range e.waiters {
			w <- fmt.Errorf("endpoint %s is gone", ep)
		}
		e.waiters = nil
		e.mu.Unlock()
	}
}

func (j *journal) poke() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// settle hands a settled delivery over: it is counted as c, then acknowledged. With
// wait, it returns once that is done (or ctx ends); urgent asks for a flush now (an
// ordered endpoint's next delivery waits for this one's acknowledgement).
func (j *journal) settle(ctx context.Context, p *Pending, c Counts, wait, urgent bool) error {
	seq := p.Sequence()
	e := j.get(p.Ref())
	var done chan error
	e.mu.Lock()
	if e.settleEmpty() {
		e.since = time.Now()
	}
	if _, dup := e.mine[seq]; dup {
		// Handed out twice at once (a consumer's new leader handing out again what
		// the old one had) and settled twice here: counted once, acknowledged twice.
		c = Counts{}
	}
	e.acks, e.seqs, e.seqCounts = append(e.acks, p.msg), append(e.seqs, seq), append(e.seqCounts, c)
	e.mine[seq] = struct{}{}
	e.counts.add(c)
	if wait {
		done = make(chan error, 1)
		e.waiters = append(e.waiters, done)
	}
	e.urgent = e.urgent || urgent || wait
	full := len(e.acks) >= journalMaxAcks
	e.mu.Unlock()
	if urgent || wait || full {
		j.poke()
	}
	if !wait {
		return nil
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the settlement of delivery %s: %w", p.DeliveryID, ctx.Err())
	}
}

// counted reports whether a delivery handed out again was counted already: held by
// this journal, or open in the endpoint's tally (another dispatcher counted it and
// stopped before its acknowledgement). redelivered asks for a fresh look at the tally
// when the last is older than a second: a dispatcher killed after counting is noticed
// only when its deliveries are handed out again, AckWait later.
func (j *journal) counted(ep Endpoint, seq uint64, redelivered bool) bool {
	e := j.get(ep)
	e.mu.Lock()
	_, mine := e.mine[seq]
	stale := !e.loaded || (redelivered && time.Since(e.othersAt) > time.Second)
	e.mu.Unlock()
	if mine {
		return true
	}
	if stale {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		_ = j.load(ctx, e)
		cancel()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, open := e.others[seq]
	return open
}

// load reads the endpoint's tally.
func (j *journal) load(ctx context.Context, e *epJournal) error {
	var t Tally
	var rev uint64
	entry, err := j.s.state.Get(ctx, EndpointKey(TallyKind, e.ep))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("reading the tally of %s: %w", e.ep, j.s.storeError(err))
	default:
		if err := json.Unmarshal(entry.Value(), &t); err != nil {
			return fmt.Errorf("decoding the tally of %s: %w", e.ep, err)
		}
		rev = entry.Revision()
	}
	e.mu.Lock()
	e.learn(j.session, t, rev)
	e.mu.Unlock()
	return nil
}

// stored reports which unsure write, if any, the tally's write number names; e.mu is
// held. The unsure writes are forgotten once one is found.
func (e *epJournal) stored(write uint64) (unsureWrite, bool) {
	for _, u := range e.unsure {
		if u.id == write {
			e.unsure = nil
			return u, true
		}
	}
	return unsureWrite{}, false
}

// learn remembers a tally read or written; e.mu is held.
func (e *epJournal) learn(session string, t Tally, rev uint64) {
	e.tally, e.rev, e.loaded, e.othersAt = t, rev, true, time.Now()
	e.others = map[uint64]struct{}{}
	for s, o := range t.Open {
		if s == session {
			continue
		}
		for _, seq := range o.Seqs {
			e.others[seq] = struct{}{}
		}
	}
}

// attempt adds an attempt record to the endpoint's history and takes it as the last
// attempt.
func (j *journal) attempt(r *AttemptRecord) {
	ep := Endpoint{Namespace: r.Namespace, Name: r.Endpoint, UID: r.EndpointUID}
	sum := &AttemptSummary{Time: r.Time, EventID: r.EventID, DeliveryID: r.DeliveryID, StatusCode: r.StatusCode,
		Latency: r.DurationMicros, Error: truncate(r.Error, 256)}
	e := j.get(ep)
	e.mu.Lock()
	if e.settleEmpty() {
		e.since = time.Now()
	}
	if e.last == nil || !sum.Time.Before(e.last.Time) {
		e.last = sum
	}
	if r.Error == "" {
		if end := r.Time.Add(time.Duration(r.DurationMicros) * time.Microsecond); end.After(e.success) {
			e.success = end
		}
	}
	full := false
	if j.attemptLog {
		if e.historyEmpty() {
			e.hsince = time.Now()
		}
		full = e.attempts.add(eventBucket16(r.EventID), j.s.maxBatch, r.appendJSON)
	}
	e.mu.Unlock()
	if full {
		j.poke()
	}
}

// retain adds a delivered delivery to those retained for replay.
func (j *journal) retain(d *Delivery, at time.Time) {
	e := j.get(d.Ref())
	e.mu.Lock()
	if e.historyEmpty() {
		e.hsince = time.Now()
	}
	full := e.delivered.add(eventBucket16(d.EventID), j.s.maxBatch, func(b []byte) []byte {
		return d.encode(binary.AppendVarint(b, unixMicro(at)))
	})
	e.mu.Unlock()
	if full {
		j.poke()
	}
}

// empty reports whether nothing waits for a flush; e.mu is held.
func (e *epJournal) empty() bool { return e.settleEmpty() && e.historyEmpty() }

func (e *epJournal) settleEmpty() bool { return len(e.acks) == 0 && e.counts.zero() && e.last == nil }

func (e *epJournal) historyEmpty() bool { return e.attempts.empty() && e.delivered.empty() }

// historyDue reports whether the history waiting is to be written now; e.mu is held.
func (e *epJournal) historyDue(now time.Time, all bool) bool {
	return !e.historyEmpty() && (all || e.attempts.full || e.delivered.full || now.Sub(e.hsince) >= historyInterval)
}

func (e *epJournal) due(now time.Time, all bool) bool {
	if e.flushing {
		return false
	}
	settle := !e.settleEmpty() && (all || e.urgent || len(e.acks) >= journalMaxAcks || now.Sub(e.since) >= journalInterval)
	return settle || e.historyDue(now, all)
}

func (j *journal) run() {
	defer close(j.done)
	tick := time.NewTicker(journalInterval / 2)
	defer tick.Stop()
	for {
		select {
		case <-j.stop:
			j.flushEverything()
			return
		case done := <-j.flushNow:
			j.flushEverything()
			close(done)
			continue
		case <-tick.C:
		case <-j.kick:
		}
		j.flushDue(false)
	}
}

// flushDue starts the flush of every endpoint that is due, at most cap(flushes) at once.
func (j *journal) flushDue(all bool) {
	now := time.Now()
	j.mu.Lock()
	var due []*epJournal
	for _, e := range j.eps {
		e.mu.Lock()
		if e.due(now, all) {
			e.flushing = true
			due = append(due, e)
		}
		e.mu.Unlock()
	}
	j.mu.Unlock()
	for _, e := range due {
		j.flushes <- struct{}{}
		j.wg.Go(func() {
			defer func() { <-j.flushes }()
			if j.flush(e, all) {
				j.poke()
			}
		})
	}
}

// flushAll flushes everything held, waiting for it.
func (j *journal) flushAll() { _ = j.sync(context.Background()) }

// sync flushes everything held and waits for it, or for ctx. A read of the history
// syncs first, so that it finds every record this dispatcher handed over (those another
// replica holds are written within historyInterval).
func (j *journal) sync(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case j.flushNow <- done:
	case <-j.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("writing the history held before reading it: %w", ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("writing the history held before reading it: %w", ctx.Err())
	}
}

// flushEverything flushes everything held and waits for it; only the loop calls it (and
// flushDue), so that the flushes' WaitGroup is never waited for while one is added.
func (j *journal) flushEverything() {
	for range 3 {
		j.flushDue(true)
		j.wg.Wait()
		if j.idle() {
			return
		}
	}
}

func (j *journal) idle() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, e := range j.eps {
		e.mu.Lock()
		empty := e.empty()
		e.mu.Unlock()
		if !empty {
			return false
		}
	}
	return true
}

// close flushes what the journal holds and stops it.
func (j *journal) close() {
	select {
	case <-j.stop:
	default:
		close(j.stop)
	}
	<-j.done
}

// abort stops the journal without flushing, as a crash would.
func (j *journal) abort() {
	j.mu.Lock()
	j.eps = map[Endpoint]*epJournal{}
	j.mu.Unlock()
	select {
	case <-j.stop:
	default:
		close(j.stop)
	}
	<-j.done
}

// batch is what one flush of an endpoint writes.
type batch struct {
	acks      []jetstream.Msg
	seqs      []uint64
	seqCounts []Counts
	counts    Counts
	last      *AttemptSummary
	success   time.Time
	attempts  [][2]string // subject token, body
	delivered [][2]string
	waiters   []chan error
}

// flush writes what e holds (see the journal) and reports whether more became due
// meanwhile.
func (j *journal) flush(e *epJournal, all bool) (again bool) {
	e.mu.Lock()
	b := batch{acks: e.acks, seqs: e.seqs, seqCounts: e.seqCounts, counts: e.counts, last: e.last, success: e.success, waiters: e.waiters}
	if e.historyDue(time.Now(), all) {
		b.attempts, b.delivered = e.attempts.take(), e.delivered.take()
	}
	e.acks, e.seqs, e.seqCounts, e.counts, e.last, e.success, e.waiters, e.urgent = nil, nil, nil, Counts{}, nil, time.Time{}, nil, false
	e.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	// 1. The history, not waited for before the rest.
	var futures []jetstream.PubAckFuture
	for _, h := range []struct {
		prefix string
		bodies [][2]string
	}{{attemptSubjectPrefix, b.attempts}, {deliveredSubjectPrefix, b.delivered}} {
		for _, body := range h.bodies {
			f, err := j.s.js.PublishMsgAsync(&nats.Msg{Subject: h.prefix + e.ep.tokens() + "." + body[0], Data: []byte(body[1])})
			if err != nil {
				j.fail(err)
				continue
			}
			futures = append(futures, f)
		}
	}
	// 2. The tally, then 3. the acknowledgements.
	var err error
	if len(b.acks) > 0 || !b.counts.zero() || b.last != nil {
		err = j.count(ctx, e, &b)
	}
	if err == nil && len(b.acks) > 0 {
		j.acknowledge(ctx, e, &b)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case ferr := <-f.Err():
			j.fail(ferr)
		case <-ctx.Done():
			j.fail(ctx.Err())
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		// Nothing was counted or acknowledged: it all goes with the next flush. The
		// deliveries stay unacknowledged meanwhile; handed out again, they are found
		// in mine and left alone.
		j.s.opts.Log.Error(err, "settling deliveries; retrying", "endpoint", e.ep.String(), "deliveries", len(b.acks))
		e.acks, e.seqs, e.seqCounts = append(b.acks, e.acks...), append(b.seqs, e.seqs...), append(b.seqCounts, e.seqCounts...)
		e.counts.add(b.counts)
		if e.last == nil {
			e.last = b.last
		}
		if b.success.After(e.success) {
			e.success = b.success
		}
		e.waiters = append(b.waiters, e.waiters...)
		if e.since.IsZero() || time.Since(e.since) < journalInterval {
			e.since = time.Now()
		}
		e.flushing = false
		return false
	}
	for _, w := range b.waiters {
		w <- nil
	}
	e.flushing = false
	return e.due(time.Now(), false)
}

// count adds b to the endpoint's tally by compare-and-set, with b's deliveries open.
func (j *journal) count(ctx context.Context, e *epJournal, b *batch) error {
	key := EndpointKey(TallyKind, e.ep)
	for range 50 {
		e.mu.Lock()
		loaded := e.loaded
		e.mu.Unlock()
		if !loaded {
			if err := j.load(ctx, e); err != nil {
				return err
			}
		}
		e.mu.Lock()
		t, rev := e.tally, e.rev
		open := append(slices.Clone(e.carry), b.seqs...)
		if u, ok := e.stored(t.Open[j.session].Write); ok {
			// A write whose answer was lost was stored: what its deliveries count
			// (carried into this batch, first, by the failed flush) is in the tally
			// already, or was left out there as counted elsewhere.
			b.counts.sub(u.counts)
			clear(b.seqCounts[:min(u.n, len(b.seqCounts))])
		}
		e.writes++
		write := e.writes
		e.mu.Unlock()
		t.Counts.add(b.counts)
		// Deliveries open in another journal's set were handed out to both at once
		// (a consumer's leader change) and counted there: not here.
		t.Counts.sub(b.countedElsewhere(t.Open, j.session))
		if b.last != nil && (t.LastAttempt == nil || !b.last.Time.Before(t.LastAttempt.Time)) {
			t.LastAttempt = b.last
		}
		if b.success.After(t.LastSuccess) {
			t.LastSuccess = b.success.UTC()
		}
		t.Open = j.openSets(ctx, t.Open, open, write)
		raw, err := json.Marshal(t)
		if err != nil {
			return err
		}
		var nrev uint64
		if rev == 0 {
			nrev, err = j.s.state.Create(ctx, key, raw)
		} else {
			nrev, err = j.s.state.Update(ctx, key, raw, rev)
		}
		if err == nil {
			e.mu.Lock()
			e.learn(j.session, t, nrev)
			// Every unsure write expected this revision or an older one: none of them
			// can be stored any more.
			e.unsure = nil
			e.mu.Unlock()
			return nil
		}
		if !isWrongLastSequence(err) {
			e.mu.Lock()
			e.unsure = append(e.unsure, unsureWrite{id: write, counts: b.counts, n: len(b.seqs)})
			if len(e.unsure) > maxUnsure {
				e.unsure = slices.Delete(e.unsure, 0, len(e.unsure)-maxUnsure)
			}
			e.mu.Unlock()
			return fmt.Errorf("writing the tally of %s: %w", e.ep, j.s.storeError(err))
		}
		e.mu.Lock()
		e.loaded = false
		e.mu.Unlock()
	}
	return fmt.Errorf("writing the tally of %s: too much contention", e.ep)
}

// countedElsewhere sums what b counts for deliveries open in other journals' sets.
func (b *batch) countedElsewhere(open map[string]openSet, session string) Counts {
	var c Counts
	if _, mine := open[session]; len(open) == 0 || (len(open) == 1 && mine) {
		return c
	}
	others := map[uint64]struct{}{}
	for s, o := range open {
		if s != session {
			for _, seq := range o.Seqs {
				others[seq] = struct{}{}
			}
		}
	}
	for i, seq := range b.seqs {
		if _, ok := others[seq]; ok && i < len(b.seqCounts) {
			c.add(b.seqCounts[i])
		}
	}
	return c
}

// openSets is the tally's open sets with this journal's replaced by open and write, and
// those of other journals dropped once none of their deliveries is stored any more.
func (j *journal) openSets(ctx context.Context, cur map[string]openSet, open []uint64, write uint64) map[string]openSet {
	out := make(map[string]openSet, len(cur)+1)
	for s, o := range cur {
		if s == j.session {
			continue
		}
		if time.Since(o.At) > openStale && !j.anyStored(ctx, o.Seqs) {
			continue
		}
		out[s] = o
	}
	out[j.session] = openSet{At: time.Now().UTC(), Seqs: open, Write: write}
	return out
}

// anyStored reports whether any of the deliveries is still in the stream (or whether
// that cannot be told).
func (j *journal) anyStored(ctx context.Context, seqs []uint64) bool {
	for _, seq := range seqs {
		_, err := j.s.deliveries.GetMsg(ctx, seq)
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return true
		}
	}
	return false
}

// acknowledge acknowledges b's deliveries, waiting for the answer to the last one only:
// the server handles a consumer's acknowledgements in the order they come, so that
// answer confirms the others. Those not confirmed stay open in the tally (carry) and
// held by this journal until they are gone from the stream.
func (j *journal) acknowledge(ctx context.Context, e *epJournal, b *batch) {
	var failed []uint64
	if j.s.acks != nil {
		// Replicated: each answered on its own (acks.go).
		for i, ok := range j.s.acks.ack(ctx, b.acks) {
			if !ok {
				failed = append(failed, b.seqs[i])
			}
		}
	} else {
		last := len(b.acks) - 1
		for i, m := range b.acks[:last] {
			if err := m.Ack(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
				failed = append(failed, b.seqs[i])
			}
		}
		if err := b.acks[last].DoubleAck(ctx); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			failed = b.seqs
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, seq := range b.seqs {
		delete(e.mine, seq)
	}
	if len(e.carry) > 0 && time.Since(e.carryAt) > time.Minute {
		e.carryAt = time.Now()
		if !j.anyStored(ctx, e.carry) {
			for _, seq := range e.carry {
				delete(e.mine, seq)
			}
			e.carry = nil
		}
	}
	if len(failed) > 0 {
		j.s.opts.Log.V(1).Info("acknowledging settled deliveries failed; they stay open in the tally", "endpoint", e.ep.String(), "deliveries", len(failed))
		if len(e.carry) == 0 {
			e.carryAt = time.Now()
		}
		e.carry = append(e.carry, failed...)
	}
	for _, seq := range e.carry {
		e.mine[seq] = struct{}{}
	}
}

func (j *journal) fail(err error) {
	j.failMu.Lock()
	j.failed++
	first := j.lastErr == nil
	j.lastErr = err
	j.failMu.Unlock()
	if first {
		j.s.opts.Log.Error(err, "writing delivery history; the attempt log and retention miss records while this lasts")
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// newSession names a journal: random, so that a restarted dispatcher is another.
func newSession() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
