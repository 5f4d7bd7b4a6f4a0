// Package ingest is the dispatcher's HTTP API through which producers publish events:
//
//	POST /v1/namespaces/{namespace}/events        one event
//	POST /v1/namespaces/{namespace}/events:batch  up to Options.MaxBatchEvents events
//
// The batch route is a custom method (as in Google's AIP-136) rather than
// /events/batch, so that it can never be mistaken for an event named "batch" should
// /events/{id} ever exist.
//
// One event is sent as:
//
//   - Herald JSON, Content-Type application/json:
//     {"id": "...", "type": "order.created", "data": {...}, "created_at": "2026-01-02T15:04:05Z", "source": "..."}
//     where type and data are required;
//   - a CloudEvent 1.0 in structured mode, Content-Type application/cloudevents+json;
//   - a CloudEvent 1.0 in binary mode: ce-specversion, ce-id, ce-source, ce-type and
//     optionally ce-time headers, the body being the event's data with its own JSON
//     Content-Type.
//
// A batch is sent as application/json, either {"events": [...]} or a bare array of
// Herald events, or as application/cloudevents-batch+json (an array of structured
// CloudEvents). All events of a batch are validated first: one invalid event refuses
// the batch with 400 naming its index and field, and nothing is accepted.
//
// Data must be JSON (any JSON value, kept byte-for-byte): data_base64 and binary-mode
// bodies of any other media type are refused with 415, because Herald's deliveries and
// CEL filters work on JSON.
//
// Ids: an event without id gets "evt_" + a ULID (wire.NewEventID). Producers that retry
// should send their own ids, as only a repeated id is recognised as a duplicate.
//
// Answers: 202 {"id", "matched", "duplicate"} for one event, {"results": [...]} in
// input order for a batch, sent only once the Acceptor has stored the events. Every
// error is {"error": {"code", "message", "field"?, "index"?, "offset"?}} (see Error):
// 400 invalid body, 401 no or bad credentials, 403 not allowed in the namespace,
// 404 unknown route, 405 not POST, 408 body not sent in time, 413 body over the limit,
// 415 unsupported Content-Type, 422 an event the namespace's catalog refuses (its type
// is not declared, or its data breaks the type's schema: see catalog.go), 429 queue
// full or too many concurrent requests and 503 storage or authentication unavailable
// (both with Retry-After). Event types starting with "herald." are Herald's own (400).
//
// A refused request whose body was not read is answered without reading it and its
// connection closed: an unauthenticated caller cannot make the dispatcher read, or wait
// for, a body.
package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/tracing"
	"github.com/herald-dev/herald/pkg/wire"
)

// Options configures a Handler.
type Options struct {
	// Acceptor stores accepted events. Required.
	Acceptor Acceptor
	// Authorizer decides who may publish where. Required.
	Authorizer auth.Authorizer
	// Limits bound what one request, and all requests together, may take.
	Limits
	// RetryAfter is sent with 429 and 503 (default 1s, rounded up to whole seconds).
	RetryAfter time.Duration
	// Log receives rejected requests at V(1) and failures at error level. Credentials
	// are never logged.
	Log logr.Logger
	// Now is the clock for created_at and generated ids (default time.Now).
	Now func() time.Time
	// Catalog, when set, checks every event against its namespace's catalog of event
	// types before it is accepted (422 for an undeclared type or data that breaks its
	// schema; a Warning header for a deprecated type).
	Catalog Catalog
	// DeprecatedAccepted, when set, hears of every accepted event of a deprecated type,
	// and CatalogRefused of every request the catalog refused (code is the error code).
	DeprecatedAccepted func(namespace, eventType string)
	CatalogRefused     func(namespace, code string)
	// Tracer, when set, records an ingest and a store span per event, children of the
	// producer's traceparent, and stores the ingest span's context with the event
	// instead, so that the attempts continue the trace through Herald. Nil exports
	// nothing; the producer's traceparent is stored and forwarded either way.
	Tracer *tracing.Tracer
}

// Limits bound the ingest API's requests: the ingest section of the dispatcher's
// configuration (package config documents each limit and its default; zero values are
// the defaults).
type Limits = config.Ingest

