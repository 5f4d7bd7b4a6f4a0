// Package signer computes the signature headers of one delivery attempt, in each of the
// schemes a WebhookEndpoint can select (DESIGN.md §4): Standard Webhooks (symmetric v1 and
// asymmetric v1a) and the three reference schemes of shared/reference.
//
// Sign runs once per attempt, so a Signer does its key handling once, in New, and keeps
// HMAC states and scratch buffers in a sync.Pool: a signature costs two small heap
// allocations (one string holding every header value and the slice backing the header
// entries), whatever the body size and whether or not a rotation is under way.
//
// # Keys
//
// The styles disagree on how the configured secret becomes the HMAC key, and a receiver
// written from the style's document only works if Herald does exactly what that document
// does:
//
//   - StandardWebhooks: the key is the base64 decoding of the text after "whsec_". A
//     secret without the prefix is decoded whole, as the Standard Webhooks reference
//     libraries do (NewWebhook trims an optional "whsec_" and decodes the rest); a secret
//     that is not standard, padded base64 is refused by New, because no receiver using
//     those libraries could load it either.
//   - StandardWebhooksEd25519: the secret is "whsk_" followed by the base64 of an ed25519
//     private key, the specification's serialization of an asymmetric signing key: the
//     32-byte seed of RFC 8032 (what Herald generates), or the 64-byte seed-and-public-key
//     form of Go and libsodium, whose public half must match the seed. Receivers hold only
//     the public key, "whpk_" + base64 (PublicKey).
//   - TimestampedPrefixedHex, BodyPrefixedHex, TimestampedHex: the key is the secret's
//     bytes as written, including any "whsec_" prefix; each reference document passes
//     the whole secret string to HMAC (secret.encode() / createHmac(sha256, secret)).
//
// Secret bytes are used verbatim; whoever reads them from the Kubernetes Secret decides
// about stray whitespace. For the hex styles a trailing newline is part of the key (and
// breaks receivers that hold the secret without it); for StandardWebhooks base64 decoding
// skips line breaks, in Go and in the reference libraries alike. New's errors point out
// trailing whitespace without showing the secret.
//
// # Rotation
//
// With a previous secret, StandardWebhooks sends both signatures in webhook-signature,
// current first, as the specification prescribes. For the two Standard Webhooks styles
// the previous secret may be of either kind, told apart by its prefix ("whsk_" signs v1a,
// anything else v1), because the specification lets one header carry v1 and v1a
// signatures side by side: moving an endpoint from HMAC to ed25519, or back, is then a
// rotation like any other, and receivers of either kind keep verifying throughout.
//
// None of the three reference documents defines a multi-signature form (each compares
// the whole header value with one expected value), so the hex styles keep
// <prefix>-Signature for the current secret and add <prefix>-Signature-Previous, in the
// same format, for the previous one.
package signer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-dev/herald/api/v1alpha1"
)

// Header names of the Standard Webhooks style, in the canonical form net/http uses as
// map key (the specification writes them in lower case; header names are case-insensitive).
const (
	HeaderWebhookID        = "Webhook-Id"
	HeaderWebhookTimestamp = "Webhook-Timestamp"
	HeaderWebhookSignature = "Webhook-Signature"
)

// Suffixes appended to the endpoint's header prefix by the hex styles.
const (
	SuffixSignature         = "-Signature"
	SuffixSignaturePrevious = "-Signature-Previous"
	SuffixTimestamp         = "-Timestamp"
	SuffixEvent             = "-Event"
)

// Standard Webhooks' key serializations: the symmetric secret, and the asymmetric
// secret (signing) and public (verifying) keys.
const (
	standardWebhooksSecretPrefix     = "whsec_"
	standardWebhooksPrivateKeyPrefix = "whsk_"
	standardWebhooksPublicKeyPrefix  = "whpk_"
)

// ErrInvalidSecret is returned by New when a secret cannot be used as a key. The error
// says which secret (current or previous) and why, never its content.
var ErrInvalidSecret = errors.New("invalid signing secret")

