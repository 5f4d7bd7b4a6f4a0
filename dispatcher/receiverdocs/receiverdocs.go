// Package receiverdocs writes the documentation a receiver's developer needs, as an
// OpenAPI 3.1 document: one entry under `webhooks` per event type the endpoint receives,
// each with the request exactly as Herald sends it to that endpoint (the envelope or the
// data alone, its extra fields, the event type's JSON Schema from the namespace's
// catalog), the headers of the endpoint's signature style with how to verify them, and
// the endpoint's retry schedule and auto-disable rule. `herald docs` and the dispatcher's
// endpoint API serve it.
//
// It is a pure function of the endpoint, its subscriptions and the catalog, so the CLI
// (reading them from the API server) and the dispatcher (from its cache) write the same
// document.
package receiverdocs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/eventschema"
	"github.com/herald-dev/herald/internal/routing"
)

// Input is what the document is written from.
type Input struct {
	Endpoint *heraldv1.WebhookEndpoint
	// Subscriptions of the endpoint's namespace; those routing to other endpoints are
	// ignored.
	Subscriptions []heraldv1.WebhookSubscription
	// Catalog is the namespace's event types followed by Herald's built-in ones
	// (dispatcher/catalog.Definitions, or the same built from the API server).
	Catalog []eventschema.Definition
}

// Build returns the OpenAPI 3.1 document as indented JSON.
func Build(in Input) ([]byte, error) {
	doc, err := document(in)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(doc, "", "  ")
}

// entry is one webhook of the document: a declared type, or a pattern that matches no
// declared type.
type entry struct {
	key        string // the webhooks key: the event type, or the pattern
	definition *eventschema.Definition
	pattern    string // for a pattern entry
	filters    []string
}

func document(in Input) (map[string]any, error) {
	ep := in.Endpoint
	if ep == nil {
		return nil, fmt.Errorf("no endpoint")
	}
	spec := &ep.Spec
	entries := entriesOf(in)
	schedule, err := spec.RetrySchedule()
	if err != nil {
		return nil, err
	}
	timeout, err := spec.TimeoutDuration()
	if err != nil {
		return nil, err
	}
	delivery := deliveryRules(spec, schedule, timeout)

	webhooks := map[string]any{}
	schemas := map[string]any{}
	for _, e := range entries {
		name := componentName(e.key)
		dataName := name + ".data"
		var dataSchema any = map[string]any{"description": "Any JSON value: this type is not declared in the namespace's catalog."}
		description := ""
		deprecated := false
		var examples []any
		if e.definition != nil {
			description = e.definition.Description
			deprecated = e.definition.Deprecated
			if e.definition.Schema != nil {
				dataSchema = embed(e.definition.Schema.Document(), "#/components/schemas/"+dataName)
			}
			examples = e.definition.Examples
			if deprecated {
				description += "\n\nDeprecated"
				if e.definition.DeprecationMessage != "" {
					description += ": " + e.definition.DeprecationMessage
				}
				description += "."
			}
			if e.definition.Builtin {
				description += "\n\nOne of Herald's own operational events, about another endpoint of the namespace (never sent to the endpoint it is about)."
			}
		} else {
			description = fmt.Sprintf("Events whose type matches %q. No event type of the namespace's catalog matches it, so their data is any JSON.", e.pattern)
		}
		if len(e.filters) > 0 {
			description += "\n\nOnly events for which these CEL filters hold are sent: " + strings.Join(e.filters, "; ") + "."
		}
		schemas[dataName] = dataSchema
		body := map[string]any{"$ref": "#/components/schemas/" + dataName}
		if spec.PayloadFormat() == heraldv1.PayloadEnvelope {
			schemas[name] = envelope(spec, e, dataName)
			body = map[string]any{"$ref": "#/components/schemas/" + name}
		}
		media := map[string]any{"schema": body}
		if len(examples) > 0 {
			ex := map[string]any{}
			for i, v := range examples {
				value := v
				if spec.PayloadFormat() == heraldv1.PayloadEnvelope {
					value = exampleEnvelope(spec, e.key, v)
				}
				ex[fmt.Sprintf("example%d", i+1)] = map[string]any{"value": value}
			}
			media["examples"] = ex
		}
		op := map[string]any{
			"operationId": "receive_" + strings.NewReplacer(".", "_", "*", "any", "-", "_").Replace(e.key),
			"summary":     summary(e),
			"description": strings.TrimSpace(description),
			"parameters":  headers(spec, e),
			"requestBody": map[string]any{
				"required":    true,
				"description": bodyDescription(spec),
				"content":     map[string]any{"application/json": media},
			},
			"responses": responses(spec),
		}
		if deprecated {
			op["deprecated"] = true
		}
		webhooks[e.key] = map[string]any{"post": op}
	}

	return map[string]any{
		"openapi":           "3.1.0",
		"jsonSchemaDialect": eventschema.Dialect,
		"info": map[string]any{
			"title":       fmt.Sprintf("Webhooks of %s/%s", ep.Namespace, ep.Name),
			"version":     fmt.Sprintf("generation-%d", ep.Generation),
			"summary":     "What Herald sends to this endpoint: one entry per event type under webhooks.",
			"description": infoDescription(ep, schedule, timeout),
			"license":     map[string]any{"name": "Apache-2.0", "identifier": "Apache-2.0"},
		},
		// The receiver is the server of these requests.
		"servers":  []any{map[string]any{"url": spec.URL, "description": "The receiver: this endpoint's spec.url."}},
		"paths":    map[string]any{},
		"webhooks": webhooks,
		// A delivery authenticates itself by its signature header (and, with OAuth2, a
		// bearer token the receiver checks like any).
		"security":           security(spec),
		"components":         map[string]any{"schemas": schemas, "securitySchemes": securitySchemes(spec)},
		"x-herald-delivery":  delivery,
		"x-herald-signature": signatureRules(spec),
	}, nil
}

