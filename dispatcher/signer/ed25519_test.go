package signer_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/refreceiver"
)

// An ed25519 known answer made outside Go (see internal/refreceiver's
// TestStandardWebhooksEd25519_OpensslVector for the openssl commands): RFC 8032's test 1
// key pair signs the Standard Webhooks specification's example message.
const (
	edSeed      = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=" // RFC 8032 7.1 test 1 secret key
	edPublic    = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	edID        = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
	edTimestamp = 1674087231
	edBody      = `{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"1f81eb52-5198-4599-803e-771906343485"}}`
	edSig       = "v1a,pbpYBMlty2hExn4zt0UTGb6BaP2Vq5AfyzjB9GGV3x/wCJKd8UjOCf8Qhaji6TKY9C5eNMnlF0GG4udaO6B7Ag=="

	// RFC 8032 7.1 test 2's secret key: the key being rotated out.
	edPrevSeed   = "whsk_TM0Imyj/ltqdtsNG7BFOD1uKMZ81q6Yk2oz27U+4pvs="
	edPrevPublic = "whpk_PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw="
)

// edLong is edSeed in Go's and libsodium's 64-byte form: seed, then public key.
var edLong = func() string {
	seed, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(edSeed, "whsk_"))
	return "whsk_" + base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed))
}()

func TestSignEd25519_KnownAnswerAndPublicKey(t *testing.T) {
	for _, tt := range []struct{ why, secret string }{
		{"the 32-byte seed, as Herald generates and RFC 8032 writes it", edSeed},
		{"the 64-byte seed-and-public-key form signs alike", edLong},
	} {
		t.Run(tt.why, func(t *testing.T) {
			s := mustNew(t, v1alpha1.SignatureStandardWebhooksEd25519, "", []byte(tt.secret), nil)
			h := http.Header{}
			s.Sign(h, signer.Message{ID: edID, Timestamp: time.Unix(edTimestamp, 0), Body: []byte(edBody)})
			if got := h.Get("webhook-signature"); got != edSig {
				t.Errorf("webhook-signature = %q, want %q", got, edSig)
			}
			if h.Get("webhook-id") != edID || h.Get("webhook-timestamp") != "1674087231" {
				t.Errorf("webhook-id/timestamp = %q/%q", h.Get("webhook-id"), h.Get("webhook-timestamp"))
			}
			if s.PublicKey() != edPublic || s.PreviousPublicKey() != "" {
				t.Errorf("public keys = %q, %q; want %q and none", s.PublicKey(), s.PreviousPublicKey(), edPublic)
			}
			if strings.Contains(s.String(), strings.TrimPrefix(tt.secret, "whsk_")[:12]) {
				t.Errorf("String() shows key material: %s", s)
			}
		})
	}
}

func TestSignEd25519_RotationListsEverySignature(t *testing.T) {
	msg := signer.Message{ID: edID, Timestamp: time.Unix(edTimestamp, 0), Body: []byte(edBody)}
	tests := []struct {
		why         string
		style       v1alpha1.SignatureStyle
		cur, prev   string
		wantPrefix  []string // versions in order
		wantPublic  [2]string
		wantRotates bool
	}{
		{"ed25519 key rotation: two v1a, current first", v1alpha1.SignatureStandardWebhooksEd25519, edSeed, edPrevSeed, []string{"v1a", "v1a"}, [2]string{edPublic, edPrevPublic}, true},
		{"HMAC to ed25519: the old whsec_ keeps signing v1", v1alpha1.SignatureStandardWebhooksEd25519, edSeed, swSecret, []string{"v1a", "v1"}, [2]string{edPublic, ""}, true},
		{"ed25519 back to HMAC: the old whsk_ keeps signing v1a", v1alpha1.SignatureStandardWebhooks, swSecret, edSeed, []string{"v1", "v1a"}, [2]string{"", edPublic}, true},
		{"the same key twice signs once", v1alpha1.SignatureStandardWebhooksEd25519, edSeed, edLong, []string{"v1a"}, [2]string{edPublic, ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			s := mustNew(t, tt.style, "", []byte(tt.cur), []byte(tt.prev))
			h := http.Header{}
			s.Sign(h, msg)
			sigs := strings.Fields(h.Get("webhook-signature"))
			if len(sigs) != len(tt.wantPrefix) {
				t.Fatalf("webhook-signature %q, want %d entries", h.Get("webhook-signature"), len(tt.wantPrefix))
			}
			for i, sig := range sigs {
				if v, _, _ := strings.Cut(sig, ","); v != tt.wantPrefix[i] {
					t.Errorf("entry %d is %s, want %s", i, v, tt.wantPrefix[i])
				}
			}
			if sigs[0] == edSig != (tt.cur == edSeed) {
				t.Errorf("first entry %q: the current key signs first", sigs[0])
			}
			if got := [2]string{s.PublicKey(), s.PreviousPublicKey()}; got != tt.wantPublic {
				t.Errorf("public keys %q, want %q", got, tt.wantPublic)
			}
			if s.Rotating() != tt.wantRotates {
				t.Errorf("Rotating() = %v", s.Rotating())
			}
		})
	}
}

