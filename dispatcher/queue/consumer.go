package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-dev/herald/dispatcher/config"
)

// Publish stores deliveries durably and returns once JetStream has acknowledged every one
// of them. Publishes are pipelined (asynchronous with one wait at the end), so a batch
// costs about one round trip. A delivery already stored within the duplicate window is
// acknowledged without being stored twice, and reported in duplicate: the same event
// published through two dispatcher replicas at once is stored once, and the one that
// came second learns it was a duplicate.
func (s *jsStore) Publish(ctx context.Context, deliveries []Delivery) (duplicate []bool, err error) {
	if err := s.registerAll(ctx, deliveries); err != nil {
		return nil, err
	}
	duplicate = make([]bool, len(deliveries))
	pending := make([]int, len(deliveries))
	for i := range pending {
		pending[i] = i
	}
	for try := 1; ; try++ {
		var inProcess []int
		if inProcess, err = s.publish(ctx, deliveries, pending, duplicate); err != nil {
			return duplicate, err
		}
		if len(inProcess) == 0 {
			for i := range deliveries {
				s.notifyStored(deliveries[i].Ref())
			}
			return duplicate, nil
		}
		// Another replica is storing the same delivery right now (a replicated stream
		// answers "duplicate message id is in process" until it is committed): ask
		// again shortly, to learn whether it was stored.
		if try == inProcessTries {
			return nil, fmt.Errorf("%w: the same delivery is being stored elsewhere and did not settle", ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the store to acknowledge deliveries: %w", ctx.Err())
		case <-time.After(time.Duration(try) * 10 * time.Millisecond):
		}
		pending = inProcess
	}
}

// inProcessTries bounds the retries of a delivery another replica is storing: about 2s.
const inProcessTries = 20

// codeDuplicateInProcess is JetStream's answer to a message id being stored by another
// publisher that has not been committed yet (replicated streams only).
const codeDuplicateInProcess = 10158

func duplicateInProcess(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == codeDuplicateInProcess
}

// publish publishes deliveries[i] for every i in which, recording duplicates, and
// returns those another publisher is storing at the same moment.
func (s *jsStore) publish(ctx context.Context, deliveries []Delivery, which []int, duplicate []bool) (inProcess []int, err error) {
	if len(which) == 1 {
		d := &deliveries[which[0]]
		ack, err := s.js.PublishMsg(ctx, d.toMsg(DeliverySubject(d.Ref())))
		switch {
		case duplicateInProcess(err):
			return which, nil
		case err != nil:
			return nil, fmt.Errorf("storing deliveries: %w", s.storeError(err))
		}
		duplicate[which[0]] = ack.Duplicate
		return nil, nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(which))
	for _, i := range which {
		d := &deliveries[i]
		f, err := s.js.PublishMsgAsync(d.toMsg(DeliverySubject(d.Ref())))
		if err != nil {
			return nil, fmt.Errorf("storing deliveries: %w", s.storeError(err))
		}
		futures = append(futures, f)
	}
	for k, f := range futures {
		select {
		case ack := <-f.Ok():
			duplicate[which[k]] = ack.Duplicate
		case err := <-f.Err():
			if !duplicateInProcess(err) {
				return nil, fmt.Errorf("storing deliveries: %w", s.storeError(err))
			}
			inProcess = append(inProcess, which[k])
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the store to acknowledge deliveries: %w", ctx.Err())
		}
	}
	return inProcess, nil
}

// ConsumerOptions tune one endpoint's consumer.
type ConsumerOptions struct {
	// AckWait is how long an attempt may run before JetStream hands the delivery to
	// another worker; it must exceed the longest attempt (timeouts are at most 60s).
	// 0 is delivery.ackWait's default (package config).
	AckWait time.Duration
	// Buffer is how many deliveries one pull request asks for. Up to twice as many wait
	// for the workers: the next request goes out once the last one's deliveries are
	// queued for them, so that the workers do not wait for its round trip.
	Buffer int
	// Ordered hands out one delivery at a time across every replica: the next is
	// handed out only once the one before is settled (delivered or dead-lettered), and
	// a delivery handed back with a delay stays ahead of the rest.
	Ordered bool
	// InactiveThreshold is how long the consumer outlives the last pull request of
	// any replica (default 1 minute; pull requests are renewed every 5s, so a reconnect
	// does not lose it). Ordered consumers are kept.
	InactiveThreshold time.Duration
}

// maxAckPending is how many deliveries the server hands out before the first of them is
// settled. Deliveries waiting for their retry time are held by the server as
// acknowledgement-pending; the unordered bound keeps a dead endpoint's backlog from
// growing the server's memory without limit (the rest stays on disk until there is room).
func (o ConsumerOptions) maxAckPending() int {
	if o.Ordered {
		return 1
	}
	return 100_000
}

func (o ConsumerOptions) inactiveThreshold() time.Duration {
	switch {
	case o.Ordered:
		return 0
	case o.InactiveThreshold <= 0:
		return time.Minute
	}
	return o.InactiveThreshold
}

// defaultAckWait gives an unset AckWait the engine's default (delivery.ackWait,
// package config).
func (o *ConsumerOptions) defaultAckWait() {
	d := config.Delivery{AckWait: o.AckWait}
	d.SetDefaults()
	o.AckWait = d.AckWait
}

// Consumer yields the deliveries of one endpoint.
type Consumer struct {
	store *jsStore
	ep    Endpoint
	opts  ConsumerOptions
	// msgs carries what fetch received to Next; closed when fetching has ended.
	msgs chan jetstream.Msg
	// errs carries fetch errors to Next, which reports them (they are not fatal).
	errs     chan error
	stop     chan struct{}
	stopOnce sync.Once
}

// Consume opens (creating if needed) the durable consumer of an endpoint and starts
// fetching its deliveries. Consumers of several dispatcher replicas share the work.
func (s *jsStore) Consume(ctx context.Context, ep Endpoint, opts ConsumerOptions) (*Consumer, error) {
	opts.defaultAckWait()
	if opts.Buffer <= 0 || opts.Ordered {
		// An ordered consumer is handed one delivery at a time whatever the buffer; a
		// pull request for more kept standing lets the server hand out the next one the
		// moment the one before is acknowledged, rather than after another request
		// (BenchmarkOrderedVsUnordered: about 4x the deliveries of a buffer of 1).
		opts.Buffer = 16
	}
	cons, err := s.consumer(ctx, ep, opts)
	if err != nil {
		return nil, err
	}
	// What other dispatchers counted and did not acknowledge, as of now.
	_ = s.journal.load(ctx, s.journal.get(ep))
	c := &Consumer{store: s, ep: ep, opts: opts, msgs: make(chan jetstream.Msg, opts.Buffer),
		errs: make(chan error, 1), stop: make(chan struct{})}
	go c.fetch(cons)
	return c, nil
}

// fetchWait is how long one pull request waits for deliveries at the server. It bounds
// how long Stop takes (the request out is let run to its end: cut off, what the server
// sent for it would wait out AckWait before being handed out again), and how soon a
// request lost with a server is replaced (the client gives up one second after it).
const fetchWait = time.Second

// fetch asks the server for up to Buffer deliveries at a time, one pull request after
// the other, and hands each to Next, until Stop. It replaces nats.go's Messages
// iterator, which bench a caught stalling 1.5-2 s two or three times in a 20-s run:
// it counts what it asked for and has not received, and when a status message is lost
// (the subscription's channel holds no more than the messages asked for, and a full
// channel drops what comes next) it believes deliveries are still on their way and
// stops asking, while the server holds none of its requests (consumer: pending 1,966,
// waiting 0, ack pending 0) until two missed heartbeats reset it. Here a request ends
// with its batch, its expiry or the client's timer, and the next one follows: nothing
// is counted across requests.
func (c *Consumer) fetch(cons jetstream.Consumer) {
	defer close(c.msgs)
	unanswered := 0
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		batch, err := cons.Fetch(c.opts.Buffer, jetstream.FetchMaxWait(fetchWait))
		if err == nil {
			for m := range batch.Messages() {
				c.msgs <- m
			}
			err = batch.Error()
		}
		if err == nil {
			unanswered = 0
			continue
		}
		select {
		case c.errs <- err:
		default:
		}
		if errors.Is(err, nats.ErrNoResponders) {
			unanswered++
		} else {
			unanswered = 0
		}
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, nats.ErrConnectionClosed) ||
			errors.Is(err, jetstream.ErrBadRequest) || unanswered == consumerGoneAfter {
			// Nothing more comes from this consumer (deleted while no request of ours
			// was waiting, nobody answers for it): the caller opens another.
			return
		}
		select {
		case <-c.stop:
			return
		case <-time.After(fetchBackoff):
		}
	}
}

