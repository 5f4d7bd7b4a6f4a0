package framework

import (
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/refreceiver"
	"github.com/herald-dev/herald/pkg/verify"
)

// Receiver is one webhook receiver. It verifies each request twice with the endpoint's
// signing secret: as a user of pkg/verify would, and with the receiver transcribed from
// the style's reference document (internal/refreceiver, which shares no code with
// Herald), so that a misreading shared by Herald's signer and its verifier cannot pass.
// It answers 204 when both accept, 401 when either refuses, 500 while it is told to
// fail, or what its Respond function says.
type Receiver struct {
	Endpoint string
	Style    heraldv1.SignatureStyle
	Prefix   string
	srv      *httptest.Server

	mu            sync.Mutex
	secret        string
	authorization string // expected Authorization header; "" = not checked
	failing       bool
	respond       func(Request) (int, string)
	requests      []Request
}

// Request is one request a Receiver got and how it answered.
type Request struct {
	EventID, Attempt string
	Status           int
	// Problem says why it was refused, when it was.
	Problem string
	Header  http.Header
	Body    []byte
}

// NewReceiver returns the receiver of an endpoint with the given signature style and
// header prefix, without a server: it is an http.Handler to mount (Serve starts one).
func NewReceiver(endpoint string, style heraldv1.SignatureStyle, prefix string) *Receiver {
	return &Receiver{Endpoint: endpoint, Style: style, Prefix: prefix}
}

// ReceiverFor starts a receiver on 127.0.0.1 for the endpoint's signature settings;
// its URL is <server>/hooks/<endpoint name>.
func ReceiverFor(t testing.TB, ep *heraldv1.WebhookEndpoint) *Receiver {
	r := NewReceiver(ep.Name, ep.Spec.SignatureStyle(), ep.Spec.HeaderPrefix())
	r.Serve(t)
	return r
}

// Serve starts a server on 127.0.0.1 for the receiver, closed when the test ends.
func (r *Receiver) Serve(t testing.TB) {
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
}

// URL is where Herald should deliver.
func (r *Receiver) URL() string { return r.srv.URL + "/hooks/" + r.Endpoint }

// SetSecret sets the secret (for ed25519, the public key) requests are verified with.
func (r *Receiver) SetSecret(s string) { r.mu.Lock(); r.secret = s; r.mu.Unlock() }

// Secret is the secret requests are verified with.
func (r *Receiver) Secret() string { r.mu.Lock(); defer r.mu.Unlock(); return r.secret }

// SetAuthorization makes the receiver refuse requests without this Authorization.
func (r *Receiver) SetAuthorization(s string) { r.mu.Lock(); r.authorization = s; r.mu.Unlock() }

// SetFailing makes the receiver answer 500 (true) or verify again (false).
func (r *Receiver) SetFailing(f bool) { r.mu.Lock(); r.failing = f; r.mu.Unlock() }

// SetRespond makes the receiver answer verified requests with fn's status and body
// (a receiver that echoes what it got, say); nil restores 204.
func (r *Receiver) SetRespond(fn func(Request) (int, string)) {
	r.mu.Lock()
	r.respond = fn
	r.mu.Unlock()
}

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	rec := Request{Header: req.Header.Clone(), Body: body}
	for name, vals := range req.Header {
		switch {
		case strings.HasSuffix(name, "-Event-Id"):
			rec.EventID = vals[0]
		case strings.HasSuffix(name, "-Delivery-Attempt"):
			rec.Attempt = vals[0]
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.verify(req.Header, body)
	answer := ""
	switch {
	case r.failing:
		rec.Status = http.StatusInternalServerError
	case err != nil:
		rec.Status, rec.Problem = http.StatusUnauthorized, err.Error()
	case r.authorization != "" && req.Header.Get("Authorization") != r.authorization:
		rec.Status, rec.Problem = http.StatusUnauthorized, "wrong Authorization header"
	case r.respond != nil:
		rec.Status, answer = r.respond(rec)
	default:
		rec.Status = http.StatusNoContent
	}
	r.requests = append(r.requests, rec)
	w.WriteHeader(rec.Status)
	if answer != "" {
		_, _ = io.WriteString(w, answer)
	}
}

// verify checks one request with pkg/verify and with the reference receiver of the
// style; either refusing is a refusal, named after the one that refused.
func (r *Receiver) verify(h http.Header, body []byte) error {
	var err error
	switch r.Style {
	case heraldv1.SignatureStandardWebhooks:
		err = verify.StandardWebhooks(r.secret, h, body)
	case heraldv1.SignatureStandardWebhooksEd25519:
		// r.secret holds the endpoint's public key: all its receiver ever has.
		err = verify.StandardWebhooksEd25519(r.secret, h, body)
	case heraldv1.SignatureTimestampedPrefixedHex:
		err = verify.TimestampedPrefixedHex(r.secret, r.Prefix, h, body)
	case heraldv1.SignatureBodyPrefixedHex:
		err = verify.BodyPrefixedHex(r.secret, r.Prefix, h, body)
	case heraldv1.SignatureTimestampedHex:
		err = verify.TimestampedHex(r.secret, r.Prefix, h, body)
	default:
		return fmt.Errorf("unknown style %q", r.Style)
	}
	if err != nil {
		return fmt.Errorf("pkg/verify: %w", err)
	}
	if !r.Reference(r.secret, r.Prefix+"-Signature", h, body) {
		return fmt.Errorf("the %s reference receiver (internal/refreceiver) refused it", r.Style)
	}
	return nil
}

// Reference reports whether the receiver transcribed from the style's reference
// document accepts the request with secret, reading the signature from signatureHeader
// (the document's header, or its -Previous twin during a rotation).
func (r *Receiver) Reference(secret, signatureHeader string, h http.Header, body []byte) bool {
	ts := r.Prefix + "-Timestamp"
	switch r.Style {
	case heraldv1.SignatureStandardWebhooks:
		return refreceiver.StandardWebhooks(secret, h, body, time.Now())
	case heraldv1.SignatureStandardWebhooksEd25519:
		return refreceiver.StandardWebhooksEd25519(secret, h, body, time.Now())
	case heraldv1.SignatureTimestampedPrefixedHex:
		return refreceiver.Tork(secret, h, body, signatureHeader, ts)
	case heraldv1.SignatureBodyPrefixedHex:
		return refreceiver.Bolor(secret, h, body, signatureHeader) && refreceiver.BolorNode(secret, h, body, signatureHeader)
	case heraldv1.SignatureTimestampedHex:
		// The document's handler dispatches on X-…-Event; it must name the event's type.
		event, ok := refreceiver.Praxis(secret, h, body, signatureHeader, ts, r.Prefix+"-Event", time.Now())
		return ok && event != "" && event == h.Get(r.Prefix+"-Event-Type")
	}
	return false
}

// Attempts returns every request carrying the event id.
func (r *Receiver) Attempts(eventID string) []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Request
	for _, q := range r.requests {
		if q.EventID == eventID {
			out = append(out, q)
		}
	}
	return out
}

