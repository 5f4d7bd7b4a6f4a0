package verify_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/pkg/verify"
)

const (
	current  = "whsec_6NnU0tR4rUBvQ8k0D3gk2kmx0f1x9mQ2cZKh2Gv2rNI="
	previous = "whsec_q0dO2p0y8jSUbTtV9c4vX0mI1bQ7Xw3d8rQyGk3lJtE="
	stranger = "whsec_Zm9yZ2VkLWJ5LWEtc3RyYW5nZXItd2l0aC1hLWd1ZXNzISE="
	prefix   = "X-Acme"
)

var (
	signedAt = time.Unix(1_772_366_400, 0)
	body     = []byte(`{"id":"evt_01J","type":"approval.decided","data":{"approved":true}}`)
)

// verifier adapts the four functions to one shape so tables can cover every style.
type verifier struct {
	style  v1alpha1.SignatureStyle
	verify func(secret string, h http.Header, body []byte, opts ...verify.Option) error
	// headers the style requires, canonical names
	required    []string
	timestamped bool
}

var verifiers = []verifier{
	{
		style: v1alpha1.SignatureStandardWebhooks,
		verify: func(secret string, h http.Header, b []byte, o ...verify.Option) error {
			return verify.StandardWebhooks(secret, h, b, o...)
		},
		required:    []string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"},
		timestamped: true,
	},
	{
		style: v1alpha1.SignatureTimestampedPrefixedHex,
		verify: func(secret string, h http.Header, b []byte, o ...verify.Option) error {
			return verify.TimestampedPrefixedHex(secret, prefix, h, b, o...)
		},
		required:    []string{"X-Acme-Signature", "X-Acme-Timestamp"},
		timestamped: true,
	},
	{
		style: v1alpha1.SignatureBodyPrefixedHex,
		verify: func(secret string, h http.Header, b []byte, o ...verify.Option) error {
			return verify.BodyPrefixedHex(secret, prefix, h, b, o...)
		},
		required: []string{"X-Acme-Signature"},
	},
	{
		style: v1alpha1.SignatureTimestampedHex,
		verify: func(secret string, h http.Header, b []byte, o ...verify.Option) error {
			return verify.TimestampedHex(secret, prefix, h, b, o...)
		},
		required:    []string{"X-Acme-Signature", "X-Acme-Timestamp"},
		timestamped: true,
	},
}

func sign(t testing.TB, style v1alpha1.SignatureStyle, cur, prev string, at time.Time, b []byte) http.Header {
	t.Helper()
	var p []byte
	if prev != "" {
		p = []byte(prev)
	}
	s, err := signer.New(style, prefix, []byte(cur), p)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	s.Sign(h, signer.Message{ID: "evt_01J", Timestamp: at, Body: b, EventType: "approval.decided"})
	return h
}

func clockAt(t time.Time) verify.Option { return verify.WithClock(func() time.Time { return t }) }

func TestStandardWebhooks_SpecVector(t *testing.T) {
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	at := clockAt(time.Unix(1614265330, 0))
	for _, secret := range []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"} {
		if err := verify.StandardWebhooks(secret, h, []byte(`{"test": 2432232314}`), at); err != nil {
			t.Errorf("secret %.10s...: %v", secret, err)
		}
	}
}

// TestHexStyles_KnownAnswers checks the hex verifiers against values computed with
// openssl (see dispatcher/signer's vectors), independently of the signer:
//
//	printf '%s' '1705314600.{"id":"evt_abc123def456","type":"policy.violation","created_at":"2024-01-15T10:30:00Z"}' \
//	  | openssl dgst -sha256 -hmac 'whsec_your_signing_secret'
func TestHexStyles_KnownAnswers(t *testing.T) {
	const secret = "whsec_your_signing_secret"
	at := clockAt(time.Unix(1705314600, 0))
	tork := http.Header{"X-Tork-Signature": {"sha256=0e07cf94708f293e70e8fa3c78e165db2b43322c42138411b5e7aa771daa04be"}, "X-Tork-Timestamp": {"1705314600"}}
	if err := verify.TimestampedPrefixedHex(secret, "X-Tork", tork, []byte(`{"id":"evt_abc123def456","type":"policy.violation","created_at":"2024-01-15T10:30:00Z"}`), at); err != nil {
		t.Errorf("TimestampedPrefixedHex: %v", err)
	}
	bolor := http.Header{"X-Bolor-Signature": {"sha256=346549477f83ae7a5c1a39af4be1c012a4b984fc4727cc73cd2cc77856cd3ab8"}}
	if err := verify.BodyPrefixedHex(secret, "X-Bolor", bolor, []byte(`{"id":"evt_abc123def456","type":"agentguard.action.blocked","created_at":"2026-02-14T15:30:00Z","workspace_id":"ws_xyz789"}`)); err != nil {
		t.Errorf("BodyPrefixedHex: %v", err)
	}
	praxis := http.Header{"X-Praxis-Signature": {"7c8a131844f3c82474b971f9aec327d800d5b2db650ce54b3a5924dd23fc43ef"}, "X-Praxis-Timestamp": {"1771083000"}}
	if err := verify.TimestampedHex(secret, "X-Praxis", praxis, []byte(`{"id":"550e8400-e29b-41d4-a716-446655440000","status":"completed"}`), clockAt(time.Unix(1771083000, 0))); err != nil {
		t.Errorf("TimestampedHex: %v", err)
	}
}

