package sender_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/internal/oauthserver"
	"github.com/herald-dev/herald/internal/outbound"
)

const (
	clientID     = "herald:billing" // a ':' must be form-encoded inside Basic credentials
	clientSecret = "s3cr3t/with+specials"
)

func newAuthServer(t *testing.T, lifetime int64) *oauthserver.Server {
	a := oauthserver.Start(clientID, clientSecret, lifetime)
	t.Cleanup(a.Close)
	return a
}

func newProtectedReceiver(t *testing.T, a *oauthserver.Server) *oauthserver.Receiver {
	r := oauthserver.NewReceiver(a)
	t.Cleanup(r.Close)
	return r
}

var loopback = outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}

func oauthTarget(t *testing.T, url string, o sender.OAuth2, now func() time.Time) *sender.Target {
	t.Helper()
	target := sender.New(sender.Config{URL: url, Signer: testSigner(t), Policy: loopback, Timeout: 5 * time.Second, OAuth2: &o, Now: now})
	t.Cleanup(target.Close)
	return target
}

func TestSender_OAuth2_TokenFetchedOnceCachedAndSentAsBearer(t *testing.T) {
	for _, style := range []heraldv1.OAuth2AuthStyle{heraldv1.OAuth2AuthHeader, heraldv1.OAuth2AuthBody} {
		t.Run(string(style), func(t *testing.T) {
			auth := newAuthServer(t, 3600)
			rcv := newProtectedReceiver(t, auth)
			target := oauthTarget(t, rcv.URL, sender.OAuth2{
				TokenURL: auth.URL + "/oauth/token", ClientID: clientID, ClientSecret: []byte(clientSecret),
				Scopes: []string{"webhooks:write", "billing"}, Audience: "https://billing.example.com", AuthStyle: style,
			}, nil)
			// Sixteen workers at once, as an endpoint's maxInFlight allows: one token
			// request, not sixteen.
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					if out := target.Send(context.Background(), delivery()); !out.OK() {
						t.Errorf("attempt: %+v", out)
					}
				})
			}
			wg.Wait()
			if out := target.Send(context.Background(), delivery()); !out.OK() {
				t.Fatalf("attempt with the cached token: %+v", out)
			}
			if n := len(auth.Requests()); n != 1 {
				t.Fatalf("token endpoint asked %d times for 17 attempts, want once", n)
			}
			if a, r := rcv.Accepted.Load(), rcv.Refused.Load(); a != 17 || r != 0 {
				t.Fatalf("receiver accepted %d and refused %d, want 17 and 0", a, r)
			}
			form := auth.Requests()[0].Form
			if got := form.Get("scope"); got != "webhooks:write billing" {
				t.Errorf("scope = %q, want the scopes space separated", got)
			}
			if got := form.Get("audience"); got != "https://billing.example.com" {
				t.Errorf("audience = %q", got)
			}
			if basic := auth.Requests()[0].Basic; basic != (style == heraldv1.OAuth2AuthHeader) {
				t.Errorf("client authenticated with Basic: %v, want style %s", basic, style)
			}
			if style == heraldv1.OAuth2AuthHeader && form.Has("client_secret") {
				t.Errorf("the client secret went in the body as well as in the header")
			}
		})
	}
}

