package client_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/pkg/client"
	"github.com/herald-dev/herald/pkg/wire"
)

// front stands between the client and the dispatcher: it answers the first requests
// itself as told and passes the rest on, keeping the id of every event it saw.
type front struct {
	mu  sync.Mutex
	ids []string
	// script says what to do with request i (0-based): "503", "drop" (pass it on, then
	// break the connection instead of answering), or "" to pass it on.
	script []string
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var e struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &e)
	f.mu.Lock()
	i := len(f.ids)
	f.ids = append(f.ids, e.ID)
	do := ""
	if i < len(f.script) {
		do = f.script[i]
	}
	f.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	switch do {
	case "503":
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"event storage is unavailable"}}`))
	case "drop":
		// The event is stored, and the answer lost on the way back.
		handler.ServeHTTP(&swallow{ResponseWriter: w, header: http.Header{}}, r)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	default:
		handler.ServeHTTP(w, r)
	}
}

// swallow takes an answer and sends nothing of it; the handler still reaches the
// connection (its read deadline) through Unwrap.
type swallow struct {
	http.ResponseWriter
	header http.Header
}

func (s *swallow) Header() http.Header         { return s.header }
func (s *swallow) WriteHeader(int)             {}
func (s *swallow) Write(b []byte) (int, error) { return len(b), nil }
func (s *swallow) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (f *front) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids...)
}

func newFront(t *testing.T, script ...string) (*front, string) {
	f := &front{script: script}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func deliveredTo(r *receiver, id string) int {
	n := 0
	for _, b := range r.received() {
		var env struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(b, &env) == nil && env.ID == id {
			n++
		}
	}
	return n
}

func TestPublish_RetriesWhatMayPassWithTheSameIDAndDeliversOnce(t *testing.T) {
	// Storage unavailable twice, then an answer lost after the event was stored: the
	// fourth attempt is answered as a duplicate, and the receiver gets the event once.
	f, url := newFront(t, "503", "503", "drop")
	var retried []error
	c, err := client.New(url, client.Options{TokenFile: tokenFile,
		Retry: client.Retry{Backoff: time.Millisecond, OnRetry: func(err error) { retried = append(retried, err) }}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Publish(context.Background(), "shop", wire.Event{Type: "invoice.paid", Data: json.RawMessage(`{"amount": 1}`)})
	if err != nil {
		t.Fatalf("publish: %v (retried after %v)", err, retried)
	}
	ids := f.seen()
	if len(ids) != 4 || len(retried) != 3 {
		t.Fatalf("%d attempts, %d retried (%v); want 4 attempts, the first three retried", len(ids), len(retried), retried)
	}
	for _, id := range ids {
		if id != res.ID || id == "" {
			t.Fatalf("attempts carried ids %v; every attempt must carry the id generated before the first (%s)", ids, res.ID)
		}
	}
	if !res.Duplicate || res.Matched != 1 {
		t.Errorf("result %+v; the dispatcher had stored the event before the lost answer, so the retry is a duplicate matched as the first", res)
	}
	deadline := time.Now().Add(30 * time.Second)
	for deliveredTo(billing, res.ID) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a second delivery, were there one, would be on its way
	if n := deliveredTo(billing, res.ID); n != 1 {
		t.Errorf("the receiver got event %s %d times, want once", res.ID, n)
	}
}

func TestPublish_GivesUpAfterItsAttempts(t *testing.T) {
	f, url := newFront(t, "503", "503", "503", "503")
	c, err := client.New(url, client.Options{TokenFile: tokenFile, Retry: client.Retry{Attempts: 3, Backoff: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Publish(context.Background(), "shop", wire.Event{Type: "invoice.paid", Data: json.RawMessage(`{}`)})
	var api *client.APIError
	if !errors.As(err, &api) || api.StatusCode != http.StatusServiceUnavailable || api.Detail.Code != wire.CodeUnavailable {
		t.Fatalf("error %v, want the last 503 with its envelope", err)
	}
	if n := len(f.seen()); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}

func TestPublish_RefusalsAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name, token string
		event       wire.Event
		status      int
		code        string
	}{
		{"a token the dispatcher does not know", "stale", wire.Event{Type: "invoice.paid", Data: json.RawMessage(`{}`)}, 401, wire.CodeUnauthenticated},
		{"an event the API refuses", producerToken, wire.Event{Type: "herald.endpoint.disabled", Data: json.RawMessage(`{}`)}, 400, wire.CodeInvalidEvent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, url := newFront(t)
			c, err := client.New(url, client.Options{Token: tc.token, Retry: client.Retry{Backoff: time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Publish(context.Background(), "shop", tc.event)
			var api *client.APIError
			if !errors.As(err, &api) || api.StatusCode != tc.status || api.Detail.Code != tc.code {
				t.Fatalf("error %v, want %d %s", err, tc.status, tc.code)
			}
			if n := len(f.seen()); n != 1 {
				t.Errorf("%d attempts; a refusal is final", n)
			}
		})
	}
}

func TestPublish_ReadsTheTokenFileForEveryRequest(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("expired\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(server, client.Options{TokenFile: file, Retry: client.Retry{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ev := wire.Event{Type: "invoice.paid", Data: json.RawMessage(`{}`)}
	if _, err := c.Publish(context.Background(), "shop", ev); err == nil {
		t.Fatal("an expired token was accepted")
	}
	// The kubelet renews the projected token in place.
	if err := os.WriteFile(file, []byte(producerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(context.Background(), "shop", ev); err != nil {
		t.Fatalf("after the token file was renewed: %v", err)
	}
}

func TestPublish_DataReachesTheReceiverByteForByte(t *testing.T) {
	c, err := client.New(server, client.Options{TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	// Whitespace, key order, escapes and <, >, & that encoding/json would rewrite.
	data := []byte("{ \"b\": \"<a href='x'>&amp;</a>\",\n  \"a\": \"\\u00e9\", \"n\": 1.50 }")
	res, err := c.Publish(context.Background(), "shop", wire.Event{Type: "invoice.sent", Data: data, CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for deliveredTo(billing, res.ID) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, b := range billing.received() {
		if bytes.Contains(b, []byte(res.ID)) {
			if !bytes.Contains(b, append(append([]byte(`"data":`), data...), '}')) || !bytes.Contains(b, []byte(`"created_at":"2026-01-02T03:04:05.0000006Z"`)) {
				t.Errorf("the receiver got %s; want the data exactly as published and the producer's created_at", b)
			}
			return
		}
	}
	t.Fatalf("event %s never reached the receiver", res.ID)
}

func TestNew_TrustsTheDispatchersCA(t *testing.T) {
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	ev := wire.Event{Type: "invoice.paid", Data: json.RawMessage(`{}`)}

	retried := 0
	untrusting, err := client.New(srv.URL, client.Options{TokenFile: tokenFile, Retry: client.Retry{Backoff: time.Millisecond, OnRetry: func(error) { retried++ }}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = untrusting.Publish(context.Background(), "shop", ev)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("error %v, want the certificate refused (unknown authority)", err)
	}
	if retried != 0 {
		t.Errorf("retried %d times: a certificate refused is refused again", retried)
	}

	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]client.Options{
		"CA":     {TokenFile: tokenFile, CA: caPEM},
		"CAFile": {TokenFile: tokenFile, CAFile: caFile},
	} {
		c, err := client.New(srv.URL, o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Publish(context.Background(), "shop", ev); err != nil {
			t.Errorf("with %s: %v", name, err)
		}
	}
}

func TestNew_RefusesWhatCannotWork(t *testing.T) {
	for name, tc := range map[string]struct {
		server string
		o      client.Options
	}{
		"not a URL":           {"herald-dispatcher:8080", client.Options{}},
		"two credentials":     {server, client.Options{Token: "a", TokenFile: tokenFile}},
		"a CA that is no PEM": {server, client.Options{CA: []byte("not a certificate")}},
		"a CA with Transport": {server, client.Options{CA: []byte("x"), Transport: http.DefaultTransport}},
		"a CA file missing":   {server, client.Options{CAFile: "/nonexistent/ca.crt"}},
	} {
		if _, err := client.New(tc.server, tc.o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
