package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher/config"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/go-logr/logr/testr"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/pkg/verify"
)

const ceSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// ceSink is a receiver nobody here wrote: the official CloudEvents Go SDK's HTTP
// binding parses each request (NewEventFromHTTPRequest, what its receive handler runs),
// behind a check of Herald's Standard Webhooks signature (pkg/verify) on the raw
// request. answer decides what the sink says to each event it parsed; a request that is
// no valid CloudEvent gets 400, as from the SDK's handler. (The SDK's receive handler
// itself hands each request to a goroutine over an unbuffered channel and can block for
// ever when an attempt's connection is closed before that goroutine reads it — a -race
// run hung on it in httptest's Close after Herald's attempt timed out.)
type ceSink struct {
	*httptest.Server
	mu       sync.Mutex
	events   []cloudevents.Event
	answers  map[string][]int // event id -> status of each attempt
	requests []*http.Request
	bad      []string // signature failures
	ch       chan struct{}
}

func newCESink(t *testing.T, answer func(e cloudevents.Event, attempt int) protocol.Result) *ceSink {
	t.Helper()
	s := &ceSink{answers: map[string][]int{}, ch: make(chan struct{}, 1000)}
	attempts := map[string]int{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verify.StandardWebhooks(ceSecret, r.Header, body); err != nil {
			s.mu.Lock()
			s.bad = append(s.bad, err.Error())
			s.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		code := http.StatusBadRequest
		if e, err := cehttp.NewEventFromHTTPRequest(r); err == nil {
			s.mu.Lock()
			attempts[e.ID()]++
			n := attempts[e.ID()]
			s.events = append(s.events, *e)
			s.mu.Unlock()
			code = http.StatusAccepted
			var res *cehttp.Result
			if answer != nil && errors.As(answer(*e, n), &res) {
				code = res.StatusCode
			}
		}
		w.WriteHeader(code)
		s.mu.Lock()
		s.requests = append(s.requests, r)
		id := r.Header.Get("webhook-id")
		s.answers[id] = append(s.answers[id], code)
		s.mu.Unlock()
		s.ch <- struct{}{}
	}))
	t.Cleanup(s.Close)
	return s
}

// event waits for the SDK to have parsed the event with this id.
func (s *ceSink) event(t *testing.T, id string) cloudevents.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		for _, e := range s.events {
			if e.ID() == id {
				s.mu.Unlock()
				return e
			}
		}
		s.mu.Unlock()
		select {
		case <-s.ch:
		case <-deadline:
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Fatalf("the SDK parsed no event %s within 20s; answers so far: %v", id, s.answers)
		}
	}
}

