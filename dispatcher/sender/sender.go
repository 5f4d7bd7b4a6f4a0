// Package sender performs one HTTP attempt of a delivery: it shapes the body (envelope,
// data, a CloudEvent in binary or structured mode, or what the endpoint's transform
// makes of the event), signs it, POSTs it within the endpoint's timeout under the outbound address
// policy, and classifies the answer. It decides nothing about retries; it reports what
// happened and when the receiver asked to be called again.
package sender

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/routing"
	"github.com/herald-dev/herald/internal/version"
)

// Config is everything needed to build a Target. It is produced by dispatcher/resolve,
// which has validated every part of it (URL against the policy, secrets, TLS material),
// so building a Target cannot fail.
type Config struct {
	URL string
	// Signer signs each attempt with the endpoint's secret (and the previous one during
	// a rotation).
	Signer       *signer.Signer
	HeaderPrefix string
	Format       heraldv1.PayloadFormat
	ExtraFields  map[string]string
	// Transform, when set, makes the body (or a CloudEvent's data) from the event.
	Transform *routing.Transform
	// Headers are static headers, values already resolved from Secrets.
	Headers map[string]string
	Timeout time.Duration
	// MaxInFlight sizes the connection pool.
	MaxInFlight int
	// TLS holds extra roots and the client certificate; nil means the system roots.
	TLS *tls.Config
	// Policy guards every dial (the URL itself was checked by the resolver), to the
	// receiver and to the OAuth2 token endpoint alike.
	Policy outbound.Policy
	// Proxy, when set, carries every request of the endpoint (its token requests too)
	// through a CONNECT tunnel to the address the policy judged.
	Proxy *outbound.Proxy
	// OAuth2, when set, puts a bearer token from the client credentials grant on every
	// attempt.
	OAuth2 *OAuth2
	// Now is the clock of token expiry (default time.Now); tests move it.
	Now func() time.Time
	// ResponseBody says which answers' bodies an Outcome keeps for the attempt log
	// (spec.attemptLog.responseBody; the zero value keeps none).
	ResponseBody heraldv1.ResponseBodyPolicy
	// Secrets are the endpoint's own secret values; a kept body has each replaced by a
	// placeholder, and so has the attempt's OAuth2 bearer token.
	Secrets []Secret
}

// Target sends to one endpoint. It is safe for concurrent use and keeps its connections
// alive between attempts.
type Target struct {
	url    string
	signer *signer.Signer
	format heraldv1.PayloadFormat
	extra  []byte // `,"k":"v"...` appended to the envelope
	// transform makes the body from the event; nil sends the producer's data.
	transform *routing.Transform
	headers   http.Header
	prefix    string
	timeout   time.Duration
	tokens    *tokenSource // nil without OAuth2

	// The names of the headers every attempt carries, made once with the prefix.
	hdrEventID, hdrEventType, hdrDeliveryID, hdrAttempt string

	// bodies: which response bodies to keep, with what redacted.
	bodies   heraldv1.ResponseBodyPolicy
	redactor *redactor

	// The HTTP client is made on the first attempt: most endpoints of a large
	// installation are idle, and a transport with its TLS configuration is about half
	// of what an idle endpoint costs.
	tlsCfg    *tls.Config
	policy    outbound.Policy
	proxy     *outbound.Proxy
	conns     int
	once      sync.Once
	client    *http.Client
	transport atomic.Pointer[http.Transport] // for Close, which may race the first attempt
}