// Handler serves the ingest API. It is safe for concurrent use.
type Handler struct {
	opts       Options
	dec        decoder
	mux        *http.ServeMux
	retryAfter string
	slots      chan struct{}
}

// NewHandler returns the ingest API handler.
func NewHandler(o Options) (*Handler, error) {
	if o.Acceptor == nil || o.Authorizer == nil {
		return nil, errors.New("ingest: Options.Acceptor and Options.Authorizer are required")
	}
	o.Limits.SetDefaults()
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{
		slots:      make(chan struct{}, o.MaxConcurrent),
		opts:       o,
		dec:        decoder{now: o.Now, maxBatch: o.MaxBatchEvents},
		mux:        http.NewServeMux(),
		retryAfter: strconv.FormatInt(int64((o.RetryAfter+time.Second-1)/time.Second), 10),
	}
	const events = wire.RouteEvents
	h.mux.HandleFunc("POST "+events, func(w http.ResponseWriter, r *http.Request) { h.publish(w, r, false) })
	h.mux.HandleFunc("POST "+events+":batch", func(w http.ResponseWriter, r *http.Request) { h.publish(w, r, true) })
	// ServeMux answers these itself, but in plain text; producers get JSON everywhere.
	h.mux.HandleFunc(events, h.methodNotAllowed)
	h.mux.HandleFunc(events+":batch", h.methodNotAllowed)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, "", &apiError{status: http.StatusNotFound, body: wire.Error{
			Code: wire.CodeNotFound, Message: fmt.Sprintf("no route for %s; events are POSTed to /v1/namespaces/{namespace}/events or .../events:batch", truncate(r.URL.Path)),
		}})
	})
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		// Refusals must know whether the body was read: one that was not is never
		// drained (a body that never ends would hold the connection), the connection
		// is closed instead.
		r.Body = &trackedBody{ReadCloser: r.Body}
	}
	h.mux.ServeHTTP(w, r)
}

// trackedBody remembers whether its reader reached the end.
type trackedBody struct {
	io.ReadCloser
	done bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.done = true
	}
	return n, err
}

func bodyUnread(r *http.Request) bool {
	b, ok := r.Body.(*trackedBody)
	return ok && !b.done
}

func (h *Handler) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	h.fail(w, r, "", &apiError{status: http.StatusMethodNotAllowed, body: wire.Error{
		Code: wire.CodeMethodNotAllowed, Message: fmt.Sprintf("method %s is not allowed here; use POST", truncate(r.Method)),
	}})
}

