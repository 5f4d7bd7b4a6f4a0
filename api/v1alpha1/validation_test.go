package v1alpha1_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// Objects are built as unstructured maps so a row can send what the Go types cannot
// express (a missing required field, a negative number where the type is unsigned in
// spirit), exactly as kubectl would.

var seq atomic.Int64

func validEndpointSpec() map[string]any {
	return map[string]any{"url": "https://example.com/webhooks"}
}

func validSubscriptionSpec() map[string]any {
	return map[string]any{
		"endpointRef": map[string]any{"name": "orders"},
		"eventTypes":  []any{"order.created", "approval.*"},
	}
}

// create sends one object to the API server in the default namespace.
func create(kind string, spec map[string]any) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(heraldv1.GroupVersion.WithKind(kind))
	u.SetNamespace("default")
	u.SetName(fmt.Sprintf("validation-%d", seq.Add(1)))
	return u, k.Create(context.Background(), u)
}

func TestValidation_RefusesBadWebhookEndpoints(t *testing.T) {
	tests := []struct {
		why    string
		mutate func(spec map[string]any)
		want   string // substring of the API server's message
	}{
		{
			why:    "url or service is required: an endpoint without a destination is meaningless",
			mutate: func(s map[string]any) { delete(s, "url") },
			want:   "set exactly one of url (a receiver anywhere) or service (a Service in this namespace)",
		},
		{
			why:    "url and service together: which one is meant?",
			mutate: func(s map[string]any) { s["service"] = map[string]any{"name": "receiver"} },
			want:   "set exactly one of url (a receiver anywhere) or service (a Service in this namespace)",
		},
		{
			why: "a Service is reached directly, never through a proxy",
			mutate: func(s map[string]any) {
				delete(s, "url")
				s["service"] = map[string]any{"name": "receiver"}
				s["proxy"] = map[string]any{"url": "http://proxy.example.com:3128"}
			},
			want: "a Service in the cluster is reached directly, never through spec.proxy",
		},
		{
			why: "service name must be a Service name",
			mutate: func(s map[string]any) {
				delete(s, "url")
				s["service"] = map[string]any{"name": "Receiver_1"}
			},
			want: "must be a Service name",
		},
		{
			why: "service path must be a path",
			mutate: func(s map[string]any) {
				delete(s, "url")
				s["service"] = map[string]any{"name": "receiver", "path": "hooks"}
			},
			want: "path must start with / and carry no fragment",
		},
		{
			why: "service scheme is https or http",
			mutate: func(s map[string]any) {
				delete(s, "url")
				s["service"] = map[string]any{"name": "receiver", "scheme": "ftp"}
			},
			want: `spec.service.scheme: Unsupported value: "ftp"`,
		},
		{
			why:    "the proxy is spoken to in plain http (the tunnel inside is TLS)",
			mutate: func(s map[string]any) { s["proxy"] = map[string]any{"url": "https://proxy.example.com:3128"} },
			want:   "proxy url must be http://host:port",
		},
		{
			why:    "a proxy url has no path",
			mutate: func(s map[string]any) { s["proxy"] = map[string]any{"url": "http://proxy.example.com:3128/x"} },
			want:   "proxy url must have no path or query",
		},
		{
			why: "transform and extraFields both shape the body",
			mutate: func(s map[string]any) {
				s["payload"] = map[string]any{"transform": `{"a": event.id}`, "extraFields": map[string]any{"env": "prod"}}
			},
			want: "extraFields cannot be combined with transform",
		},
		{
			why:    "CloudEvents formats are named exactly",
			mutate: func(s map[string]any) { s["payload"] = map[string]any{"format": "CloudEvents"} },
			want:   `spec.payload.format: Unsupported value: "CloudEvents"`,
		},
		{
			why:    "malformed url",
			mutate: func(s map[string]any) { s["url"] = "not a url" },
			want:   "url must be an absolute URL such as https://example.com/webhooks",
		},
		{
			why:    "url without a host",
			mutate: func(s map[string]any) { s["url"] = "https://" },
			want:   "url must be an absolute URL such as https://example.com/webhooks",
		},
		{
			why:    "scheme other than https or http",
			mutate: func(s map[string]any) { s["url"] = "ftp://example.com/drop" },
			want:   "url scheme must be https (or http where the outbound policy allows it)",
		},
		{
			why:    "timeout 0s would fail every attempt",
			mutate: func(s map[string]any) { s["timeout"] = "0s" },
			want:   "timeout must be greater than 0s and at most 60s",
		},
		{
			why:    "timeout above the 60s cap",
			mutate: func(s map[string]any) { s["timeout"] = "61s" },
			want:   "timeout must be greater than 0s and at most 60s",
		},
		{
			why:    "timeout that is not a duration",
			mutate: func(s map[string]any) { s["timeout"] = "ten seconds" },
			want:   "timeout must be a duration such as 10s",
		},
		{
			why:    "empty retry schedule entry",
			mutate: func(s map[string]any) { s["retry"] = map[string]any{"schedule": []any{"1m", ""}} },
			want:   "every retry.schedule entry must be a duration such as 30s, 5m or 2h; empty entries are not allowed",
		},
		{
			why:    "retry schedule entry 0s would retry in a tight loop",
			mutate: func(s map[string]any) { s["retry"] = map[string]any{"schedule": []any{"0s"}} },
			want:   "every retry.schedule entry must be greater than 0",
		},
		{
			why:    "retry schedule entry beyond 7 days",
			mutate: func(s map[string]any) { s["retry"] = map[string]any{"schedule": []any{"1m", "169h"}} },
			want:   "every retry.schedule entry must be at most 168h (7 days)",
		},
		{
			why: "more than 20 retries",
			mutate: func(s map[string]any) {
				entries := make([]any, 21)
				for i := range entries {
					entries[i] = "1m"
				}
				s["retry"] = map[string]any{"schedule": entries}
			},
			want: "spec.retry.schedule: Too many: 21: must have at most 20 items",
		},
		{
			why:    "negative failure threshold",
			mutate: func(s map[string]any) { s["autoDisable"] = map[string]any{"afterConsecutiveFailures": int64(-1)} },
			want:   "spec.autoDisable.afterConsecutiveFailures in body should be greater than or equal to 0",
		},
		{
			why:    "ordering is one of two words, not a free string",
			mutate: func(s map[string]any) { s["ordering"] = "FIFO" },
			want:   `spec.ordering: Unsupported value: "FIFO": supported values: "Unordered", "Ordered"`,
		},
		{
			why:    "unknown signature style",
			mutate: func(s map[string]any) { s["signature"] = map[string]any{"style": "HMAC"} },
			want:   `spec.signature.style: Unsupported value: "HMAC": supported values: "StandardWebhooks", "StandardWebhooksEd25519", "TimestampedPrefixedHex", "BodyPrefixedHex", "TimestampedHex"`,
		},
		{
			why:    "header prefix that is not a header name",
			mutate: func(s map[string]any) { s["signature"] = map[string]any{"headerPrefix": "X Acme"} },
			want:   "headerPrefix must be an HTTP header name such as X-Acme: letters and digits in parts joined by single '-'",
		},
		{
			why:    "header prefix with a trailing dash would give X-Acme--Signature",
			mutate: func(s map[string]any) { s["signature"] = map[string]any{"headerPrefix": "X-Acme-"} },
			want:   "headerPrefix must be an HTTP header name such as X-Acme",
		},
		{
			why: "a static header may not override one Herald sets",
			mutate: func(s map[string]any) {
				s["headers"] = []any{map[string]any{"name": "Content-Type", "value": "text/plain"}}
			},
			want: "this header is set by Herald and cannot be overridden",
		},
		{
			why: "a static header needs exactly one source",
			mutate: func(s map[string]any) {
				s["headers"] = []any{map[string]any{"name": "Authorization", "value": "x", "valueFrom": map[string]any{"name": "token"}}}
			},
			want: "set exactly one of value or valueFrom",
		},
		{
			why: "the OAuth2 client id comes from exactly one place",
			mutate: func(s map[string]any) {
				s["auth"] = map[string]any{"oauth2": map[string]any{
					"tokenURL": "https://auth.example.com/token", "clientID": "herald",
					"clientIDRef":     map[string]any{"name": "oauth", "key": "id"},
					"clientSecretRef": map[string]any{"name": "oauth", "key": "secret"},
				}}
			},
			want: "set exactly one of clientID or clientIDRef",
		},
		{
			why: "the token endpoint must be a URL, as spec.url must",
			mutate: func(s map[string]any) {
				s["auth"] = map[string]any{"oauth2": map[string]any{
					"tokenURL": "auth.example.com/token", "clientID": "herald",
					"clientSecretRef": map[string]any{"name": "oauth"},
				}}
			},
			want: "tokenURL must be an absolute URL",
		},
		{
			why: "a scope with a space would split into two scopes on the wire",
			mutate: func(s map[string]any) {
				s["auth"] = map[string]any{"oauth2": map[string]any{
					"tokenURL": "https://auth.example.com/token", "clientID": "herald",
					"clientSecretRef": map[string]any{"name": "oauth"}, "scopes": []any{"read write"},
				}}
			},
			want: "a scope is printable ASCII without spaces",
		},
		{
			why: "a static Authorization header would fight the OAuth2 bearer token",
			mutate: func(s map[string]any) {
				s["auth"] = map[string]any{"oauth2": map[string]any{
					"tokenURL": "https://auth.example.com/token", "clientID": "herald",
					"clientSecretRef": map[string]any{"name": "oauth"},
				}}
				s["headers"] = []any{map[string]any{"name": "authorization", "value": "Bearer x"}}
			},
			want: "spec.headers cannot set Authorization when spec.auth.oauth2 is set",
		},
		{
			why:    "extra fields may not replace the envelope's own",
			mutate: func(s map[string]any) { s["payload"] = map[string]any{"extraFields": map[string]any{"id": "x"}} },
			want:   "extraFields cannot replace the envelope's own fields id, type, created_at or data",
		},
		{
			why:    "secretRef name must be a Secret name",
			mutate: func(s map[string]any) { s["secretRef"] = map[string]any{"name": "My_Secret"} },
			want:   "must be a valid Secret name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			spec := validEndpointSpec()
			tt.mutate(spec)
			assertRefused(t, "WebhookEndpoint", spec, tt.want)
		})
	}
}

