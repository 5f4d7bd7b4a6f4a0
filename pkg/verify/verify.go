// Package verify checks the signatures on webhooks delivered by Herald, for services that
// receive them. It depends on the standard library only.
//
// There is one function per signature style of a WebhookEndpoint
// (spec.signature.style); give it the endpoint's signing secret, the header prefix of the
// endpoint (spec.signature.headerPrefix; "" means Herald's default "X-Herald") and the
// request's headers and exact body bytes, before any JSON decoding:
//
//	StandardWebhooks        webhook-id, webhook-timestamp, webhook-signature: v1,<base64> ...
//	StandardWebhooksEd25519 webhook-id, webhook-timestamp, webhook-signature: v1a,<base64> ...
//	TimestampedPrefixedHex  <prefix>-Signature: sha256=<hex of HMAC("{timestamp}.{body}")>, <prefix>-Timestamp
//	BodyPrefixedHex         <prefix>-Signature: sha256=<hex of HMAC(body)>
//	TimestampedHex          <prefix>-Signature: <hex of HMAC("{timestamp}.{body}")>, <prefix>-Timestamp, <prefix>-Event
//
// For example, with the default StandardWebhooks style:
//
//	func handle(w http.ResponseWriter, r *http.Request) {
//		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
//		if err != nil {
//			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
//			return
//		}
//		if err := verify.StandardWebhooks(secret, r.Header, body); err != nil {
//			log.Printf("rejected webhook: %v", err)
//			http.Error(w, "invalid signature", http.StatusUnauthorized)
//			return
//		}
//		// Deliveries are at least once: skip an event id already handled, then decode body.
//	}
//
// A nil error means the request came from Herald with that secret and was not changed.
// Timestamps more than five minutes away from the local clock are refused, so a
// captured request cannot be replayed later (see WithTolerance); BodyPrefixedHex carries
// no timestamp, so use the event id in the body to drop repeats.
//
// While an endpoint's secret is being rotated Herald signs with both secrets: Standard
// Webhooks lists both signatures in webhook-signature, and the other styles add
// <prefix>-Signature-Previous. These functions accept a match on any of them, so a
// receiver works with either secret and can switch whenever it likes.
//
// The key is derived as each style's reference does: StandardWebhooks base64-decodes the
// part after "whsec_"; the other styles use the secret text exactly as written,
// "whsec_" included. StandardWebhooksEd25519 takes no secret at all: it verifies with the
// endpoint's public key, "whpk_" + base64, which Herald publishes in the endpoint's
// status.publicKey and its ConfigMap <endpoint>-public-key (herald endpoint public-key
// prints it); the private key never leaves the cluster.
//
// Errors wrap one of the Err values below and, for header problems, are a *HeaderError
// naming the header. They never contain the secret, so they can be logged; answering
// the sender with 401 and no detail is enough.
package verify

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a timestamp may be from the local clock, in either
// direction, as in the Standard Webhooks libraries and Herald's reference schemes.
const DefaultTolerance = 5 * time.Minute

// DefaultHeaderPrefix is the prefix used when the prefix argument is empty; it matches
// the WebhookEndpoint default.
const DefaultHeaderPrefix = "X-Herald"

// Errors, tested with errors.Is.
var (
	// ErrMissingHeader: a header the style requires is absent or empty.
	ErrMissingHeader = errors.New("missing header")
	// ErrMalformedHeader: a timestamp header is not a decimal unix time.
	ErrMalformedHeader = errors.New("malformed header")
	// ErrTimestampOutsideTolerance: the request is too old (a replay, or a receiver that
	// took too long) or too far in the future (clock skew).
	ErrTimestampOutsideTolerance = errors.New("timestamp outside tolerance")
	// ErrNoMatchingSignature: no signature in the request matches the secret. The body or
	// a signed header was changed, or the secret is not the endpoint's.
	ErrNoMatchingSignature = errors.New("no matching signature")
	// ErrInvalidSecret: the secret cannot be a key (empty, or for StandardWebhooks not
	// "whsec_" followed by base64), or for StandardWebhooksEd25519 the public key is not
	// "whpk_" followed by the base64 of 32 bytes.
	ErrInvalidSecret = errors.New("invalid secret")
)

