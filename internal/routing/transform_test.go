package routing

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// slackMessage is the README's transform: a Slack incoming-webhook message of Herald's
// herald.endpoint.disabled event, built by concatenation (format() and join() are
// refused: their result sizes cannot be bounded before they run).
const slackMessage = `{"text": ":rotating_light: Herald disabled webhook endpoint " + event.data.namespace + "/" + event.data.endpoint +
  " after " + string(int(event.data.consecutiveFailures)) + " failed attempts: " + event.data.message,
 "username": "herald"}`

// teamsCard is a Teams MessageCard of an order event: fields picked and renamed. (A
// map() over an event list building an object per element is refused: on the largest
// list it would build half a million of them.)
const teamsCard = `{"@type": "MessageCard", "summary": "Order " + event.data.id,
 "sections": [{"activityTitle": event.type + " from " + event.source,
   "facts": [{"name": "Order", "value": event.data.id}, {"name": "Items", "value": size(event.data.items)}]}]}`

func disabledEvent(message string) map[string]any {
	return EventInput("evt_1", "herald.endpoint.disabled", "herald", time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC), map[string]any{
		"namespace": "shop", "endpoint": "billing", "consecutiveFailures": float64(5), "message": message,
	})
}

func TestCompileTransform_ShapesTheBodyTheSameOnEveryAttempt(t *testing.T) {
	for _, tt := range []struct {
		name, expr string
		event      map[string]any
		want       string
	}{
		{"slack", slackMessage, disabledEvent("HTTP 500"),
			`{"text":":rotating_light: Herald disabled webhook endpoint shop/billing after 5 failed attempts: HTTP 500","username":"herald"}`},
		{"teams", teamsCard, EventInput("evt_2", "order.created", "<shop>", time.Unix(0, 0), map[string]any{
			"id": "o-1", "items": []any{map[string]any{"sku": "A-1", "qty": float64(2)}, map[string]any{"sku": "B<2>", "qty": float64(1)}}}),
			`{"@type":"MessageCard","sections":[{"activityTitle":"order.created from \u003cshop\u003e","facts":[{"name":"Order","value":"o-1"},{"name":"Items","value":2}]}],"summary":"Order o-1"}`},
		{"rename and pick", `{"orderId": event.data.id, "at": event.created_at, "kind": event.type, "total": event.data.total * 100.0}`,
			EventInput("evt_3", "order.paid", "shop", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), map[string]any{"id": "o-1", "total": 1.5, "secret": "x"}),
			`{"at":"2026-01-02T03:04:05Z","kind":"order.paid","orderId":"o-1","total":150}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := CompileTransform(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 { // map keys come out sorted: the same body, and signature, each attempt
				var b bytes.Buffer
				if err := tr.Apply(&b, tt.event); err != nil {
					t.Fatal(err)
				}
				if b.String() != tt.want {
					t.Fatalf("body\n%s\nwant\n%s", b.String(), tt.want)
				}
				if !json.Valid(b.Bytes()) {
					t.Fatalf("not JSON: %s", b.String())
				}
			}
		})
	}
}

func TestCompileTransform_RefusesWithAMessageForTheAuthor(t *testing.T) {
	for _, tt := range []struct{ expr, want string }{
		{`"just a string"`, "transform must make a map"},
		{`{"facts": event.data.l.map(i, {"v": string(i)})}`, "transform is too expensive"},
		{`{"a": event.data.s.replace("A", "AAAA").replace("A", "AAAA")}`, "transform is too expensive"},
		{`{"a": "%s".format([event.data.s])}`, "format is not available"},
		{`{"a": nope}`, "undeclared reference to 'nope'"},
		{strings.Repeat(" ", MaxTransformLength+1), "at most 4096 are allowed"},
	} {
		_, err := CompileTransform(tt.expr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CompileTransform(%.60q) = %v, want an error containing %q", tt.expr, err, tt.want)
		}
	}
	var berr *BudgetError
	if _, err := CompileTransform(`{"a": event.data.s.replace("A", "AAAA").replace("A", "AAAA")}`); !errors.As(err, &berr) || berr.What != "transform" || berr.Budget != TransformBudget {
		t.Errorf("budget error = %#v, want one naming the transform and TransformBudget", err)
	}
}

func TestTransform_FailsOnAnEventItCannotShape(t *testing.T) {
	tr, err := CompileTransform(slackMessage)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = tr.Apply(&b, EventInput("evt_4", "order.created", "shop", time.Now(), map[string]any{"id": "o-1"}))
	if err == nil || !strings.Contains(err.Error(), "no such key: namespace") {
		t.Errorf("Apply on an event without the fields = %v, want no such key: namespace", err)
	}
	// A result over MaxTransformedBytes stops the encoding.
	big, err := CompileTransform(`{"a": event.data.s, "b": event.data.s}`)
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := big.Apply(&b, maximalEvents(t)["string"]); !errors.Is(err, ErrTransformedTooLarge) {
		t.Errorf("a result of twice the largest string = %v, want ErrTransformedTooLarge", err)
	}
}

// TestTransformBudget_TheSlackMessageOnTheLargestEventStaysWithinAFewMiB evaluates the
// Slack transform on an event whose message is as long as the ingest API allows: the
// estimator charges each field as if it alone filled the event (so the budget is
// TransformBudget, above FilterBudget); what one evaluation really allocates stays
// within memoryBound.
func TestTransformBudget_TheSlackMessageOnTheLargestEventStaysWithinAFewMiB(t *testing.T) {
	est := mustEstimate(t, slackMessage)
	if est <= FilterBudget || est > TransformBudget {
		t.Errorf("the Slack transform's estimate is %d; the fixture no longer shows why transforms have a budget of their own (%d, filters %d)",
			est, TransformBudget, FilterBudget)
	}
	tr, err := CompileTransform(slackMessage)
	if err != nil {
		t.Fatal(err)
	}
	ev := disabledEvent(strings.Repeat("A", room))
	var b bytes.Buffer
	b.Grow(MaxEventBytes + 1024)
	allocated := allocatedBy(func() { err = tr.Apply(&b, ev) })
	t.Logf("estimate %d: one evaluation on the largest message allocated %d bytes", est, allocated)
	if err != nil {
		t.Fatal(err)
	}
	if allocated > memoryBound {
		t.Errorf("one evaluation allocated %d bytes, more than %d", allocated, memoryBound)
	}
}

// BenchmarkTransform: the Slack and Teams transforms on typical events, against the
// baseline of what every delivery already does with its body (encoding a typical
// envelope and signing it); and the Slack transform on its largest event against
// signing a body of that size.
func BenchmarkTransform(b *testing.B) {
	slack, err := CompileTransform(slackMessage)
	if err != nil {
		b.Fatal(err)
	}
	teams, err := CompileTransform(teamsCard)
	if err != nil {
		b.Fatal(err)
	}
	order := map[string]any{"id": "o-1", "items": []any{map[string]any{"sku": "A-1", "qty": float64(2)}, map[string]any{"sku": "B-2", "qty": float64(1)}}}
	typical := map[string]map[string]any{
		"slack": disabledEvent("5 consecutive failed attempts; last: HTTP 500"),
		"teams": EventInput("evt_2", "order.created", "shop", time.Now(), celValue(order)),
	}
	key := bytes.Repeat([]byte{7}, 32)
	sign := func(body []byte) {
		m := hmac.New(sha256.New, key)
		m.Write(body)
		m.Sum(nil)
	}
	b.Run("baseline-envelope-encode-and-sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			body, _ := json.Marshal(map[string]any{"id": "evt_2", "type": "order.created", "created_at": "2026-12-07T03:00:00Z", "data": order})
			sign(body)
		}
	})
	for name, tr := range map[string]*Transform{"slack": slack, "teams": teams} {
		b.Run(name+"-and-sign", func(b *testing.B) {
			b.ReportAllocs()
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if err := tr.Apply(&buf, typical[name]); err != nil {
					b.Fatal(err)
				}
				sign(buf.Bytes())
			}
		})
	}
	largest := disabledEvent(strings.Repeat("A", room))
	b.Run("baseline-sign-largest-body", func(b *testing.B) {
		body := bytes.Repeat([]byte("A"), MaxEventBytes)
		for b.Loop() {
			sign(body)
		}
	})
	b.Run("slack-on-largest-event-and-sign", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := slack.Apply(&buf, largest); err != nil {
				b.Fatal(err)
			}
			sign(buf.Bytes())
		}
	})
}