// Message is what one attempt signs.
type Message struct {
	// ID is the event id, the same on every attempt (Standard Webhooks' webhook-id,
	// required by its receivers; the hex styles do not use it).
	ID string
	// Timestamp is the time of this attempt, not of the event: receivers reject
	// timestamps more than a few minutes away from their clock, so a retry hours later
	// must carry a fresh one. The zero value means time.Now().
	Timestamp time.Time
	// Body is the exact request body; it must not change after signing.
	Body []byte
	// EventType is sent by the TimestampedHex style in <prefix>-Event.
	EventType string
}

// Signer signs attempts for one endpoint configuration. It is safe for concurrent use.
type Signer struct {
	style v1alpha1.SignatureStyle
	nkeys int // 1, or 2 during a rotation
	// standard: one of the Standard Webhooks styles (webhook-* headers, a signature list).
	standard bool
	// ed holds the ed25519 keys, by position (nil where that key is an HMAC key).
	ed [2]ed25519.PrivateKey

	// Canonical header names, computed once so that Sign never canonicalises.
	sigHeader, prevHeader, tsHeader, eventHeader string

	pool sync.Pool // of *state
}

// state is the per-goroutine working set: one HMAC per HMAC key and scratch buffers.
type state struct {
	macs [2]hash.Hash
	sum  [sha256.Size]byte
	buf  []byte
	// msg holds the whole signed content for ed25519, which signs one contiguous message
	// (an HMAC is fed the prefix and the body in turn).
	msg []byte
}

// maxPooledBuf keeps an attempt with a huge event id from pinning a large buffer in the
// pool; the HMAC states are kept either way, since they are the expensive part.
// maxPooledMsg does the same for the ed25519 message, which holds the body.
const (
	maxPooledBuf = 4 << 10
	maxPooledMsg = 64 << 10
)

// key is one secret turned into what signs with it: an HMAC key, or an ed25519 private
// key.
type key struct {
	hmac []byte
	ed   ed25519.PrivateKey
}

func (k key) equal(o key) bool { return bytes.Equal(k.hmac, o.hmac) && bytes.Equal(k.ed, o.ed) }

// New returns a Signer for the style. headerPrefix names the hex styles' headers ("" means
// v1alpha1.DefaultHeaderPrefix; StandardWebhooks ignores it); style "" means
// StandardWebhooks, matching the API defaults. current is the signing secret; previous is
// the secret being rotated out, or nil.
func New(style v1alpha1.SignatureStyle, headerPrefix string, current, previous []byte) (*Signer, error) {
	if style == "" {
		style = v1alpha1.SignatureStandardWebhooks
	}
	s := &Signer{style: style}
	switch style {
	case v1alpha1.SignatureStandardWebhooks, v1alpha1.SignatureStandardWebhooksEd25519:
		s.standard = true
		s.sigHeader, s.tsHeader = HeaderWebhookSignature, HeaderWebhookTimestamp
	case v1alpha1.SignatureTimestampedPrefixedHex, v1alpha1.SignatureBodyPrefixedHex, v1alpha1.SignatureTimestampedHex:
		if headerPrefix == "" {
			headerPrefix = v1alpha1.DefaultHeaderPrefix
		}
		if !validHeaderPrefix(headerPrefix) {
			return nil, fmt.Errorf("signer: header prefix %q is not an HTTP header name such as X-Acme", headerPrefix)
		}
		s.sigHeader = http.CanonicalHeaderKey(headerPrefix + SuffixSignature)
		s.prevHeader = http.CanonicalHeaderKey(headerPrefix + SuffixSignaturePrevious)
		if style != v1alpha1.SignatureBodyPrefixedHex {
			s.tsHeader = http.CanonicalHeaderKey(headerPrefix + SuffixTimestamp)
		}
		if style == v1alpha1.SignatureTimestampedHex {
			s.eventHeader = http.CanonicalHeaderKey(headerPrefix + SuffixEvent)
		}
	default:
		return nil, fmt.Errorf("signer: unknown signature style %q", style)
	}

	cur, err := keyFor(style, "current", current)
	if err != nil {
		return nil, err
	}
	keys := []key{cur}
	if previous != nil {
		prev, err := keyFor(style, "previous", previous)
		if err != nil {
			return nil, err
		}
		// Both refs pointing at the same secret (a rotation finished but not yet cleaned
		// up) would only send the same signature twice.
		if !prev.equal(cur) {
			keys = append(keys, prev)
		}
	}
	s.nkeys = len(keys)
	for i, k := range keys {
		s.ed[i] = k.ed
	}
	s.pool.New = func() any {
		st := &state{buf: make([]byte, 0, 256)}
		for i, k := range keys {
			if k.hmac != nil {
				st.macs[i] = hmac.New(sha256.New, k.hmac)
			}
		}
		return st
	}
	return s, nil
}

