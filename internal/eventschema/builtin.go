package eventschema

import (
	"slices"
	"strings"
	"sync"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// Definition is one event type of a catalog: a WebhookEventType, or one of Herald's own.
type Definition struct {
	Type        string
	Description string
	// Schema of the event's data; nil when none compiled.
	Schema     *Schema
	Examples   []any
	Deprecated bool
	// DeprecationMessage says what to send instead.
	DeprecationMessage string
	// Builtin marks Herald's own operational events.
	Builtin bool
}

// The payloads of Herald's operational events. Every one names the endpoint it is about
// (namespace and name, never its URL, which may hold a credential) and says when; they
// are what the README documents and what `herald docs` publishes.
var builtinSources = []struct{ typ, description, schema, example string }{
	{heraldv1.EventTypeEndpointDisabled,
		"Herald auto-disabled a WebhookEndpoint: its deliveries are held (not lost) until a person re-enables it. Sent once per disablement, by the dispatcher replica that disabled it.",
		`{"type":"object","required":["namespace","endpoint","reason","message","consecutiveFailures","disabledAt"],
		  "properties":{
		    "namespace":{"type":"string","description":"Namespace of the endpoint."},
		    "endpoint":{"type":"string","description":"Name of the WebhookEndpoint."},
		    "reason":{"enum":["ConsecutiveFailures","Gone"],"description":"ConsecutiveFailures: autoDisable.afterConsecutiveFailures failed attempts in a row; Gone: the receiver answered 410."},
		    "message":{"type":"string"},
		    "consecutiveFailures":{"type":"integer","minimum":0},
		    "disabledAt":{"type":"string","format":"date-time"}}}`,
		`{"namespace":"shop","endpoint":"billing","reason":"ConsecutiveFailures","message":"5 consecutive failed attempts; last: HTTP 503","consecutiveFailures":5,"disabledAt":"2026-11-30T10:14:02Z"}`},
	{heraldv1.EventTypeEndpointEnabled,
		"A disabled WebhookEndpoint was re-enabled (annotation, spec change or the endpoint API): its held deliveries flow again, oldest first.",
		`{"type":"object","required":["namespace","endpoint","cause","enabledAt"],
		  "properties":{
		    "namespace":{"type":"string"},
		    "endpoint":{"type":"string"},
		    "cause":{"type":"string","description":"What re-enabled it, e.g. annotation hooks.herald.dev/reenable=1733480000."},
		    "enabledAt":{"type":"string","format":"date-time"}}}`,
		`{"namespace":"shop","endpoint":"billing","cause":"annotation hooks.herald.dev/reenable=1733480000","enabledAt":"2026-11-30T11:02:40Z"}`},
	{heraldv1.EventTypeEndpointRecovered,
		"A WebhookEndpoint whose last attempts failed delivered successfully again. At most one per endpoint per aggregation interval.",
		`{"type":"object","required":["namespace","endpoint","failedAttempts","recoveredAt"],
		  "properties":{
		    "namespace":{"type":"string"},
		    "endpoint":{"type":"string"},
		    "failedAttempts":{"type":"integer","minimum":1,"description":"Failed attempts in a row before this success."},
		    "recoveredAt":{"type":"string","format":"date-time"}}}`,
		`{"namespace":"shop","endpoint":"billing","failedAttempts":3,"recoveredAt":"2026-11-30T10:20:12Z"}`},
	{heraldv1.EventTypeDeliveryDeadLettered,
		"Deliveries to a WebhookEndpoint were dead-lettered (retries exhausted, or held too long or in too great numbers). Aggregated: the first dead letter of an endpoint is sent at once, the ones after it within the aggregation interval in one event with their count.",
		`{"type":"object","required":["namespace","endpoint","count","events","since","until"],
		  "properties":{
		    "namespace":{"type":"string"},
		    "endpoint":{"type":"string"},
		    "count":{"type":"integer","minimum":1,"description":"Dead letters this event reports."},
		    "since":{"type":"string","format":"date-time"},
		    "until":{"type":"string","format":"date-time"},
		    "events":{"type":"array","maxItems":10,"description":"The first dead letters of the count (at most 10).",
		      "items":{"type":"object","required":["eventId","eventType","attempts","reason"],
		        "properties":{
		          "eventId":{"type":"string"},
		          "eventType":{"type":"string"},
		          "attempts":{"type":"integer","minimum":0},
		          "reason":{"enum":["RetriesExhausted","HeldLimitExceeded","HeldTooLong"]},
		          "lastStatusCode":{"type":"integer"},
		          "lastError":{"type":"string"}}}}}}`,
		`{"namespace":"shop","endpoint":"billing","count":1,"since":"2026-11-30T10:14:02Z","until":"2026-11-30T10:14:02Z","events":[{"eventId":"inv_123-paid","eventType":"invoice.paid","attempts":6,"reason":"RetriesExhausted","lastStatusCode":503}]}`},
	{heraldv1.EventTypeReplayCompleted,
		"A replay by selection of a WebhookEndpoint ended: Complete, or Failed with why.",
		`{"type":"object","required":["namespace","endpoint","replayId","state","selected","resent"],
		  "properties":{
		    "namespace":{"type":"string"},
		    "endpoint":{"type":"string"},
		    "replayId":{"type":"string"},
		    "selection":{"type":"string"},
		    "state":{"enum":["Complete","Failed"]},
		    "selected":{"type":"integer","minimum":0},
		    "resent":{"type":"integer","minimum":0},
		    "message":{"type":"string"}}}`,
		`{"namespace":"shop","endpoint":"billing","replayId":"rpl-mx3r6rjs","selection":"since=2h from=dead-letters","state":"Complete","selected":40,"resent":40}`},
}

var builtins = sync.OnceValue(func() []Definition {
	out := make([]Definition, 0, len(builtinSources))
	for _, b := range builtinSources {
		s := MustCompile(b.schema)
		ex, err := s.Example(0, b.example)
		if err != nil {
			panic("eventschema: built-in " + b.typ + ": " + err.Error())
		}
		out = append(out, Definition{Type: b.typ, Description: b.description, Schema: s, Examples: []any{ex}, Builtin: true})
	}
	return out
})

// Builtins returns Herald's operational event types, part of every namespace's catalog.
func Builtins() []Definition { return builtins() }

// Builtin returns one of Herald's operational event types.
func Builtin(eventType string) (Definition, bool) {
	for _, d := range builtins() {
		if d.Type == eventType {
			return d, true
		}
	}
	return Definition{}, false
}

// DefinitionOf turns a WebhookEventType and its compiled schema (nil when it does not
// compile) into a catalog definition; examples that do not validate are left out.
func DefinitionOf(et *heraldv1.WebhookEventType, schema *Schema) Definition {
	d := Definition{
		Type: et.Spec.Type, Description: et.Spec.Description, Schema: schema,
		Deprecated: et.Spec.Deprecated, DeprecationMessage: et.Spec.DeprecationMessage,
	}
	if schema != nil {
		for i, ex := range et.Spec.Examples {
			if v, err := schema.Example(i, ex); err == nil {
				d.Examples = append(d.Examples, v)
			}
		}
	}
	return d
}

// Catalog compiles a namespace's WebhookEventTypes into its catalog: for each type the
// object that owns it (WebhookEventType.DeclaredBefore), sorted by type, then Herald's
// built-in types. The dispatcher keeps the same, compiled once per change
// (dispatcher/catalog); this serves readers that start from the objects (herald docs).
func Catalog(types []heraldv1.WebhookEventType) []Definition {
	owners := map[string]*heraldv1.WebhookEventType{}
	for i := range types {
		et := &types[i]
		if cur := owners[et.Spec.Type]; cur == nil || et.DeclaredBefore(cur) {
			owners[et.Spec.Type] = et
		}
	}
	out := make([]Definition, 0, len(owners)+len(builtinSources))
	for _, et := range owners {
		s, _ := Compile(et.Spec.Schema)
		out = append(out, DefinitionOf(et, s))
	}
	slices.SortFunc(out, func(a, b Definition) int { return strings.Compare(a.Type, b.Type) })
	return append(out, Builtins()...)
}
