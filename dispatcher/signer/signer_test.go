package signer_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/signer"
)

// Secrets and payloads of the known-answer vectors. The reference documents give no
// worked signature, so the hex expectations were computed outside Go with openssl, for
// example:
//
//	printf '%s' '1705314600.{"id":"evt_abc123def456",...}' | openssl dgst -sha256 -hmac 'whsec_your_signing_secret'
//
// and the Standard Webhooks ones with the decoded key:
//
//	KEY=$(printf '%s' MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw | base64 -d | xxd -p -c 256)
//	printf '%s' 'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}' \
//	  | openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY -binary | base64
const (
	// The secret shown in all three reference documents, used as written.
	docSecret     = "whsec_your_signing_secret"
	docPrevSecret = "whsec_previous_signing_secret"

	// The Standard Webhooks specification's test vector (reference Go library,
	// TestWebhookSign).
	swSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	swPrev      = "whsec_dGhlLW9sZC1zZWNyZXQtYmVmb3JlLXJvdGF0aW9u" // base64("the-old-secret-before-rotation")
	swID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	swTimestamp = 1614265330
	swBody      = `{"test": 2432232314}`
	swSig       = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	swPrevSig   = "v1,Sp/YuVV4pTD/ThGrRKeS3BLGqHiAaST9H5qKUyl5TJc="

	// Payloads taken from the reference documents' examples, minified.
	torkBody   = `{"id":"evt_abc123def456","type":"policy.violation","created_at":"2024-01-15T10:30:00Z"}`
	torkTS     = 1705314600 // 2024-01-15T10:30:00Z, the example's created_at
	bolorBody  = `{"id":"evt_abc123def456","type":"agentguard.action.blocked","created_at":"2026-02-14T15:30:00Z","workspace_id":"ws_xyz789"}`
	praxisBody = `{"id":"550e8400-e29b-41d4-a716-446655440000","status":"completed"}`
	praxisTS   = 1771083000 // 2026-02-14T15:30:00Z
)

