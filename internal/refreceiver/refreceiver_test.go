package refreceiver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestImports_StayIndependentOfHerald guards the package's reason to exist: if it
// imported the signer or the verifier, a shared mistake would verify itself.
func TestImports_StayIndependentOfHerald(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/herald-dev/herald") {
				t.Errorf("%s imports %s; the reference receivers must be written from the documents alone", name, path)
			}
		}
	}
}

// The receivers are checked here against values computed outside Go, so that a bug in a
// transcription cannot hide behind a matching bug in the signer. Produced with:
//
//	printf '%s' '1705314600.{"id":"evt_abc123def456","type":"policy.violation","created_at":"2024-01-15T10:30:00Z"}' \
//	  | openssl dgst -sha256 -hmac 'whsec_your_signing_secret'
//	printf '%s' '{"id":"evt_abc123def456","type":"agentguard.action.blocked","created_at":"2026-02-14T15:30:00Z","workspace_id":"ws_xyz789"}' \
//	  | openssl dgst -sha256 -hmac 'whsec_your_signing_secret'
//	printf '%s' '1771083000.{"id":"550e8400-e29b-41d4-a716-446655440000","status":"completed"}' \
//	  | openssl dgst -sha256 -hmac 'whsec_your_signing_secret'
//
// and the Standard Webhooks vector is the one in the reference Go library's
// TestWebhookSign.
const (
	docSecret  = "whsec_your_signing_secret" // the secret every reference document shows
	torkBody   = `{"id":"evt_abc123def456","type":"policy.violation","created_at":"2024-01-15T10:30:00Z"}`
	torkSig    = "sha256=0e07cf94708f293e70e8fa3c78e165db2b43322c42138411b5e7aa771daa04be"
	bolorBody  = `{"id":"evt_abc123def456","type":"agentguard.action.blocked","created_at":"2026-02-14T15:30:00Z","workspace_id":"ws_xyz789"}`
	bolorSig   = "sha256=346549477f83ae7a5c1a39af4be1c012a4b984fc4727cc73cd2cc77856cd3ab8"
	praxisBody = `{"id":"550e8400-e29b-41d4-a716-446655440000","status":"completed"}`
	praxisSig  = "7c8a131844f3c82474b971f9aec327d800d5b2db650ce54b3a5924dd23fc43ef"
)

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestTork_KnownAnswers(t *testing.T) {
	tests := []struct {
		why    string
		h      http.Header
		body   string
		secret string
		want   bool
	}{
		{"the openssl vector verifies", header("X-Tork-Signature", torkSig, "X-Tork-Timestamp", "1705314600"), torkBody, docSecret, true},
		{"header names are case-insensitive, as in Flask", header("x-tork-signature", torkSig, "x-tork-timestamp", "1705314600"), torkBody, docSecret, true},
		{"a changed body fails", header("X-Tork-Signature", torkSig, "X-Tork-Timestamp", "1705314600"), torkBody + " ", docSecret, false},
		{"a changed timestamp fails", header("X-Tork-Signature", torkSig, "X-Tork-Timestamp", "1705314601"), torkBody, docSecret, false},
		{"the key includes whsec_: the bare suffix fails", header("X-Tork-Signature", torkSig, "X-Tork-Timestamp", "1705314600"), torkBody, "your_signing_secret", false},
		{"bare hex without sha256= fails: the whole header is compared", header("X-Tork-Signature", strings.TrimPrefix(torkSig, "sha256="), "X-Tork-Timestamp", "1705314600"), torkBody, docSecret, false},
		{"upper-case hex fails: hexdigest is lower case", header("X-Tork-Signature", "sha256="+strings.ToUpper(strings.TrimPrefix(torkSig, "sha256=")), "X-Tork-Timestamp", "1705314600"), torkBody, docSecret, false},
		{"a missing signature fails", header("X-Tork-Timestamp", "1705314600"), torkBody, docSecret, false},
		{"a missing timestamp signs \"None.\" and fails", header("X-Tork-Signature", torkSig), torkBody, docSecret, false},
		{"a body that is not UTF-8 raises in decode()", header("X-Tork-Signature", torkSig, "X-Tork-Timestamp", "1705314600"), "\xff", docSecret, false},
		{"a stale timestamp still verifies: the document checks no age", header("X-Tork-Signature", torkSig, "X-Tork-Timestamp", "1705314600"), torkBody, docSecret, true},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			if got := Tork(tt.secret, tt.h, []byte(tt.body), "X-Tork-Signature", "X-Tork-Timestamp"); got != tt.want {
				t.Errorf("Tork = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBolor_KnownAnswers(t *testing.T) {
	tests := []struct {
		why    string
		h      http.Header
		body   string
		secret string
		want   bool
	}{
		{"the openssl vector verifies", header("X-Bolor-Signature", bolorSig), bolorBody, docSecret, true},
		{"a changed body fails", header("X-Bolor-Signature", bolorSig), bolorBody[1:], docSecret, false},
		{"the key includes whsec_", header("X-Bolor-Signature", bolorSig), bolorBody, "your_signing_secret", false},
		{"a missing header compares with \"\" and fails", header(), bolorBody, docSecret, false},
		{"a second signature in the same header fails: the whole value is compared", header("X-Bolor-Signature", bolorSig+" "+bolorSig), bolorBody, docSecret, false},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			if got := Bolor(tt.secret, tt.h, []byte(tt.body), "X-Bolor-Signature"); got != tt.want {
				t.Errorf("Bolor = %v, want %v", got, tt.want)
			}
			if got := BolorNode(tt.secret, tt.h, []byte(tt.body), "X-Bolor-Signature"); got != tt.want {
				t.Errorf("BolorNode = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBolorNode_LossyDecode pins down the one place the two receivers of reference 003
// disagree, which is why Herald must only ever send UTF-8 bodies.
func TestBolorNode_LossyDecode(t *testing.T) {
	body := []byte("{\"a\":\"\xff\"}")
	sig := "sha256=" + hexHMAC(docSecret, string(body))
	h := header("X-Bolor-Signature", sig)
	if !Bolor(docSecret, h, body, "X-Bolor-Signature") {
		t.Error("the Python receiver signs raw bytes and should accept")
	}
	if BolorNode(docSecret, h, body, "X-Bolor-Signature") {
		t.Error("the Node receiver decodes the body as UTF-8 first and should reject")
	}
}

func TestPraxis_KnownAnswers(t *testing.T) {
	signedAt := time.Unix(1771083000, 0)
	ok := header("X-Praxis-Signature", praxisSig, "X-Praxis-Timestamp", "1771083000", "X-Praxis-Event", "evaluation.completed")
	tests := []struct {
		why    string
		h      http.Header
		body   string
		secret string
		now    time.Time
		want   bool
	}{
		{"the openssl vector verifies", ok, praxisBody, docSecret, signedAt, true},
		{"exactly 300 s old still verifies: the document rejects > 300", ok, praxisBody, docSecret, signedAt.Add(300 * time.Second), true},
		{"300.5 s old fails: time.time() has sub-second precision", ok, praxisBody, docSecret, signedAt.Add(300500 * time.Millisecond), false},
		{"300 s in the future verifies: abs()", ok, praxisBody, docSecret, signedAt.Add(-300 * time.Second), true},
		{"301 s in the future fails", ok, praxisBody, docSecret, signedAt.Add(-301 * time.Second), false},
		{"sha256= prefix fails: the value is bare hex", header("X-Praxis-Signature", "sha256="+praxisSig, "X-Praxis-Timestamp", "1771083000"), praxisBody, docSecret, signedAt, false},
		{"a missing timestamp raises in int()", header("X-Praxis-Signature", praxisSig), praxisBody, docSecret, signedAt, false},
		{"the key includes whsec_", ok, praxisBody, "your_signing_secret", signedAt, false},
		{"a changed body fails", ok, praxisBody + "\n", docSecret, signedAt, false},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			event, got := Praxis(tt.secret, tt.h, []byte(tt.body), "X-Praxis-Signature", "X-Praxis-Timestamp", "X-Praxis-Event", tt.now)
			if got != tt.want {
				t.Fatalf("Praxis = %v, want %v", got, tt.want)
			}
			if got && event != "evaluation.completed" {
				t.Errorf("event = %q, want evaluation.completed", event)
			}
		})
	}
}

func TestStandardWebhooks_SpecVector(t *testing.T) {
	const sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	signedAt := time.Unix(1614265330, 0)
	h := func(sigs string) http.Header {
		return header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp", "1614265330", "webhook-signature", sigs)
	}
	body := []byte(`{"test": 2432232314}`)
	tests := []struct {
		why    string
		h      http.Header
		secret string
		now    time.Time
		want   bool
	}{
		{"the specification library's vector verifies", h(sig), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", signedAt, true},
		{"a secret without whsec_ is the same key", h(sig), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", signedAt, true},
		{"any signature of the list may match", h("v1,AAAA v1a,BBBB " + sig), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", signedAt, true},
		{"another version's signature is ignored", h("v2," + strings.TrimPrefix(sig, "v1,")), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", signedAt, false},
		{"six minutes later is stale", h(sig), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", signedAt.Add(6 * time.Minute), false},
		{"the raw secret text is not the key", h(sig), "whsec_" + "d2hzZWNfTWZLUTlyOEdLWXFyVHdqVVBEOElMUFpJbzJMYUxhU3c=", signedAt, false},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			if got := StandardWebhooks(tt.secret, tt.h, body, tt.now); got != tt.want {
				t.Errorf("StandardWebhooks = %v, want %v", got, tt.want)
			}
		})
	}
}

func hexHMAC(secret, msg string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(msg))
	return hex.EncodeToString(mac.Sum(nil))
}

// The Standard Webhooks specification gives no ed25519 vector (its example v1a header
// comes without a key), so this one is made outside Go: RFC 8032's test 1 key pair
// (section 7.1) signs the specification's own example message, minified as it shows it:
//
//	seed=9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60
//	echo "302e020100300506032b657004220420$seed" | xxd -r -p > k.der
//	openssl pkey -inform DER -in k.der -out k.pem
//	printf '%s' "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W.1674087231.$edBody" > m.txt
//	openssl pkeyutl -sign -inkey k.pem -rawin -in m.txt | base64 -w0
//
// The public key is the RFC's d75a9801...511a, base64-encoded behind whpk_.
const (
	edPublicKey = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	edID        = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
	edTimestamp = "1674087231"
	edBody      = `{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"1f81eb52-5198-4599-803e-771906343485"}}`
	edSig       = "v1a,pbpYBMlty2hExn4zt0UTGb6BaP2Vq5AfyzjB9GGV3x/wCJKd8UjOCf8Qhaji6TKY9C5eNMnlF0GG4udaO6B7Ag=="
	// rfcTest2Public is RFC 8032's test 2 public key: a key the vector was not made with.
	rfcTest2Public = "whpk_PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw="
)

func TestStandardWebhooksEd25519_OpensslVector(t *testing.T) {
	signedAt := time.Unix(1674087231, 0)
	h := func(sigs string) http.Header {
		return header("webhook-id", edID, "webhook-timestamp", edTimestamp, "webhook-signature", sigs)
	}
	tests := []struct {
		why  string
		h    http.Header
		key  string
		body string
		now  time.Time
		want bool
	}{
		{"the openssl vector verifies with the RFC's public key", h(edSig), edPublicKey, edBody, signedAt, true},
		{"beside a v1 signature, as in the specification's example header", h("v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= " + edSig), edPublicKey, edBody, signedAt, true},
		{"another public key rejects", h(edSig), rfcTest2Public, edBody, signedAt, false},
		{"a changed body rejects", h(edSig), edPublicKey, edBody + " ", signedAt, false},
		{"the signature under v1 is not an asymmetric signature", h("v1," + strings.TrimPrefix(edSig, "v1a,")), edPublicKey, edBody, signedAt, false},
		{"a key without whpk_ is not a public key", h(edSig), strings.TrimPrefix(edPublicKey, "whpk_"), edBody, signedAt, false},
		{"six minutes later is stale", h(edSig), edPublicKey, edBody, signedAt.Add(6 * time.Minute), false},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			if got := StandardWebhooksEd25519(tt.key, tt.h, []byte(tt.body), tt.now); got != tt.want {
				t.Errorf("StandardWebhooksEd25519 = %v, want %v", got, tt.want)
			}
		})
	}
}