// entriesOf lists what the endpoint receives: every declared type (and built-in one)
// that one of its subscriptions' patterns matches, every exact type it names, and every
// glob that matches no declared type. Sorted by key.
func entriesOf(in Input) []entry {
	byKey := map[string]*entry{}
	add := func(key string, def *eventschema.Definition, pattern, filter string) {
		e := byKey[key]
		if e == nil {
			e = &entry{key: key, definition: def, pattern: pattern}
			byKey[key] = e
		}
		if filter != "" && !slices.Contains(e.filters, filter) {
			e.filters = append(e.filters, filter)
		}
	}
	for _, sub := range in.Subscriptions {
		if sub.Spec.EndpointRef.Name != in.Endpoint.Name || sub.Namespace != in.Endpoint.Namespace {
			continue
		}
		for _, p := range sub.Spec.EventTypes {
			matched := false
			for i := range in.Catalog {
				d := &in.Catalog[i]
				if matches(p, d.Type) {
					add(d.Type, d, "", sub.Spec.Filter)
					matched = true
				}
			}
			if !matched {
				add(p, nil, p, sub.Spec.Filter)
			}
		}
	}
	out := make([]entry, 0, len(byKey))
	for _, e := range byKey {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	return out
}

// matches is the router's rule: operational types only for patterns naming herald.
func matches(pattern, eventType string) bool {
	if heraldv1.IsOperationalEventType(eventType) && !strings.HasPrefix(pattern, heraldv1.OperationalEventTypePrefix) {
		return false
	}
	return routing.MatchType(pattern, eventType)
}

// componentName is a components/schemas key for an entry ([A-Za-z0-9._-]).
func componentName(key string) string {
	return strings.ReplaceAll(key, "*", "_any_")
}

func summary(e entry) string {
	if e.definition == nil {
		return "Events matching " + e.pattern
	}
	if d := e.definition.Description; d != "" {
		first, _, _ := strings.Cut(d, ". ")
		return strings.TrimSuffix(first, ".")
	}
	return e.key
}

// envelope is the schema of the Envelope body: {id, type, created_at, data,
// ...extraFields}, in that order on the wire.
func envelope(spec *heraldv1.WebhookEndpointSpec, e entry, dataName string) map[string]any {
	typ := map[string]any{"type": "string", "description": "The event type; also in the " + spec.HeaderPrefix() + "-Event-Type header."}
	if e.definition != nil {
		typ["const"] = e.key
	}
	props := map[string]any{
		"id":         map[string]any{"type": "string", "description": "The event id: the same on every attempt and replay; deduplicate on it."},
		"type":       typ,
		"created_at": map[string]any{"type": "string", "format": "date-time", "description": "When the event happened: the producer's timestamp as sent, else the time Herald accepted it (UTC, whole seconds)."},
		"data":       map[string]any{"$ref": "#/components/schemas/" + dataName},
	}
	required := []string{"id", "type", "created_at", "data"}
	for _, k := range slices.Sorted(mapKeys(spec.Payload.ExtraFields)) {
		props[k] = map[string]any{"const": spec.Payload.ExtraFields[k], "description": "A static field of this endpoint's payload (spec.payload.extraFields)."}
		required = append(required, k)
	}
	return map[string]any{
		"type": "object", "required": required, "properties": props, "additionalProperties": false,
		"description": "The envelope Herald wraps the event's data in (spec.payload.format: Envelope).",
	}
}

func exampleEnvelope(spec *heraldv1.WebhookEndpointSpec, typ string, data any) map[string]any {
	out := map[string]any{"id": "evt_01J8Z3Q6V0A4N5C2M9F7K1XB3D", "type": typ, "created_at": "2026-11-30T10:14:02Z", "data": data}
	for k, v := range spec.Payload.ExtraFields {
		out[k] = v
	}
	return out
}

func bodyDescription(spec *heraldv1.WebhookEndpointSpec) string {
	if spec.PayloadFormat() == heraldv1.PayloadData {
		return "The event's data exactly as the producer published it, byte for byte (spec.payload.format: Data); the event type is in the " + spec.HeaderPrefix() + "-Event-Type header."
	}
	return "The envelope {id, type, created_at, data, ...extra fields}; data is exactly as the producer published it, byte for byte. Verify the signature over the raw body before parsing it."
}

// headers lists the request headers of this endpoint's deliveries.
func headers(spec *heraldv1.WebhookEndpointSpec, e entry) []any {
	prefix := spec.HeaderPrefix()
	h := func(name, description string, required bool, schema map[string]any) map[string]any {
		return map[string]any{"name": name, "in": "header", "required": required, "description": description, "schema": schema}
	}
	str := func() map[string]any { return map[string]any{"type": "string"} }
	var out []any
	switch style := spec.SignatureStyle(); style {
	case heraldv1.SignatureStandardWebhooks, heraldv1.SignatureStandardWebhooksEd25519:
		sig := "v1,<base64 HMAC-SHA256>"
		if style == heraldv1.SignatureStandardWebhooksEd25519 {
			sig = "v1a,<base64 ed25519 signature>"
		}
		out = append(out,
			h(strings.ToLower(signer.HeaderWebhookID), "The event id (Standard Webhooks); part of the signed string.", true, str()),
			h(strings.ToLower(signer.HeaderWebhookTimestamp), "Unix seconds of this attempt; part of the signed string. Refuse timestamps more than 5 minutes from your clock.", true, map[string]any{"type": "string", "pattern": "^[0-9]+$"}),
			h(strings.ToLower(signer.HeaderWebhookSignature), "Space-separated list of "+sig+" signatures (two during a key rotation; accept if any verifies).", true, str()))
	case heraldv1.SignatureTimestampedPrefixedHex:
		out = append(out,
			h(prefix+signer.SuffixSignature, "sha256=<hex HMAC-SHA256 of {timestamp}.{body}>.", true, map[string]any{"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}),
			h(prefix+signer.SuffixTimestamp, "Unix seconds of this attempt; part of the signed string.", true, map[string]any{"type": "string", "pattern": "^[0-9]+$"}),
			h(prefix+signer.SuffixSignaturePrevious, "During a key rotation: the same signature with the previous secret.", false, str()))
	case heraldv1.SignatureBodyPrefixedHex:
		out = append(out,
			h(prefix+signer.SuffixSignature, "sha256=<hex HMAC-SHA256 of the raw body>.", true, map[string]any{"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}),
			h(prefix+signer.SuffixSignaturePrevious, "During a key rotation: the same signature with the previous secret.", false, str()))
	case heraldv1.SignatureTimestampedHex:
		out = append(out,
			h(prefix+signer.SuffixSignature, "<hex HMAC-SHA256 of {timestamp}.{body}>.", true, map[string]any{"type": "string", "pattern": "^[0-9a-f]{64}$"}),
			h(prefix+signer.SuffixTimestamp, "Unix seconds of this attempt; part of the signed string.", true, map[string]any{"type": "string", "pattern": "^[0-9]+$"}),
			h(prefix+signer.SuffixEvent, "The event type.", true, str()),
			h(prefix+signer.SuffixSignaturePrevious, "During a key rotation: the same signature with the previous secret.", false, str()))
	}
	typ := str()
	if e.definition != nil {
		typ = map[string]any{"type": "string", "const": e.key}
	}
	out = append(out,
		h(prefix+"-Event-Id", "The event id, the same on every attempt; deduplicate on it.", true, str()),
		h(prefix+"-Event-Type", "The event type.", true, typ),
		h(prefix+"-Delivery-Id", "This delivery (the event to this endpoint), the same on every attempt.", true, str()),
		h(prefix+"-Delivery-Attempt", "The attempt number, from 1.", true, map[string]any{"type": "string", "pattern": "^[1-9][0-9]*$"}),
		h("traceparent", "W3C trace context, when the producer sent one.", false, str()),
	)
	for _, sh := range spec.Headers {
		out = append(out, h(sh.Name, "A static header of this endpoint (spec.headers).", true, str()))
	}
	if spec.OAuth2() != nil {
		out = append(out, h("Authorization", "Bearer <OAuth2 access token> from the endpoint's token URL (client credentials grant).", true, str()))
	}
	return out
}

func responses(spec *heraldv1.WebhookEndpointSpec) map[string]any {
	threshold := spec.FailureThreshold()
	disable := "never disables the endpoint (autoDisable.afterConsecutiveFailures: 0)"
	if threshold > 0 {
		disable = fmt.Sprintf("after %d failed attempts in a row the endpoint is disabled and its deliveries held until a person re-enables it", threshold)
	}
	return map[string]any{
		"2XX": map[string]any{"description": "Delivered. Answer within the timeout; the body is ignored (its first 4 KiB are kept in the attempt log)."},
		"410": map[string]any{"description": "Gone: stop sending. The endpoint is disabled at once."},
		"429": map[string]any{"description": "A failed attempt; Retry-After (seconds or a date) is honoured up to retry.maxRetryAfter.",
			"headers": map[string]any{"Retry-After": map[string]any{"schema": map[string]any{"type": "string"}}}},
		"default": map[string]any{"description": "Any other answer, a redirect (never followed), a timeout or a connection error is a failed attempt: retried on the schedule in x-herald-delivery, then dead-lettered; " + disable + "."},
	}
}

func signatureHeader(spec *heraldv1.WebhookEndpointSpec) string {
	switch spec.SignatureStyle() {
	case heraldv1.SignatureStandardWebhooks, heraldv1.SignatureStandardWebhooksEd25519:
		return strings.ToLower(signer.HeaderWebhookSignature)
	}
	return spec.HeaderPrefix() + signer.SuffixSignature
}

func securitySchemes(spec *heraldv1.WebhookEndpointSpec) map[string]any {
	out := map[string]any{"signature": map[string]any{
		"type": "apiKey", "in": "header", "name": signatureHeader(spec),
		"description": "Herald signs every delivery (" + string(spec.SignatureStyle()) + "); verify it as the document's description and x-herald-signature say before trusting the body.",
	}}
	if spec.OAuth2() != nil {
		out["oauth2"] = map[string]any{"type": "http", "scheme": "bearer",
			"description": "An OAuth2 access token Herald obtained from the endpoint's token URL (client credentials grant)."}
	}
	return out
}

func security(spec *heraldv1.WebhookEndpointSpec) []any {
	req := map[string]any{"signature": []any{}}
	if spec.OAuth2() != nil {
		req["oauth2"] = []any{}
	}
	return []any{req}
}

func deliveryRules(spec *heraldv1.WebhookEndpointSpec, schedule []time.Duration, timeout time.Duration) map[string]any {
	waits := make([]string, len(schedule))
	for i, d := range schedule {
		waits[i] = d.String()
	}
	ordering := string(spec.Ordering)
	if ordering == "" {
		ordering = string(heraldv1.OrderingUnordered)
	}
	return map[string]any{
		"timeout":                             timeout.String(),
		"retrySchedule":                       waits,
		"jitterPercent":                       spec.JitterPercent(),
		"attempts":                            len(schedule) + 1,
		"autoDisableAfterConsecutiveFailures": spec.FailureThreshold(),
		"ordering":                            ordering,
	}
}

func signatureRules(spec *heraldv1.WebhookEndpointSpec) map[string]any {
	style := spec.SignatureStyle()
	out := map[string]any{"style": string(style)}
	switch style {
	case heraldv1.SignatureStandardWebhooks:
		out["algorithm"], out["signedString"], out["key"] = "HMAC-SHA256", "{webhook-id}.{webhook-timestamp}.{body}", "base64-decoded part of the secret after whsec_"
	case heraldv1.SignatureStandardWebhooksEd25519:
		out["algorithm"], out["signedString"], out["key"] = "ed25519", "{webhook-id}.{webhook-timestamp}.{body}", "the public key whpk_<base64> (status.publicKey, ConfigMap "+"<endpoint>-public-key)"
	case heraldv1.SignatureTimestampedPrefixedHex, heraldv1.SignatureTimestampedHex:
		out["algorithm"], out["signedString"], out["key"] = "HMAC-SHA256", "{timestamp}.{body}", "the secret as written"
	case heraldv1.SignatureBodyPrefixedHex:
		out["algorithm"], out["signedString"], out["key"] = "HMAC-SHA256", "{body}", "the secret as written"
	}
	return out
}

func infoDescription(ep *heraldv1.WebhookEndpoint, schedule []time.Duration, timeout time.Duration) string {
	spec := &ep.Spec
	var b strings.Builder
	fmt.Fprintf(&b, "Herald POSTs each event to %s (WebhookEndpoint %s in namespace %s) as JSON.\n\n", spec.URL, ep.Name, ep.Namespace)
	b.WriteString("## Verifying a delivery\n\n")
	switch spec.SignatureStyle() {
	case heraldv1.SignatureStandardWebhooks:
		b.WriteString("Standard Webhooks: compute HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` (the raw body, before parsing) with the base64-decoded part of your secret after `whsec_` as key, base64-encode it, and compare it in constant time with each `v1,` entry of `webhook-signature`. Refuse a `webhook-timestamp` more than 5 minutes from your clock.")
	case heraldv1.SignatureStandardWebhooksEd25519:
		b.WriteString("Standard Webhooks (ed25519): verify each `v1a,` entry of `webhook-signature` (base64) as an ed25519 signature of `{webhook-id}.{webhook-timestamp}.{body}` with the public key (`whpk_` + base64; `herald endpoint public-key`). Refuse a `webhook-timestamp` more than 5 minutes from your clock.")
	case heraldv1.SignatureTimestampedPrefixedHex:
		fmt.Fprintf(&b, "Compute HMAC-SHA256 over `{%s-Timestamp}.{body}` with your secret as written as key and compare `sha256=<hex>` with `%s-Signature` in constant time. Refuse a timestamp more than 5 minutes from your clock.", spec.HeaderPrefix(), spec.HeaderPrefix())
	case heraldv1.SignatureBodyPrefixedHex:
		fmt.Fprintf(&b, "Compute HMAC-SHA256 over the raw body with your secret as written as key and compare `sha256=<hex>` with `%s-Signature` in constant time.", spec.HeaderPrefix())
	case heraldv1.SignatureTimestampedHex:
		fmt.Fprintf(&b, "Compute HMAC-SHA256 over `{%s-Timestamp}.{body}` with your secret as written as key and compare the hex digest with `%s-Signature` in constant time.", spec.HeaderPrefix(), spec.HeaderPrefix())
	}
	b.WriteString(" In Go, `github.com/herald-dev/herald/pkg/verify` does it for every style.\n\n## Retries and auto-disable\n\n")
	waits := make([]string, len(schedule))
	for i, d := range schedule {
		waits[i] = d.String()
	}
	fmt.Fprintf(&b, "An attempt succeeds with a 2xx answer within %s. A failed attempt is retried after %s (each wait ±%d%% jitter, counted from the previous failure); after the last, the delivery is dead-lettered (kept 14 days, replayable with its event id). ",
		timeout, strings.Join(waits, ", then "), spec.JitterPercent())
	if n := spec.FailureThreshold(); n > 0 {
		fmt.Fprintf(&b, "After %d failed attempts in a row, or at once on 410 Gone, the endpoint is disabled: deliveries are held, not lost, until a person re-enables it. ", n)
	} else {
		b.WriteString("The endpoint is never disabled for failures (410 Gone still disables it). ")
	}
	b.WriteString("Deliveries are at least once: deduplicate on the event id.")
	if spec.Ordered() {
		b.WriteString(" The endpoint is Ordered: one delivery at a time, in the order Herald accepted the events.")
	}
	return b.String()
}

// embed returns a copy of a schema to place at base (a JSON pointer fragment of the
// document): its references within itself ("#/$defs/x", "#") are rewritten to point
// under base, so that they resolve within the OpenAPI document. Event schemas hold no
// $id or anchors (internal/eventschema refuses them), so these are all of its references.
func embed(v any, base string) any {
	if b, ok := v.(bool); ok { // a boolean schema, as an object OpenAPI tools all read
		if b {
			return map[string]any{}
		}
		return map[string]any{"not": map[string]any{}}
	}
	return rewrite(v, base)
}

func rewrite(v any, base string) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, val := range v {
			if k == "$schema" {
				continue // the document's jsonSchemaDialect says it
			}
			if s, ok := val.(string); ok && k == "$ref" && strings.HasPrefix(s, "#") {
				out[k] = base + strings.TrimPrefix(s, "#")
				continue
			}
			out[k] = rewrite(val, base)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = rewrite(e, base)
		}
		return out
	}
	return v
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// RequestSchema compiles the request body schema of one webhook of a document Build
// wrote, its references resolved within the document, so that a receiver (or a test)
// can validate what it is sent against what the document promises.
func RequestSchema(doc []byte, webhook string) (*jsonschema.Schema, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("reading the document: %w", err)
	}
	const url = "https://schemas.herald.dev/receiver-docs.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(url, v); err != nil {
		return nil, err
	}
	ptr := "/webhooks/" + escape(webhook) + "/post/requestBody/content/application~1json/schema"
	return c.Compile(url + "#" + ptr)
}

func escape(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}
