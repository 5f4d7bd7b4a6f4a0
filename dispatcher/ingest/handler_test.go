package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/pkg/wire"
)

// memAcceptor records what the handler hands over and answers with a fixed result, or
// fails as told: these tests are about HTTP, decoding and the mapping of answers.
// Deduplication, routing and storage are package accept's, tested there on a real
// store through this handler.
type memAcceptor struct {
	mu      sync.Mutex
	calls   int
	stored  []stored
	matched int
	err     error
	short   bool          // return one result too few
	block   chan struct{} // when set, Accept waits for it to close
	entered chan struct{} // when set, closed as Accept is first called
	// returned is set as Accept returns.
	returned atomic.Bool
}

type stored struct {
	namespace string
	event     ingest.Event
	identity  auth.Identity
}

func (a *memAcceptor) Accept(ctx context.Context, ns string, events []ingest.Event) ([]ingest.Result, error) {
	defer a.returned.Store(true)
	if a.entered != nil {
		close(a.entered)
	}
	if a.block != nil {
		<-a.block
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.err != nil {
		return nil, a.err
	}
	id, _ := auth.FromContext(ctx)
	var out []ingest.Result
	for _, e := range events {
		a.stored = append(a.stored, stored{ns, e, id})
		out = append(out, ingest.Result{ID: e.ID, Matched: a.matched})
	}
	if a.short {
		out = out[:len(out)-1]
	}
	return out, nil
}

func (a *memAcceptor) events() []stored {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]stored(nil), a.stored...)
}

func (a *memAcceptor) callCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

const (
	goodToken = "producer-token-7f3a9c" // may publish into team-a only
	authDown  = "token-while-apiserver-down"
)

// tokenAuthorizer stands in for dispatcher/auth, which is tested against a real API
// server in its own package; here only the mapping of its answers matters.
var tokenAuthorizer = auth.AuthorizerFunc(func(_ context.Context, r *http.Request, ns string) (auth.Identity, error) {
	tok, ok := auth.BearerToken(r)
	switch {
	case !ok:
		return auth.Identity{}, auth.ErrNoCredentials
	case tok == authDown:
		return auth.Identity{}, fmt.Errorf("creating TokenReview: %w", errors.New("connection refused"))
	case tok != goodToken:
		return auth.Identity{}, fmt.Errorf("token review: %w", auth.ErrUnauthenticated)
	}
	id := auth.Identity{Name: "system:serviceaccount:team-a:producer", Method: auth.MethodToken}
	if ns != "team-a" {
		return id, fmt.Errorf("subject access review: %w", auth.ErrForbidden)
	}
	return id, nil
})

type fixture struct {
	srv  *httptest.Server
	acc  *memAcceptor
	logs *bytes.Buffer
}

func newFixture(t *testing.T, mutate func(*ingest.Options)) *fixture {
	t.Helper()
	f := &fixture{acc: &memAcceptor{matched: 2}, logs: &bytes.Buffer{}}
	var mu sync.Mutex
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(f.logs, prefix, args)
	}, funcr.Options{Verbosity: 1})
	o := ingest.Options{Acceptor: f.acc, Authorizer: tokenAuthorizer, Log: log, Limits: ingest.Limits{MaxBatchEvents: 5}}
	if mutate != nil {
		mutate(&o)
	}
	h, err := ingest.NewHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) errorBody(t *testing.T) wire.Error {
	t.Helper()
	var e wire.ErrorResponse
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	return e.Error
}

func (f *fixture) do(t *testing.T, method, path string, header map[string]string, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+goodToken)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json (body %s)", ct, b)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (f *fixture) post(t *testing.T, path string, header map[string]string, body string) response {
	t.Helper()
	return f.do(t, http.MethodPost, path, header, body)
}

const single = "/v1/namespaces/team-a/events"
const batch = "/v1/namespaces/team-a/events:batch"

var idPattern = regexp.MustCompile(`^evt_[0-9A-HJKMNP-TV-Z]{26}$`)

