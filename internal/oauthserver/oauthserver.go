// Package oauthserver is an OAuth 2.0 authorization server implementing the client
// credentials grant (RFC 6749 §4.4), and a receiver that accepts only the bearer tokens
// it issued, for tests that exercise Herald's OAuth2 deliveries against real HTTP
// servers. It shares no code with dispatcher/sender.
package oauthserver

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Request is one token request as the server saw it.
type Request struct {
	Form url.Values
	// Basic is true when the client authenticated with HTTP Basic, false for form
	// parameters.
	Basic bool
}

// Server issues tokens to one client.
type Server struct {
	*httptest.Server
	ClientID, ClientSecret string

	mu       sync.Mutex
	lifetime int64 // expires_in; 0 leaves it out
	issued   map[string]bool
	revoked  map[string]bool
	fail     int
	requests []Request
}

// Start serves the token endpoint on 127.0.0.1 at any path. Tokens are valid for
// lifetime seconds (sent as expires_in; 0 sends none).
func Start(clientID, clientSecret string, lifetime int64) *Server {
	s := &Server{ClientID: clientID, ClientSecret: clientSecret, lifetime: lifetime, issued: map[string]bool{}, revoked: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		// A description quoting the client's credentials, as careless servers write
		// them: the client must not repeat it.
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code,
			"error_description": "client " + s.ClientID + " with secret " + s.ClientSecret + " refused"})
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || r.ParseForm() != nil {
		fail(http.StatusBadRequest, "invalid_request")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: the credentials are form-encoded before Base64.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	s.requests = append(s.requests, Request{Form: r.PostForm, Basic: basic})
	switch {
	case s.fail != 0:
		fail(s.fail, "temporarily_unavailable")
		return
	case id != s.ClientID || secret != s.ClientSecret:
		fail(http.StatusUnauthorized, "invalid_client")
		return
	case r.PostForm.Get("grant_type") != "client_credentials":
		fail(http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	tok := "at_" + rand.Text()
	s.issued[tok] = true
	resp := map[string]any{"access_token": tok, "token_type": "bearer"}
	if s.lifetime > 0 {
		resp["expires_in"] = s.lifetime
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}

// Valid reports whether the server issued tok and has not revoked it.
func (s *Server) Valid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued[tok] && !s.revoked[tok]
}

// Issued counts the tokens issued so far.
func (s *Server) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.issued)
}

// RevokeAll revokes every token issued so far.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.issued {
		s.revoked[t] = true
	}
}

// Fail makes every request fail with status (with error temporarily_unavailable);
// 0 serves again.
func (s *Server) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = status
}

// Requests returns the token requests seen so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Receiver accepts a POST only with a bearer token its Server vouches for, as a
// receiver behind an API gateway does, answering 401 otherwise.
type Receiver struct {
	*httptest.Server
	Accepted, Refused atomic.Int32
	lastToken         atomic.Value
	// Next, when set, handles the requests that carry a valid token.
	Next http.Handler
}

// NewReceiver serves on 127.0.0.1.
func NewReceiver(auth *Server) *Receiver {
	rcv := &Receiver{}
	rcv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !auth.Valid(tok) {
			rcv.Refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		rcv.lastToken.Store(tok)
		rcv.Accepted.Add(1)
		if rcv.Next != nil {
			rcv.Next.ServeHTTP(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	return rcv
}

// LastToken is the last token accepted.
func (r *Receiver) LastToken() string {
	t, _ := r.lastToken.Load().(string)
	return t
}
