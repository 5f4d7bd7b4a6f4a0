package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/herald-dev/herald/pkg/wire"
)

// Endpoint is the endpoint API of one WebhookEndpoint. Each call needs a token (not an
// API key) whose user may do it on webhookendpoints.hooks.herald.dev in the namespace:
// get to read (dead letters, attempts, documentation), the custom verbs replay and
// enable to replay and re-enable (wire.VerbRead, wire.VerbReplay, wire.VerbEnable; the
// chart's herald-operator ClusterRole holds them). Calls are not retried.
type Endpoint struct {
	c               *Client
	namespace, name string
}

// Endpoint returns the endpoint API of the WebhookEndpoint name in namespace.
func (c *Client) Endpoint(namespace, name string) *Endpoint {
	return &Endpoint{c: c, namespace: namespace, name: name}
}

// Namespace and Name say which WebhookEndpoint e is.
func (e *Endpoint) Namespace() string { return e.namespace }
func (e *Endpoint) Name() string      { return e.name }

func (e *Endpoint) path(suffix string) string { return wire.EndpointPath(e.namespace, e.name, suffix) }

// DeadLetterQuery narrows a listing of dead letters.
type DeadLetterQuery struct {
	// Limit is how many at most (1 to 1000; 0 is the dispatcher's default, 100).
	Limit int
	// EventType keeps the dead letters of this event type only (exact).
	EventType string
}

// DeadLetters lists the endpoint's dead letters, oldest first; More says the limit cut
// the list short.
func (e *Endpoint) DeadLetters(ctx context.Context, q DeadLetterQuery) (wire.DeadLetterList, error) {
	v := url.Values{}
	setLimit(v, q.Limit)
	if q.EventType != "" {
		v.Set("eventType", q.EventType)
	}
	var out wire.DeadLetterList
	err := e.c.call(ctx, request{method: http.MethodGet, path: e.path("/dead-letters"), query: v}, &out)
	return out, err
}

// ReplayDeadLetters delivers the selected dead letters again, with their original
// event ids, and answers once they are queued: how many. All must be set to replay every
// one. While another replay of the endpoint runs the answer is 409 (wire.CodeConflict).
func (e *Endpoint) ReplayDeadLetters(ctx context.Context, r wire.ReplayRequest) (wire.ReplayResponse, error) {
	var out wire.ReplayResponse
	err := e.post(ctx, "/dead-letters:replay", r, &out)
	return out, err
}

// Replay starts a replay by selection in the background: the events accepted in a time
// range, of a type or with given ids, from the dead letters and/or the retained
// delivered events (wire.SourceDeadLetters, wire.SourceDelivered). Its progress is on
// the WebhookEndpoint's status.replay under the returned id.
func (e *Endpoint) Replay(ctx context.Context, r wire.ReplaySelectionRequest) (wire.ReplayStarted, error) {
	var out wire.ReplayStarted
	err := e.post(ctx, "/replays", r, &out)
	return out, err
}

// AttemptQuery narrows a reading of the attempt log.
type AttemptQuery struct {
	// Limit is how many at most (1 to 1000; 0 is the dispatcher's default, 100).
	Limit int
	// EventID keeps the attempts of this event only.
	EventID string
	// Since keeps the attempts at or after this time: RFC 3339, or a duration before
	// now ("1h").
	Since string
	// Failed keeps the failed attempts only.
	Failed bool
}

// Attempts reads the endpoint's attempt log, oldest first. Response bodies come only to
// those who may get webhookendpoints/responses; BodiesWithheld says when they were left
// out.
func (e *Endpoint) Attempts(ctx context.Context, q AttemptQuery) (wire.AttemptList, error) {
	v := url.Values{}
	setLimit(v, q.Limit)
	if q.EventID != "" {
		v.Set("eventId", q.EventID)
	}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Failed {
		v.Set("failed", "true")
	}
	var out wire.AttemptList
	err := e.c.call(ctx, request{method: http.MethodGet, path: e.path("/attempts"), query: v}, &out)
	return out, err
}

// AttemptSummary counts the endpoint's attempt log per minute over the last minutes
// (1 to 1440; 0 is the dispatcher's default, 60), oldest first, minutes without
// attempts included.
func (e *Endpoint) AttemptSummary(ctx context.Context, minutes int) (wire.AttemptSummary, error) {
	var out wire.AttemptSummary
	err := e.c.call(ctx, request{method: http.MethodGet, path: e.path("/attempts:summary"), query: summaryQuery(minutes)}, &out)
	return out, err
}

// AttemptSummary counts the attempt log of every endpoint of namespace per minute, in
// one request (what a chart of a namespace needs), as Endpoint.AttemptSummary does.
func (c *Client) AttemptSummary(ctx context.Context, namespace string, minutes int) (wire.AttemptSummary, error) {
	var out wire.AttemptSummary
	err := c.call(ctx, request{method: http.MethodGet, path: wire.AttemptsSummaryPath(namespace), query: summaryQuery(minutes)}, &out)
	return out, err
}

func summaryQuery(minutes int) url.Values {
	v := url.Values{}
	if minutes > 0 {
		v.Set("minutes", strconv.Itoa(minutes))
	}
	return v
}

// Enable re-enables the endpoint after an auto-disable: its held deliveries flow again.
// WasDisabled says whether it was disabled.
func (e *Endpoint) Enable(ctx context.Context) (wire.EnableResponse, error) {
	var out wire.EnableResponse
	err := e.c.call(ctx, request{method: http.MethodPost, path: e.path("/enable")}, &out)
	return out, err
}

// OpenAPI returns the endpoint's receiver documentation: an OpenAPI 3.1 document of
// every event type it receives, with the request exactly as Herald sends it and how to
// verify its signature.
func (e *Endpoint) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	err := e.c.call(ctx, request{method: http.MethodGet, path: e.path("/openapi")}, &out)
	return out, err
}

func (e *Endpoint) post(ctx context.Context, suffix string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return e.c.call(ctx, request{method: http.MethodPost, path: e.path(suffix), body: body}, out)
}

// EventHistory reads what Herald remembers of one event of namespace: each endpoint it
// went to, with every attempt (wire.VerbRead on webhookendpoints in the namespace).
func (c *Client) EventHistory(ctx context.Context, namespace, id string) (wire.EventHistory, error) {
	var out wire.EventHistory
	err := c.call(ctx, request{method: http.MethodGet, path: wire.EventPath(namespace, id)}, &out)
	return out, err
}

func setLimit(v url.Values, limit int) {
	if limit != 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
}
