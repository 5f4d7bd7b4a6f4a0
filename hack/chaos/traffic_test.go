package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/refreceiver"
	"github.com/herald-dev/herald/pkg/verify"
)

// receiver is one real HTTP receiver on 127.0.0.1 serving every endpoint of the run
// under /hooks/<endpoint>. It verifies each request with pkg/verify and with the
// Standard Webhooks receiver transcribed from the reference document, and records every
// event id it accepted, with the time.
type receiver struct {
	srv *httptest.Server

	mu        sync.Mutex
	endpoints map[string]*inbox
}

// inbox is what one endpoint's receiver saw.
type inbox struct {
	secret   string
	failing  bool
	received map[string][]time.Time // event id -> times it was accepted (204)
	requests int                    // every request, whatever the answer
	failed   int                    // answered 500 while failing
	refused  []string               // signatures that did not verify
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{endpoints: map[string]*inbox{}}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url(endpoint string) string { return r.srv.URL + "/hooks/" + endpoint }

func (r *receiver) add(endpoint, secret string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endpoints[endpoint] = &inbox{secret: secret, received: map[string][]time.Time{}}
}

func (r *receiver) setFailing(endpoint string, failing bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endpoints[endpoint].failing = failing
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	endpoint, _ := strings.CutPrefix(req.URL.Path, "/hooks/")
	id := req.Header.Get(heraldv1.DefaultHeaderPrefix + "-Event-Id")
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.endpoints[endpoint]
	if in == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	in.requests++
	if in.failing {
		in.failed++
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if err := verify.StandardWebhooks(in.secret, req.Header, body); err != nil {
		in.refused = append(in.refused, fmt.Sprintf("event %s: pkg/verify: %v", id, err))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !refreceiver.StandardWebhooks(in.secret, req.Header, body, now) {
		in.refused = append(in.refused, fmt.Sprintf("event %s: the Standard Webhooks reference receiver refused it", id))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	in.received[id] = append(in.received[id], now)
	w.WriteHeader(http.StatusNoContent)
}

// snapshot copies what an endpoint's receiver saw.
func (r *receiver) snapshot(endpoint string) (received map[string][]time.Time, requests, failed int, refused []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.endpoints[endpoint]
	received = make(map[string][]time.Time, len(in.received))
	for id, ts := range in.received {
		received[id] = slices.Clone(ts)
	}
	return received, in.requests, in.failed, slices.Clone(in.refused)
}

// has reports how many of ids the endpoint's receiver has accepted.
func (r *receiver) has(endpoint string, ids []string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.endpoints[endpoint]
	n := 0
	for _, id := range ids {
		if len(in.received[id]) > 0 {
			n++
		}
	}
	return n
}

// producer publishes events the way a careful client does: its own event ids, and every
// refused publish (429, 503, a 5xx, a connection error or timeout) retried with the same
// id, on the next replica, until one answers 202.
type producer struct {
	apiKey      string
	namespace   string
	dispatchers []*dispatcher
	client      *http.Client
}

type publishResult struct {
	ID        string `json:"id"`
	Matched   int    `json:"matched"`
	Duplicate bool   `json:"duplicate"`
}

// answers counts what the ingest API answered, by code ("conn" for no answer).
type answers struct {
	mu                sync.Mutex
	byCode            map[string]int
	missingRetryAfter int // 429 or 503 without Retry-After
	examples          map[string]string
}

func newAnswers() *answers {
	return &answers{byCode: map[string]int{}, examples: map[string]string{}}
}

func (a *answers) add(code, example string, retryAfterMissing bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byCode[code]++
	if retryAfterMissing {
		a.missingRetryAfter++
	}
	if _, ok := a.examples[code]; !ok && example != "" {
		a.examples[code] = example
	}
}

// refusals formats every answer but 202, e.g. "503×12 conn×3".
func (a *answers) refusals() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var parts []string
	for code, n := range a.byCode {
		if code != "202" {
			parts = append(parts, fmt.Sprintf("%s×%d", code, n))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func (a *answers) count(code string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byCode[code]
}

// publishOnce sends one event to one replica.
func (p *producer) publishOnce(ctx context.Context, d *dispatcher, id, typ string) (int, publishResult, http.Header, string, error) {
	return p.publishData(ctx, d, id, typ, "")
}

// publishData is publishOnce with pad in the event's data, to make it larger.
func (p *producer) publishData(ctx context.Context, d *dispatcher, id, typ, pad string) (int, publishResult, http.Header, string, error) {
	data := map[string]any{"n": id}
	if pad != "" {
		data["pad"] = pad
	}
	body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "data": data})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+d.ingest+"/v1/namespaces/"+p.namespace+"/events", bytes.NewReader(body))
	if err != nil {
		return 0, publishResult{}, nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+p.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, publishResult{}, nil, "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var res publishResult
	if resp.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(raw, &res); err != nil {
			return resp.StatusCode, res, resp.Header, string(raw), fmt.Errorf("202 with a body that is not a result: %q", raw)
		}
	}
	return resp.StatusCode, res, resp.Header, string(raw), nil
}

// publish retries one event until a replica accepts it, starting at replica first, and
// returns the time of the 202. It gives up after giveUp (then ok is false).
func (p *producer) publish(ctx context.Context, id, typ string, first int, giveUp time.Duration, a *answers) (acceptedAt time.Time, res publishResult, ok bool, err error) {
	deadline := time.Now().Add(giveUp)
	for i := first; ; i++ {
		d := p.dispatchers[i%len(p.dispatchers)]
		code, r, hdr, body, err := p.publishOnce(ctx, d, id, typ)
		switch {
		case err != nil && code == 0:
			a.add("conn", err.Error(), false)
		case err != nil:
			return time.Time{}, r, false, err
		case code == http.StatusAccepted:
			a.add("202", "", false)
			return time.Now(), r, true, nil
		case code == http.StatusTooManyRequests || code >= 500:
			missing := (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) && hdr.Get("Retry-After") == ""
			a.add(strconv.Itoa(code), fmt.Sprintf("dispatcher %d: %s", d.index, strings.TrimSpace(body)), missing)
		default:
			// 400, 401, 403, 413, 415: a bug of the suite or of Herald, never a reason to retry.
			return time.Time{}, r, false, fmt.Errorf("dispatcher %d answered %d to event %s: %s", d.index, code, id, body)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return time.Time{}, r, false, nil
		}
		// A short pause before the next replica: a real client would honour Retry-After,
		// but waiting whole seconds would only hide how soon the service is back.
		time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
	}
}

// flow is the traffic of one scenario: ids published at a steady rate until stopped,
// each retried until accepted.
type flow struct {
	scenario string
	endpoint string
	typ      string
	answers  *answers

	mu          sync.Mutex
	accepted    map[string]time.Time // event id -> its 202
	matchedZero []string             // accepted but routed nowhere
	gaveUp      []string
	errs        []string
	faultStart  time.Time
	faultEnd    time.Time
	faults      int    // kills, restarts, partitions: what the scenario did
	faultNote   string // what the fault was, for the table
	published   atomic.Int64
	waits       []time.Duration // first try to 202, per accepted event
	// readyRefusingMax is, per replica, the longest it answered /readyz ok while
	// refusing events.
	readyRefusingMax [3]time.Duration
}

// accept records an event a replica answered 202, first tried at tried.
func (f *flow) accept(id string, at, tried time.Time, res publishResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accepted[id] = at
	f.waits = append(f.waits, at.Sub(tried))
	if res.Matched != 1 {
		f.matchedZero = append(f.matchedZero, fmt.Sprintf("%s (matched %d)", id, res.Matched))
	}
}

func (f *flow) readyRefusing(dispatcher int, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readyRefusingMax[dispatcher] = max(f.readyRefusingMax[dispatcher], d)
}

func newFlow(scenario, endpoint string) *flow {
	return &flow{scenario: scenario, endpoint: endpoint, typ: endpoint + ".happened", answers: newAnswers(),
		accepted: map[string]time.Time{}}
}

// run publishes rate events a second over workers until stop is closed, then waits for
// the publishes under way. Under a fault the rate drops, as a real producer's would,
// because each worker retries its event before taking the next.
func (f *flow) run(p *producer, rate int, stop <-chan struct{}) {
	ids := make(chan string)
	var wg sync.WaitGroup
	const workers = 32
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				tried := time.Now()
				at, res, ok, err := p.publish(context.Background(), id, f.typ, w, 3*time.Minute, f.answers)
				switch {
				case err != nil:
					f.mu.Lock()
					f.errs = append(f.errs, err.Error())
					f.mu.Unlock()
				case !ok:
					f.mu.Lock()
					f.gaveUp = append(f.gaveUp, id)
					f.mu.Unlock()
				default:
					f.accept(id, at, tried, res)
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			close(ids)
			wg.Wait()
			return
		case <-tick.C:
		}
		id := fmt.Sprintf("%s-%06d", f.endpoint, n)
		select {
		case ids <- id:
			f.published.Add(1)
		case <-stop:
			close(ids)
			wg.Wait()
			return
		}
	}
}

func (f *flow) fault(start, end time.Time, n int, note string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faultStart, f.faultEnd, f.faults, f.faultNote = start, end, n, note
}

func (f *flow) acceptedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.accepted))
	for id := range f.accepted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// row is one line of the report.