// Requests returns every request so far.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.requests...)
}

// Delivered returns the accepted (verified, 2xx) request of the event, if any.
func (r *Receiver) Delivered(eventID string) (Request, bool) {
	for _, q := range r.Attempts(eventID) {
		if q.Problem == "" && q.Status >= 200 && q.Status < 300 {
			return q, true
		}
	}
	return Request{}, false
}

// Refusals describes requests refused for a bad signature or header, which must not
// happen: every delivery Herald makes has to verify.
func (r *Receiver) Refusals() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, q := range r.requests {
		if q.Problem != "" {
			out = append(out, fmt.Sprintf("%s (event %s): %s", r.Endpoint, q.EventID, q.Problem))
		}
	}
	return out
}

// Recorder is a server that keeps every request whatever it holds, and answers what it
// is told: the receiver of someone who should get nothing, whose every byte is evidence.
type Recorder struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []Recorded
	answer   func(*http.Request) (int, string)
}

// Recorded is one request as it arrived.
type Recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
	// PeerCertificates are the client certificates presented over TLS.
	PeerCertificates []*x509.Certificate
}

// Raw is the request as text (request line, headers, body), to search for what must
// never arrive.
func (q Recorded) Raw() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", q.Method, q.Path)
	_ = q.Header.Write(&b)
	b.WriteString("\n")
	b.Write(q.Body)
	return b.String()
}

// NewRecorder starts a recorder on 127.0.0.1 (plain http) answering 200 {}.
func NewRecorder(t testing.TB) *Recorder {
	rec := &Recorder{}
	rec.srv = httptest.NewServer(rec)
	t.Cleanup(rec.srv.Close)
	return rec
}

// NewTLSRecorder starts a recorder serving https with the given server, which asks
// for (and keeps) a client certificate without verifying it.
func NewTLSRecorder(t testing.TB, configure func(*httptest.Server)) *Recorder {
	rec := &Recorder{}
	rec.srv = httptest.NewUnstartedServer(rec)
	configure(rec.srv)
	rec.srv.StartTLS()
	t.Cleanup(rec.srv.Close)
	return rec
}

// URL is the recorder's base URL.
func (rec *Recorder) URL() string { return rec.srv.URL }

// Server is the underlying server (its TLS certificate, for a CA bundle).
func (rec *Recorder) Server() *httptest.Server { return rec.srv }

// SetAnswer sets what the recorder answers; nil answers 200 {}.
func (rec *Recorder) SetAnswer(fn func(*http.Request) (int, string)) {
	rec.mu.Lock()
	rec.answer = fn
	rec.mu.Unlock()
}

func (rec *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	q := Recorded{Method: req.Method, Path: req.URL.RequestURI(), Header: req.Header.Clone(), Body: body}
	if req.TLS != nil {
		q.PeerCertificates = req.TLS.PeerCertificates
	}
	rec.mu.Lock()
	rec.requests = append(rec.requests, q)
	answer := rec.answer
	rec.mu.Unlock()
	status, out := http.StatusOK, "{}"
	if answer != nil {
		status, out = answer(req)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, out)
}

// Requests returns the requests whose path starts with prefix ("" for all).
func (rec *Recorder) Requests(prefix string) []Recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []Recorded
	for _, q := range rec.requests {
		if strings.HasPrefix(q.Path, prefix) {
			out = append(out, q)
		}
	}
	return out
}