func TestRoundTrip_WithSigner(t *testing.T) {
	tests := []struct {
		why            string
		prev           string
		receiverSecret string
		mutate         func(h http.Header, b []byte) (http.Header, []byte)
		wantErr        error
	}{
		{why: "the endpoint's secret verifies", receiverSecret: current},
		{why: "rotation: a receiver on the new secret verifies", prev: previous, receiverSecret: current},
		{why: "rotation: a receiver still on the old secret verifies", prev: previous, receiverSecret: previous},
		{why: "after rotation the old secret is refused", receiverSecret: previous, wantErr: verify.ErrNoMatchingSignature},
		{why: "another secret is refused, even during rotation", prev: previous, receiverSecret: stranger, wantErr: verify.ErrNoMatchingSignature},
		{
			why: "a changed body is refused", receiverSecret: current, wantErr: verify.ErrNoMatchingSignature,
			mutate: func(h http.Header, b []byte) (http.Header, []byte) {
				return h, []byte(strings.Replace(string(b), "true", "false", 1))
			},
		},
		{
			why: "a body re-serialised by a JSON round trip is refused (verify the raw bytes)", receiverSecret: current, wantErr: verify.ErrNoMatchingSignature,
			mutate: func(h http.Header, b []byte) (http.Header, []byte) {
				return h, []byte(strings.ReplaceAll(string(b), ":", ": "))
			},
		},
	}
	for _, v := range verifiers {
		for _, tt := range tests {
			t.Run(string(v.style)+"/"+tt.why, func(t *testing.T) {
				h := sign(t, v.style, current, tt.prev, signedAt, body)
				b := body
				if tt.mutate != nil {
					h, b = tt.mutate(h, b)
				}
				err := v.verify(tt.receiverSecret, h, b, clockAt(signedAt))
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
			})
		}
	}
}

// TestRoundTrip_OverHTTP sends signed requests through net/http, so header names arrive
// as a real server parses them, and verifies them in the handler.
func TestRoundTrip_OverHTTP(t *testing.T) {
	for _, v := range verifiers {
		t.Run(string(v.style), func(t *testing.T) {
			for _, receiverSecret := range []string{current, previous} {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					b, _ := io.ReadAll(r.Body)
					if err := v.verify(receiverSecret, r.Header, b); err != nil {
						http.Error(w, err.Error(), http.StatusUnauthorized)
					}
				}))
				req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
				req.Header = sign(t, v.style, current, previous, time.Now(), body)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				srv.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("receiver on the %s secret answered %d: %s", map[string]string{current: "current", previous: "previous"}[receiverSecret], resp.StatusCode, msg)
				}
			}
		})
	}
}

// TestTimestampedStyles_TimestampIsSigned: moving a captured request into the
// tolerance window by rewriting its timestamp must break the signature.
func TestTimestampedStyles_TimestampIsSigned(t *testing.T) {
	for _, v := range verifiers {
		if !v.timestamped {
			continue
		}
		h := sign(t, v.style, current, "", signedAt, body)
		name := "X-Acme-Timestamp"
		if v.style == v1alpha1.SignatureStandardWebhooks {
			name = "Webhook-Timestamp"
		}
		h.Set(name, "1772366460") // a minute later
		if err := v.verify(current, h, body, clockAt(signedAt)); !errors.Is(err, verify.ErrNoMatchingSignature) {
			t.Errorf("%s: rewritten timestamp gave %v, want ErrNoMatchingSignature", v.style, err)
		}
	}
}