func TestValidation_RefusesBadWebhookSubscriptions(t *testing.T) {
	tests := []struct {
		why    string
		mutate func(spec map[string]any)
		want   string
	}{
		{
			why:    "endpointRef.name is required: a route needs a destination",
			mutate: func(s map[string]any) { s["endpointRef"] = map[string]any{} },
			want:   "spec.endpointRef.name: Required value",
		},
		{
			why:    "eventTypes is required",
			mutate: func(s map[string]any) { delete(s, "eventTypes") },
			want:   "spec.eventTypes: Required value",
		},
		{
			why:    "an empty eventTypes list would route nothing",
			mutate: func(s map[string]any) { s["eventTypes"] = []any{} },
			want:   "spec.eventTypes: Invalid value: 0: spec.eventTypes in body should have at least 1 items",
		},
		{
			why:    "event type with a space",
			mutate: func(s map[string]any) { s["eventTypes"] = []any{"order created"} },
			want:   "eventTypes entries may contain only letters, digits, '.', '_', '-' and '*' (for example invoice.paid or approval.*)",
		},
		{
			why:    "event type with a slash",
			mutate: func(s map[string]any) { s["eventTypes"] = []any{"order.created", "a/b"} },
			want:   "eventTypes entries may contain only letters, digits, '.', '_', '-' and '*'",
		},
		{
			why:    "an empty segment can never match a real event type",
			mutate: func(s map[string]any) { s["eventTypes"] = []any{"order..paid"} },
			want:   "eventTypes entries must not start or end with '.', contain an empty segment ('..') or '**'",
		},
		{
			why:    "a trailing dot is a typo for approval.*",
			mutate: func(s map[string]any) { s["eventTypes"] = []any{"approval."} },
			want:   "eventTypes entries must not start or end with '.'",
		},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			spec := validSubscriptionSpec()
			tt.mutate(spec)
			assertRefused(t, "WebhookSubscription", spec, tt.want)
		})
	}
}

