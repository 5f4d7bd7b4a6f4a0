// Package refreceiver transcribes the webhook receivers of the reference documents in
// shared/reference, and one written from the Standard Webhooks specification, so that
// tests can check Herald's deliveries against the receivers people actually write from
// those documents.
//
// It shares no code with dispatcher/signer or pkg/verify, and a test keeps it that way: a
// misreading of a document copied into both the sender and its checker would otherwise
// pass every round trip. Each function quotes the lines it transcribes. Where the
// original would raise (a missing header, a body that is not UTF-8), the Go version
// returns false, which is what the sender sees: the request is not accepted.
//
// The functions take header names instead of hard-coding the vendors' (X-Tork-...,
// X-Bolor-..., X-Praxis-...), because Herald replaces the vendor prefix with the
// endpoint's configured one; that substitution is the only change.
package refreceiver

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Tork transcribes reference 000 (Tork; Herald's TimestampedPrefixedHex):
//
//	signature = request.headers.get("X-Tork-Signature")
//	timestamp = request.headers.get("X-Tork-Timestamp")
//	payload = f"{timestamp}.{request.data.decode()}"
//	expected = hmac.new(WEBHOOK_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
//	if not hmac.compare_digest(signature, f"sha256={expected}"):
//	    return "Invalid signature", 401
//
// The document checks no timestamp age, so neither does Tork.
func Tork(secret string, h http.Header, body []byte, signatureHeader, timestampHeader string) bool {
	signature, ok := flaskGet(h, signatureHeader)
	if !ok {
		// compare_digest(None, ...) raises TypeError.
		return false
	}
	timestamp, ok := flaskGet(h, timestampHeader)
	if !ok {
		// An f-string renders a missing header as "None"; the signature then fails.
		timestamp = "None"
	}
	decoded, ok := pyDecode(body)
	if !ok {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + "." + decoded))
	expected := hex.EncodeToString(mac.Sum(nil))
	return pyCompareDigest(signature, "sha256="+expected)
}

// Bolor transcribes reference 003's Python receiver (Bolor; Herald's BodyPrefixedHex):
//
//	signature = request.headers.get("X-Bolor-Signature", "")
//	expected = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
//	return hmac.compare_digest(f"sha256={expected}", signature)
//
// payload is request.data, the raw bytes. The document defines no timestamp, so a
// replayed request verifies; that is the scheme, not a gap in the transcription.
func Bolor(secret string, h http.Header, body []byte, signatureHeader string) bool {
	signature, _ := flaskGet(h, signatureHeader)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	expected := hex.EncodeToString(mac.Sum(nil))
	return pyCompareDigest("sha256="+expected, signature)
}

// BolorNode transcribes reference 003's Node.js receiver:
//
//	const signature = req.headers["x-bolor-signature"] as string;
//	const payload = req.body.toString();
//	const expected = crypto.createHmac("sha256", WEBHOOK_SECRET).update(payload, "utf8").digest("hex");
//	return crypto.timingSafeEqual(Buffer.from(`sha256=${expected}`), Buffer.from(signature));
//
// Unlike the Python version it signs the body after a lossy UTF-8 decode and re-encode,
// so a body that is not valid UTF-8 fails here even when correctly signed; the decode is
// approximated by replacing each invalid byte with U+FFFD.
func BolorNode(secret string, h http.Header, body []byte, signatureHeader string) bool {
	values := h.Values(signatureHeader)
	if len(values) == 0 {
		// Buffer.from(undefined) throws.
		return false
	}
	// Node joins repeated headers it does not know with ", ".
	signature := strings.Join(values, ", ")
	payload := strings.ToValidUTF8(string(body), "\uFFFD")
	mac := hmac.New(sha256.New, []byte(secret))
	io.WriteString(mac, payload)
	expected := []byte("sha256=" + hex.EncodeToString(mac.Sum(nil)))
	if len(expected) != len(signature) {
		// timingSafeEqual throws RangeError on a length mismatch.
		return false
	}
	return hmac.Equal(expected, []byte(signature))
}

