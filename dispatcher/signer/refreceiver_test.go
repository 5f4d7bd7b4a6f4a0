package signer_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/refreceiver"
)

// Secrets shaped like the ones Herald generates (whsec_ + base64 of 32 bytes), so the
// hex styles are exercised with the secret a user actually copies into their receiver.
const (
	genCurrent  = "whsec_6NnU0tR4rUBvQ8k0D3gk2kmx0f1x9mQ2cZKh2Gv2rNI="
	genPrevious = "whsec_q0dO2p0y8jSUbTtV9c4vX0mI1bQ7Xw3d8rQyGk3lJtE="
	genOther    = "whsec_Zm9yZ2VkLWJ5LWEtc3RyYW5nZXItd2l0aC1hLWd1ZXNzISE="
)

// refScheme is one signature style and the receiver transcribed from its document.
type refScheme struct {
	name  string
	style v1alpha1.SignatureStyle
	// receiver holds secret only. readPrevious points a hex receiver at Herald's
	// <prefix>-Signature-Previous instead of the header its document names; Standard
	// Webhooks needs no such switch because its one header carries the whole list.
	receiver        func(secret string, readPrevious bool) func(http.Header, []byte) bool
	checksAge       bool // the document rejects old timestamps
	oneSigPerHeader bool
}

const refPrefix = "X-Acme" // stands in for X-Tork, X-Bolor, X-Praxis

var refSchemes = []refScheme{
	{
		name: "StandardWebhooks (spec)", style: v1alpha1.SignatureStandardWebhooks, checksAge: true,
		receiver: func(secret string, _ bool) func(http.Header, []byte) bool {
			return func(h http.Header, body []byte) bool {
				return refreceiver.StandardWebhooks(secret, h, body, time.Now())
			}
		},
	},
	{
		name: "TimestampedPrefixedHex (reference 000)", style: v1alpha1.SignatureTimestampedPrefixedHex, oneSigPerHeader: true,
		receiver: func(secret string, readPrevious bool) func(http.Header, []byte) bool {
			sig := sigHeader(readPrevious)
			return func(h http.Header, body []byte) bool {
				return refreceiver.Tork(secret, h, body, sig, refPrefix+"-Timestamp")
			}
		},
	},
	{
		name: "BodyPrefixedHex (reference 003, Python)", style: v1alpha1.SignatureBodyPrefixedHex, oneSigPerHeader: true,
		receiver: func(secret string, readPrevious bool) func(http.Header, []byte) bool {
			sig := sigHeader(readPrevious)
			return func(h http.Header, body []byte) bool { return refreceiver.Bolor(secret, h, body, sig) }
		},
	},
	{
		name: "BodyPrefixedHex (reference 003, Node)", style: v1alpha1.SignatureBodyPrefixedHex, oneSigPerHeader: true,
		receiver: func(secret string, readPrevious bool) func(http.Header, []byte) bool {
			sig := sigHeader(readPrevious)
			return func(h http.Header, body []byte) bool { return refreceiver.BolorNode(secret, h, body, sig) }
		},
	},
	{
		name: "TimestampedHex (reference 004)", style: v1alpha1.SignatureTimestampedHex, checksAge: true, oneSigPerHeader: true,
		receiver: func(secret string, readPrevious bool) func(http.Header, []byte) bool {
			sig := sigHeader(readPrevious)
			return func(h http.Header, body []byte) bool {
				event, ok := refreceiver.Praxis(secret, h, body, sig, refPrefix+"-Timestamp", refPrefix+"-Event", time.Now())
				return ok && event == "approval.decided"
			}
		},
	},
}

func sigHeader(previous bool) string {
	if previous {
		return refPrefix + "-Signature-Previous"
	}
	return refPrefix + "-Signature"
}

// TestReferenceReceivers_VerifyHeraldDeliveries sends real requests, signed by the
// Signer, to receivers transcribed from the reference documents (internal/refreceiver,
// which shares no code with the signer) over 127.0.0.1.
func TestReferenceReceivers_VerifyHeraldDeliveries(t *testing.T) {
	body := []byte(`{"id":"evt_01J","type":"approval.decided","created_at":"2026-03-01T12:00:00Z","data":{"approved":true,"note":"naïve café ✓"}}`)
	scenarios := []struct {
		why            string
		previous       string // the signer's previous secret; "" when not rotating
		receiverSecret string
		readPrevious   bool
		tamper         bool
		age            time.Duration
		want           func(refScheme) bool
	}{
		{
			why: "a receiver holding the endpoint's secret accepts", receiverSecret: genCurrent,
			want: func(refScheme) bool { return true },
		},
		{
			why: "rotation: a receiver already on the new secret accepts, unchanged", previous: genPrevious, receiverSecret: genCurrent,
			want: func(refScheme) bool { return true },
		},
		{
			why: "rotation: a receiver still on the old secret accepts (hex styles: from -Signature-Previous)", previous: genPrevious, receiverSecret: genPrevious, readPrevious: true,
			want: func(refScheme) bool { return true },
		},
		{
			why: "rotation: an unchanged hex receiver on the old secret rejects; its document compares one signature per header", previous: genPrevious, receiverSecret: genPrevious,
			want: func(s refScheme) bool { return !s.oneSigPerHeader },
		},
		{
			why: "after the rotation (no previous secret) the old secret no longer verifies", receiverSecret: genPrevious, readPrevious: true,
			want: func(refScheme) bool { return false },
		},
		{
			why: "a body changed in transit is rejected", receiverSecret: genCurrent, tamper: true,
			want: func(refScheme) bool { return false },
		},
		{
			why: "a receiver with another secret rejects", previous: genPrevious, receiverSecret: genOther,
			want: func(refScheme) bool { return false },
		},
		{
			why: "a ten-minute-old timestamp is rejected where the document checks age (000 does not, 003 has none)", receiverSecret: genCurrent, age: 10 * time.Minute,
			want: func(s refScheme) bool { return !s.checksAge },
		},
	}
	for _, sc := range refSchemes {
		for _, tt := range scenarios {
			t.Run(sc.name+"/"+tt.why, func(t *testing.T) {
				var prev []byte
				if tt.previous != "" {
					prev = []byte(tt.previous)
				}
				s := mustNew(t, sc.style, refPrefix, []byte(genCurrent), prev)
				h := http.Header{}
				s.Sign(h, signer.Message{ID: "evt_01J", Timestamp: time.Now().Add(-tt.age), Body: body, EventType: "approval.decided"})

				sent := body
				if tt.tamper {
					sent = bytes.Replace(body, []byte(`"approved":true`), []byte(`"approved":false`), 1)
				}
				srv := httptest.NewServer(refreceiver.Handler(sc.receiver(tt.receiverSecret, tt.readPrevious)))
				defer srv.Close()
				got := post(t, srv.URL, h, sent)
				want := http.StatusUnauthorized
				if tt.want(sc) {
					want = http.StatusOK
				}
				if got != want {
					t.Errorf("receiver answered %d, want %d (headers sent: %v)", got, want, h)
				}
			})
		}
	}
}

func post(t *testing.T, url string, h http.Header, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.Clone()
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
