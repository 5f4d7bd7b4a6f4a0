package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-dev/herald/pkg/client"
)

// payloadData returns a JSON object of about n bytes shaped like a business event (an
// order with line items). Every event carries the same data; only the id differs.
func payloadData(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"order_id":4242,"customer":"c-42","currency":"EUR","items":[`)
	for j := 0; b.Len() < n-40; j++ {
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%06d","name":"Widget number %d","qty":%d,"price_cents":%d}`, j, j, j%5+1, 1999+j)
	}
	b.WriteString(`],"note":"`)
	for b.Len() < n-2 {
		b.WriteByte('x')
	}
	b.WriteString(`"}`)
	return b.Bytes()
}

const eventType = "order.created"

// appendEvent appends one Herald JSON event; created_at is left to ingest.
func appendEvent(b []byte, i int64, data []byte) []byte {
	b = append(b, `{"id":"e`...)
	b = strconv.AppendInt(b, i, 10)
	b = append(b, `","type":"`+eventType+`","source":"bench/loadgen","data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// envelopeBody is what Herald delivers for event i (envelope format), used by the
// ceiling so that it POSTs the same body the receivers get from Herald.
func envelopeBody(b []byte, i int64, data []byte) []byte {
	b = append(b, `{"id":"e`...)
	b = strconv.AppendInt(b, i, 10)
	b = append(b, `","type":"`+eventType+`","created_at":"2026-01-02T15:04:05.123456789Z","data":`...)
	b = append(b, data...)
	return append(b, '}')
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        conns * 4,
		MaxIdleConnsPerHost: conns * 2,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}, Timeout: 60 * time.Second}
}

// loadgen publishes events through the public ingest API over TCP, with the Go producer
// client (pkg/client) over a transport sized for its connections.
type loadgen struct {
	transport *http.Transport
	pub       *client.Client   // the dispatcher's
	pubs      []*client.Client // closedLoop's workers take turns over these (several dispatchers)
	data      []byte
	sent      stamps // event index → when its POST started (or was scheduled)
	acc       stamps // event index → when its 202 arrived (the accounting's published)
	next      atomic.Int64
	accepted  atomic.Int64
	retried   atomic.Int64 // 429/503 answers (batch retried)
	failed    atomic.Int64 // other failures (events given up)
	firstAt   atomic.Int64
	lastAt    atomic.Int64 // when the last 202 arrived

	mu     sync.Mutex
	rtts   []time.Duration // per request, open-loop mode
	late   atomic.Int64    // open loop: requests started >1ms after their schedule
	errMsg string
}

func newLoadgen(ingestAddr string, conns int, data []byte) *loadgen {
	lg := &loadgen{transport: newClient(conns).Transport.(*http.Transport), data: data}
	lg.pub = lg.publisher(ingestAddr)
	lg.pubs = []*client.Client{lg.pub}
	return lg
}

// publisher is a client of the dispatcher at addr, retrying 429 and 503 (queue full,
// store busy) every 50 ms as a well-behaved producer would, counted in retried.
func (lg *loadgen) publisher(addr string) *client.Client {
	c, err := client.New("http://"+addr, client.Options{
		Token: benchToken, Transport: lg.transport, Timeout: 60 * time.Second, UserAgent: "heraldbench",
		Retry: client.Retry{Attempts: 1200, Backoff: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			OnRetry: func(error) { lg.retried.Add(1) }},
	})
	if err != nil {
		panic(err) // the address is the child's, which it printed itself
	}
	return c
}

// spread sends closedLoop's batches to every one of these dispatchers, worker by worker.
func (lg *loadgen) spread(ingestAddrs []string) {
	lg.pubs = lg.pubs[:0]
	for _, a := range ingestAddrs {
		lg.pubs = append(lg.pubs, lg.publisher(a))
	}
}

func (lg *loadgen) noteErr(s string) {
	lg.mu.Lock()
	if lg.errMsg == "" {
		lg.errMsg = s
	}
	lg.mu.Unlock()
}

// post publishes body (one event, or with batch a batch) and reports whether the
// events were accepted; the client retries 429 and 503.
func (lg *loadgen) post(pub *client.Client, body []byte, batch bool) bool {
	if _, err := pub.PublishRaw(context.Background(), benchNamespace, body, batch); err != nil {
		lg.noteErr(err.Error())
		return false
	}
	return true
}