// Praxis transcribes reference 004 (Praxis/Tempered; Herald's TimestampedHex) and returns
// the event type the handler dispatches on:
//
//	signature = request.headers.get("X-Praxis-Signature", "")
//	timestamp = request.headers.get("X-Praxis-Timestamp", "")
//	if abs(time.time() - int(timestamp)) > 300: return False
//	expected = hmac.new(secret.encode(), f"{timestamp}.{payload.decode()}".encode(), hashlib.sha256).hexdigest()
//	return hmac.compare_digest(expected, signature)
//	...
//	event = request.headers.get("X-Praxis-Event")
//
// now stands in for time.time().
func Praxis(secret string, h http.Header, body []byte, signatureHeader, timestampHeader, eventHeader string, now time.Time) (event string, ok bool) {
	signature, _ := flaskGet(h, signatureHeader)
	timestamp, _ := flaskGet(h, timestampHeader)
	ts, err := pyInt(timestamp)
	if err != nil {
		// int("") and int("abc") raise ValueError.
		return "", false
	}
	nowSeconds := float64(now.UnixNano()) / float64(time.Second)
	if math.Abs(nowSeconds-float64(ts)) > 300 {
		return "", false
	}
	decoded, ok := pyDecode(body)
	if !ok {
		return "", false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + "." + decoded))
	expected := hex.EncodeToString(mac.Sum(nil))
	if !pyCompareDigest(expected, signature) {
		return "", false
	}
	event, _ = flaskGet(h, eventHeader)
	return event, true
}

// StandardWebhooks is a receiver written from the Standard Webhooks specification
// (spec/standard-webhooks.md): the signed content is "{msg_id}.{timestamp}.{payload}";
// the secret is "base64 encoded, prefixed with whsec_"; webhook-signature is "a space
// delimited list of signatures", each "v1," followed by the base64 HMAC-SHA256;
// "consumers can try to verify each signature until one matches"; the timestamp must be
// "within some allowable tolerance", taken here as the usual five minutes either way.
func StandardWebhooks(secret string, h http.Header, body []byte, now time.Time) bool {
	id := h.Get("webhook-id")
	timestamp := h.Get("webhook-timestamp")
	signatures := h.Get("webhook-signature")
	if id == "" || timestamp == "" || signatures == "" {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	expected := []byte(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	for _, versioned := range strings.Split(signatures, " ") {
		version, sig, found := strings.Cut(versioned, ",")
		if found && version == "v1" && hmac.Equal([]byte(sig), expected) {
			return true
		}
	}
	return false
}

// StandardWebhooksEd25519 is a receiver of the specification's asymmetric scheme, written
// from spec/standard-webhooks.md and crypto/ed25519 alone: the signature scheme is
// "ed25519" over the same content "{msg_id}.{timestamp}.{payload}"; the public key is
// "base64 encoded, prefixed with whpk_"; the signature identifier is "v1a", so an entry
// of the space-delimited webhook-signature list reads "v1a,<base64 signature>"; entries
// of other versions (v1) are for other verifiers. "Consumers can use whpk_ to verify the
// signature", and, as for v1, the timestamp must be within the usual five minutes.
func StandardWebhooksEd25519(publicKey string, h http.Header, body []byte, now time.Time) bool {
	id := h.Get("webhook-id")
	timestamp := h.Get("webhook-timestamp")
	signatures := h.Get("webhook-signature")
	if id == "" || timestamp == "" || signatures == "" {
		return false
	}
	encoded, found := strings.CutPrefix(publicKey, "whpk_")
	if !found {
		return false
	}
	pub, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return false
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return false
	}
	content := append([]byte(id+"."+timestamp+"."), body...)
	for _, versioned := range strings.Split(signatures, " ") {
		version, sig, found := strings.Cut(versioned, ",")
		if !found || version != "v1a" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && ed25519.Verify(pub, content, raw) {
			return true
		}
	}
	return false
}

// Handler answers like the references' Flask handlers: 200 "OK" when accept returns
// true, 401 "Invalid signature" otherwise.
func Handler(accept func(h http.Header, body []byte) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if !accept(r.Header, body) {
			http.Error(w, "Invalid signature", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "OK")
	})
}

// flaskGet is werkzeug's request.headers.get: case-insensitive, first value, and absent
// (None) distinguished from empty.
func flaskGet(h http.Header, name string) (string, bool) {
	v := h.Values(name)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// pyDecode is bytes.decode(): strict UTF-8, raising on invalid input.
func pyDecode(b []byte) (string, bool) {
	if !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

// pyCompareDigest is hmac.compare_digest on two str: constant time, and TypeError
// (here false) unless both are ASCII.
func pyCompareDigest(a, b string) bool {
	for _, s := range []string{a, b} {
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf {
				return false
			}
		}
	}
	return hmac.Equal([]byte(a), []byte(b))
}

// pyInt is int(str) for the decimal integers a timestamp header can hold: surrounding
// whitespace and a sign are allowed, as in Python. (Python also accepts digit-group
// underscores; no sender writes those into a timestamp.)
func pyInt(s string) (int64, error) {
	return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
}
