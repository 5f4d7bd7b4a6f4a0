package queue

// Benchmarks of the store operations on an event's path, on the embedded server with
// file storage (as a single-replica dispatcher runs). Each reports ns per delivery or
// per event; the "Pipelined" variants are prototypes of proposed changes, kept here so
// that the gain can be measured again on any machine:
//
//	go test ./dispatcher/queue -run '^$' -bench . -benchtime 20000x

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-dev/herald/dispatcher/config"
)

// cpuClock reports the process's CPU time per operation (user+system, every thread:
// the embedded server runs in this process) as cpu-ns/op. On a shared machine it is a
// steadier figure than ns/op, which also counts waiting for a core.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{processCPU()} }

func (c cpuClock) report(b *testing.B, n int) {
	if n > 0 {
		b.ReportMetric(float64(processCPU()-c.start)/float64(n), "cpu-ns/op")
	}
}

func benchStore(b *testing.B) *jsStore {
	b.Helper()
	// The attempt log on, as the dispatcher's defaults have it.
	return benchStoreWith(b, Options{History: config.History{AttemptLog: true}})
}

func benchStoreWith(b *testing.B, o Options) *jsStore {
	b.Helper()
	o.DataDir, o.Log = b.TempDir(), logr.Discard()
	st, err := Open(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	return st.(*jsStore)
}

var benchData = []byte(`{"order_id":4242,"customer":"c-42","items":[` +
	`{"sku":"SKU-000001","qty":1},{"sku":"SKU-000002","qty":2},{"sku":"SKU-000003","qty":3}]}`)

func benchDelivery(i int, endpoint string) Delivery {
	id := "e" + strconv.Itoa(i)
	return Delivery{
		Namespace: "bench", Endpoint: endpoint, EndpointUID: "uid-" + endpoint, EventID: id, EventType: "order.created",
		CreatedAt: time.Now(), Data: benchData, DeliveryID: DeliveryID("bench", id, endpoint),
		Attempt: 1, AcceptedAt: time.Now(),
	}
}

// BenchmarkPublish_Batch100 is Store.Publish as ingest calls it for a batch of 100
// one-endpoint events; ns/op is per delivery.
func BenchmarkPublish_Batch100(b *testing.B) { benchPublishBatch(b, benchStore(b)) }

// BenchmarkPublish_Batch100SyncAlways is the price of --nats-sync-always: every write
// fsynced before it is acknowledged (README, "Running at scale").
func BenchmarkPublish_Batch100SyncAlways(b *testing.B) {
	benchPublishBatch(b, benchStoreWith(b, Options{Store: config.Store{SyncAlways: true}}))
}

// BenchmarkPublish_Single and its SyncAlways twin: one event, one delivery per request,
// where every acknowledgement waits for its own fsync.
func BenchmarkPublish_Single(b *testing.B) { benchPublishSingle(b, benchStore(b)) }

func BenchmarkPublish_SingleSyncAlways(b *testing.B) {
	benchPublishSingle(b, benchStoreWith(b, Options{Store: config.Store{SyncAlways: true}}))
}

func benchPublishSingle(b *testing.B, st *jsStore) {
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := st.Publish(ctx, []Delivery{benchDelivery(i, "ep")}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func benchPublishBatch(b *testing.B, st *jsStore) {
	ctx := context.Background()
	batch := make([]Delivery, 0, 100)
	b.ReportAllocs()
	i := 0
	cpu := startCPU()
	defer func() { cpu.report(b, i) }()
	for b.Loop() {
		batch = append(batch, benchDelivery(i, "ep"))
		i++
		if len(batch) == cap(batch) {
			if _, err := st.Publish(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if _, err := st.Publish(ctx, batch); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDedupe_Accepted100 is what Acceptor.Accept does for the ids of a batch of
// 100 fresh events (layout 2): look them up in the index in memory, then remember them
// in one write. ns/op is per event.
func BenchmarkDedupe_Accepted100(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	ids := make([]string, 0, 100)
	matched := make([]int, 100)
	flush := func() {
		if len(ids) == 0 {
			return
		}
		if _, found := st.Seen("bench", ids); slices.Contains(found, true) {
			b.Fatal("a fresh id was found")
		}
		if err := st.Remember(ctx, "bench", ids, matched[:len(ids)]); err != nil {
			b.Fatal(err)
		}
		ids = ids[:0]
	}
	b.ReportAllocs()
	i := 0
	cpu := startCPU()
	for b.Loop() {
		ids = append(ids, "e"+strconv.Itoa(i))
		i++
		if len(ids) == cap(ids) {
			flush()
		}
	}
	flush()
	cpu.report(b, i)
}

// BenchmarkDedupe_KeyValuePerEvent100 is the same for the layout before 2: one
// direct-get request for the last record of each id's key (multi_last), then one
// key-value record per event, published asynchronously with one wait. ns/op is per
// event.
func BenchmarkDedupe_KeyValuePerEvent100(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	lookup, err := newLegacyLookup(ctx, st)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 0, 100)
	flush := func() {
		if len(keys) == 0 {
			return
		}
		found, err := lookup.lookup(ctx, keys)
		if err != nil || len(found) > 0 {
			b.Fatal(err, len(found))
		}
		if err := recordIngestAsync(ctx, st, keys, []byte(`{"m":1}`)); err != nil {
			b.Fatal(err)
		}
		keys = keys[:0]
	}
	b.ReportAllocs()
	i := 0
	cpu := startCPU()
	for b.Loop() {
		keys = append(keys, legacyIngestKey("bench", "e"+strconv.Itoa(i)))
		i++
		if len(keys) == cap(keys) {
			flush()
		}
	}
	flush()
	cpu.report(b, i)
}

// legacyIngestKey is the key of an event id in the bucket of the layouts before 2.
func legacyIngestKey(namespace, eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return namespace + "." + hex.EncodeToString(sum[:20])
}

// legacyLookup reads the records of HERALD_INGEST as the release before layout 2 did:
// one key by a direct get of its last message, several by one multi_last direct get
// whose answers arrive on a subscription kept for every request (one at a time here).
type legacyLookup struct {
	st      *jsStore
	kv      jetstream.KeyValue
	prefix  string
	replies chan *nats.Msg
	n       int
}

func newLegacyLookup(ctx context.Context, st *jsStore) (*legacyLookup, error) {
	kv, err := st.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: IngestBucket, TTL: 24 * time.Hour, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, err
	}
	l := &legacyLookup{st: st, kv: kv, prefix: st.nc.NewRespInbox() + ".", replies: make(chan *nats.Msg, 1026)}
	if _, err := st.nc.ChanSubscribe(l.prefix+"*", l.replies); err != nil {
		return nil, err
	}
	return l, nil
}

// lookup returns the recorded value of each key that has one.
func (l *legacyLookup) lookup(ctx context.Context, keys []string) (map[string][]byte, error) {
	found := map[string][]byte{}
	if len(keys) == 1 {
		e, err := l.kv.Get(ctx, keys[0])
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, err
		default:
			found[keys[0]] = e.Value()
		}
		return found, nil
	}
	subjects := make([]string, len(keys))
	for i, k := range keys {
		subjects[i] = ingestSubjectPrefix + k
	}
	req, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
		Batch     int      `json:"batch"`
	}{subjects, len(subjects)})
	if err != nil {
		return nil, err
	}
	l.n++
	reply := l.prefix + strconv.Itoa(l.n)
	if err := l.st.nc.PublishRequest("$JS.API.DIRECT.GET.KV_"+IngestBucket, reply, req); err != nil {
		return nil, err
	}
	for {
		var m *nats.Msg
		select {
		case m = <-l.replies:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if m.Subject != reply {
			continue // a late answer to an earlier request
		}
		switch m.Header.Get("Status") {
		case "404", "204": // no results / end of batch
			return found, nil
		case "":
		default:
			return nil, fmt.Errorf("direct get: %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
		}
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			continue
		}
		found[strings.TrimPrefix(m.Header.Get(jetstream.SubjectHeader), ingestSubjectPrefix)] = m.Data
	}
}

func recordIngestAsync(ctx context.Context, st *jsStore, keys []string, value []byte) error {
	futures := make([]jetstream.PubAckFuture, 0, len(keys))
	for _, k := range keys {
		f, err := st.js.PublishMsgAsync(&nats.Msg{Subject: ingestSubjectPrefix + k, Data: value})
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	return wait(ctx, futures)
}

// settle benchmarks one consumer taking deliveries and settling each with ack.
// ns/op is per delivery: Next + settle (publishing them is outside the timer).
func benchSettle(b *testing.B, workers int, ack func(*Pending) error) {
	st := benchStore(b)
	ctx := context.Background()
	n := b.N
	batch := make([]Delivery, 0, 100)
	for i := range n {
		batch = append(batch, benchDelivery(i, "ep"))
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := st.Publish(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	cons, err := st.Consume(ctx, Endpoint{Namespace: "bench", Name: "ep", UID: "uid-ep"}, ConsumerOptions{Buffer: 2 * workers})
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Stop()
	work := make(chan *Pending)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	defer cpu.report(b, n)
	for range workers {
		wg.Go(func() {
			for p := range work {
				if err := ack(p); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for range n {
		p, err := cons.Next()
		if err != nil {
			b.Fatal(err)
		}
		work <- p
	}
	close(work)
	wg.Wait()
}

// BenchmarkSettle_DoubleAck: each worker waits for the server to confirm the
// acknowledgement (8 workers, the default maxInFlight, fetch buffer 16).
func BenchmarkSettle_DoubleAck(b *testing.B) {
	benchSettle(b, 8, func(p *Pending) error { return p.msg.DoubleAck(context.Background()) })
}

// BenchmarkSettle_Journal is Pending.Delivered: the delivery counted on its endpoint's
// tally and acknowledged by the journal, in batches (see journal).
func BenchmarkSettle_Journal(b *testing.B) {
	benchSettle(b, 8, func(p *Pending) error { return p.Delivered() })
}

// BenchmarkSettle_Ack is the plain acknowledgement (fire and forget); at-least-once
// still holds, as a lost ack means a redelivery.
func BenchmarkSettle_Ack(b *testing.B) {
	benchSettle(b, 8, func(p *Pending) error { return p.msg.Ack() })
}

// heapInUse after returning what is free to the OS.
func heapInUse() int64 {
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// cacheExpiry is longer than the file store keeps a written block in memory (10 s
// after its last use), so that what is measured after it is what stays.
const cacheExpiry = 15 * time.Second

// waitCacheExpiry waits out the file store's cache of the blocks the benchmark wrote
// (released 10 s after their last use; the heap then falls by a block, 4 MB after 50,000
// ingest records), so that what is measured after is what stays. The heap cannot say
// when reliably (the consumer's buffers go at other times), the server's timer can: the
// wait is that timer's, not a guess. A run that wrote too little for a block to show
// (make test's -benchtime=1x: a few records, the heap grown by less than 1 MiB) has
// nothing to wait out, and its figure is noise either way.
func waitCacheExpiry(b *testing.B, before int64) {
	if grown := heapInUse() - before; grown < 1<<20 {
		b.Logf("heap grew %d B: no cached block to wait out", grown)
		return
	}
	time.Sleep(cacheExpiry)
}

// BenchmarkRetained_IngestRecord measures the memory one remembered event id holds
// for the whole dedupe window (24h by default): since layout 2, its fingerprint in the
// dispatcher's index and its share of a message of HERALD_ACCEPTED (the layouts before
// kept a key-value record per id, whose subject the server indexed in memory: about
// 350 B). Run with a fixed count, it waits out the block cache once:
//
//	go test ./dispatcher/queue -run '^$' -bench Retained -benchtime 200000x
func BenchmarkRetained_IngestRecord(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	before := heapInUse()
	ids := make([]string, 0, 100)
	matched := make([]int, 100)
	n := 0
	for b.Loop() {
		ids = append(ids, "e"+strconv.Itoa(n))
		n++
		if len(ids) == cap(ids) {
			if err := st.Remember(ctx, "bench", ids, matched); err != nil {
				b.Fatal(err)
			}
			ids = ids[:0]
		}
	}
	if err := st.Remember(ctx, "bench", ids, matched[:len(ids)]); err != nil {
		b.Fatal(err)
	}
	waitCacheExpiry(b, before)
	b.ReportMetric(float64(heapInUse()-before)/float64(n), "retained-B/op")
}

// BenchmarkRetained_DeliveredDelivery measures the memory a delivery holds after it
// was delivered and acknowledged (removed from the work queue): the stream's
// duplicate window (2 min) keeps its message id.
func BenchmarkRetained_DeliveredDelivery(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	before := heapInUse()
	batch := make([]Delivery, 0, 100)
	n := 0
	for b.Loop() {
		batch = append(batch, benchDelivery(n, "ep"))
		n++
		if len(batch) == cap(batch) {
			if _, err := st.Publish(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if _, err := st.Publish(ctx, batch); err != nil {
		b.Fatal(err)
	}
	cons, err := st.Consume(ctx, Endpoint{Namespace: "bench", Name: "ep", UID: "uid-ep"}, ConsumerOptions{Buffer: 256})
	if err != nil {
		b.Fatal(err)
	}
	for range n {
		p, err := cons.Next()
		if err != nil {
			b.Fatal(err)
		}
		if err := p.msg.Ack(); err != nil {
			b.Fatal(err)
		}
	}
	cons.Stop()
	waitCacheExpiry(b, before)
	info, err := st.deliveries.Info(ctx)
	if err != nil || info.State.Msgs != 0 {
		b.Fatalf("%v: %d deliveries left", err, info.State.Msgs)
	}
	b.ReportMetric(float64(heapInUse()-before)/float64(n), "retained-B/op")
}