// httpClient returns the endpoint's client, making it on first use.
func (t *Target) httpClient() *http.Client {
	t.once.Do(func() {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.tlsCfg != nil {
			tlsCfg = t.tlsCfg.Clone()
		}
		dialer := &net.Dialer{Timeout: t.timeout, KeepAlive: 30 * time.Second}
		dial := t.policy.DialContext(dialer)
		if t.proxy != nil {
			// Through the proxy, but to the address the policy judged (DialThrough).
			dial = t.policy.DialThrough(dialer, t.proxy)
		}
		tr := &http.Transport{
			// No proxy from the environment: a proxy would dial the destination for us
			// and bypass the address policy enforced on our own dials. A configured
			// proxy is reached through the dial function instead.
			Proxy:                  nil,
			DialContext:            dial,
			TLSClientConfig:        tlsCfg,
			ForceAttemptHTTP2:      true,
			MaxIdleConns:           t.conns,
			MaxIdleConnsPerHost:    t.conns,
			MaxConnsPerHost:        t.conns,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    t.timeout,
			ExpectContinueTimeout:  time.Second,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
		}
		t.transport.Store(tr)
		t.client = &http.Client{
			Transport: tr,
			// A redirect is a failure: following it would send a signed payload
			// somewhere the endpoint's author did not name, and past the static URL check.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
	return t.client
}

// roundTrip sends one attempt through the transport itself. http.Client.Do would add
// only what an attempt does without: redirects (refused: see httpClient), credentials
// from the URL (refused by the outbound policy), cookies (none), and to make those
// possible it copies every request's headers. The token exchange keeps the client.
func (t *Target) roundTrip(req *http.Request) (*http.Response, error) {
	t.httpClient()
	return t.transport.Load().RoundTrip(req)
}

// New builds a Target from a resolved configuration.
func New(cfg Config) *Target {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 8
	}
	t := &Target{
		url:       cfg.URL,
		signer:    cfg.Signer,
		format:    cfg.Format,
		transform: cfg.Transform,
		prefix:    cfg.HeaderPrefix,
		timeout:   cfg.Timeout,
		headers:   make(http.Header, len(cfg.Headers)),
		extra:     extraFields(cfg.ExtraFields),
		tlsCfg:    cfg.TLS,
		policy:    cfg.Policy,
		proxy:     cfg.Proxy,
		conns:     cfg.MaxInFlight,
		bodies:    cfg.ResponseBody,
	}
	if t.bodies != "" && t.bodies != heraldv1.ResponseBodyNone {
		t.redactor = newRedactor(cfg.Secrets)
	}
	if t.format == "" {
		t.format = heraldv1.PayloadEnvelope
	}
	if t.prefix == "" {
		t.prefix = heraldv1.DefaultHeaderPrefix
	}
	t.hdrEventID, t.hdrEventType = t.prefix+"-Event-Id", t.prefix+"-Event-Type"
	t.hdrDeliveryID, t.hdrAttempt = t.prefix+"-Delivery-Id", t.prefix+"-Delivery-Attempt"
	for k, v := range cfg.Headers {
		t.headers.Set(k, v)
	}
	if cfg.OAuth2 != nil {
		if cfg.Now == nil {
			cfg.Now = time.Now
		}
		t.tokens = newTokenSource(*cfg.OAuth2, cfg.Now)
	}
	return t
}

// KeepTokens makes t use the cached OAuth2 token of old, the Target it replaces, when
// both use the same credentials: a Target is rebuilt on every change of its endpoint or
// of its Secrets, and only a change of the credentials themselves needs a new token.
// It must be called before t is used.
func (t *Target) KeepTokens(old *Target) {
	if old == nil || t.tokens == nil || old.tokens == nil || old.tokens.fingerprint != t.tokens.fingerprint {
		return
	}
	t.tokens = old.tokens
}

// extraFields encodes the static extra envelope fields, sorted by name so that the body
// is the same on every attempt. The CRD refuses names of the envelope's own fields.
func extraFields(fields map[string]string) []byte {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b bytes.Buffer
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(fields[k])
		b.WriteByte(',')
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	return b.Bytes()
}

// Close releases idle connections.
func (t *Target) Close() {
	if tr := t.transport.Load(); tr != nil {
		tr.CloseIdleConnections()
	}
}

// Timeout of one attempt.
func (t *Target) Timeout() time.Duration { return t.timeout }

// Outcome is what one attempt produced.
type Outcome struct {
	// StatusCode of the answer; 0 when none arrived.
	StatusCode int
	Latency    time.Duration
	// Err is nil exactly when the attempt succeeded (2xx within the timeout).
	Err error
	// RetryAfter is the receiver's Retry-After on 429 or 503, zero otherwise.
	RetryAfter time.Duration
	// Final is set when the receiver's answer says the event will never be accepted, so
	// no retry follows: a CloudEvents receiver's 4xx other than 404, 408, 409 and 429
	// (the Knative Eventing data-plane contract).
	Final bool
	// TimedOut is set when no answer came within the endpoint's timeout.
	TimedOut bool
	// TransformFailed is set when the endpoint's transform failed on the event (Err
	// says why): nothing was sent, and no attempt of the same event can do better.
	TransformFailed bool
	// Header is the receiver's response header (nil when no answer arrived) and Body
	// the first BodySample bytes of its response body, for the attempt log: only when
	// Config.ResponseBody asks for this answer's, with the endpoint's secrets redacted.
	Header http.Header
	Body   []byte
}

// BodySample is how much of a response body an Outcome keeps.
const BodySample = 4 << 10

// OK reports a successful attempt.
func (o Outcome) OK() bool { return o.Err == nil }

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Message is what one attempt sends: the event and which delivery and attempt it is.
type Message struct {
	// Namespace the event was published in.
	Namespace string
	EventID   string
	EventType string
	// Source is the producer's source (CloudEvents), may be empty.
	Source string
	// Attributes are the producer's other CloudEvents attributes (subject, dataschema,
	// extensions), a compact JSON object or nil; CloudEvents formats send them on.
	Attributes []byte
	CreatedAt  time.Time
	// CreatedAtText is the producer's timestamp as written, sent byte for byte; when
	// empty, CreatedAt is written as the reference documents do (UTC, whole seconds).
	CreatedAtText string
	Data          []byte
	DeliveryID    string
	// Attempt counts from 1.
	Attempt int
	// TraceParent and TraceState are the W3C trace context sent with the attempt, so
	// that the receiver's trace continues the producer's; empty sends none.
	TraceParent, TraceState string
}

// Body renders the request body of a message into b. Only a transform can fail.
func (t *Target) Body(b *bytes.Buffer, d *Message) error {
	data := d.Data
	if t.transform != nil {
		if t.format.CloudEvents() {
			// The transform makes the CloudEvent's data; the attributes stay Herald's.
			tb := bufPool.Get().(*bytes.Buffer)
			tb.Reset()
			defer bufPool.Put(tb)
			if err := t.applyTransform(tb, d); err != nil {
				return err
			}
			data = tb.Bytes()
		} else {
			// The transform makes the whole body: a Slack message is nothing but itself.
			return t.applyTransform(b, d)
		}
	}
	switch t.format {
	case heraldv1.PayloadData, heraldv1.PayloadCloudEventsBinary:
		b.Write(data)
		return nil
	case heraldv1.PayloadCloudEventsStructured:
		structuredCloudEvent(b, d, data)
		return nil
	}
	// The envelope is assembled from bytes, not marshalled: data goes out exactly as the
	// producer wrote it, and no JSON round trip is paid per attempt.
	b.WriteString(`{"id":`)
	writeJSONString(b, d.EventID)
	b.WriteString(`,"type":`)
	writeJSONString(b, d.EventType)
	b.WriteString(`,"created_at":`)
	if d.CreatedAtText != "" {
		writeJSONString(b, d.CreatedAtText)
	} else {
		b.WriteByte('"')
		b.WriteString(d.CreatedAt.UTC().Format(time.RFC3339))
		b.WriteByte('"')
	}
	b.WriteString(`,"data":`)
	if len(d.Data) == 0 {
		b.WriteString("null")
	} else {
		b.Write(d.Data)
	}
	b.Write(t.extra)
	b.WriteByte('}')
	return nil
}

// applyTransform writes what the transform makes of the event into b.
func (t *Target) applyTransform(b *bytes.Buffer, d *Message) error {
	var data any
	if len(d.Data) > 0 {
		// Ingest stored valid JSON; a failure leaves data null, which the transform
		// then reports if it reads it.
		_ = json.Unmarshal(d.Data, &data)
	}
	in := routing.EventInput(d.EventID, d.EventType, d.Source, d.CreatedAt, data)
	if err := t.transform.Apply(b, in); err != nil {
		return fmt.Errorf("%w: %w", ErrTransform, err)
	}
	return nil
}

// ErrTransform marks an error of the endpoint's transform.
var ErrTransform = errors.New("spec.payload.transform failed")

func writeJSONString(b *bytes.Buffer, s string) {
	safe := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			safe = false
			break
		}
	}
	if safe {
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
		return
	}
	enc, _ := json.Marshal(s)
	b.Write(enc)
}