// TestValidation_BaseObjectsAreAccepted keeps the refusal tables honest: each row
// mutates one field of these, so they must pass on their own.
func TestValidation_BaseObjectsAreAccepted(t *testing.T) {
	if _, err := create("WebhookEndpoint", validEndpointSpec()); err != nil {
		t.Errorf("base WebhookEndpoint refused: %v", err)
	}
	if _, err := create("WebhookSubscription", validSubscriptionSpec()); err != nil {
		t.Errorf("base WebhookSubscription refused: %v", err)
	}
	full := validEndpointSpec()
	full["url"] = "http://receiver.apps.svc:8080/hooks"
	full["timeout"] = "60s"
	full["retry"] = map[string]any{"schedule": []any{"500ms", "1h30m", "168h"}, "jitterPercent": int64(0)}
	full["autoDisable"] = map[string]any{"afterConsecutiveFailures": int64(0)}
	full["signature"] = map[string]any{"style": "TimestampedHex", "headerPrefix": "X-Acme-2"}
	full["headers"] = []any{
		map[string]any{"name": "X-Tenant", "value": "eu"},
		map[string]any{"name": "Authorization", "valueFrom": map[string]any{"name": "receiver-token", "key": "bearer"}},
	}
	full["payload"] = map[string]any{"format": "Data", "extraFields": map[string]any{"environment": "production"}}
	if _, err := create("WebhookEndpoint", full); err != nil {
		t.Errorf("WebhookEndpoint using the edges of every rule refused: %v", err)
	}
	oauth := validEndpointSpec()
	oauth["headers"] = []any{map[string]any{"name": "X-Tenant", "value": "eu"}}
	oauth["auth"] = map[string]any{"oauth2": map[string]any{
		"tokenURL":        "http://auth.apps.svc:8080/oauth/token",
		"clientIDRef":     map[string]any{"name": "oauth", "key": "client-id"},
		"clientSecretRef": map[string]any{"name": "oauth", "key": "client-secret"},
		"scopes":          []any{"webhooks:write", "https://api.example.com/.default"},
		"audience":        "https://billing.example.com",
		"authStyle":       "Body",
	}}
	if _, err := create("WebhookEndpoint", oauth); err != nil {
		t.Errorf("WebhookEndpoint with OAuth2 client credentials refused: %v", err)
	}
	shapes := map[string]any{
		"service": map[string]any{"name": "receiver", "port": int64(8443), "path": "/hooks", "scheme": "http"},
		"payload": map[string]any{"format": "CloudEventsStructured", "transform": `{"text": "event " + event.id}`},
		"limits":  map[string]any{"adaptive": false, "requestsPerSecond": int64(5)},
	}
	if _, err := create("WebhookEndpoint", shapes); err != nil {
		t.Errorf("WebhookEndpoint naming a Service with a transform refused: %v", err)
	}
	proxied := validEndpointSpec()
	proxied["payload"] = map[string]any{"format": "CloudEventsBinary"}
	proxied["proxy"] = map[string]any{"url": "http://proxy.example.com:3128", "credentialsSecretRef": map[string]any{"name": "proxy-auth"}}
	if _, err := create("WebhookEndpoint", proxied); err != nil {
		t.Errorf("WebhookEndpoint through a proxy refused: %v", err)
	}
}

