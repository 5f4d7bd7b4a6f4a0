package verify_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/pkg/verify"
)

// FuzzVerify feeds arbitrary headers, bodies and secrets to every verifier. Beyond never
// panicking, it checks two properties on each input: what the signer produces for that
// body verifies, and the same request with one body byte flipped does not.
func FuzzVerify(f *testing.F) {
	f.Add(current, "evt_01J", "1772366400", "v1,AAAA sha256=abcd", "", "approval.decided", []byte(`{"a":1}`))
	f.Add("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "", "", []byte(`{"test": 2432232314}`))
	f.Add("whsec_your_signing_secret", "", "-9223372036854775808", "sha256=", "sha256=zz", "\x00", []byte{0xff, 0xfe})
	f.Add("", "a.b.c", "99999999999999999999999", "v1,", "v1", "", []byte{})
	f.Add("whsec_", " ", "+1772366400", " , ,v1,=", "\r\n", "é", []byte("\x00"))

	f.Fuzz(func(t *testing.T, secret, id, ts, sig, prevSig, event string, body []byte) {
		now := time.Unix(1_772_366_400, 0)
		at := verify.WithClock(func() time.Time { return now })

		// Arbitrary input: any outcome but a panic; errors keep the secret out.
		h := http.Header{}
		h["Webhook-Id"] = []string{id}
		h["Webhook-Timestamp"] = []string{ts}
		h["Webhook-Signature"] = []string{sig, prevSig}
		h["X-Acme-Signature"] = []string{sig}
		h["X-Acme-Signature-Previous"] = []string{prevSig}
		h["X-Acme-Timestamp"] = []string{ts}
		h["X-Acme-Event"] = []string{event}
		for _, v := range verifiers {
			err := v.verify(secret, h, body, at)
			if err != nil && len(secret) >= 8 && !strings.Contains(sig+prevSig+id+ts, secret) &&
				strings.Contains(err.Error(), strings.TrimPrefix(secret, "whsec_")) {
				t.Fatalf("%s: error %q contains the secret", v.style, err)
			}
		}

		// Signed input: must verify exactly as sent, and not after a one-byte change.
		if id == "" {
			id = "evt_1"
		}
		for _, v := range verifiers {
			s, err := signer.New(v.style, prefix, []byte(secret), nil)
			if err != nil {
				continue // a secret the style cannot use; New's own tests cover that
			}
			signed := http.Header{}
			s.Sign(signed, signer.Message{ID: id, Timestamp: now, Body: body, EventType: event})
			if err := v.verify(secret, signed, body, at); err != nil {
				t.Fatalf("%s: signed request did not verify: %v", v.style, err)
			}
			if len(body) > 0 {
				flipped := append([]byte(nil), body...)
				flipped[len(flipped)/2] ^= 0x01
				if err := v.verify(secret, signed, flipped, at); err == nil {
					t.Fatalf("%s: a flipped body byte still verified", v.style)
				}
			}
			if v.style != v1alpha1.SignatureStandardWebhooks {
				continue
			}
			// The id is signed too.
			signed.Set("Webhook-Id", id+"x")
			if err := v.verify(secret, signed, body, at); err == nil {
				t.Fatal("StandardWebhooks: a changed webhook-id still verified")
			}
		}
	})
}
