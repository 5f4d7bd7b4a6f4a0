package receiverdocs_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/receiverdocs"
	"github.com/herald-dev/herald/internal/eventschema"
)

const lineItemsSchema = `
type: object
required: [invoice_id, lines]
properties:
  invoice_id: {type: string}
  lines: {type: array, items: {$ref: "#/$defs/line"}}
$defs:
  line: {type: object, required: [sku], properties: {sku: {type: string}}}
`

func catalog() []eventschema.Definition {
	return eventschema.Catalog([]heraldv1.WebhookEventType{
		{ObjectMeta: metav1.ObjectMeta{Name: "paid", Namespace: "shop"}, Spec: heraldv1.WebhookEventTypeSpec{
			Type: "invoice.paid", Description: "An invoice was paid. In full.", Schema: lineItemsSchema,
			Examples: []string{`{"invoice_id": "inv_1", "lines": [{"sku": "a"}]}`}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "voided", Namespace: "shop"}, Spec: heraldv1.WebhookEventTypeSpec{
			Type: "invoice.voided", Schema: "true", Deprecated: true, DeprecationMessage: "use invoice.cancelled"}},
	})
}

func endpoint(spec heraldv1.WebhookEndpointSpec) *heraldv1.WebhookEndpoint {
	spec.URL = "https://billing.example.com/hooks"
	return &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: "shop", Generation: 4}, Spec: spec}
}

func subscriptions(types ...string) []heraldv1.WebhookSubscription {
	return []heraldv1.WebhookSubscription{
		{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "shop"}, Spec: heraldv1.WebhookSubscriptionSpec{
			EndpointRef: heraldv1.LocalObjectReference{Name: "billing"}, EventTypes: types, Filter: "event.data.amount > 10"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "theirs", Namespace: "shop"}, Spec: heraldv1.WebhookSubscriptionSpec{
			EndpointRef: heraldv1.LocalObjectReference{Name: "other"}, EventTypes: []string{"refund.created"}}},
	}
}

func build(t *testing.T, ep *heraldv1.WebhookEndpoint, subs []heraldv1.WebhookSubscription) map[string]any {
	t.Helper()
	b, err := receiverdocs.Build(receiverdocs.Input{Endpoint: ep, Subscriptions: subs, Catalog: catalog()})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestBuild_OneWebhookPerTypeTheEndpointReceives(t *testing.T) {
	doc := build(t, endpoint(heraldv1.WebhookEndpointSpec{}), subscriptions("invoice.*", "herald.endpoint.*", "order.created", "*.shipped"))
	var keys []string
	for k := range doc["webhooks"].(map[string]any) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// invoice.* expands to the declared types; order.created and *.shipped match none
	// and stay as they are; herald.endpoint.* names the built-in types it matches; the
	// other endpoint's refund.created is not there.
	want := []string{"*.shipped", "herald.endpoint.disabled", "herald.endpoint.enabled", "herald.endpoint.recovered", "invoice.paid", "invoice.voided", "order.created"}
	if !slices.Equal(keys, want) {
		t.Errorf("webhooks = %v, want %v", keys, want)
	}
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v", doc["openapi"])
	}
	voided := doc["webhooks"].(map[string]any)["invoice.voided"].(map[string]any)["post"].(map[string]any)
	if voided["deprecated"] != true || !strings.Contains(voided["description"].(string), "use invoice.cancelled") {
		t.Errorf("invoice.voided = %v, want deprecated with its message", voided)
	}
	if !strings.Contains(voided["description"].(string), "event.data.amount > 10") {
		t.Errorf("the subscription's filter is not mentioned: %v", voided["description"])
	}
	// "*" does not bring Herald's own events, as in the router.
	doc = build(t, endpoint(heraldv1.WebhookEndpointSpec{}), subscriptions("*"))
	for k := range doc["webhooks"].(map[string]any) {
		if strings.HasPrefix(k, "herald.") {
			t.Errorf("a subscription to * documents %s", k)
		}
	}
}