func TestTolerance_Edges(t *testing.T) {
	tests := []struct {
		why  string
		now  time.Time
		opts []verify.Option
		ok   bool
	}{
		{why: "signed this second", now: signedAt, ok: true},
		{why: "exactly five minutes old is inside", now: signedAt.Add(5 * time.Minute), ok: true},
		{why: "half a second past five minutes is outside", now: signedAt.Add(5*time.Minute + 500*time.Millisecond)},
		{why: "exactly five minutes ahead (receiver clock behind) is inside", now: signedAt.Add(-5 * time.Minute), ok: true},
		{why: "five minutes and a second ahead is outside", now: signedAt.Add(-5*time.Minute - time.Second)},
		{why: "a retry's fresh timestamp matters, not the event's age: an hour old is outside", now: signedAt.Add(time.Hour)},
		{why: "WithTolerance widens the window", now: signedAt.Add(9 * time.Minute), opts: []verify.Option{verify.WithTolerance(10 * time.Minute)}, ok: true},
		{why: "WithTolerance narrows it", now: signedAt.Add(61 * time.Second), opts: []verify.Option{verify.WithTolerance(time.Minute)}},
		{why: "WithTolerance(0) keeps the default rather than disabling the check", now: signedAt.Add(6 * time.Minute), opts: []verify.Option{verify.WithTolerance(0)}},
		{why: "WithTolerance(0) is not zero tolerance either", now: signedAt.Add(4 * time.Minute), opts: []verify.Option{verify.WithTolerance(0)}, ok: true},
	}
	for _, v := range verifiers {
		for _, tt := range tests {
			t.Run(string(v.style)+"/"+tt.why, func(t *testing.T) {
				h := sign(t, v.style, current, "", signedAt, body)
				err := v.verify(current, h, body, append([]verify.Option{clockAt(tt.now)}, tt.opts...)...)
				want := tt.ok || !v.timestamped // BodyPrefixedHex has no timestamp to be stale
				if (err == nil) != want {
					t.Fatalf("err = %v, want ok=%v", err, want)
				}
				if err != nil && !errors.Is(err, verify.ErrTimestampOutsideTolerance) {
					t.Errorf("err = %v, want ErrTimestampOutsideTolerance", err)
				}
			})
		}
	}
}

func TestMissingHeaders_NameTheHeader(t *testing.T) {
	for _, v := range verifiers {
		for _, name := range v.required {
			for _, blank := range []bool{false, true} {
				how := "absent"
				if blank {
					how = "empty"
				}
				t.Run(string(v.style)+"/"+name+" "+how, func(t *testing.T) {
					h := sign(t, v.style, current, "", signedAt, body)
					if blank {
						h.Set(name, "")
					} else {
						h.Del(name)
					}
					err := v.verify(current, h, body, clockAt(signedAt))
					var he *verify.HeaderError
					if !errors.Is(err, verify.ErrMissingHeader) || !errors.As(err, &he) || he.Header != name {
						t.Fatalf("err = %#v, want a HeaderError for %s wrapping ErrMissingHeader", err, name)
					}
					if !strings.Contains(err.Error(), name) {
						t.Errorf("message %q does not name %s", err, name)
					}
				})
			}
		}
	}
}

func TestMalformedTimestamp(t *testing.T) {
	for _, v := range verifiers {
		if !v.timestamped {
			continue
		}
		name := "X-Acme-Timestamp"
		if v.style == v1alpha1.SignatureStandardWebhooks {
			name = "Webhook-Timestamp"
		}
		for _, bad := range []string{"yesterday", "1772366400.5", "2026-03-01T12:00:00Z", "99999999999999999999"} {
			h := sign(t, v.style, current, "", signedAt, body)
			h.Set(name, bad)
			err := v.verify(current, h, body, clockAt(signedAt))
			var he *verify.HeaderError
			if !errors.Is(err, verify.ErrMalformedHeader) || !errors.As(err, &he) || he.Header != name {
				t.Errorf("%s with timestamp %q: err = %v, want ErrMalformedHeader on %s", v.style, bad, err, name)
			}
		}
	}
}