// cePipeline is the dispatcher's own assembly (real ingest API, store, engine, sender)
// with endpoints configured as the watch would configure them.
func cePipeline(t *testing.T) (*app.Pipeline, *httptest.Server) {
	t.Helper()
	conf := config.Default()
	conf.Store.DataDir = t.TempDir()
	conf.Delivery.AckWait = 5 * time.Second
	p, err := app.NewPipeline(context.Background(), app.PipelineOptions{
		Config: conf,
		Authorizer: auth.AuthorizerFunc(func(context.Context, *http.Request, string) (auth.Identity, error) {
			return auth.Identity{Name: "system:serviceaccount:shop:producer", Method: auth.MethodToken}, nil
		}),
		Log: testr.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	srv := httptest.NewServer(p.Ingest)
	t.Cleanup(srv.Close)
	return p, srv
}

func ceEndpoint(t *testing.T, p *app.Pipeline, name, url string, format heraldv1.PayloadFormat, patterns ...string) {
	t.Helper()
	sg, err := signer.New(heraldv1.SignatureStandardWebhooks, "", []byte(ceSecret), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Engine.Upsert(delivery.Key{Namespace: "shop", Name: name, UID: "uid-" + name}, delivery.EndpointConfig{
		Target: sender.New(sender.Config{URL: url, Signer: sg, HeaderPrefix: "X-Herald", Format: format, Timeout: 5 * time.Second,
			Policy: outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}}),
		Settings: resolve.Settings{Schedule: []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}},
	})
	p.Router.Set("shop", router.Subscription{Name: "to-" + name, Endpoint: name, Patterns: patterns})
}

func publishRaw(t *testing.T, ingest, contentType string, header http.Header, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ingest+"/v1/namespaces/shop/events", strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer producer")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
}

// TestCloudEvents_TheSDKReceivesBothModesWithEveryAttribute publishes a structured
// CloudEvent (subject, three extensions of three JSON types, trace context), a binary
// one (an extension header that needs percent-encoding) and a Herald JSON event (no
// source) through the real ingest API, and has the official CloudEvents Go SDK receive
// each in binary and in structured mode: it must parse every request as a valid
// CloudEvent carrying the producer's id, type, source, time, subject, extensions and
// trace context and its data byte for byte, each request signed as configured.
func TestCloudEvents_TheSDKReceivesBothModesWithEveryAttribute(t *testing.T) {
	p, ingest := cePipeline(t)
	binary, structured := newCESink(t, nil), newCESink(t, nil)
	ceEndpoint(t, p, "binary", binary.URL, heraldv1.PayloadCloudEventsBinary, "order.*")
	ceEndpoint(t, p, "structured", structured.URL, heraldv1.PayloadCloudEventsStructured, "order.*")

	const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	publishRaw(t, ingest.URL, "application/cloudevents+json", nil, `{"specversion":"1.0","id":"ce-structured-1",
		"source":"https://shop.example.com/orders","type":"order.created","time":"2026-11-30T10:00:00.123Z",
		"subject":"order/42","tenant":"acme corp","priority":5,"urgent":true,"traceparent":"`+traceParent+`",
		"datacontenttype":"application/json","data":{"amount": 1200,  "currency":"EUR"}}`)
	publishRaw(t, ingest.URL, "application/json", http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {"ce-binary-1"}, "Ce-Source": {"/inventory"}, "Ce-Type": {"order.shipped"},
		"Ce-Time": {"2026-11-30T11:00:00Z"}, "Ce-Region": {"eu%20west"}, "Ce-Subject": {"order/43"},
	}, `{"carrier":"dhl"}`)
	publishRaw(t, ingest.URL, "application/json", nil, `{"id":"herald-json-1","type":"order.cancelled","data":{"reason":"late"}}`)

	type want struct {
		id, source, typ, time, subject, data string
		ext                                  map[string]string
	}
	wants := []want{
		{id: "ce-structured-1", source: "https://shop.example.com/orders", typ: "order.created", time: "2026-11-30T10:00:00.123Z",
			subject: "order/42", data: `{"amount": 1200,  "currency":"EUR"}`,
			ext: map[string]string{"tenant": "acme corp", "priority": "5", "urgent": "true", "traceparent": traceParent}},
		{id: "ce-binary-1", source: "/inventory", typ: "order.shipped", time: "2026-11-30T11:00:00Z",
			subject: "order/43", data: `{"carrier":"dhl"}`, ext: map[string]string{"region": "eu west"}},
		{id: "herald-json-1", source: "/herald/namespaces/shop", typ: "order.cancelled", data: `{"reason":"late"}`,
			ext: map[string]string{}},
	}
	for _, sink := range []struct {
		name string
		s    *ceSink
	}{{"binary", binary}, {"structured", structured}} {
		for _, w := range wants {
			e := sink.s.event(t, w.id)
			what := sink.name + " mode, event " + w.id
			if err := e.Validate(); err != nil {
				t.Errorf("%s: the SDK finds the event invalid: %v", what, err)
			}
			if e.SpecVersion() != "1.0" || e.Type() != w.typ || e.Source() != w.source || e.Subject() != w.subject {
				t.Errorf("%s: specversion %q type %q source %q subject %q, want 1.0 %q %q %q", what,
					e.SpecVersion(), e.Type(), e.Source(), e.Subject(), w.typ, w.source, w.subject)
			}
			if w.time != "" {
				if wt, _ := time.Parse(time.RFC3339Nano, w.time); !e.Time().Equal(wt) {
					t.Errorf("%s: time %s, want %s", what, e.Time().Format(time.RFC3339Nano), w.time)
				}
			} else if e.Time().IsZero() {
				t.Errorf("%s: no time; Herald's stamp is the event's time", what)
			}
			if e.DataContentType() != "application/json" {
				t.Errorf("%s: datacontenttype %q, want application/json", what, e.DataContentType())
			}
			if string(e.Data()) != w.data {
				t.Errorf("%s: data %s, want the producer's bytes %s", what, e.Data(), w.data)
			}
			got := map[string]string{}
			for k, v := range e.Extensions() {
				got[k] = fmt.Sprint(v)
			}
			for k, v := range w.ext {
				if sink.name == "binary" {
					// Herald percent-encodes header values as the binding requires
					// (3.1.3.2); sdk-go v2.16.2 does not decode them
					// (cloudevents/sdk-go#1331), so the SDK shows the encoded form, which
					// decodes to the producer's value.
					dec, err := url.PathUnescape(got[k])
					if err != nil || dec != v {
						t.Errorf("%s: extension %s = %q, which does not percent-decode to %q (all: %v)", what, k, got[k], v, got)
					}
					continue
				}
				if got[k] != v {
					t.Errorf("%s: extension %s = %q, want %q (all: %v)", what, k, got[k], v, got)
				}
			}
		}
	}
	for _, sink := range []*ceSink{binary, structured} {
		sink.mu.Lock()
		if len(sink.bad) > 0 {
			t.Errorf("%s: signatures that did not verify: %v", sink.URL, sink.bad)
		}
		for _, r := range sink.requests {
			if r.Header.Get("webhook-signature") == "" {
				t.Errorf("%s: a request without a signature", sink.URL)
			}
		}
		sink.mu.Unlock()
	}
	structured.mu.Lock()
	defer structured.mu.Unlock()
	if ct := structured.requests[0].Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents+json") {
		t.Errorf("structured mode Content-Type %q, want application/cloudevents+json", ct)
	}
}