// markAccepted records the 202 of the n events from index first on.
func (lg *loadgen) markAccepted(first, n int64) {
	t := now()
	lg.firstAt.CompareAndSwap(0, t)
	lg.lastAt.Store(t)
	for i := first; i < first+n; i++ {
		lg.acc.set(i, t)
	}
	lg.accepted.Add(n)
}

// closedLoop runs workers that POST batches of batch events back to back until ctx
// ends or limit events were handed out (limit 0: no limit); requests under way when
// ctx ends are completed. Before each batch a worker asks mayGo, which paces the
// producer by what is still undelivered.
func (lg *loadgen) closedLoop(ctx context.Context, workers, batch int, limit int64, mayGo func(next int64) bool) {
	var wg sync.WaitGroup
	for w := range workers {
		pub := lg.pubs[w%len(lg.pubs)]
		wg.Go(func() {
			var body []byte
			for ctx.Err() == nil {
				if mayGo != nil && !mayGo(lg.next.Load()) {
					time.Sleep(500 * time.Microsecond)
					continue
				}
				n := int64(batch)
				first := lg.next.Add(n) - n
				if limit > 0 {
					if first >= limit {
						lg.next.Add(-n)
						return
					}
					n = min(n, limit-first)
				}
				body = append(body[:0], `{"events":[`...)
				for i := first; i < first+n; i++ {
					if i > first {
						body = append(body, ',')
					}
					body = appendEvent(body, i, lg.data)
				}
				body = append(body, "]}"...)
				t := now()
				for i := first; i < first+n; i++ {
					lg.sent.set(i, t)
				}
				if lg.post(pub, body, true) {
					lg.markAccepted(first, n)
				} else {
					lg.failed.Add(n)
				}
			}
		})
	}
	wg.Wait()
}

// openLoop sends total single events at a fixed rate, each at its scheduled time,
// whatever happened to the earlier ones (no coordinated omission): latency counts from
// the schedule, so a producer falling behind shows up as latency.
func (lg *loadgen) openLoop(ctx context.Context, workers int, rate float64, total int64) {
	start := now()
	interval := float64(time.Second) / rate
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var body []byte
			var rtts []time.Duration
			defer func() {
				lg.mu.Lock()
				lg.rtts = append(lg.rtts, rtts...)
				lg.mu.Unlock()
			}()
			for ctx.Err() == nil {
				i := lg.next.Add(1) - 1
				if i >= total {
					return
				}
				at := start + int64(float64(i)*interval)
				if d := time.Duration(at - now()); d > 0 {
					time.Sleep(d)
				} else if d < -time.Millisecond {
					lg.late.Add(1)
				}
				lg.sent.set(i, at)
				body = appendEvent(body[:0], i, lg.data)
				if lg.post(lg.pub, body, false) {
					lg.markAccepted(i, 1)
				} else {
					lg.failed.Add(1)
				}
				rtts = append(rtts, time.Duration(now()-at))
			}
		})
	}
	wg.Wait()
}

// ceiling POSTs the envelope body straight to the receivers with the same client,
// concurrency and receivers as the Herald runs, for d: what this machine does with no
// Herald in between.
func ceiling(workers int, d time.Duration, data []byte, rcs []*receiver) (sent *stamps, n int64, elapsed time.Duration) {
	client := newClient(workers)
	sent = &stamps{}
	var next, done atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var body []byte
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				rc := rcs[int(i)%len(rcs)]
				body = envelopeBody(body[:0], i, data)
				req, _ := http.NewRequest(http.MethodPost, rc.url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(eventHeader, "e"+strconv.FormatInt(i, 10))
				sent.set(i, now())
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	client.CloseIdleConnections()
	return sent, done.Load(), time.Duration(now() - start)
}

// percentiles of a duration sample, in milliseconds.
type percentiles struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

func pct(ds []time.Duration) percentiles {
	if len(ds) == 0 {
		return percentiles{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(q*float64(len(ds))+0.5) - 1
		i = max(0, min(i, len(ds)-1))
		return ms(ds[i])
	}
	return percentiles{N: len(ds), P50: at(0.50), P95: at(0.95), P99: at(0.99), P999: at(0.999), Max: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