// HeaderError is a verification failure attributed to one header.
type HeaderError struct {
	// Header is the header's name, e.g. "X-Herald-Signature".
	Header string
	// Err is one of ErrMissingHeader, ErrMalformedHeader, ErrTimestampOutsideTolerance or
	// ErrNoMatchingSignature.
	Err error

	detail string
}

func (e *HeaderError) Error() string {
	msg := "verify: " + e.Header + ": " + e.Err.Error()
	if e.detail != "" {
		msg += " (" + e.detail + ")"
	}
	return msg
}

func (e *HeaderError) Unwrap() error { return e.Err }

// Option adjusts a verification.
type Option func(*options)

type options struct {
	tolerance time.Duration
	now       func() time.Time
}

// WithTolerance sets how far a timestamp may be from the clock in either direction. A
// value of zero or less keeps DefaultTolerance: the check cannot be switched off, since
// it is what stops a captured request from being replayed.
func WithTolerance(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.tolerance = d
		}
	}
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

func buildOptions(opts []Option) options {
	o := options{tolerance: DefaultTolerance, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// StandardWebhooks verifies a request signed per the Standard Webhooks specification.
// secret is "whsec_<base64>" (a secret without the prefix is decoded whole, as the
// specification's libraries do).
func StandardWebhooks(secret string, h http.Header, body []byte, opts ...Option) error {
	o := buildOptions(opts)
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return fmt.Errorf("verify: %w: Standard Webhooks needs whsec_ followed by standard base64", ErrInvalidSecret)
	}
	id, ts, err := standardHeaders(h, o)
	if err != nil {
		return err
	}

	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	want := make([]byte, base64.StdEncoding.EncodedLen(sha256.Size))
	base64.StdEncoding.Encode(want, mac.Sum(nil))

	// Every value counts: a proxy may have split the list over repeated header lines.
	checked := 0
	for _, line := range h.Values("webhook-signature") {
		for _, versioned := range strings.Fields(line) {
			version, sig, ok := strings.Cut(versioned, ",")
			// Other versions (v1a: asymmetric) are for other verifiers; skip them.
			if !ok || version != "v1" {
				continue
			}
			checked++
			if hmac.Equal([]byte(sig), want) {
				return nil
			}
		}
	}
	return &HeaderError{Header: "Webhook-Signature", Err: ErrNoMatchingSignature, detail: strconv.Itoa(checked) + " v1 signature(s) checked"}
}

// StandardWebhooksEd25519 verifies a request signed with the Standard Webhooks asymmetric
// scheme: an ed25519 signature, "v1a,<base64>", over "{id}.{timestamp}.{body}".
// publicKey is the endpoint's "whpk_<base64>". Any v1a entry of webhook-signature may
// match, so during a rotation a receiver holding either the old or the new public key
// accepts; v1 (HMAC) entries are for StandardWebhooks.
func StandardWebhooksEd25519(publicKey string, h http.Header, body []byte, opts ...Option) error {
	o := buildOptions(opts)
	enc, found := strings.CutPrefix(publicKey, "whpk_")
	pub, err := base64.StdEncoding.DecodeString(enc)
	if !found || err != nil || len(pub) != ed25519.PublicKeySize {
		hint := ""
		if strings.HasPrefix(publicKey, "whsk_") {
			hint = "; this is the private key, which receivers never need"
		}
		return fmt.Errorf("verify: %w: Standard Webhooks ed25519 needs a public key, whpk_ followed by the base64 of 32 bytes%s", ErrInvalidSecret, hint)
	}
	id, ts, err := standardHeaders(h, o)
	if err != nil {
		return err
	}
	msg := make([]byte, 0, len(id)+len(ts)+2+len(body))
	msg = append(append(append(append(append(msg, id...), '.'), ts...), '.'), body...)

	checked := 0
	for _, line := range h.Values("webhook-signature") {
		for _, versioned := range strings.Fields(line) {
			version, sig, ok := strings.Cut(versioned, ",")
			if !ok || version != "v1a" {
				continue
			}
			checked++
			raw, err := base64.StdEncoding.DecodeString(sig)
			if err == nil && ed25519.Verify(pub, msg, raw) {
				return nil
			}
		}
	}
	return &HeaderError{Header: "Webhook-Signature", Err: ErrNoMatchingSignature, detail: strconv.Itoa(checked) + " v1a signature(s) checked"}
}

// standardHeaders checks the headers both Standard Webhooks schemes require and the
// timestamp's age, and returns the id and the timestamp as sent.
func standardHeaders(h http.Header, o options) (id, ts string, err error) {
	if id, err = required(h, "webhook-id"); err != nil {
		return "", "", err
	}
	if ts, err = required(h, "webhook-timestamp"); err != nil {
		return "", "", err
	}
	if _, err = required(h, "webhook-signature"); err != nil {
		return "", "", err
	}
	if err = checkTimestamp("Webhook-Timestamp", ts, o); err != nil {
		return "", "", err
	}
	return id, ts, nil
}

// TimestampedPrefixedHex verifies "<prefix>-Signature: sha256=<hex>" over
// "{timestamp}.{body}" with "<prefix>-Timestamp".
func TimestampedPrefixedHex(secret, prefix string, h http.Header, body []byte, opts ...Option) error {
	return verifyHex(secret, prefix, h, body, true, "sha256=", buildOptions(opts))
}

// BodyPrefixedHex verifies "<prefix>-Signature: sha256=<hex>" over the body. The style
// has no timestamp, so the options have no effect and replays are not detected here.
func BodyPrefixedHex(secret, prefix string, h http.Header, body []byte, opts ...Option) error {
	return verifyHex(secret, prefix, h, body, false, "sha256=", buildOptions(opts))
}

// TimestampedHex verifies "<prefix>-Signature: <hex>" over "{timestamp}.{body}" with
// "<prefix>-Timestamp". The event type travels in "<prefix>-Event", which the signature
// does not cover: trust the type inside the body when the payload carries one.
func TimestampedHex(secret, prefix string, h http.Header, body []byte, opts ...Option) error {
	return verifyHex(secret, prefix, h, body, true, "", buildOptions(opts))
}

func verifyHex(secret, prefix string, h http.Header, body []byte, timestamped bool, sigPrefix string, o options) error {
	if secret == "" {
		return fmt.Errorf("verify: %w: the secret is empty", ErrInvalidSecret)
	}
	if prefix == "" {
		prefix = DefaultHeaderPrefix
	}
	sigName := http.CanonicalHeaderKey(prefix + "-Signature")
	prevName := http.CanonicalHeaderKey(prefix + "-Signature-Previous")
	candidates := append(nonEmpty(h.Values(sigName)), nonEmpty(h.Values(prevName))...)
	if len(candidates) == 0 {
		return &HeaderError{Header: sigName, Err: ErrMissingHeader}
	}

	mac := hmac.New(sha256.New, []byte(secret))
	if timestamped {
		tsName := http.CanonicalHeaderKey(prefix + "-Timestamp")
		ts, err := required(h, tsName)
		if err != nil {
			return err
		}
		if err := checkTimestamp(tsName, ts, o); err != nil {
			return err
		}
		// The header's text, not a re-formatted number, is what the sender signed.
		mac.Write([]byte(ts))
		mac.Write([]byte{'.'})
	}
	mac.Write(body)
	want := make([]byte, 0, len(sigPrefix)+hex.EncodedLen(sha256.Size))
	want = append(want, sigPrefix...)
	want = hex.AppendEncode(want, mac.Sum(nil))

	for _, c := range candidates {
		if hmac.Equal([]byte(c), want) {
			return nil
		}
	}
	return &HeaderError{Header: sigName, Err: ErrNoMatchingSignature, detail: strconv.Itoa(len(candidates)) + " signature(s) checked, including " + prevName}
}

func required(h http.Header, name string) (string, error) {
	v := h.Get(name)
	if v == "" {
		return "", &HeaderError{Header: http.CanonicalHeaderKey(name), Err: ErrMissingHeader}
	}
	return v, nil
}

func nonEmpty(vals []string) []string {
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func checkTimestamp(name, ts string, o options) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return &HeaderError{Header: name, Err: ErrMalformedHeader, detail: "want unix seconds"}
	}
	// Sub saturates instead of overflowing for absurd timestamps.
	age := o.now().Sub(time.Unix(sec, 0))
	switch {
	case age > o.tolerance:
		return &HeaderError{Header: name, Err: ErrTimestampOutsideTolerance, detail: age.Truncate(time.Second).String() + " old, tolerance " + o.tolerance.String()}
	case age < -o.tolerance:
		return &HeaderError{Header: name, Err: ErrTimestampOutsideTolerance, detail: (-age).Truncate(time.Second).String() + " in the future, tolerance " + o.tolerance.String()}
	}
	return nil
}
