package sender

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// OAuth2 is an endpoint's resolved OAuth 2.0 client credentials (RFC 6749 §4.4): the
// Target obtains a bearer token from TokenURL and sends it on every attempt.
//
// The exchange is Herald's own rather than golang.org/x/oauth2's: it must dial through
// the endpoint's transport (the outbound policy's dialer, no proxy, no redirects), its
// errors end up on the endpoint's status and so must never quote a response body or a
// credential, and a 401 from the receiver must be able to drop a cached token, which
// x/oauth2's ReuseTokenSource cannot be told to do.
type OAuth2 struct {
	// TokenURL was checked against the outbound policy by the resolver, as spec.url was.
	TokenURL     string
	ClientID     string
	ClientSecret []byte
	Scopes       []string
	Audience     string
	// AuthStyle: HTTP Basic (Header, the default) or form parameters (Body).
	AuthStyle heraldv1.OAuth2AuthStyle
}

// ErrOAuth2 marks an attempt that failed before reaching the receiver because no token
// could be obtained. Its message names the token endpoint (without query) and what it
// answered, never a credential, a token or a response body.
var ErrOAuth2 = errors.New("oauth2 token")

// fingerprint identifies the credentials: a token obtained with one is good for any
// Target whose credentials have the same fingerprint.
func (o *OAuth2) fingerprint() [sha256.Size]byte {
	h := sha256.New()
	for _, part := range []string{o.TokenURL, o.ClientID, string(o.ClientSecret), strings.Join(o.Scopes, " "), o.Audience, string(o.AuthStyle)} {
		h.Write([]byte(strconv.Itoa(len(part))))
		h.Write([]byte{':'})
		h.Write([]byte(part))
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// token is one access token and when to stop using it.
type token struct {
	value string
	// refreshAt is shortly before expiry: from then on a new token is fetched, and this
	// one is still used if that fails while it has not expired.
	refreshAt time.Time
	expiry    time.Time // zero when the server gave no lifetime
}

func (t *token) fresh(now time.Time) bool {
	return t != nil && (t.refreshAt.IsZero() || now.Before(t.refreshAt))
}

func (t *token) usable(now time.Time) bool {
	return t != nil && (t.expiry.IsZero() || now.Before(t.expiry))
}

// refreshMargin is how long before expiry a token is replaced: a tenth of its lifetime,
// at most a minute, so that a token is never sent in its last moments (clock skew, a
// slow attempt) and a short-lived one is still used for most of its life.
func refreshMargin(lifetime time.Duration) time.Duration {
	return min(lifetime/10, time.Minute)
}

// tokenSource caches the token of one set of credentials. Targets rebuilt for the same
// endpoint with the same credentials share it (Target.KeepTokens), so a change of, say,
// the retry schedule does not cost a token.
type tokenSource struct {
	cfg         OAuth2
	fingerprint [sha256.Size]byte
	now         func() time.Time

	// fetching is held by the one caller that fetches; the others wait for its token
	// instead of asking the server too.
	fetching chan struct{}
	mu       sync.Mutex
	tok      *token
}

func newTokenSource(cfg OAuth2, now func() time.Time) *tokenSource {
	if cfg.AuthStyle == "" {
		cfg.AuthStyle = heraldv1.OAuth2AuthHeader
	}
	return &tokenSource{cfg: cfg, fingerprint: cfg.fingerprint(), now: now, fetching: make(chan struct{}, 1)}
}

func (s *tokenSource) current() *token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok
}

// token returns a fresh token, fetching one with client when the cached one is due for
// refresh. A failed refresh falls back to the cached token while it has not expired.
func (s *tokenSource) token(ctx context.Context, client *http.Client) (*token, error) {
	if t := s.current(); t.fresh(s.now()) {
		return t, nil
	}
	select {
	case s.fetching <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.fetching }()
	old := s.current()
	if old.fresh(s.now()) { // fetched by another caller while this one waited
		return old, nil
	}
	t, err := s.fetch(ctx, client)
	if err != nil {
		if old.usable(s.now()) && ctx.Err() == nil {
			return old, nil
		}
		return nil, err
	}
	s.mu.Lock()
	s.tok = t
	s.mu.Unlock()
	return t, nil
}

// invalidate drops t after the receiver refused it, unless another caller has already
// replaced it.
func (s *tokenSource) invalidate(t *token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == t {
		s.tok = nil
	}
}

// tokenResponse is RFC 6749 §5.1 and §5.2 in one: a success has access_token, an error
// has error.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	// ExpiresIn is a number by the RFC; some servers send it as a string.
	ExpiresIn json.RawMessage `json:"expires_in"`
	Error     string          `json:"error"`
}