func TestValidation_DefaultsAreApplied(t *testing.T) {
	u, err := create("WebhookEndpoint", validEndpointSpec())
	if err != nil {
		t.Fatal(err)
	}
	ep := &heraldv1.WebhookEndpoint{}
	if err := k.Get(context.Background(), client.ObjectKeyFromObject(u), ep); err != nil {
		t.Fatal(err)
	}
	s := ep.Spec
	deref := func(p *int32) any {
		if p == nil {
			return nil
		}
		return *p
	}
	// Each stored default must equal the Go default in defaults.go, which code reading a
	// spec that skipped the API server relies on.
	checks := []struct {
		field     string
		got, want any
	}{
		{"timeout", s.Timeout, "30s"},
		{"retry.schedule", s.Retry.Schedule, []string{"1m", "5m", "30m", "2h", "8h"}},
		{"retry.jitterPercent", deref(s.Retry.JitterPercent), int32(heraldv1.DefaultJitterPercent)},
		{"retry.maxRetryAfter", s.Retry.MaxRetryAfter, "1h"},
		{"signature.style", s.Signature.Style, heraldv1.SignatureStandardWebhooks},
		{"signature.headerPrefix", s.Signature.HeaderPrefix, heraldv1.DefaultHeaderPrefix},
		{"payload.format", s.Payload.Format, heraldv1.PayloadEnvelope},
		{"autoDisable.afterConsecutiveFailures", deref(s.AutoDisable.AfterConsecutiveFailures), int32(heraldv1.DefaultAfterConsecutiveFailures)},
		{"limits.maxInFlight", deref(s.Limits.MaxInFlight), int32(heraldv1.DefaultMaxInFlight)},
		{"ordering", s.Ordering, heraldv1.OrderingUnordered},
		{"limits.adaptive", s.Limits.Adaptive, ptr.To(true)},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("spec.%s defaulted to %#v, want %#v", c.field, c.got, c.want)
		}
	}
	if d, err := s.TimeoutDuration(); err != nil || d != heraldv1.DefaultTimeout {
		t.Errorf("stored timeout parses to %v (%v), want %v", d, err, heraldv1.DefaultTimeout)
	}
	if sched, err := s.RetrySchedule(); err != nil || !reflect.DeepEqual(sched, heraldv1.DefaultRetrySchedule) {
		t.Errorf("stored retry schedule parses to %v (%v), want %v", sched, err, heraldv1.DefaultRetrySchedule)
	}
	if d, err := s.MaxRetryAfter(); err != nil || d != heraldv1.DefaultMaxRetryAfter {
		t.Errorf("stored maxRetryAfter parses to %v (%v), want %v", d, err, heraldv1.DefaultMaxRetryAfter)
	}
	if s.SecretRef != nil {
		t.Errorf("secretRef defaulted to %+v; it must stay unset so the operator's <name>-signing default applies", s.SecretRef)
	}

	// A key left out of a secretRef defaults to "secret".
	spec := validEndpointSpec()
	spec["secretRef"] = map[string]any{"name": "mine"}
	u, err = create("WebhookEndpoint", spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Get(context.Background(), client.ObjectKeyFromObject(u), ep); err != nil {
		t.Fatal(err)
	}
	if ep.Spec.SecretRef == nil || ep.Spec.SecretRef.Key != heraldv1.DefaultSecretKey {
		t.Errorf("secretRef.key defaulted to %+v, want %q", ep.Spec.SecretRef, heraldv1.DefaultSecretKey)
	}
}

// assertRefused creates the object and requires an Invalid error carrying want.
func assertRefused(t *testing.T, kind string, spec map[string]any, want string) {
	t.Helper()
	_, err := create(kind, spec)
	if err == nil {
		t.Fatalf("the API server accepted the %s; want a refusal containing %q", kind, want)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want an Invalid error, got %v", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("refusal does not contain %q:\n%v", want, err)
	}
}