func TestSender_OAuth2_RefreshedShortlyBeforeExpiry(t *testing.T) {
	auth := newAuthServer(t, 600) // refreshed a tenth of its life (60 s) before expiry
	rcv := newProtectedReceiver(t, auth)
	var clock atomic.Int64
	start := time.Now()
	now := func() time.Time { return start.Add(time.Duration(clock.Load())) }
	target := oauthTarget(t, rcv.URL, sender.OAuth2{TokenURL: auth.URL, ClientID: clientID, ClientSecret: []byte(clientSecret)}, now)
	send := func(at time.Duration) {
		t.Helper()
		clock.Store(int64(at))
		if out := target.Send(context.Background(), delivery()); !out.OK() {
			t.Fatalf("attempt at +%s: %+v", at, out)
		}
	}
	send(0)
	send(530 * time.Second)
	if n := len(auth.Requests()); n != 1 {
		t.Fatalf("at +530s (70s before expiry) the token endpoint was asked %d times, want the cached token used", n)
	}
	first := rcv.LastToken()
	send(545 * time.Second)
	if n := len(auth.Requests()); n != 2 || rcv.LastToken() == first {
		t.Fatalf("at +545s (55s before expiry) the token endpoint was asked %d times and the same token sent again; want a new one", n)
	}
	// A refresh that fails while the cached token is still valid keeps delivering with it;
	// once it expired the attempt fails with the token endpoint's answer.
	auth.Fail(http.StatusServiceUnavailable)
	send((545 + 545) * time.Second)
	clock.Store(int64((545 + 601) * time.Second))
	out := target.Send(context.Background(), delivery())
	if out.OK() || !errors.Is(out.Err, sender.ErrOAuth2) || !strings.Contains(out.Err.Error(), "answered 503 (temporarily_unavailable)") {
		t.Fatalf("with the token expired and the token endpoint down: %+v, want a token failure naming the 503", out)
	}
}

func TestSender_OAuth2_RefreshedOnceOn401(t *testing.T) {
	auth := newAuthServer(t, 3600)
	rcv := newProtectedReceiver(t, auth)
	target := oauthTarget(t, rcv.URL, sender.OAuth2{TokenURL: auth.URL, ClientID: clientID, ClientSecret: []byte(clientSecret)}, nil)
	if out := target.Send(context.Background(), delivery()); !out.OK() {
		t.Fatalf("first attempt: %+v", out)
	}
	// The receiver's side revokes the token long before it expires: the next attempt
	// gets 401, drops the token, fetches a new one and is delivered within the attempt.
	auth.RevokeAll()
	if out := target.Send(context.Background(), delivery()); !out.OK() {
		t.Fatalf("attempt after revocation: %+v, want delivered with a new token", out)
	}
	if n, r := len(auth.Requests()), rcv.Refused.Load(); n != 2 || r != 1 {
		t.Fatalf("token requests %d, refused deliveries %d; want 2 and 1", n, r)
	}

	// A receiver that refuses every token gets one retry per attempt, not a loop.
	deny := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
	defer deny.Close()
	denied := oauthTarget(t, deny.URL, sender.OAuth2{TokenURL: auth.URL, ClientID: clientID, ClientSecret: []byte(clientSecret)}, nil)
	before := len(auth.Requests())
	out := denied.Send(context.Background(), delivery())
	if out.OK() || out.StatusCode != http.StatusUnauthorized {
		t.Fatalf("receiver refusing every token: %+v, want a failed attempt with 401", out)
	}
	if n := len(auth.Requests()) - before; n != 2 {
		t.Fatalf("token requests for one refused attempt: %d, want 2 (the first token and one refresh)", n)
	}
}

