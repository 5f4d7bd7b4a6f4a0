// Package queue is Herald's durable store, built on NATS JetStream: the stream of pending
// deliveries (one subject per endpoint, so each endpoint is consumed on its own and a dead
// endpoint never delays a healthy one), the dead-letter stream, and key-value buckets for
// ingest deduplication and state shared by dispatcher replicas.
//
// The same code serves both deployment modes: Open starts an embedded, in-process
// JetStream server with file storage when no URL is given, and connects to an external
// NATS cluster otherwise. Streams, consumers and buckets are created idempotently.
package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-dev/herald/dispatcher/config"
)

// Names of the JetStream objects Herald owns.
const (
	DeliveriesStream  = "HERALD_DELIVERIES"
	DeadLettersStream = "HERALD_DEAD_LETTERS"
	StateBucket       = "HERALD_ENDPOINT_STATE"

	deliverySubjectPrefix   = "herald.dlv."
	deadLetterSubjectPrefix = "herald.dlq."
)

// Options configure Open: the store's section of the dispatcher's configuration and
// the history's bounds (package config documents each field and its default; zero
// values are the defaults).
type Options struct {
	config.Store
	config.History
	// Log receives the store's own messages.
	Log logr.Logger
}

func (o *Options) defaults() {
	o.Store.SetDefaults()
	o.History.SetDefaults()
	// NATS's "no limit" is -1.
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = -1
	}
	if o.DeadLetterMaxBytes <= 0 {
		o.DeadLetterMaxBytes = -1
	}
}

// jsStore is an open connection to Herald's JetStream state: the Store.
type jsStore struct {
	opts     Options
	embedded *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream

	deliveries  jetstream.Stream
	deadLetters jetstream.Stream
	delivered   jetstream.Stream
	attempts    jetstream.Stream
	accepted    jetstream.Stream
	state       jetstream.KeyValue
	// stateStream is the state bucket's stream, purged by subject (see Purge).
	stateStream jetstream.Stream
	registered  registry
	// replicas is how many copies the streams were placed with.
	replicas int
	health   health
	stored   storedHook
	// creating bounds the consumer creations in flight (see consumer).
	creating chan struct{}
	// journal settles deliveries and writes the history in batches.
	journal *journal
	// acks confirms every acknowledgement on its own when the streams are replicated
	// (see acks.go); nil on one copy.
	acks *ackConfirmer
	// maxBatch bounds a history batch's bytes (under the server's max payload).
	maxBatch int
	// seen remembers the event ids accepted within the dedupe window (see dedupe.go),
	// followed from the streams by followers.
	seen      *seen
	acceptedW *acceptedWriter
	followers []jetstream.ConsumeContext
	stopPrune chan struct{}
}