type row struct {
	scenario    string
	fault       string
	faults      int
	accepted    int
	delivered   int
	lost        int
	duplicated  int
	refused     string
	p99During   time.Duration
	p99After    time.Duration
	p99Publish  time.Duration // first try to 202
	maxPublish  time.Duration
	readyRefuse time.Duration // longest a replica was ready while refusing
	failedAtt   int64
	placement   string
	took        time.Duration
}

// tally compares what was accepted with what the receiver accepted: lost is accepted
// and never delivered, duplicated counts deliveries beyond the first of an id.
// Latency is from the 202 to the first delivery, split by whether the 202 came while
// the fault lasted or after it.
func (f *flow) tally(r *receiver) (row, []string) {
	received, _, _, _ := r.snapshot(f.endpoint)
	f.mu.Lock()
	defer f.mu.Unlock()
	out := row{scenario: f.scenario, fault: f.faultNote, faults: f.faults, accepted: len(f.accepted), refused: f.answers.refusals()}
	var lost []string
	var during, after []time.Duration
	for id, at := range f.accepted {
		ts := received[id]
		if len(ts) == 0 {
			lost = append(lost, id)
			continue
		}
		out.delivered++
		out.duplicated += len(ts) - 1
		lat := max(ts[0].Sub(at), 0)
		if !f.faultEnd.IsZero() && at.After(f.faultEnd) {
			after = append(after, lat)
		} else {
			during = append(during, lat)
		}
	}
	out.lost = len(lost)
	out.p99During, out.p99After = p99(during), p99(after)
	out.p99Publish = p99(slices.Clone(f.waits))
	for _, w := range f.waits {
		out.maxPublish = max(out.maxPublish, w)
	}
	for _, d := range f.readyRefusingMax {
		out.readyRefuse = max(out.readyRefuse, d)
	}
	sort.Strings(lost)
	return out, lost
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[(len(ds)*99+99)/100-1]
}

// table formats the rows for the log: what `make chaos` prints.
func table(rows []row) string {
	var b strings.Builder
	b.WriteString("\n| scenario | fault | accepted | delivered | lost | duplicated | refused publishes | publish wait p99 / max | 202→delivery p99 during | p99 after | ready while refusing | failed attempts | HERALD_DELIVERIES at the end | took |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %s | %s / %s | %s | %s | %s | %d | %s | %s |\n", r.scenario, r.fault, r.accepted, r.delivered,
			r.lost, r.duplicated, r.refused, ms(r.p99Publish), ms(r.maxPublish), ms(r.p99During), ms(r.p99After), ms(r.readyRefuse),
			r.failedAtt, r.placement, r.took.Round(time.Second))
	}
	return b.String()
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Millisecond:
		return "<1ms"
	}
	return d.Round(time.Millisecond).String()
}