// fetchBackoff spaces the pull requests that failed (no server, no quorum).
const fetchBackoff = 200 * time.Millisecond

// consumerGoneAfter is how many pull requests in a row nobody answers (about a second
// of them) before the consumer is taken for gone.
const consumerGoneAfter = 5

// ErrStopped is returned by Next once the consumer has been stopped and drained.
var ErrStopped = errors.New("consumer stopped")

// Next blocks until the next delivery arrives or the consumer is stopped. A delivery
// handed out again that was counted already (see journal) is acknowledged here and not
// returned: whoever counted it stopped before its acknowledgement. A failed pull
// request is returned as an error; fetching goes on.
func (c *Consumer) Next() (*Pending, error) {
	for {
		select {
		case err := <-c.errs:
			return nil, fmt.Errorf("fetching deliveries: %w", err)
		case msg, ok := <-c.msgs:
			if !ok {
				return nil, ErrStopped
			}
			if p := c.store.pending(msg, c.ep, c.opts.Ordered); p != nil {
				return p, nil
			}
		}
	}
}

// pending makes a Pending of a message handed out, or settles it when it is not one to
// attempt: not a delivery (someone published into Herald's subjects by hand: terminated
// rather than redelivered for ever), or counted already.
func (s *jsStore) pending(msg jetstream.Msg, ep Endpoint, ordered bool) *Pending {
	d, err := parseDelivery(msg.Subject(), msg.Headers(), msg.Data())
	if err != nil {
		_ = msg.TermWithReason(err.Error())
		return nil
	}
	p := &Pending{Delivery: d, msg: msg, store: s, ordered: ordered}
	// Read once: the reply subject's metadata is parsed (and allocated) on every call.
	if md, err := msg.Metadata(); err == nil {
		p.seq, p.handedOut = md.Sequence.Stream, md.NumDelivered
	}
	if s.journal.counted(ep, p.Sequence(), p.Redelivered()) {
		s.opts.Log.V(1).Info("a delivery handed out again was settled already; acknowledging it", "deliveryID", d.DeliveryID)
		_ = msg.Ack()
		return nil
	}
	return p
}

