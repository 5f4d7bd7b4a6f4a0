package cli

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/signer"
)

const (
	testSecret     = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	testPrevSecret = "whsec_dGhlLW9sZC1zZWNyZXQtYmVmb3JlLXJvdGF0aW9u"
	testBody       = `{"id":"evt_01JDEMO","type":"invoice.created","data":{"amount":1500}}`
)

// signed returns the headers the dispatcher's signer puts on a delivery of testBody.
func signed(t *testing.T, style heraldv1.SignatureStyle, prefix string, at time.Time, cur, prev string) http.Header {
	t.Helper()
	var prevKey []byte
	if prev != "" {
		prevKey = []byte(prev)
	}
	s, err := signer.New(style, prefix, []byte(cur), prevKey)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	s.Sign(h, signer.Message{ID: "evt_01JDEMO", Timestamp: at, Body: []byte(testBody), EventType: "invoice.created"})
	return h
}

// headerFlags turns h into -H arguments.
func headerFlags(h http.Header) []string {
	var args []string
	for name, vals := range h {
		for _, v := range vals {
			args = append(args, "-H", name+": "+v)
		}
	}
	return args
}

// dump renders a request as a receiver would log it: request line, headers, body.
func dump(h http.Header, body string) string {
	var b strings.Builder
	b.WriteString("POST /webhooks HTTP/1.1\r\nHost: receiver.example\r\n")
	names := make([]string, 0, len(h))
	for n := range h {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, v := range h[n] {
			fmt.Fprintf(&b, "%s: %s\r\n", n, v)
		}
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

type verifyRun struct {
	code           int
	stdout, stderr string
}

func runVerify(t *testing.T, stdin string, args ...string) verifyRun {
	t.Helper()
	code := 0
	cmd := newVerifyCommandWithExit(func(c int) { code = c })
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	_ = cmd.Execute()
	return verifyRun{code: code, stdout: out.String(), stderr: errOut.String()}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerify_AcceptsEveryStyleAsTheDispatcherSignsIt(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		style  heraldv1.SignatureStyle
		prefix string
	}{
		{heraldv1.SignatureStandardWebhooks, ""},
		{heraldv1.SignatureTimestampedPrefixedHex, "X-Acme"},
		{heraldv1.SignatureBodyPrefixedHex, "X-Acme"},
		{heraldv1.SignatureTimestampedHex, "X-Herald"},
	} {
		t.Run(string(tc.style), func(t *testing.T) {
			h := signed(t, tc.style, tc.prefix, now, testSecret, "")
			secretFile := writeFile(t, "secret", testSecret+"\n")

			// Style and prefix given, headers as flags, body on stdin.
			args := append([]string{"--style", string(tc.style), "--secret-file", secretFile}, headerFlags(h)...)
			if tc.prefix != "" {
				args = append(args, "--header-prefix", tc.prefix)
			}
			if r := runVerify(t, testBody, args...); r.code != 0 || !strings.HasPrefix(r.stdout, "signature valid") {
				t.Fatalf("explicit style: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}

			// Nothing but the secret and a request dump: style and prefix come from the headers.
			r := runVerify(t, "", "--secret", testSecret, "--headers-file", writeFile(t, "req", dump(h, testBody)))
			if r.code != 0 || !strings.Contains(r.stdout, string(tc.style)+" (read from the headers)") {
				t.Fatalf("detected style: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
		})
	}
}

func TestVerify_RefusesAndSaysWhy(t *testing.T) {
	now := time.Now()
	sw := signed(t, heraldv1.SignatureStandardWebhooks, "", now, testSecret, "")
	hex := signed(t, heraldv1.SignatureTimestampedHex, "X-Acme", now, testSecret, "")
	old := signed(t, heraldv1.SignatureTimestampedPrefixedHex, "", now.Add(-time.Hour), testSecret, "")
	bodyFile := writeFile(t, "body.json", testBody)

	for _, tc := range []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		want     string // in stderr
	}{
		{
			name:     "a changed body is not what was signed",
			stdin:    strings.Replace(testBody, "1500", "15000", 1),
			args:     append([]string{"--secret", testSecret}, headerFlags(sw)...),
			wantCode: 1, want: "no matching signature",
		},
		{
			name:     "the wrong secret matches nothing",
			stdin:    testBody,
			args:     append([]string{"--secret", testPrevSecret, "--header-prefix", "X-Acme"}, headerFlags(hex)...),
			wantCode: 1, want: "check that the secret is the endpoint's current or previous signing secret",
		},
		{
			name:     "an editor's trailing newline is named as the cause",
			stdin:    testBody + "\n",
			args:     append([]string{"--secret", testSecret}, headerFlags(sw)...),
			wantCode: 1, want: "the body ends with a line break that was not signed",
		},
		{
			name:     "an hour-old capture is outside the default tolerance",
			args:     append([]string{"--secret", testSecret, "--body-file", bodyFile}, headerFlags(old)...),
			wantCode: 1, want: "--tolerance 24h",
		},
		{
			name:     "a missing timestamp header is named, with the headers that were given",
			stdin:    testBody,
			args:     []string{"--secret", testSecret, "--style", "TimestampedHex", "-H", "X-Acme-Signature: " + hex.Get("X-Acme-Signature")},
			wantCode: 1, want: "X-Acme-Timestamp: missing header",
		},
		{
			name:     "no secret is a usage error",
			stdin:    testBody,
			args:     headerFlags(sw),
			wantCode: 2, want: "the signing secret is missing",
		},
		{
			name:     "an unknown style is a usage error",
			stdin:    testBody,
			args:     append([]string{"--secret", testSecret, "--style", "HMAC"}, headerFlags(sw)...),
			wantCode: 2, want: "is not a signature style",
		},
		{
			name:     "a header without a colon is a usage error",
			stdin:    testBody,
			args:     []string{"--secret", testSecret, "-H", "webhook-id evt_1"},
			wantCode: 2, want: "write it as 'Name: value'",
		},
		{
			name:     "an unknown flag is a usage error",
			args:     []string{"--secret", testSecret, "--sekret", "x"},
			wantCode: 2, want: "unknown flag: --sekret",
		},
		{
			name:     "a Standard Webhooks secret that is not whsec_<base64> is a usage error",
			stdin:    testBody,
			args:     append([]string{"--secret", "whsec_not base64!"}, headerFlags(sw)...),
			wantCode: 2, want: "whsec_ followed by base64",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runVerify(t, tc.stdin, tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("code %d (want %d), stderr %q (want it to contain %q)", r.code, tc.wantCode, r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, testSecret) {
				t.Fatalf("the secret leaked into the message: %q", r.stderr)
			}
		})
	}
}

func TestVerify_OldCaptureWithRaisedTolerance(t *testing.T) {
	h := signed(t, heraldv1.SignatureTimestampedPrefixedHex, "", time.Now().Add(-time.Hour), testSecret, "")
	r := runVerify(t, testBody, append([]string{"--secret", testSecret, "--tolerance", "2h"}, headerFlags(h)...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "signed 1h0m") {
		t.Fatalf("code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// During a rotation a receiver may still hold only the previous secret.
func TestVerify_AcceptsThePreviousSecretDuringRotation(t *testing.T) {
	for _, style := range []heraldv1.SignatureStyle{heraldv1.SignatureStandardWebhooks, heraldv1.SignatureBodyPrefixedHex} {
		h := signed(t, style, "", time.Now(), testSecret, testPrevSecret)
		r := runVerify(t, testBody, append([]string{"--secret", testPrevSecret}, headerFlags(h)...)...)
		if r.code != 0 {
			t.Fatalf("%s: code %d, stderr %q", style, r.code, r.stderr)
		}
	}
}

const (
	// RFC 8032 test 1 and test 2 key pairs, as Standard Webhooks serializes them.
	testEdSeed       = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
	testEdPublic     = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	testEdPrevSeed   = "whsk_TM0Imyj/ltqdtsNG7BFOD1uKMZ81q6Yk2oz27U+4pvs="
	testEdPrevPublic = "whpk_PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw="
)

func TestVerify_Ed25519WithThePublicKey(t *testing.T) {
	h := signed(t, heraldv1.SignatureStandardWebhooksEd25519, "", time.Now(), testEdSeed, testEdPrevSeed)
	dumpFile := writeFile(t, "req", dump(h, testBody))
	for _, tc := range []struct {
		why  string
		args []string
	}{
		{"a public-key file, as herald endpoint public-key writes it: the style follows from the key", []string{"--public-key-file", writeFile(t, "billing.pub", testEdPublic+"\n")}},
		{"the rotated-out key verifies too", []string{"--public-key", testEdPrevPublic}},
		{"a whpk_ key passed as --secret is taken for what it is", []string{"--secret", testEdPublic}},
		{"the style named explicitly", []string{"--style", "StandardWebhooksEd25519", "--public-key", testEdPublic}},
	} {
		t.Run(tc.why, func(t *testing.T) {
			r := runVerify(t, "", append(tc.args, "--headers-file", dumpFile)...)
			if r.code != 0 || !strings.Contains(r.stdout, "style StandardWebhooksEd25519") || !strings.Contains(r.stdout, "event evt_01JDEMO") {
				t.Fatalf("code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
		})
	}

	hmacOnly := signed(t, heraldv1.SignatureStandardWebhooks, "", time.Now(), testSecret, "")
	for _, tc := range []struct {
		why      string
		stdin    string
		args     []string
		wantCode int
		want     string
	}{
		{"a changed body", strings.Replace(testBody, "1500", "1501", 1), append([]string{"--public-key", testEdPublic}, headerFlags(h)...), 1, "2 v1a signature(s) checked"},
		{"an HMAC-signed request has no v1a signature", testBody, append([]string{"--public-key", testEdPublic}, headerFlags(hmacOnly)...), 1, "0 v1a signature(s) checked"},
		{"a secret tried on an ed25519 request is pointed at the public key", testBody, append([]string{"--secret", testSecret}, headerFlags(h)...), 1, "only v1a (ed25519) signatures"},
		{"the private key is refused before use", testBody, append([]string{"--secret", testEdSeed}, headerFlags(h)...), 2, "receivers never need"},
		{"the ed25519 style with a secret", testBody, append([]string{"--style", "StandardWebhooksEd25519", "--secret", testSecret}, headerFlags(h)...), 2, "verifies with the endpoint's public key"},
		{"a public key for an HMAC style", testBody, append([]string{"--style", "TimestampedHex", "--public-key", testEdPublic}, headerFlags(h)...), 2, "verifies only --style StandardWebhooksEd25519"},
		{"a broken public key", testBody, append([]string{"--public-key", "whpk_short"}, headerFlags(h)...), 2, "herald endpoint public-key <endpoint> prints the key"},
		{"two keys", testBody, append([]string{"--public-key", testEdPublic, "--secret", testSecret}, headerFlags(h)...), 2, "give one of"},
	} {
		t.Run(tc.why, func(t *testing.T) {
			r := runVerify(t, tc.stdin, tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("code %d (want %d), stderr %q (want %q)", r.code, tc.wantCode, r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, "nWGxne") {
				t.Fatalf("the private key leaked into the message: %q", r.stderr)
			}
		})
	}
}
