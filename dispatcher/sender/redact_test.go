package sender_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/sender"
)

// echoReceiver answers status with a body echoing what it was sent, the way a debugging
// endpoint or a careless error page does: the Authorization and X-Api-Key headers raw,
// JSON-encoded (so "/" may come back as "\/") and in a query string.
// It returns the Authorization headers it saw.
func echoReceiver(t *testing.T, status int) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		auth, key := r.Header.Get("Authorization"), r.Header.Get("X-Api-Key")
		mu.Lock()
		seen = append(seen, auth)
		mu.Unlock()
		js, _ := json.Marshal(map[string]string{"authorization": auth, "apiKey": key})
		var php strings.Builder // PHP's json_encode: "/" escaped, "&" not
		enc := json.NewEncoder(&php)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(key)
		w.WriteHeader(status)
		fmt.Fprintf(w, "raw: %s | %s\njson: %s\nphp: %s\nform: %s\nbody bytes: %d\n", auth, key,
			js, strings.ReplaceAll(strings.TrimSpace(php.String()), "/", `\/`), url.Values{"k": {key}}.Encode(), len(body))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

const apiKey = "key/with+specials&more=yes" // what a JSON, PHP or form echo re-encodes

func echoTarget(t *testing.T, url string, policy heraldv1.ResponseBodyPolicy, o *sender.OAuth2) *sender.Target {
	t.Helper()
	cfg := sender.Config{URL: url, Signer: testSigner(t), Policy: loopback, Timeout: 5 * time.Second,
		Headers: map[string]string{"X-Api-Key": apiKey}, OAuth2: o, ResponseBody: policy,
		Secrets: []sender.Secret{{What: "signing secret", Value: []byte(secret)}, {What: "header X-Api-Key", Value: []byte(apiKey)}}}
	if o != nil {
		cfg.Secrets = append(cfg.Secrets, sender.Secret{What: "OAuth2 client secret", Value: o.ClientSecret})
	}
	target := sender.New(cfg)
	t.Cleanup(target.Close)
	return target
}

// TestSender_ResponseBodyKeptOnlyWhenAskedAndWithoutTheEndpointsSecrets: a receiver that
// echoes its Authorization header (an OAuth2 bearer token from a real token endpoint) and
// a header whose value came from a Secret, raw and re-encoded, has none of them in the
// body the attempt log gets; the body is there only when the policy asks for it.
func TestSender_ResponseBodyKeptOnlyWhenAskedAndWithoutTheEndpointsSecrets(t *testing.T) {
	auth := newAuthServer(t, 3600)
	oauth := &sender.OAuth2{TokenURL: auth.URL + "/oauth/token", ClientID: clientID, ClientSecret: []byte(clientSecret)}
	for _, tt := range []struct {
		policy   heraldv1.ResponseBodyPolicy
		status   int
		wantBody bool
	}{
		{"", http.StatusOK, false},
		{heraldv1.ResponseBodyNone, http.StatusBadRequest, false},
		{heraldv1.ResponseBodyOnFailure, http.StatusOK, false},
		{heraldv1.ResponseBodyOnFailure, http.StatusBadRequest, true},
		{heraldv1.ResponseBodyAlways, http.StatusOK, true},
		{heraldv1.ResponseBodyAlways, http.StatusServiceUnavailable, true},
	} {
		t.Run(fmt.Sprintf("%s %d", tt.policy, tt.status), func(t *testing.T) {
			rcv, seen := echoReceiver(t, tt.status)
			out := echoTarget(t, rcv.URL, tt.policy, oauth).Send(context.Background(), delivery())
			if out.StatusCode != tt.status {
				t.Fatalf("attempt = %+v", out)
			}
			if !tt.wantBody {
				if out.Body != nil {
					t.Errorf("body kept with policy %q on %d: %q", tt.policy, tt.status, out.Body)
				}
				return
			}
			body := string(out.Body)
			if !strings.Contains(body, "raw: Bearer [redacted: OAuth2 bearer token] | [redacted: header X-Api-Key]") ||
				!strings.Contains(body, `"authorization":"Bearer [redacted: OAuth2 bearer token]"`) {
				t.Errorf("body = %q, want the bearer token and the header's value replaced by what they are", body)
			}
			sent := seen()
			if len(sent) != 1 || !strings.HasPrefix(sent[0], "Bearer ") || len(sent[0]) < 20 {
				t.Fatalf("the receiver saw Authorization %q, want one bearer token", sent)
			}
			for _, leak := range append([]string{strings.TrimPrefix(sent[0], "Bearer ")}, apiKey, `key\/with+specials`, `key\/with+specials&more=yes`, `key\/with+specials\u0026more=yes`, url.QueryEscape(apiKey), clientSecret, secret) {
				if strings.Contains(body, leak) {
					t.Errorf("the kept body holds %q:\n%s", leak, body)
				}
			}
		})
	}
}

// TestSender_ResponseBodyCutInsideASecretIsRedactedToo: a body longer than the sample
// whose sample ends inside a secret keeps no part of it.
func TestSender_ResponseBodyCutInsideASecretIsRedactedToo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		pad := strings.Repeat("x", sender.BodySample-10)
		fmt.Fprint(w, pad+r.Header.Get("X-Api-Key")+" and more")
	}))
	t.Cleanup(srv.Close)
	out := echoTarget(t, srv.URL, heraldv1.ResponseBodyOnFailure, nil).Send(context.Background(), delivery())
	body := string(out.Body)
	if !strings.HasSuffix(body, "[redacted: header X-Api-Key]") || strings.Contains(body, apiKey[:10]) {
		t.Errorf("body ends %q, want the cut secret redacted", body[max(0, len(body)-60):])
	}
}