func TestPublish_HeraldJSONIsAcceptedWithDataKeptByteForByte(t *testing.T) {
	f := newFixture(t, nil)
	data := `{ "amount":  1200, "items": [1,2,3], "note": "caf\u00e9" }`
	r := f.post(t, single, nil, `{"id":"order-1","type":"order.created","source":"shop","created_at":"2026-01-02T15:04:05.123+02:00","data":`+data+`}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("status = %d, body %s", r.status, r.body)
	}
	if got, want := strings.TrimSpace(string(r.body)), `{"id":"order-1","matched":2,"duplicate":false}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
	ev := f.acc.events()
	if len(ev) != 1 {
		t.Fatalf("stored %d events, want 1", len(ev))
	}
	e := ev[0]
	if e.namespace != "team-a" || e.event.Type != "order.created" || e.event.Source != "shop" || e.event.DataContentType != "application/json" {
		t.Errorf("stored %+v", e)
	}
	if string(e.event.Data) != data {
		t.Errorf("data = %s, want the bytes sent: %s", e.event.Data, data)
	}
	if want := time.Date(2026, 1, 2, 13, 4, 5, 123e6, time.UTC); !e.event.CreatedAt.Equal(want) || e.event.CreatedAt.Location() != time.UTC {
		t.Errorf("created_at = %v, want %v in UTC", e.event.CreatedAt, want)
	}
	if e.event.CreatedAtText != "2026-01-02T15:04:05.123+02:00" {
		t.Errorf("created_at text = %q, want the producer's bytes", e.event.CreatedAtText)
	}
	if e.identity.Name != "system:serviceaccount:team-a:producer" {
		t.Errorf("acceptor saw identity %+v; the publisher should travel in the context", e.identity)
	}

}

func TestPublish_GeneratesSortableUniqueIDsAndReceiptTime(t *testing.T) {
	// The clock has nanoseconds; the stamped time has none (the reference documents
	// write created_at as 2024-01-15T10:30:00Z, and receivers parse it so).
	now := time.Date(2026, 3, 4, 5, 6, 7, 498768987, time.UTC)
	f := newFixture(t, func(o *ingest.Options) { o.Now = func() time.Time { return now } })
	seen := map[string]bool{}
	for range 3 {
		r := f.post(t, single, nil, `{"type":"ping","data":null}`)
		var res ingest.Result
		if err := json.Unmarshal(r.body, &res); err != nil || r.status != http.StatusAccepted {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if !idPattern.MatchString(res.ID) || seen[res.ID] {
			t.Errorf("generated id %q: want evt_ + 26 Crockford base32 characters, unique", res.ID)
		}
		seen[res.ID] = true
	}
	for _, e := range f.acc.events() {
		if want := now.Truncate(time.Second); !e.event.CreatedAt.Equal(want) || e.event.CreatedAtText != "" {
			t.Errorf("created_at = %v (text %q), want the receipt time in whole seconds %v and no producer text", e.event.CreatedAt, e.event.CreatedAtText, want)
		}
		if string(e.event.Data) != "null" {
			t.Errorf("data = %s; an explicit null is a value and is kept", e.event.Data)
		}
	}

	// Ids from later milliseconds sort after earlier ones, whatever the random part.
	a, b := wire.NewEventID(now), wire.NewEventID(now.Add(time.Millisecond))
	if !(a < b) {
		t.Errorf("NewID(t) = %s is not before NewID(t+1ms) = %s", a, b)
	}
	// The time prefix is the Unix milliseconds, so a ULID decoder reads the right time.
	if got := wire.NewEventID(time.UnixMilli(0))[4:14]; got != "0000000000" {
		t.Errorf("time prefix for the epoch = %s, want 0000000000", got)
	}
	if got := wire.NewEventID(time.UnixMilli(1<<48 - 1))[4:14]; got != "7ZZZZZZZZZ" {
		t.Errorf("time prefix for the largest time = %s, want 7ZZZZZZZZZ", got)
	}
}

func TestPublish_CloudEventStructured(t *testing.T) {
	f := newFixture(t, nil)
	h := map[string]string{"Content-Type": "application/cloudevents+json; charset=utf-8"}
	r := f.post(t, single, h, `{"specversion":"1.0","id":"ce-1","source":"/shop/orders","type":"com.example.order.created",
		"time":"2026-01-02T15:04:05Z","subject":"o-1","comexampleext":"value","count":3,"data":{"n":1}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	// An attribute whose value is no CloudEvents type (an object) cannot be carried in a
	// ce-* header: the event is refused, naming it, rather than sent without it.
	bad := f.post(t, single, h, `{"specversion":"1.0","id":"ce-bad","source":"urn:x","type":"t","comexampleext":{"any":"value"}}`)
	if got := bad.errorBody(t); bad.status != http.StatusBadRequest || got.Field != "comexampleext" {
		t.Errorf("object-valued extension: %d %s, want 400 naming comexampleext", bad.status, bad.body)
	}
	r = f.post(t, single, h, `{"specversion":"1.0","id":"ce-2","source":"urn:x","type":"t",
		"datacontenttype":"application/vnd.example+json","data_base64":"eyJuIjogMn0="}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("data_base64: status %d: %s", r.status, r.body)
	}
	r = f.post(t, single, h, `{"specversion":"1.0","id":"ce-3","source":"urn:x","type":"t",
		"datacontenttype":"text/plain","data":"hello"}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("text data member: status %d: %s", r.status, r.body)
	}
	ev := f.acc.events()
	want := []ingest.Event{
		{ID: "ce-1", Source: "/shop/orders", Type: "com.example.order.created", Data: []byte(`{"n":1}`),
			DataContentType: "application/json", CreatedAt: time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)},
		{ID: "ce-2", Source: "urn:x", Type: "t", Data: []byte(`{"n": 2}`), DataContentType: "application/vnd.example+json"},
		{ID: "ce-3", Source: "urn:x", Type: "t", Data: []byte(`"hello"`), DataContentType: "text/plain"},
	}
	for i, w := range want {
		g := ev[i].event
		if g.ID != w.ID || g.Source != w.Source || g.Type != w.Type || string(g.Data) != string(w.Data) || g.DataContentType != w.DataContentType {
			t.Errorf("event %d = %+v (data %s), want %+v (data %s)", i, g, g.Data, w, w.Data)
		}
		if !w.CreatedAt.IsZero() && !g.CreatedAt.Equal(w.CreatedAt) {
			t.Errorf("event %d time = %v, want %v", i, g.CreatedAt, w.CreatedAt)
		}
	}
	if got := string(ev[0].event.Attributes); got != `{"comexampleext":"value","count":3,"subject":"o-1"}` {
		t.Errorf("carried attributes = %s", got)
	}
}

func TestPublish_CloudEventBinary(t *testing.T) {
	f := newFixture(t, nil)
	h := map[string]string{
		"Content-Type":   "application/json",
		"ce-specversion": "1.0",
		"ce-id":          "bin-1",
		"ce-source":      "/shop%20eu", // percent-encoded, as the HTTP binding requires for spaces
		"ce-type":        "order.paid",
		"ce-time":        "2026-01-02T15:04:05Z",
	}
	r := f.post(t, single, h, `[1, 2]`)
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	e := f.acc.events()[0].event
	if e.ID != "bin-1" || e.Source != "/shop eu" || e.Type != "order.paid" || string(e.Data) != "[1, 2]" ||
		!e.CreatedAt.Equal(time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)) {
		t.Errorf("stored %+v (data %s)", e, e.Data)
	}

	h["Content-Type"] = "text/plain"
	h["ce-id"] = "bin-2"
	r = f.post(t, single, h, `hello`)
	if got := r.errorBody(t); r.status != http.StatusUnsupportedMediaType || got.Code != wire.CodeUnsupportedMediaType ||
		!strings.Contains(got.Message, "JSON data only") {
		t.Errorf("text/plain binary data: %d %s, want 415 saying only JSON data is delivered", r.status, r.body)
	}
}

func TestPublishBatch_AllFormsAndResultsInOrder(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		name, contentType, body string
	}{
		{"envelope object", "application/json", `{"events":[{"id":"a1","type":"t","data":1},{"id":"a2","type":"t","data":2}]}`},
		{"bare array", "application/json", ` [{"id":"b1","type":"t","data":1},{"id":"b2","type":"t","data":2}]`},
		{"cloudevents batch", "application/cloudevents-batch+json",
			`[{"specversion":"1.0","id":"c1","source":"s","type":"t","data":1},{"specversion":"1.0","id":"c2","source":"s","type":"t","data":2}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.post(t, batch, map[string]string{"Content-Type": tc.contentType}, tc.body)
			var got wire.BatchResult
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != http.StatusAccepted {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if len(got.Results) != 2 || got.Results[0].ID[1] != '1' || got.Results[1].ID[1] != '2' || got.Results[0].Matched != 2 {
				t.Errorf("results = %+v, want two, in input order", got.Results)
			}
		})
	}
}

func TestPublishBatch_OneInvalidEventRefusesAll(t *testing.T) {
	f := newFixture(t, nil)
	r := f.post(t, batch, nil, `{"events":[{"type":"ok","data":1},{"type":"ok","data":2},{"type":"ok","data":3,"created_at":"yesterday"}]}`)
	e := r.errorBody(t)
	if r.status != http.StatusBadRequest || e.Index == nil || *e.Index != 2 || e.Field != "created_at" || !strings.HasPrefix(e.Message, "event 2: ") {
		t.Errorf("got %d %s, want 400 naming index 2 and field created_at", r.status, r.body)
	}
	if n := f.acc.callCount(); n != 0 {
		t.Errorf("acceptor called %d times; nothing may be accepted from an invalid batch", n)
	}
}

// TestPublish_ErrorAnswers covers every refusal: its status, code, field and a message
// a person can act on.
func TestPublish_ErrorAnswers(t *testing.T) {
	ce := map[string]string{"Content-Type": "application/cloudevents+json"}
	ceBinary := map[string]string{"ce-specversion": "1.0", "ce-id": "x", "ce-source": "s"}
	for _, tc := range []struct {
		why                  string
		acceptorErr          error
		method, path, body   string
		header               map[string]string
		status               int
		code, field, message string
		index                int // -1: none
	}{
		{why: "syntax errors say where", body: `{"type":"t","data":{"a":1,}}`, status: 400, code: wire.CodeInvalidJSON, message: "invalid JSON at byte 27"},
		{why: "an empty body is not an event", body: ``, status: 400, code: wire.CodeInvalidJSON, message: "body is empty"},
		{why: "JSON is UTF-8; receivers decode it before verifying", body: "{\"type\":\"t\",\"data\":\"\xff\"}", status: 400, code: wire.CodeInvalidJSON, message: "not valid UTF-8"},
		{why: "a single event must be an object", body: `[1]`, status: 400, code: wire.CodeInvalidRequest, message: "expected a JSON object, found a JSON array"},
		{why: "null is not an event", body: `null`, status: 400, code: wire.CodeInvalidEvent, message: "must be a JSON object"},
		{why: "type is required", body: `{"data":1}`, status: 400, code: wire.CodeInvalidEvent, field: "type", message: "type is required"},
		{why: "type must be a string", body: `{"type":7,"data":1}`, status: 400, code: wire.CodeInvalidEvent, field: "type", message: "type must be a string"},
		{why: "type alphabet keeps globs and headers unambiguous", body: `{"type":"order created","data":1}`, status: 400, code: wire.CodeInvalidEvent, field: "type", message: "may only contain"},
		{why: "type length", body: `{"type":"` + strings.Repeat("t", 257) + `","data":1}`, status: 400, code: wire.CodeInvalidEvent, field: "type", message: "at most 256"},
		{why: "data is required", body: `{"type":"t"}`, status: 400, code: wire.CodeInvalidEvent, field: "data", message: "data is required"},
		{why: "created_at must be RFC 3339", body: `{"type":"t","data":1,"created_at":"02/01/2026"}`, status: 400, code: wire.CodeInvalidEvent, field: "created_at", message: "RFC 3339"},
		{why: "id length", body: `{"id":"` + strings.Repeat("i", 257) + `","type":"t","data":1}`, status: 400, code: wire.CodeInvalidEvent, field: "id", message: "at most 256"},
		{why: "ids go into headers", body: `{"id":"a b","type":"t","data":1}`, status: 400, code: wire.CodeInvalidEvent, field: "id", message: "printable ASCII"},
		{why: "an empty id is not an id", body: `{"id":"","type":"t","data":1}`, status: 400, code: wire.CodeInvalidEvent, field: "id", message: "must not be empty"},
		{why: "typos are not ignored", body: `{"type":"t","data":1,"create_at":"x"}`, status: 400, code: wire.CodeInvalidEvent, field: "create_at", message: `unknown attribute "create_at"`},
		{why: "namespace must be a DNS-1123 label", path: "/v1/namespaces/Team_A/events", body: `{"type":"t","data":1}`, status: 400, code: wire.CodeInvalidRequest, field: "namespace", message: "not a valid namespace name"},
		{why: "CloudEvents need specversion 1.0", header: ce, body: `{"specversion":"0.3","id":"1","source":"s","type":"t","data":1}`, status: 400, code: wire.CodeInvalidEvent, field: "specversion", message: `use "1.0"`},
		{why: "CloudEvents need a source", header: ce, body: `{"specversion":"1.0","id":"1","type":"t","data":1}`, status: 400, code: wire.CodeInvalidEvent, field: "source", message: "source is required"},
		{why: "data and data_base64 exclude each other", header: ce, body: `{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"MQ=="}`, status: 400, code: wire.CodeInvalidEvent, field: "data_base64", message: "mutually exclusive"},
		{why: "binary data_base64 is not delivered", header: ce, body: `{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AAE="}`, status: 415, code: wire.CodeUnsupportedMediaType, field: "datacontenttype", message: "JSON data only"},
		{why: "binary mode needs ce-type", header: ceBinary, body: `{}`, status: 400, code: wire.CodeInvalidEvent, field: "ce-type", message: "ce-type is required"},
		{why: "binary-mode data must be valid JSON", header: map[string]string{"ce-specversion": "1.0", "ce-id": "x", "ce-source": "s", "ce-type": "t"}, body: `{"a":}`, status: 400, code: wire.CodeInvalidJSON, message: "byte 6"},
		{why: "batch size is bounded", path: batch, body: `[{"type":"t","data":1},{"type":"t","data":1},{"type":"t","data":1},{"type":"t","data":1},{"type":"t","data":1},{"type":"t","data":1}]`, status: 400, code: wire.CodeTooManyEvents, field: "events", message: "at most 5"},
		{why: "an empty batch is a mistake", path: batch, body: `{"events":[]}`, status: 400, code: wire.CodeInvalidEvent, field: "events", message: "no events"},
		{why: "a batch element must be an object", path: batch, body: `[{"type":"t","data":1},"x"]`, status: 400, code: wire.CodeInvalidEvent, index: 1, message: "event 1: an event must be a JSON object"},
		{why: "no credentials", header: map[string]string{"Authorization": ""}, body: `{"type":"t","data":1}`, status: 401, code: wire.CodeUnauthenticated, message: "credentials are missing"},
		{why: "bad credentials", header: map[string]string{"Authorization": "Bearer nope"}, body: `{"type":"t","data":1}`, status: 401, code: wire.CodeUnauthenticated, message: "invalid, expired or revoked"},
		{why: "another namespace", path: "/v1/namespaces/team-b/events", body: `{"type":"t","data":1}`, status: 403, code: wire.CodeForbidden,
			message: `"system:serviceaccount:team-a:producer" may not create events.hooks.herald.dev in namespace "team-b"`},
		{why: "authentication backend down", header: map[string]string{"Authorization": "Bearer " + authDown}, body: `{"type":"t","data":1}`, status: 503, code: wire.CodeUnavailable, message: "retry later"},
		{why: "unknown route", path: "/v1/namespaces/team-a/event", body: `{}`, status: 404, code: wire.CodeNotFound, message: "no route"},
		{why: "unknown version", path: "/v2/namespaces/team-a/events", body: `{}`, status: 404, code: wire.CodeNotFound, message: "no route"},
		{why: "events are POSTed", method: http.MethodGet, body: ``, status: 405, code: wire.CodeMethodNotAllowed, message: "use POST"},
		{why: "batches are POSTed", method: http.MethodPut, path: batch, body: `[]`, status: 405, code: wire.CodeMethodNotAllowed, message: "use POST"},
		{why: "over the size limit", body: `{"type":"t","data":"` + strings.Repeat("x", 2048) + `"}`, status: 413, code: wire.CodePayloadTooLarge, message: "limit of 1024 bytes"},
		{why: "form posts are not events", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: `a=b`, status: 415, code: wire.CodeUnsupportedMediaType, field: "Content-Type", message: "application/json"},
		{why: "Content-Type is required", header: map[string]string{"Content-Type": ""}, body: `{}`, status: 415, code: wire.CodeUnsupportedMediaType, field: "Content-Type", message: "missing"},
		{why: "JSON is UTF-8", header: map[string]string{"Content-Type": "application/json; charset=latin1"}, body: `{}`, status: 415, code: wire.CodeUnsupportedMediaType, field: "Content-Type", message: "charset"},
		{why: "single CloudEvents do not go to the batch route", path: batch, header: ce, body: `{}`, status: 415, code: wire.CodeUnsupportedMediaType, field: "Content-Type", message: "cloudevents-batch+json"},
		{why: "queue full", acceptorErr: fmt.Errorf("publishing: %w", ingest.ErrQueueFull), body: `{"type":"t","data":1}`, status: 429, code: wire.CodeQueueFull, message: "retry later"},
		{why: "storage down", acceptorErr: fmt.Errorf("publishing: %w", ingest.ErrUnavailable), body: `{"type":"t","data":1}`, status: 503, code: wire.CodeUnavailable, message: "retry later"},
		{why: "other failures reveal nothing", acceptorErr: errors.New("nats: stream herald-deliveries: disk I/O error at /data"), body: `{"type":"t","data":1}`, status: 500, code: wire.CodeInternal, message: "internal error"},
	} {
		t.Run(tc.why, func(t *testing.T) {
			f := newFixture(t, func(o *ingest.Options) { o.MaxBodyBytes = 1024 })
			f.acc.err = tc.acceptorErr
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = single
			}
			r := f.do(t, method, path, tc.header, tc.body)
			e := r.errorBody(t)
			if r.status != tc.status || e.Code != tc.code || e.Field != tc.field || !strings.Contains(e.Message, tc.message) {
				t.Errorf("got %d %s\nwant %d code %q field %q message containing %q", r.status, r.body, tc.status, tc.code, tc.field, tc.message)
			}
			if tc.index > 0 && (e.Index == nil || *e.Index != tc.index) {
				t.Errorf("index = %v, want %d", e.Index, tc.index)
			}
			if e.Code == wire.CodeInvalidJSON && e.Offset == nil {
				t.Errorf("invalid JSON answer without offset: %s", r.body)
			}
			switch tc.status {
			case 401:
				want := `Bearer realm="herald"`
				if tc.header["Authorization"] != "" {
					want += `, error="invalid_token"`
				}
				if got := r.header.Get("WWW-Authenticate"); got != want {
					t.Errorf("WWW-Authenticate = %q, want %q", got, want)
				}
			case 405:
				if got := r.header.Get("Allow"); got != "POST" {
					t.Errorf("Allow = %q, want POST", got)
				}
			case 429, 503:
				if got := r.header.Get("Retry-After"); got != "1" {
					t.Errorf("Retry-After = %q, want 1", got)
				}
			}
			if tc.status < 429 && f.acc.callCount() != 0 {
				t.Errorf("acceptor was called for a refused request")
			}
			if strings.Contains(string(r.body), "disk I/O") || strings.Contains(string(r.body), "connection refused") {
				t.Errorf("internal error details leaked to the producer: %s", r.body)
			}
		})
	}
}

func TestPublish_ResultCountMismatchIsAnInternalError(t *testing.T) {
	f := newFixture(t, nil)
	f.acc.short = true
	r := f.post(t, single, nil, `{"type":"t","data":1}`)
	if r.status != http.StatusInternalServerError {
		t.Errorf("status %d %s, want 500 when the acceptor answers for fewer events than sent", r.status, r.body)
	}
}

func TestPublish_ChunkedBodyOverLimitIs413(t *testing.T) {
	f := newFixture(t, func(o *ingest.Options) { o.MaxBodyBytes = 1024 })
	// An io.Reader of unknown length makes the client send the body chunked, without
	// Content-Length, so only the reading limit can catch it.
	body := io.MultiReader(strings.NewReader(`{"type":"t","data":"`), strings.NewReader(strings.Repeat("x", 4096)), strings.NewReader(`"}`))
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+single, body)
	req.Header.Set("Authorization", "Bearer "+goodToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || req.ContentLength != 0 {
		t.Errorf("status %d (request length %d), want 413 for a chunked body", resp.StatusCode, req.ContentLength)
	}
}

// readSpy fails nothing itself; it records whether anybody read the body.
type readSpy struct {
	r    io.Reader
	read atomic.Bool
}

func (s *readSpy) Read(p []byte) (int, error) {
	s.read.Store(true)
	return s.r.Read(p)
}

func TestPublish_RefusesBeforeReadingTheBody(t *testing.T) {
	f := newFixture(t, nil)
	// With "Expect: 100-continue" the client sends the body only once the server asks
	// for it, which net/http does on the handler's first read. A refusal decided from
	// the headers alone therefore arrives without the body ever leaving the client.
	tr := f.srv.Client().Transport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = time.Minute
	body := &readSpy{r: strings.NewReader(`{"type":"t","data":1}`)}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v1/namespaces/team-b/events", body)
	req.ContentLength = 21
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("Authorization", "Bearer "+goodToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("status %d, want 403", resp.StatusCode)
	}
	if body.read.Load() {
		t.Error("the body was sent although the request was refused on its headers")
	}
}

func TestPublish_AnswersOnlyAfterAcceptReturns(t *testing.T) {
	f := newFixture(t, nil)
	f.acc.entered, f.acc.block = make(chan struct{}), make(chan struct{})
	// Whether the handler began its answer before Accept returned, seen from inside
	// the server: a client would not see an answer written and not yet flushed.
	var early, wrote atomic.Bool
	inner := f.srv.Config.Handler
	f.srv.Close()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(&orderWriter{ResponseWriter: w, first: func() {
			wrote.Store(true)
			early.Store(!f.acc.returned.Load())
		}}, r)
	}))
	t.Cleanup(f.srv.Close)
	done := make(chan response, 1)
	go func() { done <- f.post(t, single, nil, `{"type":"t","data":1}`) }()
	select {
	case <-f.acc.entered:
	case r := <-done:
		t.Fatalf("answered %d without calling the acceptor", r.status)
	case <-time.After(10 * time.Second):
		t.Fatal("the acceptor was not called within 10s")
	}
	close(f.acc.block)
	if r := <-done; r.status != http.StatusAccepted {
		t.Errorf("status %d, want 202", r.status)
	}
	if !wrote.Load() || early.Load() {
		t.Errorf("the handler began its answer before the acceptor returned (wrote %v, early %v)", wrote.Load(), early.Load())
	}
}