func mustNew(t testing.TB, style v1alpha1.SignatureStyle, prefix string, cur, prev []byte) *signer.Signer {
	t.Helper()
	s, err := signer.New(style, prefix, cur, prev)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestSign_KnownAnswerVectors(t *testing.T) {
	tests := []struct {
		why       string
		style     v1alpha1.SignatureStyle
		prefix    string
		cur, prev string
		msg       signer.Message
		want      http.Header
	}{
		{
			why:   "Standard Webhooks specification vector (the HMAC key is the base64-decoded part after whsec_)",
			style: v1alpha1.SignatureStandardWebhooks, cur: swSecret,
			msg: signer.Message{ID: swID, Timestamp: time.Unix(swTimestamp, 0), Body: []byte(swBody)},
			want: http.Header{
				"Webhook-Id": {swID}, "Webhook-Timestamp": {"1614265330"}, "Webhook-Signature": {swSig},
			},
		},
		{
			why:   "a Standard Webhooks secret without whsec_ is decoded whole, as the reference libraries do",
			style: v1alpha1.SignatureStandardWebhooks, cur: strings.TrimPrefix(swSecret, "whsec_"),
			msg: signer.Message{ID: swID, Timestamp: time.Unix(swTimestamp, 0), Body: []byte(swBody)},
			want: http.Header{
				"Webhook-Id": {swID}, "Webhook-Timestamp": {"1614265330"}, "Webhook-Signature": {swSig},
			},
		},
		{
			why:   "base64 skips line breaks (in Go and the reference libraries), so a Secret file's trailing newline is harmless here",
			style: v1alpha1.SignatureStandardWebhooks, cur: swSecret + "\n",
			msg: signer.Message{ID: swID, Timestamp: time.Unix(swTimestamp, 0), Body: []byte(swBody)},
			want: http.Header{
				"Webhook-Id": {swID}, "Webhook-Timestamp": {"1614265330"}, "Webhook-Signature": {swSig},
			},
		},
		{
			why:   "Standard Webhooks rotation: one header, current signature first, space separated",
			style: v1alpha1.SignatureStandardWebhooks, cur: swSecret, prev: swPrev,
			msg: signer.Message{ID: swID, Timestamp: time.Unix(swTimestamp, 0), Body: []byte(swBody)},
			want: http.Header{
				"Webhook-Id": {swID}, "Webhook-Timestamp": {"1614265330"}, "Webhook-Signature": {swSig + " " + swPrevSig},
			},
		},
		{
			why:   "Standard Webhooks ignores the header prefix and the event type",
			style: v1alpha1.SignatureStandardWebhooks, prefix: "X-Acme", cur: swSecret,
			msg: signer.Message{ID: swID, Timestamp: time.Unix(swTimestamp, 0), Body: []byte(swBody), EventType: "a.b"},
			want: http.Header{
				"Webhook-Id": {swID}, "Webhook-Timestamp": {"1614265330"}, "Webhook-Signature": {swSig},
			},
		},
		{
			why:   "reference 000 with its vendor prefix: sha256=<hex> over {timestamp}.{body}, key = secret as written",
			style: v1alpha1.SignatureTimestampedPrefixedHex, prefix: "X-Tork", cur: docSecret,
			msg: signer.Message{ID: "evt_abc123def456", Timestamp: time.Unix(torkTS, 0), Body: []byte(torkBody), EventType: "policy.violation"},
			want: http.Header{
				"X-Tork-Signature": {"sha256=0e07cf94708f293e70e8fa3c78e165db2b43322c42138411b5e7aa771daa04be"},
				"X-Tork-Timestamp": {"1705314600"},
			},
		},
		{
			why:   "reference 000 during rotation: the main header keeps the current secret, -Previous the old one",
			style: v1alpha1.SignatureTimestampedPrefixedHex, prefix: "X-Tork", cur: docSecret, prev: docPrevSecret,
			msg: signer.Message{Timestamp: time.Unix(torkTS, 0), Body: []byte(torkBody)},
			want: http.Header{
				"X-Tork-Signature":          {"sha256=0e07cf94708f293e70e8fa3c78e165db2b43322c42138411b5e7aa771daa04be"},
				"X-Tork-Signature-Previous": {"sha256=c39f8edfbe144fd796d4dc068366bd83a6e2bc276fb2029214482a5856ce1056"},
				"X-Tork-Timestamp":          {"1705314600"},
			},
		},
		{
			why:   "hex styles do not base64-decode a whsec_ secret: the whole string, prefix included, is the key",
			style: v1alpha1.SignatureTimestampedPrefixedHex, prefix: "X-Acme", cur: swSecret,
			msg: signer.Message{Timestamp: time.Unix(swTimestamp, 0), Body: []byte(swBody)},
			want: http.Header{
				"X-Acme-Signature": {"sha256=2e37df5d4a028c51a7f3133d64ae1e300d2c2c900f1b1d49d4369ad2530f8964"},
				"X-Acme-Timestamp": {"1614265330"},
			},
		},
		{
			why:   "an empty prefix means the API default X-Herald",
			style: v1alpha1.SignatureTimestampedPrefixedHex, cur: docSecret,
			msg: signer.Message{Timestamp: time.Unix(torkTS, 0), Body: []byte(torkBody)},
			want: http.Header{
				"X-Herald-Signature": {"sha256=0e07cf94708f293e70e8fa3c78e165db2b43322c42138411b5e7aa771daa04be"},
				"X-Herald-Timestamp": {"1705314600"},
			},
		},
		{
			why:   "a prefix in odd case becomes the canonical header name (names are case-insensitive)",
			style: v1alpha1.SignatureTimestampedPrefixedHex, prefix: "x-TORK", cur: docSecret,
			msg: signer.Message{Timestamp: time.Unix(torkTS, 0), Body: []byte(torkBody)},
			want: http.Header{
				"X-Tork-Signature": {"sha256=0e07cf94708f293e70e8fa3c78e165db2b43322c42138411b5e7aa771daa04be"},
				"X-Tork-Timestamp": {"1705314600"},
			},
		},
		{
			why:   "reference 003: sha256=<hex> over the raw body only, no timestamp header",
			style: v1alpha1.SignatureBodyPrefixedHex, prefix: "X-Bolor", cur: docSecret,
			msg: signer.Message{Timestamp: time.Unix(torkTS, 0), Body: []byte(bolorBody), EventType: "agentguard.action.blocked"},
			want: http.Header{
				"X-Bolor-Signature": {"sha256=346549477f83ae7a5c1a39af4be1c012a4b984fc4727cc73cd2cc77856cd3ab8"},
			},
		},
		{
			why:   "reference 003 during rotation",
			style: v1alpha1.SignatureBodyPrefixedHex, prefix: "X-Bolor", cur: docSecret, prev: docPrevSecret,
			msg: signer.Message{Body: []byte(bolorBody)},
			want: http.Header{
				"X-Bolor-Signature":          {"sha256=346549477f83ae7a5c1a39af4be1c012a4b984fc4727cc73cd2cc77856cd3ab8"},
				"X-Bolor-Signature-Previous": {"sha256=ef4a03f307dabdc89397ead88c0c1d8dcb932661685ad3f488ef170ee027fb55"},
			},
		},
		{
			why:   "reference 003 with a base64 whsec_ secret: still the whole string as key",
			style: v1alpha1.SignatureBodyPrefixedHex, prefix: "X-Acme", cur: swSecret,
			msg: signer.Message{Body: []byte(swBody)},
			want: http.Header{
				"X-Acme-Signature": {"sha256=80ec8a89ce3cd22133a1066caecb4d04fea7467657c8514d717ec42c38a5c94c"},
			},
		},
		{
			why:   "reference 004: bare <hex> over {timestamp}.{body}, plus the event type header",
			style: v1alpha1.SignatureTimestampedHex, prefix: "X-Praxis", cur: docSecret,
			msg: signer.Message{Timestamp: time.Unix(praxisTS, 0), Body: []byte(praxisBody), EventType: "evaluation.completed"},
			want: http.Header{
				"X-Praxis-Signature": {"7c8a131844f3c82474b971f9aec327d800d5b2db650ce54b3a5924dd23fc43ef"},
				"X-Praxis-Timestamp": {"1771083000"},
				"X-Praxis-Event":     {"evaluation.completed"},
			},
		},
		{
			why:   "reference 004 during rotation",
			style: v1alpha1.SignatureTimestampedHex, prefix: "X-Praxis", cur: docSecret, prev: docPrevSecret,
			msg: signer.Message{Timestamp: time.Unix(praxisTS, 0), Body: []byte(praxisBody), EventType: "evaluation.completed"},
			want: http.Header{
				"X-Praxis-Signature":          {"7c8a131844f3c82474b971f9aec327d800d5b2db650ce54b3a5924dd23fc43ef"},
				"X-Praxis-Signature-Previous": {"c2cf0f727dcb95f0b5d5d2cfba7511b00f646b8f1f5b4e729d64731d4c753ab7"},
				"X-Praxis-Timestamp":          {"1771083000"},
				"X-Praxis-Event":              {"evaluation.completed"},
			},
		},
		{
			why:   "sub-second precision is dropped: timestamps are unix seconds",
			style: v1alpha1.SignatureTimestampedHex, prefix: "X-Praxis", cur: docSecret,
			msg: signer.Message{Timestamp: time.Unix(praxisTS, 999_999_999), Body: []byte(praxisBody), EventType: "evaluation.completed"},
			want: http.Header{
				"X-Praxis-Signature": {"7c8a131844f3c82474b971f9aec327d800d5b2db650ce54b3a5924dd23fc43ef"},
				"X-Praxis-Timestamp": {"1771083000"},
				"X-Praxis-Event":     {"evaluation.completed"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			var prev []byte
			if tt.prev != "" {
				prev = []byte(tt.prev)
			}
			s := mustNew(t, tt.style, tt.prefix, []byte(tt.cur), prev)
			h := http.Header{}
			s.Sign(h, tt.msg)
			if !maps.EqualFunc(h, tt.want, slices.Equal) {
				t.Errorf("headers\n got %v\nwant %v", h, tt.want)
			}
			names := s.HeaderNames()
			for k := range h {
				if !slices.Contains(names, k) {
					t.Errorf("HeaderNames() = %v lacks %s, which Sign sets", names, k)
				}
			}
		})
	}
}

// TestSign_ReplacesEarlierValues covers a sender that reuses one header map across
// attempts or across a finished rotation: nothing stale may survive.
func TestSign_ReplacesEarlierValues(t *testing.T) {
	h := http.Header{}
	rotating := mustNew(t, v1alpha1.SignatureTimestampedPrefixedHex, "X-Acme", []byte(docSecret), []byte(docPrevSecret))
	rotating.Sign(h, signer.Message{Timestamp: time.Unix(1, 0), Body: []byte("a")})
	h.Add("X-Acme-Signature", "sha256=forged")

	done := mustNew(t, v1alpha1.SignatureTimestampedPrefixedHex, "X-Acme", []byte(docSecret), nil)
	done.Sign(h, signer.Message{Timestamp: time.Unix(2, 0), Body: []byte("b")})
	if got := h.Values("X-Acme-Signature"); len(got) != 1 || got[0] != "sha256="+hexHMAC(docSecret, "2.b") {
		t.Errorf("X-Acme-Signature = %q, want only the new signature", got)
	}
	if got := h.Values("X-Acme-Signature-Previous"); got != nil {
		t.Errorf("X-Acme-Signature-Previous = %q after the rotation ended, want absent", got)
	}
	if got := h.Get("X-Acme-Timestamp"); got != "2" {
		t.Errorf("X-Acme-Timestamp = %q, want 2", got)
	}
}

// TestSign_HeaderValuesDoNotAlias guards the shared backing array Sign uses for header
// values: appending to one header must not overwrite the next.
func TestSign_HeaderValuesDoNotAlias(t *testing.T) {
	for _, style := range allStyles {
		t.Run(string(style), func(t *testing.T) {
			s := mustNew(t, style, "X-Acme", []byte(swSecret), []byte(swPrev))
			h := http.Header{}
			s.Sign(h, signer.Message{ID: "evt_1", Timestamp: time.Unix(5, 0), Body: []byte("{}"), EventType: "a.b"})
			before := h.Clone()
			for k := range h {
				h[k] = append(h[k], "extra")
			}
			for k, v := range before {
				if h[k][0] != v[0] {
					t.Errorf("%s changed from %q to %q after appending to other headers", k, v[0], h[k][0])
				}
			}
		})
	}
}

var allStyles = []v1alpha1.SignatureStyle{
	v1alpha1.SignatureStandardWebhooks,
	v1alpha1.SignatureTimestampedPrefixedHex,
	v1alpha1.SignatureBodyPrefixedHex,
	v1alpha1.SignatureTimestampedHex,
}

func TestSign_ZeroTimestampMeansNow(t *testing.T) {
	s := mustNew(t, v1alpha1.SignatureStandardWebhooks, "", []byte(swSecret), nil)
	before := time.Now().Unix()
	h := http.Header{}
	s.Sign(h, signer.Message{ID: "evt_1", Body: []byte("{}")})
	after := time.Now().Unix()
	ts, err := strconv.ParseInt(h.Get("Webhook-Timestamp"), 10, 64)
	if err != nil || ts < before || ts > after {
		t.Errorf("Webhook-Timestamp = %q, want a unix time in [%d, %d]", h.Get("Webhook-Timestamp"), before, after)
	}
}

func TestNew_DefaultStyleIsStandardWebhooks(t *testing.T) {
	s := mustNew(t, "", "", []byte(swSecret), nil)
	if s.Style() != v1alpha1.SignatureStandardWebhooks {
		t.Errorf("Style() = %q, want StandardWebhooks", s.Style())
	}
}

// TestNew_KeepsItsOwnCopyOfTheSecret: the caller's buffer (say, a Secret's data map
// entry updated by an informer) may change after New; signatures must not.
func TestNew_KeepsItsOwnCopyOfTheSecret(t *testing.T) {
	for _, style := range allStyles {
		t.Run(string(style), func(t *testing.T) {
			cur, prev := []byte(swSecret), []byte(swPrev)
			s := mustNew(t, style, "", cur, prev)
			msg := signer.Message{ID: "evt_1", Timestamp: time.Unix(7, 0), Body: []byte("{}"), EventType: "a"}
			want := http.Header{}
			s.Sign(want, msg)
			for i := range cur {
				cur[i] = 'A'
			}
			for i := range prev {
				prev[i] = 'A'
			}
			got := http.Header{}
			s.Sign(got, msg)
			if !maps.EqualFunc(got, want, slices.Equal) {
				t.Errorf("signature changed after the caller reused its buffer:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestNew_PreviousEqualToCurrentIsNotARotation(t *testing.T) {
	s := mustNew(t, v1alpha1.SignatureBodyPrefixedHex, "", []byte(docSecret), []byte(docSecret))
	if s.Rotating() {
		t.Error("Rotating() = true for identical secrets")
	}
	h := http.Header{}
	s.Sign(h, signer.Message{Body: []byte("{}")})
	if _, ok := h["X-Herald-Signature-Previous"]; ok {
		t.Error("a duplicate signature was sent for an identical previous secret")
	}
	// Standard Webhooks compares decoded keys, so two spellings of one key are one key.
	s = mustNew(t, v1alpha1.SignatureStandardWebhooks, "", []byte(swSecret), []byte(strings.TrimPrefix(swSecret, "whsec_")))
	if s.Rotating() {
		t.Error("Rotating() = true for the same Standard Webhooks key with and without whsec_")
	}
}

func TestNew_Errors(t *testing.T) {
	tests := []struct {
		why           string
		style         v1alpha1.SignatureStyle
		prefix        string
		cur, prev     []byte
		invalidSecret bool   // errors.Is(err, ErrInvalidSecret)
		mention       string // the message must say this, to be actionable
	}{
		{why: "unknown style", style: "HMACBase32", cur: []byte(docSecret), mention: "HMACBase32"},
		{why: "prefix with a space", style: v1alpha1.SignatureBodyPrefixedHex, prefix: "X Acme", cur: []byte(docSecret), mention: "X Acme"},
		{why: "prefix with a double dash", style: v1alpha1.SignatureBodyPrefixedHex, prefix: "X--Acme", cur: []byte(docSecret), mention: "X--Acme"},
		{why: "prefix ending in a dash", style: v1alpha1.SignatureTimestampedHex, prefix: "X-", cur: []byte(docSecret), mention: "X-"},
		{why: "prefix starting with a digit", style: v1alpha1.SignatureTimestampedHex, prefix: "1X", cur: []byte(docSecret), mention: "1X"},
		{why: "prefix with a colon would inject into the header line", style: v1alpha1.SignatureTimestampedPrefixedHex, prefix: "X:Acme", cur: []byte(docSecret), mention: "X:Acme"},
		{why: "empty current secret", style: v1alpha1.SignatureBodyPrefixedHex, cur: []byte{}, invalidSecret: true, mention: "current"},
		{why: "nil current secret", style: v1alpha1.SignatureStandardWebhooks, cur: nil, invalidSecret: true, mention: "current"},
		{why: "empty (not nil) previous secret is a broken reference, not 'no rotation'", style: v1alpha1.SignatureTimestampedHex, cur: []byte(docSecret), prev: []byte{}, invalidSecret: true, mention: "previous"},
		{why: "Standard Webhooks secret that is not base64", style: v1alpha1.SignatureStandardWebhooks, cur: []byte(docSecret), invalidSecret: true, mention: "base64"},
		{why: "Standard Webhooks previous secret that is not base64", style: v1alpha1.SignatureStandardWebhooks, cur: []byte(swSecret), prev: []byte("whsec_not base64!"), invalidSecret: true, mention: "previous"},
		{why: "Standard Webhooks secret with trailing whitespace gets a hint", style: v1alpha1.SignatureStandardWebhooks, cur: []byte(swSecret + " "), invalidSecret: true, mention: "ends with whitespace"},
		{why: "Standard Webhooks secret with nothing after whsec_", style: v1alpha1.SignatureStandardWebhooks, cur: []byte("whsec_"), invalidSecret: true, mention: "nothing follows"},
		{why: "unpadded base64 is refused, as the reference libraries refuse it", style: v1alpha1.SignatureStandardWebhooks, cur: []byte("whsec_YWJjZA"), invalidSecret: true, mention: "base64"},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			s, err := signer.New(tt.style, tt.prefix, tt.cur, tt.prev)
			if err == nil {
				t.Fatalf("New succeeded (%v), want an error", s)
			}
			if got := errors.Is(err, signer.ErrInvalidSecret); got != tt.invalidSecret {
				t.Errorf("errors.Is(err, ErrInvalidSecret) = %v, want %v (err: %v)", got, tt.invalidSecret, err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			assertNoSecret(t, err.Error(), tt.cur, tt.prev)
		})
	}
}

// assertNoSecret fails if msg contains a secret or the part of it after whsec_ (the
// only part that is secret for a Standard Webhooks key).
func assertNoSecret(t *testing.T, msg string, secrets ...[]byte) {
	t.Helper()
	for _, s := range secrets {
		tail := strings.TrimSpace(strings.TrimPrefix(string(s), "whsec_"))
		if len(tail) >= 4 && strings.Contains(msg, tail) {
			t.Errorf("message %q reveals a secret", msg)
		}
	}
}

func TestSigner_StringRevealsNoSecret(t *testing.T) {
	for _, style := range allStyles {
		s := mustNew(t, style, "", []byte(swSecret), []byte(swPrev))
		for _, text := range []string{s.String(), fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s)} {
			assertNoSecret(t, text, []byte(swSecret), []byte(swPrev))
		}
		if !strings.Contains(s.String(), string(style)) || !strings.Contains(s.String(), "rotating") {
			t.Errorf("String() = %q, want the style and the rotation", s.String())
		}
	}
}

// TestSign_ConcurrentUseMatchesIndependentHMAC hammers one Signer from many goroutines
// (as the sender does) and checks every result against a fresh crypto/hmac computation,
// so pooled state leaking between calls would show up here (and under -race).
func TestSign_ConcurrentUseMatchesIndependentHMAC(t *testing.T) {
	s := mustNew(t, v1alpha1.SignatureStandardWebhooks, "", []byte(swSecret), []byte(swPrev))
	hx := mustNew(t, v1alpha1.SignatureTimestampedHex, "X-Acme", []byte(docSecret), []byte(docPrevSecret))
	curKey, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(swSecret, "whsec_"))
	prevKey, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(swPrev, "whsec_"))

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := fmt.Sprintf("evt_%d_%d", g, i)
				body := strings.Repeat("x", (g*200+i)%700) // varying sizes exercise buffer reuse
				ts := int64(1_700_000_000 + i)
				signed := fmt.Sprintf("%s.%d.%s", id, ts, body)

				h := http.Header{}
				s.Sign(h, signer.Message{ID: id, Timestamp: time.Unix(ts, 0), Body: []byte(body)})
				want := "v1," + b64HMAC(curKey, signed) + " v1," + b64HMAC(prevKey, signed)
				if got := h.Get("Webhook-Signature"); got != want || h.Get("Webhook-Id") != id {
					t.Errorf("%s: Webhook-Signature = %q, want %q", id, got, want)
					return
				}

				h = http.Header{}
				hx.Sign(h, signer.Message{Timestamp: time.Unix(ts, 0), Body: []byte(body), EventType: id})
				tsBody := fmt.Sprintf("%d.%s", ts, body)
				if h.Get("X-Acme-Signature") != hexHMAC(docSecret, tsBody) ||
					h.Get("X-Acme-Signature-Previous") != hexHMAC(docPrevSecret, tsBody) ||
					h.Get("X-Acme-Event") != id {
					t.Errorf("%s: hex headers %v do not match an independent HMAC", id, h)
					return
				}
			}
		})
	}
	wg.Wait()
}

func hexHMAC(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func b64HMAC(key []byte, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