func TestSignatureFormat_IsExact(t *testing.T) {
	at := clockAt(signedAt)
	tests := []struct {
		why    string
		style  v1alpha1.SignatureStyle
		mangle func(string) string
	}{
		{"TimestampedPrefixedHex without sha256=", v1alpha1.SignatureTimestampedPrefixedHex, func(s string) string { return strings.TrimPrefix(s, "sha256=") }},
		{"BodyPrefixedHex with upper-case hex", v1alpha1.SignatureBodyPrefixedHex, func(s string) string { return "sha256=" + strings.ToUpper(strings.TrimPrefix(s, "sha256=")) }},
		{"TimestampedHex with a sha256= it does not use", v1alpha1.SignatureTimestampedHex, func(s string) string { return "sha256=" + s }},
		{"TimestampedHex truncated", v1alpha1.SignatureTimestampedHex, func(s string) string { return s[:32] }},
		{"Standard Webhooks signature under another version", v1alpha1.SignatureStandardWebhooks, func(s string) string { return "v1a," + strings.TrimPrefix(s, "v1,") }},
		{"Standard Webhooks signature without its version", v1alpha1.SignatureStandardWebhooks, func(s string) string { return strings.TrimPrefix(s, "v1,") }},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			h := sign(t, tt.style, current, "", signedAt, body)
			name := "X-Acme-Signature"
			if tt.style == v1alpha1.SignatureStandardWebhooks {
				name = "Webhook-Signature"
			}
			h.Set(name, tt.mangle(h.Get(name)))
			for _, v := range verifiers {
				if v.style == tt.style {
					if err := v.verify(current, h, body, at); !errors.Is(err, verify.ErrNoMatchingSignature) {
						t.Errorf("err = %v, want ErrNoMatchingSignature", err)
					}
				}
			}
		})
	}
}

func TestStandardWebhooks_SignatureListForms(t *testing.T) {
	h := sign(t, v1alpha1.SignatureStandardWebhooks, current, "", signedAt, body)
	good := h.Get("Webhook-Signature")
	tests := []struct {
		why  string
		vals []string
	}{
		{"a match after unknown versions and junk", []string{"v1a,AAAA garbage v2,BBBB " + good}},
		{"a list split over repeated header lines by a proxy", []string{"v1,AAAA", good}},
		{"extra spaces between entries", []string{"v1,AAAA   " + good + " "}},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			h := h.Clone()
			h["Webhook-Signature"] = tt.vals
			if err := verify.StandardWebhooks(current, h, body, clockAt(signedAt)); err != nil {
				t.Errorf("err = %v, want nil", err)
			}
		})
	}
}

// TestHexStyles_PreviousHeaderAlone: a request whose main signature was stripped still
// verifies on the -Previous one; it needs the secret just the same.
func TestHexStyles_PreviousHeaderAlone(t *testing.T) {
	h := sign(t, v1alpha1.SignatureTimestampedHex, current, previous, signedAt, body)
	h.Del("X-Acme-Signature")
	if err := verify.TimestampedHex(previous, prefix, h, body, clockAt(signedAt)); err != nil {
		t.Errorf("old-secret receiver: %v", err)
	}
	if err := verify.TimestampedHex(current, prefix, h, body, clockAt(signedAt)); !errors.Is(err, verify.ErrNoMatchingSignature) {
		t.Errorf("new-secret receiver: err = %v, want ErrNoMatchingSignature", err)
	}
}

func TestInvalidSecret(t *testing.T) {
	h := sign(t, v1alpha1.SignatureStandardWebhooks, current, "", signedAt, body)
	for _, secret := range []string{"", "whsec_", "whsec_not base64!", "plain-password"} {
		if err := verify.StandardWebhooks(secret, h, body, clockAt(signedAt)); !errors.Is(err, verify.ErrInvalidSecret) {
			t.Errorf("StandardWebhooks(%q): err = %v, want ErrInvalidSecret", secret, err)
		}
	}
	for _, v := range verifiers[1:] {
		if err := v.verify("", sign(t, v.style, current, "", signedAt, body), body, clockAt(signedAt)); !errors.Is(err, verify.ErrInvalidSecret) {
			t.Errorf("%s with an empty secret: err = %v, want ErrInvalidSecret", v.style, err)
		}
	}
}

// TestErrors_NeverContainTheSecret drives every failure path and checks the message,
// since receivers are told they may log it.
func TestErrors_NeverContainTheSecret(t *testing.T) {
	secrets := []string{current, "whsec_not base64 but secret!", "hunter2-hunter2"}
	for _, v := range verifiers {
		for _, secret := range secrets {
			good := sign(t, v.style, current, "", signedAt, body)
			cases := map[string]http.Header{"wrong signature": good, "missing": {}}
			stale := good.Clone()
			cases["stale"] = stale
			for what, h := range cases {
				now := signedAt
				if what == "stale" {
					now = signedAt.Add(time.Hour)
				}
				err := v.verify(secret, h, []byte("tampered"), clockAt(now))
				if err == nil {
					continue
				}
				tail := strings.TrimPrefix(secret, "whsec_")
				if strings.Contains(err.Error(), tail) {
					t.Errorf("%s/%s: %q reveals the secret", v.style, what, err)
				}
			}
		}
	}
}
