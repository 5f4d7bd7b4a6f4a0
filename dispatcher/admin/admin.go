// Package admin is the dispatcher's endpoint API: list and replay an endpoint's dead
// letters, replay by selection (dead letters and retained delivered events) in the
// background, read the attempt log, and re-enable an auto-disabled endpoint. It is served
// next to ingest and answers in the same JSON error shape.
//
// Callers authenticate with a ServiceAccount (or user) token, and each action asks the
// API server (SubjectAccessReview) for its own permission on
// webhookendpoints.hooks.herald.dev in the namespace: get to list dead letters and read
// the attempt log, the custom verb replay to replay, the custom verb enable to re-enable
// (PermissionRead, PermissionReplay, PermissionEnable). None of them is update, so the
// right to replay or re-enable is not the right to rewrite an endpoint's spec. Response
// bodies in the attempt log need get on the subresource webhookendpoints/responses
// (PermissionResponses) besides; without it the records come without their bodies and
// the answer says so. The endpoint's receiver documentation (GET .../openapi, docs.go)
// and the attempt summary (summary.go: the attempt log counted per minute, of a
// namespace or of one endpoint) need what listing dead letters needs.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/validation"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/pkg/wire"
)

// Store is what the API needs of the queue: what it reads. Every read names the
// endpoint object by its UID, so nothing of a deleted endpoint is shown for one created
// later under its name.
type Store interface {
	DeadLetters(ctx context.Context, ep queue.Endpoint, fn func(*queue.DeadLetter) bool) error
	Attempts(ctx context.Context, q queue.HistoryQuery, fn func(*queue.AttemptRecord) bool) error
	Delivered(ctx context.Context, q queue.HistoryQuery, fn func(*queue.Retained) bool) error
}

// Replayer runs replays (package replay): in the background (replays), or waited for
// (the dead-letter replay, which answers with what it re-sent).
type Replayer interface {
	Start(ctx context.Context, k delivery.Key, req replay.Request) (int64, error)
	Run(ctx context.Context, k delivery.Key, req replay.Request) (heraldv1.ReplayStatus, error)
}

// Lifecycle re-enables endpoints.
type Lifecycle interface {
	Reenable(ctx context.Context, k delivery.Key, token, why string) (bool, error)
}

// The permissions the API asks for, on webhookendpoints.hooks.herald.dev in the
// endpoint's namespace. The chart's herald-operator ClusterRole holds the first three,
// herald-response-reader the last.
var (
	PermissionRead      = auth.Permission{Verb: wire.VerbRead, Resource: wire.ResourceEndpoints}
	PermissionReplay    = auth.Permission{Verb: wire.VerbReplay, Resource: wire.ResourceEndpoints}
	PermissionEnable    = auth.Permission{Verb: wire.VerbEnable, Resource: wire.ResourceEndpoints}
	PermissionResponses = auth.Permission{Verb: wire.VerbRead, Resource: wire.ResourceEndpoints, Subresource: wire.SubresourceResponses}
)

// ResponseAccess reports whether an authenticated caller may read the response bodies
// of an endpoint's attempt log (PermissionResponses); the error is set when that could
// not be decided.
type ResponseAccess func(ctx context.Context, id auth.Identity, namespace, endpoint string) (bool, error)

// Access decides who may do what; each Authorizer asks for one permission.
type Access struct {
	// Read authorizes listing dead letters and reading the attempt log (PermissionRead),
	// Replay replaying (PermissionReplay) and Enable re-enabling (PermissionEnable).
	Read, Replay, Enable auth.Authorizer
	// Responses decides who may see response bodies; nil withholds them from everyone.
	Responses ResponseAccess
}