// keyFor turns a secret into the style's key (see the package doc). The returned key
// never shares memory with the caller's, so a later change to their buffer cannot alter
// it.
func keyFor(style v1alpha1.SignatureStyle, which string, secret []byte) (key, error) {
	if len(secret) == 0 {
		return key{}, fmt.Errorf("signer: %s secret: %w: it is empty", which, ErrInvalidSecret)
	}
	isPrivateKey := bytes.HasPrefix(secret, []byte(standardWebhooksPrivateKeyPrefix))
	switch {
	case style == v1alpha1.SignatureStandardWebhooksEd25519 && which == "current" && !isPrivateKey:
		hint := ""
		if bytes.HasPrefix(secret, []byte(standardWebhooksSecretPrefix)) {
			hint = "; it holds a whsec_ (HMAC) secret: delete a Secret Herald generated to have it generate a key pair, or keep the whsec_ Secret as previousSecretRef to rotate from HMAC to ed25519"
		}
		return key{}, fmt.Errorf("signer: %s secret: %w: StandardWebhooksEd25519 needs whsk_ followed by the base64 of an ed25519 private key%s", which, ErrInvalidSecret, hint)
	case (style == v1alpha1.SignatureStandardWebhooksEd25519 || style == v1alpha1.SignatureStandardWebhooks) && isPrivateKey:
		if style == v1alpha1.SignatureStandardWebhooks && which == "current" {
			return key{}, fmt.Errorf("signer: %s secret: %w: it is an ed25519 private key (whsk_), which signs with spec.signature.style StandardWebhooksEd25519", which, ErrInvalidSecret)
		}
		priv, err := parsePrivateKey(secret)
		if err != nil {
			return key{}, fmt.Errorf("signer: %s secret: %w: %v", which, ErrInvalidSecret, err)
		}
		return key{ed: priv}, nil
	case style == v1alpha1.SignatureStandardWebhooksEd25519 && !bytes.HasPrefix(secret, []byte(standardWebhooksSecretPrefix)):
		return key{}, fmt.Errorf("signer: %s secret: %w: a StandardWebhooksEd25519 endpoint's previous secret must be whsk_ (ed25519) or whsec_ (HMAC) followed by base64", which, ErrInvalidSecret)
	case style != v1alpha1.SignatureStandardWebhooks && style != v1alpha1.SignatureStandardWebhooksEd25519:
		return key{hmac: bytes.Clone(secret)}, nil
	}
	k, err := hmacKey(which, secret)
	return key{hmac: k}, err
}

// hmacKey is the Standard Webhooks symmetric key: the base64 decoding of the text after
// "whsec_".
func hmacKey(which string, secret []byte) ([]byte, error) {
	enc := bytes.TrimPrefix(secret, []byte(standardWebhooksSecretPrefix))
	key := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(key, enc)
	if err != nil {
		hint := ""
		if len(bytes.TrimRight(secret, " \t\r\n")) != len(secret) {
			hint = " (it ends with whitespace; a trailing newline in the Secret?)"
		}
		return nil, fmt.Errorf("signer: %s secret: %w: Standard Webhooks needs whsec_ followed by standard base64%s", which, ErrInvalidSecret, hint)
	}
	if n == 0 {
		return nil, fmt.Errorf("signer: %s secret: %w: nothing follows the whsec_ prefix", which, ErrInvalidSecret)
	}
	return key[:n], nil
}

