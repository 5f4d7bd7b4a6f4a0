package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkStoreWrites_Layout1 and _Layout2 are the store's side of 1:1 deliveries with
// the default features on (dedupe, retention of delivered deliveries, attempt log),
// each delivery succeeding at its first attempt: ingest in requests of 100 events while
// 8 workers take the deliveries and settle them, as the dispatcher does. Layout 2 is
// this package's code; layout 1 is what the release before it wrote, spelled out below
// with the same client (run both in one process to compare them):
//
//	go test ./dispatcher/queue -run '^$' -bench StoreWrites -benchtime 20000x -count 3
//
// Per delivery, each reports:
//
//	writes/delivery     messages appended to any stream (key-value buckets included)
//	<stream>-writes/delivery   the same, per stream (only those written)
//	file-B/delivery     bytes the process wrote to files (/proc/self/io wchar: the
//	                    embedded server's file store, consumer state included; the
//	                    client reaches it in-process, so no socket is counted)
//	cpu-ns/delivery     the process's CPU time (server, client and benchmark)
//
// The _Paced variants take one event per request at 500 requests a second instead of
// as fast as the store goes: what a quiet endpoint costs, where the journal's batches
// hold few records (a flush every journalInterval, a history batch per bucket every
// historyInterval).
func BenchmarkStoreWrites_Layout1(b *testing.B)          { benchStoreWrites(b, 1, 100, 0) }
func BenchmarkStoreWrites_Layout2(b *testing.B)          { benchStoreWrites(b, 2, 100, 0) }
func BenchmarkStoreWrites_Layout1_Paced500(b *testing.B) { benchStoreWrites(b, 1, 1, 500) }
func BenchmarkStoreWrites_Layout2_Paced500(b *testing.B) { benchStoreWrites(b, 2, 1, 500) }