// Stop stops fetching. Deliveries already fetched, and those the pull request out
// brings (it ends within fetchWait), are still returned by Next, which returns
// ErrStopped after them; the caller releases them so that they are redelivered at once
// when fetching resumes.
func (c *Consumer) Stop() { c.stopOnce.Do(func() { close(c.stop) }) }

// Pending is a delivery handed to this dispatcher and not yet settled. Exactly one of
// Delivered, Retry, DeadLetter (which count it on its endpoint's tally), Delay or
// Release settles it.
type Pending struct {
	Delivery
	msg     jetstream.Msg
	store   *jsStore
	ordered bool
	// seq is the delivery's stream sequence and handedOut how often the store handed it
	// out, this time included (both 0 when its metadata could not be read).
	seq       uint64
	handedOut uint64
	// FailedInPlace is how many attempts of an ordered endpoint's head failed before
	// this one (it is retried in place, see Head); they are counted when it is settled.
	FailedInPlace int
}

// Delivered settles a delivery that reached its receiver: it is counted, then
// acknowledged, by the journal (see journal), without waiting but for an ordered
// endpoint's delivery, whose next one waits for this acknowledgement anyway.
func (p *Pending) Delivered() error {
	c := Counts{Delivered: 1, FailedAttempts: int64(p.FailedInPlace)}
	if !p.ordered {
		return p.store.journal.settle(context.Background(), p, c, false, false)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*requestTimeout)
	defer cancel()
	return p.store.journal.settle(ctx, p, c, true, true)
}

// Delay hands the delivery back to be fetched again after d, used for a delivery whose
// retry time has not come yet.
func (p *Pending) Delay(d time.Duration) error {
	if err := p.msg.NakWithDelay(d); err != nil {
		return fmt.Errorf("delaying delivery %s: %w", p.DeliveryID, err)
	}
	return nil
}