// parsePrivateKey reads "whsk_" + base64 of an ed25519 seed (32 bytes) or of Go's and
// libsodium's 64-byte private key (seed, then public key). Errors never quote the key.
func parsePrivateKey(secret []byte) (ed25519.PrivateKey, error) {
	enc := secret[len(standardWebhooksPrivateKeyPrefix):]
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(raw, enc)
	if err != nil {
		hint := ""
		if len(bytes.TrimRight(secret, " \t\r\n")) != len(secret) {
			hint = " (it ends with whitespace; a trailing newline in the Secret?)"
		}
		return nil, fmt.Errorf("whsk_ must be followed by standard base64%s", hint)
	}
	switch raw = raw[:n]; len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		priv := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if !bytes.Equal(priv[ed25519.SeedSize:], raw[ed25519.SeedSize:]) {
			return nil, errors.New("the 64-byte whsk_ key's public half does not belong to its seed")
		}
		return priv, nil
	}
	return nil, fmt.Errorf("whsk_ holds %d bytes; an ed25519 private key is a 32-byte seed (or 64 bytes: seed and public key)", n)
}

// PrivateKeyText serializes an ed25519 private key as Standard Webhooks does for signing
// keys: "whsk_" + base64 of its 32-byte seed.
func PrivateKeyText(priv ed25519.PrivateKey) string {
	return standardWebhooksPrivateKeyPrefix + base64.StdEncoding.EncodeToString(priv.Seed())
}

// PublicKeyText serializes an ed25519 public key as Standard Webhooks does:
// "whpk_" + base64 of its 32 bytes.
func PublicKeyText(pub ed25519.PublicKey) string {
	return standardWebhooksPublicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// validHeaderPrefix mirrors the CRD's rule for spec.signature.headerPrefix, so a Signer
// built from an object that skipped API-server validation still emits valid header names.
func validHeaderPrefix(p string) bool {
	if p == "" || !isLetter(p[0]) {
		return false
	}
	prevDash := false
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '-':
			if prevDash {
				return false
			}
			prevDash = true
		case isLetter(c) || ('0' <= c && c <= '9'):
			prevDash = false
		default:
			return false
		}
	}
	return !prevDash
}

