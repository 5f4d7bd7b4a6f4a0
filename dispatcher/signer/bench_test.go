package signer_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/signer"
)

// benchBody is a 1 KiB JSON-looking body, the size the comparison is quoted for.
var benchBody = func() []byte {
	b := []byte(`{"id":"evt_abc123def456","type":"policy.violation","data":{"pad":"`)
	b = append(b, bytes.Repeat([]byte("x"), 1024-len(b)-3)...)
	return append(b, `"}}`...)
}()

var benchTime = time.Unix(1_700_000_000, 0)

var sinkSum []byte

// BenchmarkRawHMAC is the baseline: what signing costs with a fresh crypto/hmac per call
// over the same bytes as the timestamped styles, before any encoding or headers.
func BenchmarkRawHMAC(b *testing.B) {
	key := []byte(docSecret)
	prefix := strconv.AppendInt(nil, benchTime.Unix(), 10)
	prefix = append(prefix, '.')
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	for b.Loop() {
		m := hmac.New(sha256.New, key)
		m.Write(prefix)
		m.Write(benchBody)
		sinkSum = m.Sum(nil)
	}
}

// BenchmarkSign measures Sign into a header map reused across iterations (a sender that
// builds a fresh map pays the map's own growth on top, whatever the signer does).
func BenchmarkSign(b *testing.B) {
	for _, style := range allStyles {
		for _, rotating := range []bool{false, true} {
			name := string(style)
			var prev []byte
			if rotating {
				name += "/rotating"
				prev = []byte(swPrev)
			}
			b.Run(name, func(b *testing.B) {
				s := mustNew(b, style, "X-Acme", []byte(swSecret), prev)
				h := http.Header{}
				msg := signer.Message{ID: "evt_abc123def456", Timestamp: benchTime, Body: benchBody, EventType: "policy.violation"}
				b.SetBytes(int64(len(benchBody)))
				b.ReportAllocs()
				for b.Loop() {
					s.Sign(h, msg)
				}
			})
		}
	}
}

// BenchmarkSignEd25519 measures the asymmetric style: an ed25519 signature costs far
// more CPU than an HMAC, the price the specification names for keeping the signing key
// from receivers.
func BenchmarkSignEd25519(b *testing.B) {
	for _, prev := range []string{"", edPrevSeed} {
		name := "current"
		if prev != "" {
			name = "rotating"
		}
		b.Run(name, func(b *testing.B) {
			var p []byte
			if prev != "" {
				p = []byte(prev)
			}
			s := mustNew(b, v1alpha1.SignatureStandardWebhooksEd25519, "", []byte(edSeed), p)
			h := http.Header{}
			msg := signer.Message{ID: "evt_abc123def456", Timestamp: benchTime, Body: benchBody}
			b.SetBytes(int64(len(benchBody)))
			b.ReportAllocs()
			for b.Loop() {
				s.Sign(h, msg)
			}
		})
	}
}

// BenchmarkSignParallel shows the pool holding up under the concurrent use the sender
// makes of one Signer per endpoint.
func BenchmarkSignParallel(b *testing.B) {
	s := mustNew(b, v1alpha1.SignatureStandardWebhooks, "", []byte(swSecret), nil)
	msg := signer.Message{ID: "evt_abc123def456", Timestamp: benchTime, Body: benchBody}
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		h := http.Header{}
		for pb.Next() {
			s.Sign(h, msg)
		}
	})
}
