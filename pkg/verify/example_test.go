package verify_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/pkg/verify"
)

// A receiver for an endpoint with the default StandardWebhooks style. Read the body
// once, verify the exact bytes, then decode them.
func Example() {
	// In a real service this comes from configuration, e.g. the Kubernetes Secret the
	// WebhookEndpoint's spec.secretRef names.
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := verify.StandardWebhooks(secret, r.Header, body); err != nil {
			log.Printf("rejected webhook: %v", err) // safe to log: never contains the secret
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		// Herald delivers at least once: deduplicate on r.Header.Get("webhook-id"),
		// then decode and handle body.
		w.WriteHeader(http.StatusNoContent)
	})

	body := `{"id":"evt_01J","type":"approval.decided","data":{"approved":true}}`
	for _, sent := range []string{body, strings.Replace(body, "true", "false", 1)} {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/herald", strings.NewReader(sent))
		signLikeHerald(req.Header, secret, "evt_01J", body)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// 204
	// 401
}

// signLikeHerald stands in for the dispatcher: Standard Webhooks headers for body,
// signed now.
func signLikeHerald(h http.Header, secret, id, body string) {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, key)
	io.WriteString(mac, id+"."+ts+"."+body)
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
}

// Reference 004's style, with the endpoint's header prefix, checked with a fixed clock.
func ExampleTimestampedHex() {
	h := http.Header{}
	h.Set("X-Praxis-Signature", "7c8a131844f3c82474b971f9aec327d800d5b2db650ce54b3a5924dd23fc43ef")
	h.Set("X-Praxis-Timestamp", "1771083000")
	body := []byte(`{"id":"550e8400-e29b-41d4-a716-446655440000","status":"completed"}`)

	at := func(sec int64) verify.Option {
		return verify.WithClock(func() time.Time { return time.Unix(sec, 0) })
	}
	fmt.Println(verify.TimestampedHex("whsec_your_signing_secret", "X-Praxis", h, body, at(1771083000)))
	fmt.Println(verify.TimestampedHex("whsec_your_signing_secret", "X-Praxis", h, body, at(1771083000+600)))
	// Output:
	// <nil>
	// verify: X-Praxis-Timestamp: timestamp outside tolerance (10m0s old, tolerance 5m0s)
}