// publish runs one request through the gates in an order that does as little work as
// possible for a caller who will be refused: path, credentials (headers only), media
// type, size, then the body.
func (h *Handler) publish(w http.ResponseWriter, r *http.Request, batch bool) {
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		h.fail(w, r, "", &apiError{status: http.StatusTooManyRequests, body: wire.Error{
			Code:    wire.CodeTooManyRequests,
			Message: fmt.Sprintf("the dispatcher is serving its limit of %d concurrent requests; retry later", h.opts.MaxConcurrent),
		}})
		return
	}
	var received time.Time
	if h.opts.Tracer != nil {
		received = time.Now()
	}
	ns := r.PathValue("namespace")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		h.fail(w, r, ns, &apiError{status: http.StatusBadRequest, body: wire.Error{
			Code: wire.CodeInvalidRequest, Field: "namespace",
			Message: fmt.Sprintf("namespace %q is not a valid namespace name: %s", truncate(ns), strings.Join(errs, "; ")),
		}})
		return
	}

	ctx := r.Context()
	id, err := h.opts.Authorizer.Authorize(ctx, r, ns)
	if err != nil {
		h.fail(w, r, ns, h.authError(r, ns, id, err))
		return
	}
	log := h.opts.Log.WithValues("namespace", ns, "identity", id.Name)

	mediaType, aerr := requestMediaType(r)
	if aerr != nil {
		h.fail(w, r, ns, aerr)
		return
	}

	body, aerr := h.readBody(w, r)
	if aerr != nil {
		h.fail(w, r, ns, aerr)
		return
	}
	// JSON text is UTF-8 (RFC 8259), and receivers written from the reference
	// documents decode the body as UTF-8 before checking its signature; encoding/json
	// would let invalid bytes through, so refuse them here rather than fail later.
	if !utf8.Valid(body) {
		h.fail(w, r, ns, invalidJSON(int64(firstInvalidUTF8(body))+1, "the body is not valid UTF-8; JSON must be UTF-8 encoded"))
		return
	}

	var events []Event
	if batch {
		events, aerr = h.dec.batch(mediaType, r.Header, body)
	} else {
		var e Event
		e, aerr = h.dec.single(mediaType, r.Header, body)
		events = []Event{e}
	}
	if aerr != nil {
		h.fail(w, r, ns, aerr)
		return
	}

	warnings, deprecated, aerr := h.checkCatalog(ns, events, batch)
	if aerr != nil {
		h.fail(w, r, ns, aerr)
		return
	}

	// The request's trace context belongs to every event that carries none of its own.
	if tp := r.Header["Traceparent"]; len(tp) > 0 {
		if tp, ts := tracing.Parse(tp[0], r.Header.Get("Tracestate")); tp != "" {
			for i := range events {
				if events[i].TraceParent == "" {
					events[i].TraceParent, events[i].TraceState = tp, ts
				}
			}
		}
	}
	var spans *eventSpans
	if h.opts.Tracer != nil {
		spans = startSpans(ctx, h.opts.Tracer, ns, events, received)
	}
	results, err := h.opts.Acceptor.Accept(auth.NewContext(ctx, id), ns, events)
	if err == nil && len(results) != len(events) {
		err = fmt.Errorf("acceptor returned %d results for %d events", len(results), len(events))
	}
	if spans != nil {
		spans.end(results, err)
	}
	if err != nil {
		h.fail(w, r, ns, h.acceptError(log, ctx.Err(), err))
		return
	}
	log.V(1).Info("accepted events", "count", len(events), "first", events[0].ID)
	setWarnings(w.Header(), warnings)
	if h.opts.DeprecatedAccepted != nil {
		for _, t := range deprecated {
			h.opts.DeprecatedAccepted(ns, t)
		}
	}
	if batch {
		writeJSON(w, http.StatusAccepted, wire.BatchResult{Results: results})
	} else {
		writeJSON(w, http.StatusAccepted, results[0])
	}
}

// requestMediaType returns the lowercased media type of the request's Content-Type.
func requestMediaType(r *http.Request) (string, *apiError) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "", unsupported("Content-Type", "Content-Type is missing; send %s or %s", mediaJSON, mediaCloudEvent)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", unsupported("Content-Type", "Content-Type %q cannot be parsed", truncate(ct))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return "", unsupported("Content-Type", "charset %q is not supported; JSON is UTF-8", truncate(cs))
	}
	return mt, nil
}

// readBody reads the whole body up to the size limit. A declared Content-Length over
// the limit is refused before reading anything.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	max := h.opts.MaxBodyBytes
	tooLarge := &apiError{status: http.StatusRequestEntityTooLarge, body: wire.Error{
		Code: wire.CodePayloadTooLarge, Message: fmt.Sprintf("the request body is larger than the limit of %d bytes", max),
	}}
	if r.ContentLength > max {
		return nil, tooLarge
	}
	// The connection's own deadline, as ReadHeaderTimeout is for the headers; the
	// server sets the next request's deadlines afresh.
	if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.opts.BodyTimeout)); err != nil {
		return nil, &apiError{status: http.StatusInternalServerError, body: wire.Error{
			Code: wire.CodeInternal, Message: "the request body could not be read",
		}}
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		// +1 so that ReadFrom sees EOF without growing the buffer.
		buf.Grow(int(r.ContentLength) + 1)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, max)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return nil, &apiError{status: http.StatusRequestTimeout, body: wire.Error{
				Code: wire.CodeRequestTimeout, Message: fmt.Sprintf("the request body did not arrive within %s", h.opts.BodyTimeout),
			}}
		}
		return nil, &apiError{status: http.StatusBadRequest, body: wire.Error{
			Code: wire.CodeInvalidRequest, Message: "the request body could not be read",
		}}
	}
	return buf.Bytes(), nil
}