// Open starts or connects to JetStream and ensures Herald's streams and buckets exist.
func Open(ctx context.Context, opts Options) (Store, error) {
	opts.defaults()
	s := &jsStore{opts: opts, seen: newSeen(opts.MaxDedupeRecords, opts.DedupeWindow), stopPrune: make(chan struct{}),
		creating: make(chan struct{}, consumerCreations)}
	s.acceptedW = newAcceptedWriter(s)
	var err error
	if opts.URL == "" {
		if s.nc, err = s.startEmbedded(); err != nil {
			return nil, err
		}
	} else {
		nopts := []nats.Option{nats.Name("herald-dispatcher"), nats.MaxReconnects(-1),
			// A server that vanishes without closing the connection (a partition, a
			// node powered off) is noticed after two missed pings, about 10s, instead of
			// the client's default of four minutes; then the client moves to another.
			nats.PingInterval(5 * time.Second), nats.MaxPingsOutstanding(2),
			// What the probe said before the connection moved to another server is not
			// known to hold there: the store counts as unwritable until a probe over the
			// new connection succeeds.
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { s.connectionLost(err) }),
			nats.ReconnectHandler(func(*nats.Conn) { s.suspect() })}
		if opts.CredentialsFile != "" {
			nopts = append(nopts, nats.UserCredentials(opts.CredentialsFile))
		}
		if s.nc, err = nats.Connect(opts.URL, nopts...); err != nil {
			return nil, fmt.Errorf("connecting to NATS at %s: %w", opts.URL, err)
		}
	}
	// The client reports asynchronously what it dropped (a subscription's buffer full:
	// a slow consumer) and what the server refused; otherwise both are silent.
	s.nc.SetErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		s.opts.Log.Error(err, "NATS client", "subject", subject)
	})
	// Pipelined publishes wait for their acknowledgements no longer than a single
	// request would: without a timeout, a stream without a leader would hold the
	// producer's request for as long as the producer waits.
	if s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncTimeout(requestTimeout)); err != nil {
		s.Close()
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	if err := s.ensureWithRetry(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.followAccepted(ctx); err != nil {
		s.Close()
		return nil, err
	}
	go s.pruneSeen()
	s.maxBatch = int(min(s.nc.MaxPayload()-4096, 256<<10))
	if s.replicas > 1 {
		if s.acks, err = newAckConfirmer(s.nc); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.journal = newJournal(s, opts.AttemptLog)
	s.startProbe()
	return s, nil
}

// maxEndpointConsumers bounds the consumers of the delivery stream: endpoints with
// deliveries at the same moment, across replicas.
const maxEndpointConsumers = 100_000

// codeMaxConsumers is JetStream's "maximum consumers limit reached".
const codeMaxConsumers = 10026

// requestTimeout is how long one request to JetStream may wait for its answer, the
// client library's own default for JetStream API calls.
const requestTimeout = 5 * time.Second

// lookupTimeout bounds a read of the dedupe records.
const lookupTimeout = time.Second

// ensureSetupBudget bounds the retries of ensureWithRetry: under the dispatcher pod's
// startup probe (60 x 2s), so a store that never comes up still ends in a restart that
// the pod's status shows.
const ensureSetupBudget = 100 * time.Second

// ensureWithRetry creates Herald's streams and buckets, retrying while JetStream is not
// ready for them. A NATS cluster that has just formed can take longer than one JetStream
// API timeout to place replicated streams, the more so when several dispatcher replicas
// start at once and ask for the same ones (seen in the cluster suite: three replicas on a
// fresh three-node cluster, two exited with "creating stream HERALD_DEAD_LETTERS:
// context deadline exceeded" and were restarted by the kubelet).
func (s *jsStore) ensureWithRetry(ctx context.Context) error {
	start := time.Now()
	deadline := start.Add(ensureSetupBudget)
	wait := 500 * time.Millisecond
	p, err := s.choosePlacement(ctx)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := s.ensure(ctx, p.replicas)
		if err == nil {
			s.replicas = p.replicas
			s.opts.Log.Info("Herald's streams are ready", "replicas", p.replicas, "why", p.why)
			return nil
		}
		if placementFailed(err) {
			if next, ok := p.stepDown(time.Since(start), err); ok {
				s.opts.Log.Info("NATS cannot place as many copies as wanted; placing fewer", "replicas", next.replicas, "error", err.Error())
				p = next
				continue
			}
			if !p.patient(err) {
				return p.explain(err)
			}
		} else if !transient(err) {
			return err
		}
		if time.Now().Add(wait).After(deadline) {
			return p.explain(err)
		}
		s.opts.Log.Info("JetStream not ready for Herald's streams yet; retrying", "attempt", attempt, "in", wait.String(), "error", err.Error())
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 8*time.Second)
	}
}

func (s *jsStore) startEmbedded() (*nats.Conn, error) {
	if s.opts.DataDir == "" {
		return nil, errors.New("embedded JetStream needs a data directory")
	}
	if err := os.MkdirAll(s.opts.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	sopts := &server.Options{
		ServerName: "herald-embedded",
		JetStream:  true,
		StoreDir:   s.opts.DataDir,
		// The embedded server is reached in-process only; no port is opened.
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
	}
	if s.opts.SyncAlways {
		sopts.SyncAlways = true
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("configuring embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded NATS did not start within 30s")
	}
	s.embedded = ns
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("herald-dispatcher"))
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("connecting to embedded NATS: %w", err)
	}
	return nc, nil
}