// Send performs one attempt.
func (t *Target) Send(ctx context.Context, d *Message) Outcome {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			bufPool.Put(buf)
		}
	}()
	if err := t.Body(buf, d); err != nil {
		return Outcome{Err: err, TransformFailed: true}
	}
	body := buf.Bytes()

	// The timeout bounds the whole attempt, a token exchange included, so that an
	// attempt never outlives what the engine planned for it.
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return Outcome{Err: fmt.Errorf("building request: %w", err)}
	}
	// Sized for what follows (growing the map was a third of an attempt's allocations),
	// and the single values share one backing array.
	h := make(http.Header, len(t.headers)+12)
	req.Header = h
	for k, v := range t.headers {
		h[k] = v
	}
	vals := make([]string, 0, 6)
	switch t.format {
	case heraldv1.PayloadCloudEventsStructured:
		vals = setOne(h, vals, "Content-Type", mediaCloudEventJSON)
	case heraldv1.PayloadCloudEventsBinary:
		vals = setOne(h, vals, "Content-Type", "application/json")
		binaryCloudEventHeaders(h, d)
	default:
		vals = setOne(h, vals, "Content-Type", "application/json")
	}
	vals = setOne(h, vals, "User-Agent", userAgent)
	vals = setOne(h, vals, t.hdrEventID, d.EventID)
	vals = setOne(h, vals, t.hdrEventType, d.EventType)
	vals = setOne(h, vals, t.hdrDeliveryID, d.DeliveryID)
	setOne(h, vals, t.hdrAttempt, strconv.Itoa(d.Attempt))
	if d.TraceParent != "" {
		h["Traceparent"] = []string{d.TraceParent}
		if d.TraceState != "" {
			h["Tracestate"] = []string{d.TraceState}
		}
	}
	t.signer.Sign(h, signer.Message{ID: d.EventID, Timestamp: time.Now(), Body: body, EventType: d.EventType})

	start := time.Now()
	var resp *http.Response
	bearer := ""
	if t.tokens == nil {
		resp, err = t.roundTrip(req)
	} else {
		resp, bearer, err = t.doWithToken(ctx, req)
	}
	out := Outcome{}
	if err != nil {
		out.Latency = time.Since(start)
		if errors.Is(err, ErrOAuth2) {
			out.Err = err
		} else {
			out.Err = describe(err, ctx, t.timeout)
			out.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
		}
		return out
	}
	if keepsBody(t.bodies, resp.StatusCode) {
		r := t.redactor
		if bearer != "" {
			r = r.with(Secret{What: "OAuth2 bearer token", Value: []byte(bearer)})
		}
		out.Body = r.redact(sample(resp))
	}
	discard(resp)
	out.Latency = time.Since(start)
	out.StatusCode, out.Header = resp.StatusCode, resp.Header
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		out.Err = fmt.Errorf("receiver answered %d (redirect to %q); redirects are not followed", resp.StatusCode, redactedLocation(resp.Header.Get("Location")))
	default:
		out.Err = fmt.Errorf("receiver answered %d", resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			out.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		if t.format.CloudEvents() && !knativeRetryable(resp.StatusCode) {
			out.Final = true
			out.Err = fmt.Errorf("receiver answered %d, which a CloudEvents sink answers to an event it will never accept; not retried", resp.StatusCode)
		}
	}
	return out
}

