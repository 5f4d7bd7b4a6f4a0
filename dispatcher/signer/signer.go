// Package signer computes the signature headers of one delivery attempt, in each of the
// schemes a WebhookEndpoint can select (DESIGN.md §4): Standard Webhooks and the three
// reference schemes of shared/reference.
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
// current first, as the specification prescribes. None of the three reference documents
// defines a multi-signature form (each compares the whole header value with one
// expected value), so the hex styles keep <prefix>-Signature for the current secret and
// add <prefix>-Signature-Previous, in the same format, for the previous one.
package signer

import (
	"bytes"
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

// standardWebhooksSecretPrefix marks a Standard Webhooks symmetric secret.
const standardWebhooksSecretPrefix = "whsec_"

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

	// Canonical header names, computed once so that Sign never canonicalises.
	sigHeader, prevHeader, tsHeader, eventHeader string

	pool sync.Pool // of *state
}

// state is the per-goroutine working set: one HMAC per key and a scratch buffer.
type state struct {
	macs [2]hash.Hash
	sum  [sha256.Size]byte
	buf  []byte
}

// maxPooledBuf keeps an attempt with a huge event id from pinning a large buffer in the
// pool; the HMAC states are kept either way, since they are the expensive part.
const maxPooledBuf = 4 << 10

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
	case v1alpha1.SignatureStandardWebhooks:
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
	keys := [][]byte{cur}
	if previous != nil {
		prev, err := keyFor(style, "previous", previous)
		if err != nil {
			return nil, err
		}
		// Both refs pointing at the same secret (a rotation finished but not yet cleaned
		// up) would only send the same signature twice.
		if !bytes.Equal(prev, cur) {
			keys = append(keys, prev)
		}
	}
	s.nkeys = len(keys)
	s.pool.New = func() any {
		st := &state{buf: make([]byte, 0, 256)}
		for i, k := range keys {
			st.macs[i] = hmac.New(sha256.New, k)
		}
		return st
	}
	return s, nil
}

// keyFor turns a secret into the style's HMAC key (see the package doc). The returned
// slice is never the caller's, so a later change to their buffer cannot alter the key.
func keyFor(style v1alpha1.SignatureStyle, which string, secret []byte) ([]byte, error) {
	if len(secret) == 0 {
		return nil, fmt.Errorf("signer: %s secret: %w: it is empty", which, ErrInvalidSecret)
	}
	if style != v1alpha1.SignatureStandardWebhooks {
		return bytes.Clone(secret), nil
	}
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

// Sign sets the style's headers on h (which must not be nil), replacing earlier values
// of those names, so a header map reused across attempts never keeps a stale signature:
//
//	StandardWebhooks        Webhook-Id, Webhook-Timestamp, Webhook-Signature: v1,<base64>[ v1,<base64>]
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
	case v1alpha1.SignatureStandardWebhooks:
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
		mac := st.macs[i]
		mac.Reset()
		mac.Write(b[:pre])
		mac.Write(m.Body)
		sum := mac.Sum(st.sum[:0])
		switch s.style {
		case v1alpha1.SignatureStandardWebhooks:
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
	s.pool.Put(st)

	// One backing array serves every header's value slice; the full slice expressions
	// keep a later h.Add on one header from overwriting its neighbour.
	var vals []string
	if s.style == v1alpha1.SignatureStandardWebhooks {
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
	if s.style == v1alpha1.SignatureStandardWebhooks {
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
	if s.style != v1alpha1.SignatureStandardWebhooks {
		sb.WriteString(" header=")
		sb.WriteString(s.sigHeader)
	}
	if s.nkeys == 2 {
		sb.WriteString(" rotating")
	}
	sb.WriteString("}")
	return sb.String()
}