// Release hands the delivery back for immediate redelivery (held endpoint, shutdown).
func (p *Pending) Release() error {
	if err := p.msg.Nak(); err != nil {
		return fmt.Errorf("releasing delivery %s: %w", p.DeliveryID, err)
	}
	return nil
}

// InProgress extends the acknowledgement deadline of a long attempt.
func (p *Pending) InProgress() error { return p.msg.InProgress() }

// Retry stores the next attempt (with its not-before time), then settles this one as a
// failed attempt, and returns once that is counted and acknowledged. The next attempt
// is a new message so that its wait survives restarts: after a crash between the two
// steps the old message is redelivered and the attempt repeats (its next attempt is
// then stored once: the same message id), which is the at-least-once contract.
func (p *Pending) Retry(ctx context.Context, next Delivery) error {
	if _, err := p.store.js.PublishMsg(ctx, next.toMsg(DeliverySubject(next.Ref()))); err != nil {
		return fmt.Errorf("storing retry of delivery %s: %w", p.DeliveryID, p.store.storeError(err))
	}
	return p.store.journal.settle(ctx, p, Counts{FailedAttempts: 1}, true, true)
}

// DeadLetter stores the delivery in the dead-letter stream, then settles it as dead-
// lettered (and, when dl.Attempted, its last attempt as failed), and returns once that
// is counted and acknowledged.
func (p *Pending) DeadLetter(ctx context.Context, dl DeadLetter) error {
	dl.Delivery = p.Delivery
	if dl.At.IsZero() {
		dl.At = time.Now()
	}
	if _, err := p.store.js.PublishMsg(ctx, dl.toMsg()); err != nil {
		return fmt.Errorf("dead-lettering delivery %s: %w", p.DeliveryID, p.store.storeError(err))
	}
	c := Counts{DeadLettered: 1, FailedAttempts: int64(p.FailedInPlace)}
	if dl.Attempted {
		c.FailedAttempts++
	}
	return p.store.journal.settle(ctx, p, c, true, true)
}

// FetchHeld fetches up to n deliveries of an endpoint whose consumer is otherwise
// stopped (a held endpoint), oldest first, for enforcing the limits on held deliveries.
// opts must be the endpoint's own (an ordered endpoint's consumer hands out one at a
// time). The caller settles every one.
func (s *jsStore) FetchHeld(ctx context.Context, ep Endpoint, n int, opts ConsumerOptions) ([]*Pending, error) {
	opts.defaultAckWait()
	cons, err := s.consumer(ctx, ep, opts)
	if err != nil {
		return nil, err
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		return nil, fmt.Errorf("fetching held deliveries of %s: %w", ep, err)
	}
	var out []*Pending
	for msg := range batch.Messages() {
		if p := s.pending(msg, ep, opts.Ordered); p != nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// consumerCreations is how many consumer creations one store has in flight at once. The
// server answers its JetStream API requests one at a time: a thousand busy endpoints at
// start-up asking at once queue there past the client's timeout, and each retried
// creation queues again behind those given up on, which the server still carries out
// (1,100 endpoints under -race on 2 loaded cores: most still retrying after 90 s). A few
// in flight keep the server busy; the rest wait here, where waiting costs nothing.
const consumerCreations = 8

func (s *jsStore) consumer(ctx context.Context, ep Endpoint, opts ConsumerOptions) (jetstream.Consumer, error) {
	select {
	case s.creating <- struct{}{}:
		defer func() { <-s.creating }()
	case <-ctx.Done():
		return nil, fmt.Errorf("creating consumer for %s: %w", ep, context.Cause(ctx))
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, DeliveriesStream, jetstream.ConsumerConfig{
		Durable:       consumerName(ep),
		Description:   "deliveries of WebhookEndpoint " + ep.String() + " (uid " + ep.UID + ")",
		FilterSubject: DeliverySubject(ep),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		MaxAckPending: opts.maxAckPending(),
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// A consumer nobody pulls from (every replica found the endpoint idle, or it is
		// held) is removed by the server, which is most of an idle endpoint's cost; the
		// deliveries are the stream's, and the consumer made again when they come is
		// handed them all. An ordered endpoint keeps its consumer: the delivery count of
		// its failing head is how a replica knows to restore the head's retry state.
		InactiveThreshold: opts.inactiveThreshold(),
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer for %s: %w", ep, err)
	}
	return cons, nil
}