// Options configure the API.
type Options struct {
	Store     Store
	Lifecycle Lifecycle
	// Replayer runs replays; nil leaves the replay routes out.
	Replayer Replayer
	// Now is the clock of relative times ("since 2h"; default time.Now).
	Now func() time.Time
	// Lookup returns the endpoint of a name that exists now, with its UID.
	Lookup func(namespace, name string) (delivery.Key, bool)
	// Docs writes an endpoint's receiver documentation; nil leaves the openapi route
	// out.
	Docs Docs
	Access
	Log logr.Logger
}

// Handler serves the API.
type Handler struct {
	opts Options
	mux  *http.ServeMux
}

// NewHandler returns the API handler; Register adds its routes to a mux.
func NewHandler(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{opts: o, mux: http.NewServeMux()}
	h.Register(h.mux)
	return h
}

// Register adds the routes (package wire) to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+wire.RouteDeadLetters, h.list)
	mux.HandleFunc("POST "+wire.RouteEnable, h.enable)
	mux.HandleFunc("GET "+wire.RouteAttempts, h.attempts)
	mux.HandleFunc("GET "+wire.RouteEvent, h.event)
	mux.HandleFunc("GET "+wire.RouteAttemptsSummary, h.summary)
	mux.HandleFunc("GET "+wire.RouteEndpointAttemptsSummary, h.endpointSummary)
	if h.opts.Replayer != nil {
		mux.HandleFunc("POST "+wire.RouteDeadLettersReplay, h.replay)
		mux.HandleFunc("POST "+wire.RouteReplays, h.startReplay)
	}
	if h.opts.Docs != nil {
		mux.HandleFunc("GET "+wire.RouteOpenAPI, h.docs)
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// writeError answers in the error envelope and codes of package wire, which the ingest
// API answers with too.
func writeError(w http.ResponseWriter, status int, code, field, format string, args ...any) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	}
	writeJSON(w, status, wire.ErrorResponse{Error: wire.Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// target validates the path and authorizes the caller; it answers and returns false
// when the request cannot go on.
func (h *Handler) target(w http.ResponseWriter, r *http.Request, az auth.Authorizer, what string) (delivery.Key, auth.Identity, bool) {
	k := delivery.Key{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	if errs := validation.IsDNS1123Label(k.Namespace); len(errs) > 0 {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "namespace", "namespace %q is not a valid namespace name", k.Namespace)
		return k, auth.Identity{}, false
	}
	if errs := validation.IsDNS1123Subdomain(k.Name); len(errs) > 0 {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "name", "endpoint name %q is not a valid object name", k.Name)
		return k, auth.Identity{}, false
	}
	id, ok := h.authorize(w, r, az, k.Namespace, what)
	if !ok {
		return k, id, false
	}
	cur, ok := h.opts.Lookup(k.Namespace, k.Name)
	if !ok {
		writeError(w, http.StatusNotFound, wire.CodeNotFound, "", "WebhookEndpoint %s/%s not found", k.Namespace, k.Name)
		return k, id, false
	}
	// The object that exists now, by its UID: what a deleted one of the same name left
	// is not its data.
	return cur, id, true
}

// caller names who made a request, for the log of what it started.
func caller(id auth.Identity) string {
	if id.Name != "" {
		return "user " + id.Name
	}
	return "an unnamed caller"
}

// authorize answers and returns false when the caller may not act in the namespace.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, az auth.Authorizer, namespace, what string) (auth.Identity, bool) {
	id, err := az.Authorize(r.Context(), r, namespace)
	if err != nil {
		var audience *auth.AudienceError
		switch {
		case errors.As(err, &audience):
			writeError(w, http.StatusUnauthorized, wire.CodeUnauthenticated, "", "%s: %s", what, audience.Error())
		case errors.Is(err, auth.ErrUnauthenticated):
			writeError(w, http.StatusUnauthorized, wire.CodeUnauthenticated, "", "%s needs a bearer token (a ServiceAccount or user token)", what)
		case errors.Is(err, auth.ErrForbidden):
			writeError(w, http.StatusForbidden, wire.CodeForbidden, "", "%v", err)
		default:
			h.opts.Log.Error(err, "authorizing admin request")
			writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "the decision could not be made; retry")
		}
		return id, false
	}
	return id, true
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	k, _, ok := h.target(w, r, h.opts.Read, "listing dead letters")
	if !ok {
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "limit", "limit must be a number from 1 to 1000")
			return
		}
		limit = n
	}
	eventType := r.URL.Query().Get("eventType")
	out := wire.DeadLetterList{Items: []wire.DeadLetter{}}
	err := h.opts.Store.DeadLetters(r.Context(), k, func(dl *queue.DeadLetter) bool {
		if eventType != "" && dl.EventType != eventType {
			return true
		}
		if len(out.Items) == limit {
			out.More = true
			return false
		}
		out.Items = append(out.Items, wire.DeadLetter{
			Sequence: dl.Sequence, EventID: dl.EventID, EventType: dl.EventType, DeliveryID: dl.DeliveryID,
			CreatedAt: dl.CreatedAt, Attempts: dl.Attempt, Reason: dl.Reason, StatusCode: dl.StatusCode,
			Error: dl.Error, DeadAt: dl.At, Replays: dl.Replay,
		})
		return true
	})
	if err != nil {
		h.opts.Log.Error(err, "listing dead letters", "endpoint", k.String())
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "dead letters cannot be read right now; retry")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) replay(w http.ResponseWriter, r *http.Request) {
	k, who, ok := h.target(w, r, h.opts.Replay, "replaying dead letters")
	if !ok {
		return
	}
	var req wire.ReplayRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidJSON, "", "body must be JSON {eventIds?, eventType?, sequences?, all?}: %v", err)
		return
	}
	selects := len(req.EventIDs) > 0 || req.EventType != "" || len(req.Sequences) > 0
	if selects == req.All {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "all",
			"select dead letters with eventIds, eventType or sequences, or set all: true to replay every one (not both)")
		return
	}
	// One kind of selection of the one replayer, waited for.
	sel := replay.Selection{DeadLetters: true, EventIDs: req.EventIDs, EventType: req.EventType, Sequences: req.Sequences}
	st, err := h.opts.Replayer.Run(r.Context(), k, replay.Request{ID: replayID(h.opts.Now()), Selection: sel, By: caller(who)})
	switch {
	case errors.Is(err, replay.ErrBusy):
		writeError(w, http.StatusConflict, wire.CodeConflict, "", "%v; see status.replay and replay again when it is done", err)
		return
	case err != nil && r.Context().Err() != nil:
		// The caller gave up waiting; the replay goes on, followed on status.replay.
		h.opts.Log.Info("the caller of a dead-letter replay stopped waiting; the replay goes on", "endpoint", k.String(), "replay", st.ID)
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "replay %s goes on in the background; see status.replay", st.ID)
		return
	case err != nil:
		h.opts.Log.Error(err, "replaying dead letters", "endpoint", k.String())
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "the replay could not start; retry")
		return
	case st.State == heraldv1.ReplayFailed:
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "replay stopped after %d dead letters; retry to replay the rest", st.Resent)
		return
	}
	writeJSON(w, http.StatusOK, wire.ReplayResponse{Replayed: int(st.Resent)})
}

func (h *Handler) enable(w http.ResponseWriter, r *http.Request) {
	k, id, ok := h.target(w, r, h.opts.Enable, "re-enabling an endpoint")
	if !ok {
		return
	}
	who := "the endpoint API"
	if id.Name != "" {
		who += " by " + id.Name
	}
	was, err := h.opts.Lifecycle.Reenable(r.Context(), k, "", who)
	if err != nil {
		h.opts.Log.Error(err, "re-enabling", "endpoint", k.String())
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "the endpoint state cannot be written right now; retry")
		return
	}
	writeJSON(w, http.StatusOK, wire.EnableResponse{WasDisabled: was})
}