func (s *jsStore) ensure(ctx context.Context, replicas int) error {
	var err error
	cfg := jetstream.StreamConfig{
		Name:        DeliveriesStream,
		Description: "Herald deliveries waiting to be attempted, one subject per endpoint",
		Subjects:    []string{deliverySubjectPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxMsgs:     s.opts.MaxPendingDeliveries,
		MaxBytes:    s.opts.MaxPendingBytes,
		Discard:     jetstream.DiscardNew,
		// Publishing the same delivery twice (an ingest retried after a crash, a retry
		// republished twice) within this window stores it once.
		// Two minutes cover a producer retrying a publish the dispatcher crashed in the
		// middle of; each remembered id costs memory (about 150 B) for the whole window.
		// Never longer than the dedupe window: past it an id is new again.
		Duplicates: min(2*time.Minute, s.opts.DedupeWindow),
		// One consumer per endpoint with deliveries (idle ones have none). Unset, the
		// server's default of 1,000 per stream applies: with more endpoints busy at
		// once, the rest would wait for a consumer to be removed (seen with 10,000
		// endpoints on one dispatcher before idle endpoints gave theirs up).
		MaxConsumers: maxEndpointConsumers,
	}
	s.deliveries, err = s.js.CreateOrUpdateStream(ctx, cfg)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == codeMaxConsumers {
		// The NATS account allows fewer consumers per stream: take its limit.
		s.opts.Log.Info("WARNING: the NATS account limits consumers per stream below Herald's; endpoints with deliveries beyond that limit wait for another's consumer to go",
			"wanted", maxEndpointConsumers, "error", err.Error())
		cfg.MaxConsumers = -1
		s.deliveries, err = s.js.CreateOrUpdateStream(ctx, cfg)
	}
	if err != nil {
		return fmt.Errorf("creating stream %s: %w", DeliveriesStream, err)
	}
	s.deadLetters, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadLettersStream,
		Description: "Herald deliveries that could not be delivered, kept for inspection and replay",
		Subjects:    []string{deadLetterSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      s.opts.DeadLetterMaxAge,
		MaxBytes:    s.opts.DeadLetterMaxBytes,
		Duplicates:  10 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("creating stream %s: %w", DeadLettersStream, err)
	}
	if err := s.ensureHistory(ctx, replicas); err != nil {
		return err
	}
	if err := s.ensureAccepted(ctx, replicas); err != nil {
		return err
	}
	s.state, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      StateBucket,
		Description: "Herald endpoint state shared by dispatcher replicas (failures, disabled)",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		History:     1,
	})
	if err != nil {
		return fmt.Errorf("creating bucket %s: %w", StateBucket, err)
	}
	if s.stateStream, err = s.js.Stream(ctx, "KV_"+StateBucket); err != nil {
		return fmt.Errorf("reading stream of bucket %s: %w", StateBucket, err)
	}
	return nil
}

// StateBucket is the key-value bucket for state shared across replicas.
func (s *jsStore) StateBucket() jetstream.KeyValue { return s.state }

// Close settles what the journal holds, drains the connection and stops the embedded
// server, if any.
func (s *jsStore) Close() {
	if s.journal != nil {
		s.journal.close()
	}
	s.stopFollowing()
	s.stopProbe()
	if s.nc != nil {
		_ = s.nc.Drain()
		s.nc.Close()
	}
	if s.embedded != nil {
		s.embedded.Shutdown()
		s.embedded.WaitForShutdown()
	}
}

// Abort stops without draining or settling, as a crash would; tests use it to prove
// durability.
func (s *jsStore) Abort() {
	if s.journal != nil {
		s.journal.abort()
	}
	s.stopFollowing()
	s.stopProbe()
	if s.nc != nil {
		s.nc.Close()
	}
	if s.embedded != nil {
		s.embedded.Shutdown()
		s.embedded.WaitForShutdown()
	}
}

func (s *jsStore) stopFollowing() {
	for _, f := range s.followers {
		f.Stop()
	}
	s.followers = nil
	select {
	case <-s.stopPrune:
	default:
		close(s.stopPrune)
	}
}

// pruneSeen forgets the event ids older than the dedupe window even while nothing new
// is accepted.
func (s *jsStore) pruneSeen() {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stopPrune:
			return
		case <-t.C:
			s.seen.prune()
		}
	}
}
