package wire

import "time"

// The permissions the endpoint API asks the API server for (SubjectAccessReview), on
// ResourceEndpoints in group hooks.herald.dev in the endpoint's namespace: VerbRead to
// list dead letters, read the attempt log, an event's history and the receiver
// documentation; the custom verbs VerbReplay and VerbEnable to replay and to re-enable
// (neither is update, so they never grant rewriting a spec); and VerbRead on
// SubresourceResponses to see receivers' response bodies in the attempt log. The chart's
// herald-operator ClusterRole holds the first three, herald-response-reader the last.
const (
	ResourceEndpoints    = "webhookendpoints"
	SubresourceResponses = "responses"
	VerbRead             = "get"
	VerbReplay           = "replay"
	VerbEnable           = "enable"
)

// DeadLetter is one dead letter (RouteDeadLetters). The payload is not included: it may
// hold personal data, and the event id is enough to find it at the producer.
type DeadLetter struct {
	Sequence   uint64    `json:"sequence"`
	EventID    string    `json:"eventId"`
	EventType  string    `json:"eventType"`
	DeliveryID string    `json:"deliveryId"`
	CreatedAt  time.Time `json:"createdAt"`
	Attempts   int       `json:"attempts"`
	Reason     string    `json:"reason"`
	StatusCode int       `json:"statusCode,omitempty"`
	Error      string    `json:"error,omitempty"`
	DeadAt     time.Time `json:"deadAt"`
	Replays    int       `json:"replays,omitempty"`
}

// DeadLetterList is the answer to a listing of dead letters, oldest first. The query
// takes limit (1 to 1000, default 100) and eventType (exact).
type DeadLetterList struct {
	Items []DeadLetter `json:"items"`
	// More is true when the limit cut the list short.
	More bool `json:"more"`
}

// ReplayRequest selects dead letters to replay and wait for (RouteDeadLettersReplay).
// All must be set to replay everything, so an empty body never replays a whole backlog
// by accident.
type ReplayRequest struct {
	EventIDs  []string `json:"eventIds,omitempty"`
	EventType string   `json:"eventType,omitempty"`
	Sequences []uint64 `json:"sequences,omitempty"`
	All       bool     `json:"all,omitempty"`
}

// ReplayResponse says how many dead letters were replayed.
type ReplayResponse struct {
	Replayed int `json:"replayed"`
}

// The sources a replay by selection reads (ReplaySelectionRequest.From).
const (
	SourceDeadLetters = "dead-letters"
	SourceDelivered   = "delivered"
)

// ReplaySelectionRequest starts a replay by selection in the background (RouteReplays).
// Since and Until are RFC 3339 times or durations before now ("2h"); they select the
// events accepted in [since, until). From names the sources (SourceDeadLetters,
// SourceDelivered; default dead letters). Nothing selects everything only with All, so
// that an empty body never re-sends a whole history by accident.
type ReplaySelectionRequest struct {
	Since     string   `json:"since,omitempty"`
	Until     string   `json:"until,omitempty"`
	EventType string   `json:"eventType,omitempty"`
	EventIDs  []string `json:"eventIds,omitempty"`
	From      []string `json:"from,omitempty"`
	All       bool     `json:"all,omitempty"`
}

// ReplayStarted answers a replay's start (202); its progress is on the endpoint's
// status.replay under the same id.
type ReplayStarted struct {
	ID        string `json:"id"`
	Selection string `json:"selection"`
	Selected  int64  `json:"selected"`
}

// EnableResponse says whether the endpoint was disabled before (RouteEnable).
type EnableResponse struct {
	WasDisabled bool `json:"wasDisabled"`
}

// Attempt is one attempt of the attempt log.
type Attempt struct {
	Endpoint       string            `json:"endpoint"`
	EventID        string            `json:"eventId"`
	EventType      string            `json:"eventType"`
	DeliveryID     string            `json:"deliveryId"`
	Attempt        int               `json:"attempt"`
	Replay         int               `json:"replay,omitempty"`
	Time           time.Time         `json:"time"`
	DurationMillis float64           `json:"durationMs"`
	StatusCode     int               `json:"statusCode,omitempty"`
	Error          string            `json:"error,omitempty"`
	Headers        map[string]string `json:"headers,omitempty"`
	Body           string            `json:"body,omitempty"`
	Final          bool              `json:"final,omitempty"`
}

// AttemptList is the answer to a reading of the attempt log (RouteAttempts), oldest
// first. The query takes limit (1 to 1000, default 100), eventId, since (an RFC 3339
// time or a duration before now) and failed=true (failed attempts only).
type AttemptList struct {
	Items []Attempt `json:"items"`
	// More is true when the limit cut the list short.
	More bool `json:"more"`
	// BodiesWithheld, when set, says that records came without the response bodies
	// stored with them, and why: the caller may not read them (SubresourceResponses).
	BodiesWithheld string `json:"bodiesWithheld,omitempty"`
}

// The states of an event's delivery to one endpoint (EventDeliveries.State), after the
// last attempt logged.
const (
	StateDelivered    = "Delivered"
	StateDeadLettered = "DeadLettered"
	StateRetrying     = "Retrying"
)

// EventHistory is what Herald remembers of one event (RouteEvent): each endpoint it
// went to, with every attempt. The payload is not included (see DeadLetter).
type EventHistory struct {
	EventID    string            `json:"eventId"`
	EventType  string            `json:"eventType,omitempty"`
	CreatedAt  *time.Time        `json:"createdAt,omitempty"`
	AcceptedAt *time.Time        `json:"acceptedAt,omitempty"`
	Deliveries []EventDeliveries `json:"deliveries"`
	// BodiesWithheld: as in AttemptList.
	BodiesWithheld string `json:"bodiesWithheld,omitempty"`
}

// EventDeliveries is the delivery of an event to one endpoint.
type EventDeliveries struct {
	Endpoint   string `json:"endpoint"`
	DeliveryID string `json:"deliveryId"`
	// State is StateDelivered, StateDeadLettered or StateRetrying.
	State       string     `json:"state"`
	DeliveredAt *time.Time `json:"deliveredAt,omitempty"`
	Attempts    []Attempt  `json:"attempts"`
}

// AttemptSummary counts the attempts of a window per minute (RouteAttemptsSummary,
// RouteEndpointAttemptsSummary), oldest first; minutes
// without attempts are present with zero counts, so a chart needs no arithmetic on time.
type AttemptSummary struct {
	Since time.Time `json:"since"`
	// StepSeconds is the width of a bucket.
	StepSeconds int             `json:"stepSeconds"`
	Buckets     []SummaryBucket `json:"buckets"`
	// Truncated is set when the window held more attempts than a summary reads; the
	// buckets after the last one counted are then short.
	Truncated bool `json:"truncated,omitempty"`
}

// SummaryBucket is one minute of attempts.
type SummaryBucket struct {
	Start time.Time `json:"start"`
	// Delivered counts successful attempts (2xx), Failed the others.
	Delivered int `json:"delivered"`
	Failed    int `json:"failed"`
	// MeanMillis and MaxMillis are the attempts' durations; 0 without attempts.
	MeanMillis float64 `json:"meanMs"`
	MaxMillis  float64 `json:"maxMs"`
}