func isLetter(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

// Style returns the signature style.
func (s *Signer) Style() v1alpha1.SignatureStyle { return s.style }

// Rotating reports whether deliveries carry a second signature for a previous secret.
func (s *Signer) Rotating() bool { return s.nkeys == 2 }

// PublicKey returns the public key ("whpk_" + base64) of the current secret when it is
// an ed25519 key, else "". It is what receivers verify v1a signatures with.
func (s *Signer) PublicKey() string { return s.publicKey(0) }

// PreviousPublicKey returns the public key of the previous secret during a rotation
// when that secret is an ed25519 key, else "".
func (s *Signer) PreviousPublicKey() string { return s.publicKey(1) }

func (s *Signer) publicKey(i int) string {
	if s.ed[i] == nil {
		return ""
	}
	return PublicKeyText(s.ed[i].Public().(ed25519.PublicKey))
}

// Sign sets the style's headers on h (which must not be nil), replacing earlier values
// of those names, so a header map reused across attempts never keeps a stale signature:
//
//	StandardWebhooks        Webhook-Id, Webhook-Timestamp, Webhook-Signature: v1,<base64>[ v1,<base64>]
//	StandardWebhooksEd25519 Webhook-Id, Webhook-Timestamp, Webhook-Signature: v1a,<base64>[ v1a,<base64>]
//	TimestampedPrefixedHex  <prefix>-Signature: sha256=<hex>, <prefix>-Timestamp
//	BodyPrefixedHex         <prefix>-Signature: sha256=<hex>
//	TimestampedHex          <prefix>-Signature: <hex>, <prefix>-Timestamp, <prefix>-Event
//
// During a rotation the hex styles also set <prefix>-Signature-Previous.
func (s *Signer) Sign(h http.Header, m Message) {
	ts := m.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	st := s.pool.Get().(*state)
	b := st.buf[:0]

	// b holds the signed prefix (everything signed before the body), then the header
	// values; those become one string, and every header value is a substring of it.
	unix := ts.Unix()
	switch s.style {
	case v1alpha1.SignatureStandardWebhooks, v1alpha1.SignatureStandardWebhooksEd25519:
		b = append(b, m.ID...)
		b = append(b, '.')
		b = strconv.AppendInt(b, unix, 10)
		b = append(b, '.')
	case v1alpha1.SignatureTimestampedPrefixedHex, v1alpha1.SignatureTimestampedHex:
		b = strconv.AppendInt(b, unix, 10)
		b = append(b, '.')
	}
	pre := len(b)
	if s.tsHeader != "" {
		b = strconv.AppendInt(b, unix, 10)
	}
	tsEnd := len(b) - pre
	var sigEnd [2]int
	for i := range s.nkeys {
		if s.ed[i] != nil {
			if len(st.msg) == 0 {
				st.msg = append(append(st.msg[:0], b[:pre]...), m.Body...)
			}
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, "v1a,"...)
			b = base64.StdEncoding.AppendEncode(b, ed25519.Sign(s.ed[i], st.msg))
			sigEnd[i] = len(b) - pre
			continue
		}
		mac := st.macs[i]
		mac.Reset()
		mac.Write(b[:pre])
		mac.Write(m.Body)
		sum := mac.Sum(st.sum[:0])
		switch s.style {
		case v1alpha1.SignatureStandardWebhooks, v1alpha1.SignatureStandardWebhooksEd25519:
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, "v1,"...)
			b = base64.StdEncoding.AppendEncode(b, sum)
		case v1alpha1.SignatureTimestampedPrefixedHex, v1alpha1.SignatureBodyPrefixedHex:
			b = append(b, "sha256="...)
			b = hex.AppendEncode(b, sum)
		case v1alpha1.SignatureTimestampedHex:
			b = hex.AppendEncode(b, sum)
		}
		sigEnd[i] = len(b) - pre
	}
	all := string(b[pre:])
	st.buf = b
	if cap(b) > maxPooledBuf {
		st.buf = nil
	}
	st.msg = st.msg[:0]
	if cap(st.msg) > maxPooledMsg {
		st.msg = nil
	}
	s.pool.Put(st)

	// One backing array serves every header's value slice; the full slice expressions
	// keep a later h.Add on one header from overwriting its neighbour.
	var vals []string
	if s.standard {
		vals = []string{m.ID, all[:tsEnd], all[tsEnd:sigEnd[s.nkeys-1]]}
		h[HeaderWebhookID] = vals[0:1:1]
		h[s.tsHeader] = vals[1:2:2]
		h[s.sigHeader] = vals[2:3:3]
		return
	}
	vals = []string{all[tsEnd:sigEnd[0]], "", all[:tsEnd], m.EventType}
	h[s.sigHeader] = vals[0:1:1]
	if s.nkeys == 2 {
		vals[1] = all[sigEnd[0]:sigEnd[1]]
		h[s.prevHeader] = vals[1:2:2]
	} else {
		delete(h, s.prevHeader)
	}
	if s.tsHeader != "" {
		h[s.tsHeader] = vals[2:3:3]
	}
	if s.eventHeader != "" {
		h[s.eventHeader] = vals[3:4:4]
	}
}

// HeaderNames returns the header names Sign sets for this configuration, in a stable
// order; useful to a sender that must keep user-configured static headers from
// overriding them.
func (s *Signer) HeaderNames() []string {
	if s.standard {
		return []string{HeaderWebhookID, HeaderWebhookTimestamp, HeaderWebhookSignature}
	}
	names := []string{s.sigHeader, s.prevHeader}
	if s.tsHeader != "" {
		names = append(names, s.tsHeader)
	}
	if s.eventHeader != "" {
		names = append(names, s.eventHeader)
	}
	return names
}

// String describes the configuration without any key material, so a Signer that ends
// up in a log line or an error is harmless.
func (s *Signer) String() string {
	var sb strings.Builder
	sb.WriteString("signer{style=")
	sb.WriteString(string(s.style))
	if !s.standard {
		sb.WriteString(" header=")
		sb.WriteString(s.sigHeader)
	}
	if s.nkeys == 2 {
		sb.WriteString(" rotating")
	}
	sb.WriteString("}")
	return sb.String()
}