// benchStoreWrites runs b.N deliveries through the store in layout, perRequest events
// per ingest request, at rate requests a second (0: as fast as it goes).
func benchStoreWrites(b *testing.B, layout, perRequest, rate int) {
	st := benchStore(b)
	ctx := context.Background()
	ep := Endpoint{Namespace: "bench", Name: "ep", UID: "uid-ep"}
	var l1 *layout1Writer
	if layout == 1 {
		var err error
		if l1, err = newLayout1Writer(ctx, st); err != nil {
			b.Fatal(err)
		}
	}
	n := b.N
	before, err := streamWrites(ctx, st)
	if err != nil {
		b.Fatal(err)
	}
	wchar := fileWrites(b)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()

	// Ingest, as accept does: look the ids up, store the deliveries, remember the ids.
	ingestErr := make(chan error, 1)
	go func() {
		ids, batch := make([]string, 0, perRequest), make([]Delivery, 0, perRequest)
		matched := make([]int, perRequest)
		start := time.Now()
		for i := range n {
			d := benchDelivery(i, "ep")
			batch, ids = append(batch, d), append(ids, d.EventID)
			if len(batch) < cap(batch) && i < n-1 {
				continue
			}
			if rate > 0 {
				time.Sleep(time.Until(start.Add(time.Duration(i/perRequest) * time.Second / time.Duration(rate))))
			}
			var err error
			if layout == 1 {
				err = l1.ingest(ctx, ids, batch)
			} else {
				st.Seen("bench", ids)
				if _, err = st.Publish(ctx, batch); err == nil {
					err = st.Remember(ctx, "bench", ids, matched[:len(ids)])
				}
			}
			if err != nil {
				ingestErr <- err
				return
			}
			batch, ids = batch[:0], ids[:0]
		}
		ingestErr <- nil
	}()

	// Delivery: the attempt record, the retained copy, the settlement.
	cons, err := st.Consume(ctx, ep, ConsumerOptions{Buffer: 16})
	if err != nil {
		b.Fatal(err)
	}
	history := st.History()
	work := make(chan *Pending)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for p := range work {
				at := time.Now()
				rec := &AttemptRecord{Namespace: p.Namespace, Endpoint: p.Endpoint, EndpointUID: p.EndpointUID,
					EventID: p.EventID, EventType: p.EventType, DeliveryID: p.DeliveryID, Attempt: p.Attempt,
					Time: at, DurationMicros: 1500, StatusCode: 200, Final: true}
				if layout == 1 {
					if err := l1.delivered(p, rec, at); err != nil {
						b.Error(err)
					}
					continue
				}
				history.Attempt(rec)
				history.Delivered(&p.Delivery, at)
				if err := p.Delivered(); err != nil {
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
	if err := <-ingestErr; err != nil {
		b.Fatal(err)
	}
	// Everything handed over is written and settled before the figures are read.
	if layout == 1 {
		if err := l1.wait(ctx); err != nil {
			b.Fatal(err)
		}
	} else {
		history.Close()
		if failed, err := history.Failed(); failed > 0 {
			b.Fatalf("%d history batches failed: %v", failed, err)
		}
	}
	cons.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := st.PendingDeliveries(ctx, ep)
		if err == nil && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d deliveries left unsettled after 30s (%v)", left, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu)/float64(n), "cpu-ns/delivery")
	b.ReportMetric(float64(fileWrites(b)-wchar)/float64(n), "file-B/delivery")
	after, err := streamWrites(ctx, st)
	if err != nil {
		b.Fatal(err)
	}
	total := uint64(0)
	for name, seq := range after {
		w := seq - before[name]
		total += w
		if w > 0 {
			b.ReportMetric(float64(w)/float64(n), strings.TrimPrefix(name, "HERALD_")+"-writes/delivery")
		}
	}
	b.ReportMetric(float64(total)/float64(n), "writes/delivery")
	if layout == 2 {
		t, err := st.TallyOf(ctx, ep)
		if err != nil || t.Delivered != int64(n) {
			b.Fatalf("tally: %d delivered, want %d (%v)", t.Delivered, n, err)
		}
	}
}

// streamWrites is, per stream, how many messages were ever appended to it.
func streamWrites(ctx context.Context, st *jsStore) (map[string]uint64, error) {
	out := map[string]uint64{}
	l := st.js.ListStreams(ctx)
	for info := range l.Info() {
		out[info.Config.Name] = info.State.LastSeq
	}
	return out, l.Err()
}

// fileWrites is the bytes the process has written (wchar of /proc/self/io).
func fileWrites(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skipf("no /proc/self/io: %v", err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "wchar:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("/proc/self/io has no wchar")
	return 0
}

// layout1Writer writes as the release before layout 2 did (commit 84fbf14): a
// delivery's fields as fourteen NATS headers, one key-value record per accepted event
// id (looked up first with one direct get for the batch), and per delivery one
// retained copy and one attempt record, each its own message, published asynchronously
// and waited for apart from the delivery, which is acknowledged without waiting.
type layout1Writer struct {
	st      *jsStore
	lookup  *legacyLookup
	mu      sync.Mutex
	futures []jetstream.PubAckFuture
}

func newLayout1Writer(ctx context.Context, st *jsStore) (*layout1Writer, error) {
	// Made after Open, so the store does not follow it (a store of layout 2 reads
	// the bucket only when it finds it at start).
	lookup, err := newLegacyLookup(ctx, st)
	return &layout1Writer{st: st, lookup: lookup}, err
}

func (w *layout1Writer) ingest(ctx context.Context, ids []string, batch []Delivery) error {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = legacyIngestKey("bench", id)
	}
	if found, err := w.lookup.lookup(ctx, keys); err != nil || len(found) > 0 {
		return fmt.Errorf("lookup: %d found, %v", len(found), err)
	}
	if len(batch) == 1 { // one delivery: one request, as that release sent it
		_, err := w.st.js.PublishMsg(ctx, layout1Msg(&batch[0], DeliverySubject(batch[0].Ref())))
		if err != nil {
			return err
		}
		return recordIngestAsync(ctx, w.st, keys, []byte(`{"m":1}`))
	}
	futures := make([]jetstream.PubAckFuture, 0, len(batch))
	for i := range batch {
		f, err := w.st.js.PublishMsgAsync(layout1Msg(&batch[i], DeliverySubject(batch[i].Ref())))
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	if err := wait(ctx, futures); err != nil {
		return err
	}
	return recordIngestAsync(ctx, w.st, keys, []byte(`{"m":1}`))
}

func (w *layout1Writer) delivered(p *Pending, rec *AttemptRecord, at time.Time) error {
	data, _ := json.Marshal(rec)
	att := &nats.Msg{Subject: attemptSubjectPrefix + p.Ref().tokens() + "." + eventBucket(p.EventID), Data: data}
	kept := layout1Msg(&p.Delivery, deliveredSubjectPrefix+p.Ref().tokens()+"."+eventBucket(p.EventID))
	delete(kept.Header, nats.MsgIdHdr)
	kept.Header[hdrDeliveredAt] = []string{strconv.FormatInt(at.UnixMicro(), 10)}
	for _, m := range []*nats.Msg{att, kept} {
		f, err := w.st.js.PublishMsgAsync(m)
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.futures = append(w.futures, f)
		w.mu.Unlock()
	}
	return p.msg.Ack()
}

func (w *layout1Writer) wait(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return wait(ctx, w.futures)
}

// layout1Msg is a delivery as the releases before layout 2 stored it.
func layout1Msg(d *Delivery, subject string) *nats.Msg {
	h := make(nats.Header, 12)
	h[hdrEventID] = []string{d.EventID}
	h[hdrEventType] = []string{d.EventType}
	h[hdrEventTime] = []string{d.CreatedAt.UTC().Format(time.RFC3339Nano)}
	h[hdrDeliveryID] = []string{d.DeliveryID}
	h[hdrNamespace] = []string{d.Namespace}
	h[hdrEndpoint] = []string{d.Endpoint}
	h[hdrAttempt] = []string{strconv.Itoa(d.Attempt)}
	h[hdrAcceptedAt] = []string{strconv.FormatInt(d.AcceptedAt.UnixMicro(), 10)}
	h[nats.MsgIdHdr] = []string{d.msgID()}
	return &nats.Msg{Subject: subject, Header: h, Data: d.Data}
}
