package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/herald-dev/herald/pkg/client"
	"github.com/herald-dev/herald/pkg/wire"
)

// A producer publishes with the token Kubernetes projects into its pod for Herald's
// audience; the file is read for every request, as the kubelet renews it. Publishing the
// same id again is answered as the first time and delivers nothing new, which is what
// makes retrying safe.
func ExampleClient_Publish() {
	c, err := client.New(server, client.Options{TokenFile: tokenFile})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	event := wire.Event{ID: "inv_123-paid", Type: "invoice.paid", Data: json.RawMessage(`{"amount": 2500}`)}
	for range 2 {
		res, err := c.Publish(ctx, "shop", event)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s matched %d endpoint(s), duplicate: %t\n", res.ID, res.Matched, res.Duplicate)
	}
	// Output:
	// inv_123-paid matched 1 endpoint(s), duplicate: false
	// inv_123-paid matched 1 endpoint(s), duplicate: true
}

// Up to 100 events go in one request; each gets its own result, in order. Events
// without an id get one from the client, before the first attempt, so a retried batch
// repeats them.
func ExampleClient_PublishBatch() {
	c, err := client.New(server, client.Options{TokenFile: tokenFile})
	if err != nil {
		log.Fatal(err)
	}
	results, err := c.PublishBatch(context.Background(), "shop", []wire.Event{
		{ID: "inv_200-sent", Type: "invoice.sent", Data: json.RawMessage(`{"invoice": 200}`)},
		{Type: "order.created", Data: json.RawMessage(`{"order": "A-1"}`)},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range results {
		fmt.Printf("id given: %t, matched %d\n", r.ID != "", r.Matched)
	}
	// Output:
	// id given: true, matched 1
	// id given: true, matched 0
}

// Refusals are *client.APIError values carrying the dispatcher's error envelope: a code
// to branch on and a message naming the problem. They are not retried.
func ExampleAPIError() {
	c, err := client.New(server, client.Options{TokenFile: tokenFile})
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Publish(context.Background(), "shop", wire.Event{Type: "invoice paid", Data: json.RawMessage(`{}`)})
	var refused *client.APIError
	if errors.As(err, &refused) {
		fmt.Println(refused.StatusCode, refused.Detail.Code, refused.Detail.Field)
	}
	// Output:
	// 400 invalid_event type
}

// An operator lists an endpoint's dead letters and delivers them again with their
// original ids. The endpoint API takes tokens only, of a user allowed get and the
// custom verb replay on webhookendpoints.hooks.herald.dev (herald-operator).
func ExampleEndpoint_ReplayDeadLetters() {
	producer, err := client.New(server, client.Options{TokenFile: tokenFile})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if _, err := producer.Publish(ctx, "shop", wire.Event{ID: "led_7", Type: "ledger.posted", Data: json.RawMessage(`{"entry": 7}`)}); err != nil {
		log.Fatal(err)
	}

	operator, err := client.New(server, client.Options{Token: operatorToken})
	if err != nil {
		log.Fatal(err)
	}
	ledger := operator.Endpoint("shop", "ledger")
	var list wire.DeadLetterList
	for deadline := time.Now().Add(30 * time.Second); len(list.Items) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if list, err = ledger.DeadLetters(ctx, client.DeadLetterQuery{EventType: "ledger.posted"}); err != nil {
			log.Fatal(err)
		}
	}
	for _, d := range list.Items {
		fmt.Printf("dead letter %s after %d attempts: %s, HTTP %d\n", d.EventID, d.Attempts, d.Reason, d.StatusCode)
	}
	res, err := ledger.ReplayDeadLetters(ctx, wire.ReplayRequest{EventIDs: []string{"led_7"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("replayed:", res.Replayed)
	// Output:
	// dead letter led_7 after 2 attempts: RetriesExhausted, HTTP 500
	// replayed: 1
}

// The attempt log says what each attempt got; an event's history gathers its attempts
// at every endpoint it went to.
func ExampleClient_EventHistory() {
	producer, err := client.New(server, client.Options{TokenFile: tokenFile})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if _, err := producer.Publish(ctx, "shop", wire.Event{ID: "inv_77-paid", Type: "invoice.paid", Data: json.RawMessage(`{"amount": 77}`)}); err != nil {
		log.Fatal(err)
	}
	operator, err := client.New(server, client.Options{Token: operatorToken})
	if err != nil {
		log.Fatal(err)
	}
	var h wire.EventHistory
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if h, err = operator.EventHistory(ctx, "shop", "inv_77-paid"); err == nil && len(h.Deliveries) > 0 && h.Deliveries[0].State == wire.StateDelivered {
			break
		}
	}
	for _, d := range h.Deliveries {
		fmt.Printf("%s: %s after %d attempt(s), HTTP %d\n", d.Endpoint, d.State, len(d.Attempts), d.Attempts[0].StatusCode)
	}
	attempts, err := operator.Endpoint("shop", "billing").Attempts(ctx, client.AttemptQuery{EventID: "inv_77-paid"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("attempts of billing:", len(attempts.Items))
	// Output:
	// billing: Delivered after 1 attempt(s), HTTP 204
	// attempts of billing: 1
}

// Re-enabling an endpoint that was not disabled changes nothing and says so.
func ExampleEndpoint_Enable() {
	operator, err := client.New(server, client.Options{Token: operatorToken})
	if err != nil {
		log.Fatal(err)
	}
	res, err := operator.Endpoint("shop", "billing").Enable(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("was disabled:", res.WasDisabled)
	// Output:
	// was disabled: false
}

// The receiver documentation is an OpenAPI 3.1 document of what the endpoint is sent.
func ExampleEndpoint_OpenAPI() {
	operator, err := client.New(server, client.Options{Token: operatorToken})
	if err != nil {
		log.Fatal(err)
	}
	doc, err := operator.Endpoint("shop", "billing").OpenAPI(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	var openapi struct {
		Version  string         `json:"openapi"`
		Webhooks map[string]any `json:"webhooks"`
	}
	if err := json.Unmarshal(doc, &openapi); err != nil {
		log.Fatal(err)
	}
	fmt.Println("OpenAPI", openapi.Version, "webhooks:", len(openapi.Webhooks))
	// Output:
	// OpenAPI 3.1.0 webhooks: 1
}

// The attempt log of a namespace counted per minute, in one request: what a chart of
// the last minutes' outcomes needs.
func ExampleClient_AttemptSummary() {
	producer, err := client.New(server, client.Options{TokenFile: tokenFile})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if _, err := producer.Publish(ctx, "shop", wire.Event{ID: "inv_78-paid", Type: "invoice.paid", Data: json.RawMessage(`{"amount": 78}`)}); err != nil {
		log.Fatal(err)
	}
	operator, err := client.New(server, client.Options{Token: operatorToken})
	if err != nil {
		log.Fatal(err)
	}
	delivered := 0
	var s wire.AttemptSummary
	for deadline := time.Now().Add(30 * time.Second); delivered == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s, err = operator.AttemptSummary(ctx, "shop", 5); err != nil {
			log.Fatal(err)
		}
		for _, b := range s.Buckets {
			delivered += b.Delivered
		}
	}
	fmt.Printf("%d buckets of %ds, deliveries counted: %t\n", len(s.Buckets), s.StepSeconds, delivered > 0)
	// Output:
	// 5 buckets of 60s, deliveries counted: true
}
