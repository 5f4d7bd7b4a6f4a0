package verify_test

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/pkg/verify"
)

// RFC 8032 test 1 and 2 key pairs and an openssl signature of the Standard Webhooks
// specification's example message (commands in internal/refreceiver's
// TestStandardWebhooksEd25519_OpensslVector).
const (
	edSeed       = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
	edPublic     = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	edPrevSeed   = "whsk_TM0Imyj/ltqdtsNG7BFOD1uKMZ81q6Yk2oz27U+4pvs="
	edPrevPublic = "whpk_PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw="
	edBody       = `{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"1f81eb52-5198-4599-803e-771906343485"}}`
	edSig        = "v1a,pbpYBMlty2hExn4zt0UTGb6BaP2Vq5AfyzjB9GGV3x/wCJKd8UjOCf8Qhaji6TKY9C5eNMnlF0GG4udaO6B7Ag=="
)

func TestStandardWebhooksEd25519_OpensslVector(t *testing.T) {
	h := http.Header{}
	h.Set("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
	h.Set("webhook-timestamp", "1674087231")
	// As in the specification's example header: a v1 signature may come first.
	h.Set("webhook-signature", "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= "+edSig)
	if err := verify.StandardWebhooksEd25519(edPublic, h, []byte(edBody), clockAt(time.Unix(1674087231, 0))); err != nil {
		t.Fatal(err)
	}
	err := verify.StandardWebhooksEd25519(edPrevPublic, h, []byte(edBody), clockAt(time.Unix(1674087231, 0)))
	var he *verify.HeaderError
	if !errors.Is(err, verify.ErrNoMatchingSignature) || !errors.As(err, &he) || !strings.Contains(err.Error(), "1 v1a signature(s) checked") {
		t.Errorf("another public key: %v, want no matching signature after checking the one v1a entry", err)
	}
}

func TestStandardWebhooksEd25519_WithSigner(t *testing.T) {
	body := []byte(`{"id":"evt_01J","type":"approval.decided","data":{"approved":true}}`)
	signed := func(t *testing.T, prev string, at time.Time) http.Header {
		var p []byte
		if prev != "" {
			p = []byte(prev)
		}
		s, err := signer.New(v1alpha1.SignatureStandardWebhooksEd25519, "", []byte(edSeed), p)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		s.Sign(h, signer.Message{ID: "evt_01J", Timestamp: at, Body: body})
		return h
	}
	now := time.Now()
	tests := []struct {
		why     string
		prev    string
		key     string
		h       func(t *testing.T) http.Header
		body    []byte
		wantErr error
	}{
		{why: "the endpoint's public key verifies", key: edPublic},
		{why: "rotation: the old public key verifies", prev: edPrevSeed, key: edPrevPublic},
		{why: "rotation: the new public key verifies", prev: edPrevSeed, key: edPublic},
		{why: "after the rotation the old public key is refused", key: edPrevPublic, wantErr: verify.ErrNoMatchingSignature},
		{why: "a changed body is refused", key: edPublic, body: []byte(strings.Replace(string(body), "true", "false", 1)), wantErr: verify.ErrNoMatchingSignature},
		{why: "the private key is refused, saying receivers never need it", key: edSeed, wantErr: verify.ErrInvalidSecret},
		{why: "an HMAC secret is no public key", key: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantErr: verify.ErrInvalidSecret},
		{
			why: "a stale request is refused", key: edPublic, wantErr: verify.ErrTimestampOutsideTolerance,
			h: func(t *testing.T) http.Header { return signed(t, "", now.Add(-10*time.Minute)) },
		},
		{
			why: "a rewritten timestamp breaks the signature", key: edPublic, wantErr: verify.ErrNoMatchingSignature,
			h: func(t *testing.T) http.Header {
				h := signed(t, "", now.Add(-time.Minute))
				h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
				return h
			},
		},
		{
			why: "a missing webhook-id is named", key: edPublic, wantErr: verify.ErrMissingHeader,
			h: func(t *testing.T) http.Header { h := signed(t, "", now); h.Del("webhook-id"); return h },
		},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			var h http.Header
			if tt.h != nil {
				h = tt.h(t)
			} else {
				h = signed(t, tt.prev, now)
			}
			b := body
			if tt.body != nil {
				b = tt.body
			}
			err := verify.StandardWebhooksEd25519(tt.key, h, b, clockAt(now))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "nWGxne") {
				t.Errorf("error quotes the private key: %v", err)
			}
		})
	}
}

// A receiver of an endpoint with spec.signature.style StandardWebhooksEd25519 holds only
// the public key: `herald endpoint public-key billing`, the endpoint's status.publicKey,
// or the ConfigMap billing-public-key.
func ExampleStandardWebhooksEd25519() {
	const publicKey = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	h := http.Header{}
	h.Set("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
	h.Set("webhook-timestamp", "1674087231")
	h.Set("webhook-signature", "v1a,pbpYBMlty2hExn4zt0UTGb6BaP2Vq5AfyzjB9GGV3x/wCJKd8UjOCf8Qhaji6TKY9C5eNMnlF0GG4udaO6B7Ag==")
	body := []byte(`{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"1f81eb52-5198-4599-803e-771906343485"}}`)

	at := verify.WithClock(func() time.Time { return time.Unix(1674087231, 0) })
	fmt.Println(verify.StandardWebhooksEd25519(publicKey, h, body, at))
	fmt.Println(verify.StandardWebhooksEd25519(publicKey, h, append(body, ' '), at))
	// Output:
	// <nil>
	// verify: Webhook-Signature: no matching signature (1 v1a signature(s) checked)
}