// fetch runs the client credentials grant once.
func (s *tokenSource) fetch(ctx context.Context, client *http.Client) (*token, error) {
	cfg := &s.cfg
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(cfg.Scopes, " "))
	}
	if cfg.Audience != "" {
		form.Set("audience", cfg.Audience)
	}
	if cfg.AuthStyle == heraldv1.OAuth2AuthBody {
		form.Set("client_id", cfg.ClientID)
		form.Set("client_secret", string(cfg.ClientSecret))
	}
	where := redactedURL(cfg.TokenURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: building the request to %s failed", ErrOAuth2, where)
	}
	req.Header["Content-Type"] = []string{"application/x-www-form-urlencoded"}
	req.Header["Accept"] = []string{"application/json"}
	req.Header["User-Agent"] = []string{userAgent}
	if cfg.AuthStyle != heraldv1.OAuth2AuthBody {
		// RFC 6749 §2.3.1: both are form-encoded before they become Basic credentials.
		req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(string(cfg.ClientSecret)))
	}
	start := s.now()
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its text repeats the URL, query included
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: no answer from token endpoint %s in time", ErrOAuth2, where)
		}
		return nil, fmt.Errorf("%w: requesting a token from %s: %w", ErrOAuth2, where, err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		code := ""
		if c := errorCode(tr.Error); c != "" {
			code = " (" + c + ")"
		}
		return nil, fmt.Errorf("%w: token endpoint %s answered %d%s", ErrOAuth2, where, resp.StatusCode, code)
	}
	switch {
	case jsonErr != nil:
		return nil, fmt.Errorf("%w: token endpoint %s answered 200 without a JSON token response", ErrOAuth2, where)
	case tr.AccessToken == "":
		return nil, fmt.Errorf("%w: token endpoint %s answered 200 without an access_token", ErrOAuth2, where)
	case tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer"):
		return nil, fmt.Errorf("%w: token endpoint %s issued a token of type %q; Herald sends Bearer tokens only", ErrOAuth2, where, errorCode(tr.TokenType))
	}
	t := &token{value: tr.AccessToken}
	if secs := expiresIn(tr.ExpiresIn); secs > 0 {
		lifetime := time.Duration(secs) * time.Second
		// Counted from the request, not the answer: the server's clock started then at
		// the latest.
		t.expiry = start.Add(lifetime)
		t.refreshAt = t.expiry.Add(-refreshMargin(lifetime))
	}
	return t, nil
}

// expiresIn reads expires_in as a number or a numeric string; 0 when absent or unusable,
// in which case the token is used until the receiver refuses it.
func expiresIn(raw json.RawMessage) int64 {
	s := strings.Trim(string(raw), `" `)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return min(n, int64(366*24*3600))
}

// errorCode keeps an RFC 6749 error code (ASCII letters, digits, '_', '-', '.') of
// reasonable length and drops anything else: the answer of a token endpoint is not
// Herald's to repeat on a status.
func errorCode(s string) string {
	if s == "" || len(s) > 64 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return ""
		}
	}
	return s
}

// redactedURL is a URL without credentials, query or fragment, for messages.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}