// orderWriter calls first before the first byte or status of the answer is written.
type orderWriter struct {
	http.ResponseWriter
	first func()
	once  sync.Once
}

func (w *orderWriter) WriteHeader(code int) {
	w.once.Do(w.first)
	w.ResponseWriter.WriteHeader(code)
}

func (w *orderWriter) Write(b []byte) (int, error) {
	w.once.Do(w.first)
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *orderWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestPublish_CredentialsNeverInAnswersOrLogs(t *testing.T) {
	f := newFixture(t, nil)
	secret := "sekrit-token-value-9d2b"
	for _, tc := range []struct{ path, token string }{
		{single, secret}, // 401
		{"/v1/namespaces/team-b/events", goodToken}, // 403
		{single, authDown},                          // 503
	} {
		r := f.post(t, tc.path, map[string]string{"Authorization": "Bearer " + tc.token}, `{"type":"t","data":1}`)
		if strings.Contains(string(r.body), tc.token) {
			t.Errorf("answer %d contains the bearer token: %s", r.status, r.body)
		}
		if strings.Contains(f.logs.String(), tc.token) {
			t.Errorf("logs contain the bearer token: %s", f.logs)
		}
	}
	if !strings.Contains(f.logs.String(), "authorizing a producer failed") {
		t.Errorf("the authentication failure was not logged: %s", f.logs)
	}
}

func TestNewHandler_RequiresAcceptorAndAuthorizer(t *testing.T) {
	if _, err := ingest.NewHandler(ingest.Options{Authorizer: tokenAuthorizer, Log: logr.Discard()}); err == nil {
		t.Error("NewHandler without an Acceptor succeeded")
	}
}

func TestPublish_TraceContextIsKeptWithEachEvent(t *testing.T) {
	const (
		header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		own    = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	)
	tests := []struct {
		why       string
		path      string
		headers   map[string]string
		body      string
		want      []string // traceparent per stored event
		wantState string   // tracestate of the first event
	}{
		{"the request's W3C headers belong to a Herald event", single,
			map[string]string{"traceparent": header, "tracestate": "vendor=1"}, `{"id":"h1","type":"t","data":1}`,
			[]string{header}, "vendor=1"},
		{"and to every event of a Herald batch", batch,
			map[string]string{"traceparent": header}, `[{"id":"h2","type":"t","data":1},{"id":"h3","type":"t","data":2}]`,
			[]string{header, header}, ""},
		{"a CloudEvent's own distributed-tracing attribute wins over the request's header", batch,
			map[string]string{"Content-Type": "application/cloudevents-batch+json", "traceparent": header},
			`[{"specversion":"1.0","id":"c1","source":"s","type":"t","traceparent":"` + own + `","tracestate":"congo=2","data":1},{"specversion":"1.0","id":"c2","source":"s","type":"t","data":2}]`,
			[]string{own, header}, "congo=2"},
		{"binary mode carries it in ce-traceparent", single,
			map[string]string{"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "s", "ce-type": "t", "ce-traceparent": own, "traceparent": header},
			`{"n":1}`, []string{own}, ""},
		{"an invalid traceparent is ignored, not refused (W3C Trace Context §3.2.2.1)", single,
			map[string]string{"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "tracestate": "vendor=1"},
			`{"id":"h4","type":"t","data":1}`, []string{""}, ""},
		{"no trace context, none stored", single, nil, `{"id":"h5","type":"t","data":1}`, []string{""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			f := newFixture(t, nil)
			if r := f.post(t, tt.path, tt.headers, tt.body); r.status != http.StatusAccepted {
				t.Fatalf("%d %s", r.status, r.body)
			}
			got := f.acc.events()
			if len(got) != len(tt.want) {
				t.Fatalf("%d events stored, want %d", len(got), len(tt.want))
			}
			for i, s := range got {
				if s.event.TraceParent != tt.want[i] {
					t.Errorf("event %d traceparent %q, want %q", i, s.event.TraceParent, tt.want[i])
				}
			}
			if got[0].event.TraceState != tt.wantState {
				t.Errorf("tracestate %q, want %q", got[0].event.TraceState, tt.wantState)
			}
		})
	}
}