func TestSender_OAuth2_TokenEndpointFailureIsAnAttemptFailure(t *testing.T) {
	auth := newAuthServer(t, 3600)
	rcv := newProtectedReceiver(t, auth)
	tests := []struct {
		why  string
		cfg  sender.OAuth2
		want string
	}{
		{
			why:  "a wrong client secret: the server's error code is named, its description (which quotes the secret) is not",
			cfg:  sender.OAuth2{TokenURL: auth.URL + "/token?tenant=acme", ClientID: clientID, ClientSecret: []byte("wrong")},
			want: fmt.Sprintf("oauth2 token: token endpoint %s/token answered 401 (invalid_client)", auth.URL),
		},
		{
			why:  "a token endpoint that does not answer OAuth",
			cfg:  sender.OAuth2{TokenURL: rcv.URL, ClientID: clientID, ClientSecret: []byte(clientSecret)},
			want: fmt.Sprintf("oauth2 token: token endpoint %s answered 401", rcv.URL),
		},
		{
			why:  "nothing listens",
			cfg:  sender.OAuth2{TokenURL: "http://127.0.0.1:1/token", ClientID: clientID, ClientSecret: []byte(clientSecret)},
			want: "oauth2 token: requesting a token from http://127.0.0.1:1/token: dial tcp 127.0.0.1:1: connect: connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			before := rcv.Accepted.Load() + rcv.Refused.Load()
			out := oauthTarget(t, rcv.URL, tt.cfg, nil).Send(context.Background(), delivery())
			if out.OK() || !errors.Is(out.Err, sender.ErrOAuth2) || out.StatusCode != 0 {
				t.Fatalf("outcome %+v, want a failed attempt with no status and an oauth2 error", out)
			}
			if got := out.Err.Error(); got != tt.want {
				t.Errorf("error\n got %q\nwant %q", got, tt.want)
			}
			for _, leak := range []string{clientSecret, "wrong", "tenant", "refused\"", "at_"} {
				if strings.Contains(out.Err.Error(), leak) {
					t.Errorf("error %q repeats %q", out.Err, leak)
				}
			}
			if n := rcv.Accepted.Load() + rcv.Refused.Load(); n != before && tt.cfg.TokenURL != rcv.URL {
				t.Errorf("the receiver was called without a token")
			}
		})
	}
}

func TestSender_OAuth2_TokenURLGoesThroughTheOutboundPolicy(t *testing.T) {
	auth := newAuthServer(t, 3600)
	rcv := newProtectedReceiver(t, auth)
	// The token host's name resolves to the cloud metadata address, which no policy
	// allows: the token request is refused at dial time, as a delivery there would be.
	policy := loopback
	policy.Resolver = resolver{"auth.test": netip.MustParseAddr("169.254.169.254")}
	target := sender.New(sender.Config{URL: rcv.URL, Signer: testSigner(t), Policy: policy, Timeout: 5 * time.Second,
		OAuth2: &sender.OAuth2{TokenURL: "http://auth.test/token", ClientID: clientID, ClientSecret: []byte(clientSecret)}})
	defer target.Close()
	out := target.Send(context.Background(), delivery())
	if out.OK() || !errors.Is(out.Err, sender.ErrOAuth2) ||
		!strings.Contains(out.Err.Error(), "outbound policy") || !strings.Contains(out.Err.Error(), "metadata") {
		t.Fatalf("outcome %+v, want the token request refused by the outbound policy", out)
	}
	if n := rcv.Accepted.Load() + rcv.Refused.Load(); n != 0 {
		t.Fatalf("receiver called %d times without a token", n)
	}
}

func TestSender_OAuth2_KeepTokensAcrossRebuildsWithTheSameCredentials(t *testing.T) {
	auth := newAuthServer(t, 3600)
	rcv := newProtectedReceiver(t, auth)
	creds := sender.OAuth2{TokenURL: auth.URL, ClientID: clientID, ClientSecret: []byte(clientSecret)}
	old := oauthTarget(t, rcv.URL, creds, nil)
	if out := old.Send(context.Background(), delivery()); !out.OK() {
		t.Fatal(out.Err)
	}
	same := oauthTarget(t, rcv.URL, creds, nil)
	same.KeepTokens(old)
	if out := same.Send(context.Background(), delivery()); !out.OK() || len(auth.Requests()) != 1 {
		t.Fatalf("rebuilt with the same credentials: %+v after %d token requests, want the cached token", out, len(auth.Requests()))
	}
	rotated := creds
	rotated.Scopes = []string{"more"}
	other := oauthTarget(t, rcv.URL, rotated, nil)
	other.KeepTokens(same)
	if out := other.Send(context.Background(), delivery()); !out.OK() || len(auth.Requests()) != 2 {
		t.Fatalf("rebuilt with other credentials: %+v after %d token requests, want a new token", out, len(auth.Requests()))
	}
}