func TestNewEd25519_RefusesKeysItCannotUse(t *testing.T) {
	seed, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(edSeed, "whsk_"))
	other, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(edPrevSeed, "whsk_"))
	mismatched := "whsk_" + base64.StdEncoding.EncodeToString(append(append([]byte{}, seed...), ed25519.NewKeyFromSeed(other)[32:]...))
	tests := []struct {
		why       string
		style     v1alpha1.SignatureStyle
		cur, prev string
		wantMsg   string
	}{
		{"an HMAC secret cannot sign v1a; the message says how to get a key pair", v1alpha1.SignatureStandardWebhooksEd25519, swSecret, "", "holds a whsec_ (HMAC) secret"},
		{"a public key is not a signing key", v1alpha1.SignatureStandardWebhooksEd25519, edPublic, "", "needs whsk_"},
		{"a private key under the HMAC style says which style signs with it", v1alpha1.SignatureStandardWebhooks, edSeed, "", "StandardWebhooksEd25519"},
		{"a hex style takes whsk_ text as an HMAC secret, so only Standard Webhooks styles parse it", v1alpha1.SignatureTimestampedHex, edSeed, "", ""},
		{"31 bytes is no ed25519 key", v1alpha1.SignatureStandardWebhooksEd25519, "whsk_" + base64.StdEncoding.EncodeToString(seed[:31]), "", "holds 31 bytes"},
		{"a 64-byte key whose halves disagree", v1alpha1.SignatureStandardWebhooksEd25519, mismatched, "", "does not belong to its seed"},
		{"a trailing newline is pointed out", v1alpha1.SignatureStandardWebhooksEd25519, edSeed + "x\n", "", "trailing newline"},
		{"an unprefixed previous secret is ambiguous next to an ed25519 key", v1alpha1.SignatureStandardWebhooksEd25519, edSeed, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsk_ (ed25519) or whsec_ (HMAC)"},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			var prev []byte
			if tt.prev != "" {
				prev = []byte(tt.prev)
			}
			_, err := signer.New(tt.style, "", []byte(tt.cur), prev)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, signer.ErrInvalidSecret) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("New error %v, want ErrInvalidSecret saying %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), strings.TrimPrefix(tt.cur, "whsk_")[:10]) {
				t.Errorf("error quotes the key: %v", err)
			}
		})
	}
}

// TestSignEd25519_SpecReceiverVerifies posts real requests to a receiver written from the
// specification with crypto/ed25519 (internal/refreceiver), which holds only the public
// key: during a rotation a receiver on either key accepts.
func TestSignEd25519_SpecReceiverVerifies(t *testing.T) {
	body := []byte(`{"id":"evt_01J","type":"approval.decided","data":{"approved":true,"note":"naïve café ✓"}}`)
	tests := []struct {
		why         string
		prev        string
		receiverKey string
		tamper      bool
		want        int
	}{
		{"a receiver with the endpoint's public key accepts", "", edPublic, false, http.StatusOK},
		{"rotation: a receiver still on the old public key accepts", edPrevSeed, edPrevPublic, false, http.StatusOK},
		{"rotation: a receiver on the new public key accepts", edPrevSeed, edPublic, false, http.StatusOK},
		{"after the rotation the old public key no longer verifies", "", edPrevPublic, false, http.StatusUnauthorized},
		{"a body changed in transit is rejected", "", edPublic, true, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			var prev []byte
			if tt.prev != "" {
				prev = []byte(tt.prev)
			}
			s := mustNew(t, v1alpha1.SignatureStandardWebhooksEd25519, "", []byte(edSeed), prev)
			h := http.Header{}
			s.Sign(h, signer.Message{ID: "evt_01J", Body: body})
			sent := body
			if tt.tamper {
				sent = []byte(strings.Replace(string(body), "true", "false", 1))
			}
			srv := httptest.NewServer(refreceiver.Handler(func(h http.Header, b []byte) bool {
				return refreceiver.StandardWebhooksEd25519(tt.receiverKey, h, b, time.Now())
			}))
			defer srv.Close()
			if got := post(t, srv.URL, h, sent); got != tt.want {
				t.Errorf("receiver answered %d, want %d (webhook-signature %q)", got, tt.want, h.Get("webhook-signature"))
			}
		})
	}
}