// TestCloudEvents_AKnativeSinksAnswersMeanWhatTheContractSays delivers to a sink that
// answers as the Knative Eventing data-plane contract says (through the SDK's handler):
// 202 accepts, 5xx and 429 and 404 ask for another attempt, and any other 4xx (400: the
// event is unparsable for this sink, 413: too large) is final, so the event is
// dead-lettered at once with reason Rejected instead of spending the retry schedule on
// an answer that cannot change. Nothing is lost: every event ends delivered or in the
// dead letters.
func TestCloudEvents_AKnativeSinksAnswersMeanWhatTheContractSays(t *testing.T) {
	p, ingest := cePipeline(t)
	sink := newCESink(t, func(e cloudevents.Event, attempt int) protocol.Result {
		switch {
		case e.Type() == "order.invalid":
			return cehttp.NewResult(http.StatusBadRequest, "amount must be positive")
		case e.Type() == "order.huge":
			return cehttp.NewResult(http.StatusRequestEntityTooLarge, "too large")
		case e.Type() == "order.busy" && attempt == 1:
			return cehttp.NewResult(http.StatusServiceUnavailable, "busy")
		case e.Type() == "order.overloaded" && attempt == 1:
			return cehttp.NewResult(http.StatusTooManyRequests, "slow down")
		case e.Type() == "order.early" && attempt == 1:
			return cehttp.NewResult(http.StatusNotFound, "no such endpoint yet")
		}
		return cehttp.NewResult(http.StatusAccepted, "")
	})
	ceEndpoint(t, p, "knative", sink.URL, heraldv1.PayloadCloudEventsBinary, "order.*")
	for _, typ := range []string{"order.ok", "order.invalid", "order.huge", "order.busy", "order.overloaded", "order.early"} {
		publishRaw(t, ingest.URL, "application/json", nil, `{"id":"`+typ+`","type":"`+typ+`","data":{}}`)
	}
	k := delivery.Key{Namespace: "shop", Name: "knative", UID: "uid-knative"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := p.Store.PendingDeliveries(context.Background(), k)
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries still pending after 30s (err %v)", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dead := map[string]queue.DeadLetter{}
	if err := p.Store.DeadLetters(context.Background(), k, func(dl *queue.DeadLetter) bool {
		dead[dl.EventID] = *dl
		return true
	}); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for id, answers := range map[string][]int{
		"order.ok":         {202},
		"order.invalid":    {400},
		"order.huge":       {413},
		"order.busy":       {503, 202},
		"order.overloaded": {429, 202},
		"order.early":      {404, 202},
	} {
		if fmt.Sprint(sink.answers[id]) != fmt.Sprint(answers) {
			t.Errorf("%s: the sink answered %v, want %v", id, sink.answers[id], answers)
		}
	}
	for _, id := range []string{"order.invalid", "order.huge"} {
		dl, ok := dead[id]
		if !ok || dl.Reason != heraldv1.DeadLetterRejected || dl.Attempt != 1 {
			t.Errorf("%s: dead letter %+v (found %v), want reason %s after its first attempt", id, dl, ok, heraldv1.DeadLetterRejected)
		}
	}
	if len(dead) != 2 {
		t.Errorf("dead letters %v, want only the two rejected events", dead)
	}
}