func (h *Handler) authError(r *http.Request, ns string, id auth.Identity, err error) *apiError {
	var audience *auth.AudienceError
	switch {
	case errors.As(err, &audience):
		return &apiError{status: http.StatusUnauthorized, body: wire.Error{Code: wire.CodeUnauthenticated, Message: audience.Error()}}
	case errors.Is(err, auth.ErrNoCredentials):
		return &apiError{status: http.StatusUnauthorized, body: wire.Error{
			Code: wire.CodeUnauthenticated, Message: "credentials are missing: send \"Authorization: Bearer <ServiceAccount token or API key>\"",
		}}
	case errors.Is(err, auth.ErrUnauthenticated):
		return &apiError{status: http.StatusUnauthorized, body: wire.Error{
			Code: wire.CodeUnauthenticated, Message: "the bearer token is invalid, expired or revoked",
		}}
	case errors.Is(err, auth.ErrForbidden):
		return &apiError{status: http.StatusForbidden, body: wire.Error{
			Code:    wire.CodeForbidden,
			Message: fmt.Sprintf("%s may not %s %s.%s in namespace %q", describe(id), auth.Verb, auth.Resource, auth.Group, ns),
		}}
	default:
		h.opts.Log.Error(err, "authorizing a producer failed", "namespace", ns, "remote", r.RemoteAddr)
		return &apiError{status: http.StatusServiceUnavailable, body: wire.Error{
			Code: wire.CodeUnavailable, Message: "credentials cannot be checked right now; retry later",
		}}
	}
}

func describe(id auth.Identity) string {
	if id.Name == "" {
		return "this identity"
	}
	return strconv.Quote(id.Name)
}

// acceptError maps an Acceptor failure; ctxErr is the request context's error, set
// when the producer went away, in which case nobody reads the answer anyway.
func (h *Handler) acceptError(log logr.Logger, ctxErr, err error) *apiError {
	switch {
	case errors.Is(err, ErrQueueFull):
		log.V(1).Info("refusing events: queue full")
		return &apiError{status: http.StatusTooManyRequests, body: wire.Error{
			Code: wire.CodeQueueFull, Message: "the event queue is full; retry later",
		}}
	case errors.Is(err, ErrUnavailable):
		// The store says once, at error level, that it cannot take writes; one line per
		// refused request would be thousands a second in an outage.
		log.V(1).Info("refusing events: storage unavailable", "error", err.Error())
		return &apiError{status: http.StatusServiceUnavailable, body: wire.Error{
			Code: wire.CodeUnavailable, Message: "event storage is unavailable; retry later",
		}}
	case ctxErr != nil:
		log.V(1).Info("producer went away before its events were stored", "error", err.Error())
		return &apiError{status: http.StatusServiceUnavailable, body: wire.Error{
			Code: wire.CodeUnavailable, Message: "the request was cancelled before the events were stored",
		}}
	default:
		log.Error(err, "accepting events failed")
		return &apiError{status: http.StatusInternalServerError, body: wire.Error{
			Code: wire.CodeInternal, Message: "the events could not be accepted because of an internal error",
		}}
	}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, ns string, e *apiError) {
	switch e.status {
	case http.StatusUnauthorized:
		// RFC 6750: say which scheme, and that a presented token was the problem.
		v := `Bearer realm="herald"`
		if _, ok := auth.BearerToken(r); ok {
			v += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", v)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", h.retryAfter)
	}
	if bodyUnread(r) {
		// After the handler, net/http reads up to 256 KiB of an unread chunked body
		// looking for its end, even on a connection it will close, and a body that
		// never ends would hold it there: end all reads now instead.
		w.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	if e.status < 500 {
		h.opts.Log.V(1).Info("refused request", "status", e.status, "code", e.body.Code,
			"field", e.body.Field, "namespace", ns, "path", r.URL.Path)
	}
	writeError(w, e.status, e.body)
}

// writeError answers with the JSON error body that every HTTP API of the dispatcher
// uses (package wire; the endpoint API answers with it too), so a client parses one shape.
func writeError(w http.ResponseWriter, status int, e wire.Error) {
	writeJSON(w, status, wire.ErrorResponse{Error: e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types get here, and they always marshal.
		panic(fmt.Sprintf("ingest: marshalling a response: %v", err))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(b)
}