// setOne sets h[k] to the single value v, stored in vals' spare room (allocating only
// when there is none), and returns vals with v.
func setOne(h http.Header, vals []string, k, v string) []string {
	vals = append(vals, v)
	n := len(vals)
	h[k] = vals[n-1 : n : n]
	return vals
}

// doWithToken sends the attempt with a bearer token, and returns the token the answer
// is to. A 401 may mean the receiver no longer accepts a token it was given (revoked, or
// its keys rotated before the token expired): the token is dropped and the attempt sent
// once more with a new one.
func (t *Target) doWithToken(ctx context.Context, req *http.Request) (*http.Response, string, error) {
	tok, err := t.tokens.token(ctx, t.httpClient())
	if err != nil {
		return nil, "", t.tokenError(ctx, err)
	}
	req.Header["Authorization"] = []string{"Bearer " + tok.value}
	resp, err := t.roundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, tok.value, err
	}
	discard(resp)
	again := req.Clone(ctx)
	t.tokens.invalidate(tok)
	if tok, err = t.tokens.token(ctx, t.httpClient()); err != nil {
		return nil, "", fmt.Errorf("%w (receiver answered 401 to the previous token)", t.tokenError(ctx, err))
	}
	if again.Body, err = req.GetBody(); err != nil {
		return nil, "", fmt.Errorf("building request: %w", err)
	}
	again.Header["Authorization"] = []string{"Bearer " + tok.value}
	resp, err = t.roundTrip(again)
	return resp, tok.value, err
}

func (t *Target) tokenError(ctx context.Context, err error) error {
	if errors.Is(err, ErrOAuth2) {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: no token within the %s timeout", ErrOAuth2, t.timeout)
	}
	return fmt.Errorf("%w: %w", ErrOAuth2, err)
}

// discard drains a bounded amount of the body so the connection can be reused, without
// letting a receiver make us read an endless body, and closes it.
// sample reads the start of a response body; an empty body costs no allocation (the
// read buffer comes from a pool: a buffer passed to a Reader escapes to the heap).
func sample(resp *http.Response) []byte {
	buf := samplePool.Get().(*[BodySample]byte)
	defer samplePool.Put(buf)
	n, _ := io.ReadFull(resp.Body, buf[:])
	if n == 0 {
		return nil
	}
	return bytes.Clone(buf[:n])
}

var samplePool = sync.Pool{New: func() any { return new([BodySample]byte) }}

func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// describe turns a transport error into a message that is useful on a status and never
// repeats a header (and so never a signature).
func describe(err error, ctx context.Context, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within the %s timeout", timeout)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return fmt.Errorf("request failed: %w", err)
}

func redactedLocation(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return ""
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// ParseRetryAfter reads a Retry-After value (delay seconds or an HTTP date).
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		if d := at.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

var userAgent = version.UserAgent("dispatcher")