func TestBuild_BodyIsWhatTheEndpointGets(t *testing.T) {
	env := build(t, endpoint(heraldv1.WebhookEndpointSpec{Payload: heraldv1.PayloadSpec{ExtraFields: map[string]string{"environment": "production"}}}), subscriptions("invoice.paid"))
	schemas := env["components"].(map[string]any)["schemas"].(map[string]any)
	envelope := schemas["invoice.paid"].(map[string]any)
	if !slices.Contains(anySlice(envelope["required"]), "environment") || envelope["additionalProperties"] != false {
		t.Errorf("envelope = %v, want environment required and nothing else allowed", envelope)
	}
	// The type's $defs reference is rewritten to resolve inside the document.
	data, _ := json.Marshal(schemas["invoice.paid.data"])
	if !strings.Contains(string(data), `"$ref":"#/components/schemas/invoice.paid.data/$defs/line"`) {
		t.Errorf("data schema = %s: its $ref does not point into the document", data)
	}

	raw := build(t, endpoint(heraldv1.WebhookEndpointSpec{Payload: heraldv1.PayloadSpec{Format: heraldv1.PayloadData}}), subscriptions("invoice.paid"))
	body := raw["webhooks"].(map[string]any)["invoice.paid"].(map[string]any)["post"].(map[string]any)["requestBody"].(map[string]any)
	ref := body["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)["$ref"]
	if ref != "#/components/schemas/invoice.paid.data" {
		t.Errorf("a Data endpoint's body is %v, want the data schema itself", ref)
	}
}

func TestBuild_SignatureHeadersOfEachStyle(t *testing.T) {
	for style, want := range map[heraldv1.SignatureStyle][]string{
		heraldv1.SignatureStandardWebhooks:        {"webhook-id", "webhook-timestamp", "webhook-signature"},
		heraldv1.SignatureStandardWebhooksEd25519: {"webhook-id", "webhook-timestamp", "webhook-signature"},
		heraldv1.SignatureTimestampedPrefixedHex:  {"X-Acme-Signature", "X-Acme-Timestamp"},
		heraldv1.SignatureBodyPrefixedHex:         {"X-Acme-Signature"},
		heraldv1.SignatureTimestampedHex:          {"X-Acme-Signature", "X-Acme-Timestamp", "X-Acme-Event"},
	} {
		doc := build(t, endpoint(heraldv1.WebhookEndpointSpec{Signature: heraldv1.SignatureSpec{Style: style, HeaderPrefix: "X-Acme"}}), subscriptions("invoice.paid"))
		params := doc["webhooks"].(map[string]any)["invoice.paid"].(map[string]any)["post"].(map[string]any)["parameters"].([]any)
		var required []string
		for _, p := range params {
			if p := p.(map[string]any); p["required"] == true {
				required = append(required, p["name"].(string))
			}
		}
		for _, h := range append(want, "X-Acme-Event-Id", "X-Acme-Delivery-Attempt") {
			if !slices.Contains(required, h) {
				t.Errorf("%s: required headers %v lack %s", style, required, h)
			}
		}
		if doc["x-herald-signature"].(map[string]any)["style"] != string(style) {
			t.Errorf("%s: x-herald-signature = %v", style, doc["x-herald-signature"])
		}
	}
}

// Every document an endpoint can get passes @redocly/cli lint (its recommended rules),
// an OpenAPI validator written elsewhere, installed by hack/npm-tool.sh at a pinned
// version; and every example it shows validates against the schema it gives.
func TestBuild_PassesRedoclyLint(t *testing.T) {
	redocly := npmTool(t, "redocly")
	dir := t.TempDir()
	var files []string
	write := func(name string, ep *heraldv1.WebhookEndpoint, types ...string) {
		b, err := receiverdocs.Build(receiverdocs.Input{Endpoint: ep, Subscriptions: subscriptions(types...), Catalog: catalog()})
		if err != nil {
			t.Fatal(err)
		}
		checkExamples(t, name, b)
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	for _, style := range []heraldv1.SignatureStyle{heraldv1.SignatureStandardWebhooks, heraldv1.SignatureStandardWebhooksEd25519,
		heraldv1.SignatureTimestampedPrefixedHex, heraldv1.SignatureBodyPrefixedHex, heraldv1.SignatureTimestampedHex} {
		write("envelope-"+string(style), endpoint(heraldv1.WebhookEndpointSpec{Signature: heraldv1.SignatureSpec{Style: style},
			Payload: heraldv1.PayloadSpec{ExtraFields: map[string]string{"environment": "production"}}}), "invoice.*", "herald.*", "*.shipped")
		write("data-"+string(style), endpoint(heraldv1.WebhookEndpointSpec{Signature: heraldv1.SignatureSpec{Style: style},
			Payload: heraldv1.PayloadSpec{Format: heraldv1.PayloadData}}), "invoice.paid", "order.created")
	}
	write("oauth2-headers", endpoint(heraldv1.WebhookEndpointSpec{
		Headers: []heraldv1.HeaderSpec{{Name: "X-Team", Value: ptr("billing")}},
		Auth: &heraldv1.AuthSpec{OAuth2: &heraldv1.OAuth2ClientCredentials{TokenURL: "https://auth.example.com/token", ClientID: ptr("herald"),
			ClientSecretRef: heraldv1.SecretKeySelector{Name: "oauth", Key: "secret"}}},
	}), "*")
	write("nothing", endpoint(heraldv1.WebhookEndpointSpec{}))

	cmd := exec.Command(redocly, append([]string{"lint", "--format=stylish"}, files...)...)
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	t.Logf("redocly lint of %d documents:\n%s", len(files), out)
	if err != nil {
		t.Fatalf("redocly lint failed: %v", err)
	}
	if bytes.Contains(out, []byte(" error ")) {
		t.Fatal("redocly lint reported errors")
	}
}

// checkExamples validates each example of each webhook against its request body schema,
// resolved within the document.
func checkExamples(t *testing.T, name string, doc []byte) {
	t.Helper()
	var d struct {
		Webhooks map[string]struct {
			Post struct {
				RequestBody struct {
					Content map[string]struct {
						Examples map[string]struct{ Value any } `json:"examples"`
					} `json:"content"`
				} `json:"requestBody"`
			} `json:"post"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	for key, w := range d.Webhooks {
		for exName, ex := range w.Post.RequestBody.Content["application/json"].Examples {
			sch, err := receiverdocs.RequestSchema(doc, key)
			if err != nil {
				t.Fatalf("%s %s: %v", name, key, err)
			}
			b, _ := json.Marshal(ex.Value)
			v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err := sch.Validate(v); err != nil {
				t.Errorf("%s: %s's %s does not validate against its schema: %v", name, key, exName, err)
			}
		}
	}
}

func npmTool(t *testing.T, name string) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "hack", "npm-tool.sh"), name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("installing %s: %v\n%s", name, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func anySlice(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

func ptr[T any](v T) *T { return &v }
