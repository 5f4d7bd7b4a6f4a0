package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/pkg/wire"
)

// Options configure a Client. The zero value sends no credential, trusts the system's
// roots and retries a publish 5 times.
type Options struct {
	// The credential, at most one of the three; none sends no Authorization header.
	//
	// Token is sent as it is: an API key, or a token minted elsewhere.
	Token string
	// TokenFile is read before every request: a projected ServiceAccount token for
	// wire.Audience, which the kubelet renews in place.
	TokenFile string
	// TokenSource returns the token of each request (a token minted on demand).
	TokenSource func(ctx context.Context) (string, error)

	// CA (PEM) and CAFile (a PEM file) are certificates of the CA the dispatcher's
	// certificate is checked against, besides the system's roots: the manager publishes
	// the dispatcher's CA in the ConfigMap <release>-dispatcher-ca, key ca.crt.
	CA     []byte
	CAFile string
	// Transport, when set, carries the requests as it is (CA and CAFile must then be
	// empty); by default a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// Timeout bounds one attempt, the answer read included (default 30s); the context
	// bounds the whole call, retries included.
	Timeout time.Duration

	// Retry is how publishing retries.
	Retry Retry
	// UserAgent names the caller (default "herald-go-client").
	UserAgent string
	// WarningHandler, when set, hears every Warning header of the dispatcher's answers,
	// as sent (`299 herald "event type invoice.paid is deprecated: ..."`): an event of a
	// deprecated type, or one whose schema could not be checked, is accepted with one.
	WarningHandler func(warning string)
}

// Retry is how a publish is retried after a failure that may pass: a connection that
// failed or broke, 408, 429 or 5xx. Other answers (a bad event, a refused credential)
// are returned at once.
type Retry struct {
	// Attempts is how many times one publish is tried at most (default 5; 1 never
	// retries); a negative number retries until the context ends.
	Attempts int
	// Backoff is the pause after the first failure (default 200ms), doubled after each
	// further one up to MaxBackoff (default 5s), give or take a fifth so that producers
	// do not retry in step. A Retry-After of the dispatcher's that is longer wins.
	Backoff, MaxBackoff time.Duration
	// OnRetry, when set, hears of every failure that is retried, before the pause.
	OnRetry func(err error)
}

// Client talks to one dispatcher (its ingest address, which also serves the endpoint
// API). It is safe for concurrent use.
type Client struct {
	base      *url.URL
	http      *http.Client
	token     func(ctx context.Context) (string, error)
	retry     Retry
	userAgent string
	warnings  func(string)
	now       func() time.Time
}

// New returns a client of the dispatcher at server, e.g.
// http://herald-dispatcher.herald-system:8080 or https://127.0.0.1:8080.
func New(server string, o Options) (*Client, error) {
	base, err := url.Parse(server)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("client: server %q is not a URL such as http://herald-dispatcher.herald-system:8080", server)
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	c := &Client{base: base, retry: o.Retry, userAgent: o.UserAgent, warnings: o.WarningHandler, now: time.Now}
	if c.userAgent == "" {
		c.userAgent = "herald-go-client"
	}
	c.retry.defaults()
	if c.token, err = tokenOf(o); err != nil {
		return nil, err
	}
	rt := o.Transport
	if rt == nil {
		if rt, err = transport(o); err != nil {
			return nil, err
		}
	} else if len(o.CA) > 0 || o.CAFile != "" {
		return nil, errors.New("client: CA and CAFile apply to the default transport; with Transport, configure its TLS there")
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	// Redirects are not followed: the dispatcher never sends one, and a bearer token
	// must not travel to wherever a redirect points.
	c.http = &http.Client{Transport: rt, Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return c, nil
}

// Server is the dispatcher's base URL, without credentials.
func (c *Client) Server() string { return c.base.Redacted() }

func (r *Retry) defaults() {
	if r.Attempts == 0 {
		r.Attempts = 5
	}
	if r.Backoff <= 0 {
		r.Backoff = 200 * time.Millisecond
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = 5 * time.Second
	}
	r.MaxBackoff = max(r.MaxBackoff, r.Backoff)
}

func tokenOf(o Options) (func(ctx context.Context) (string, error), error) {
	set := 0
	for _, given := range []bool{o.Token != "", o.TokenFile != "", o.TokenSource != nil} {
		if given {
			set++
		}
	}
	if set > 1 {
		return nil, errors.New("client: give one of Token, TokenFile and TokenSource")
	}
	switch {
	case o.Token != "":
		return func(context.Context) (string, error) { return o.Token, nil }, nil
	case o.TokenFile != "":
		return func(context.Context) (string, error) {
			b, err := os.ReadFile(o.TokenFile)
			if err != nil {
				return "", fmt.Errorf("client: reading the token: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		}, nil
	case o.TokenSource != nil:
		return o.TokenSource, nil
	}
	return nil, nil
}

func transport(o Options) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	pem := o.CA
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("client: reading the CA: %w", err)
		}
		pem = append(append(pem, '\n'), b...)
	}
	if len(pem) == 0 {
		return t, nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, errors.New("client: the CA holds no PEM certificate")
	}
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return t, nil
}

// request is one call: where, with what, and what a success decodes into.
type request struct {
	method string
	path   string // as package wire's *Path functions make it
	query  url.Values
	body   []byte // sent as application/json when not nil
}

// answer is a successful response, read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// maxAnswer bounds what is read of an answer: the largest, a listing of 1,000 attempts
// with their 4 KiB bodies, fits.
const maxAnswer = 8 << 20

// do makes one attempt of r: a 2xx answer is returned read, anything else as an error
// (an *APIError for an answer).
func (c *Client) do(ctx context.Context, r request) (answer, error) {
	target, where := c.base.String()+r.path, c.base.Redacted()+r.path
	if q := r.query.Encode(); q != "" {
		target += "?" + q
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return answer{}, fmt.Errorf("client: building the request: %w", err)
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != nil {
		tok, err := c.token(ctx)
		if err != nil {
			return answer{}, err
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return answer{}, fmt.Errorf("client: reading the answer of %s %s: %w", r.method, where, err)
	}
	if c.warnings != nil {
		for _, w := range resp.Header.Values("Warning") {
			c.warnings(w)
		}
	}
	if resp.StatusCode/100 == 2 {
		return answer{status: resp.StatusCode, header: resp.Header, body: raw}, nil
	}
	e := &APIError{Method: r.method, URL: where, StatusCode: resp.StatusCode, Status: resp.Status,
		RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	e.Body = raw[:min(len(raw), 4096)]
	var env wire.ErrorResponse
	if json.Unmarshal(raw, &env) == nil {
		e.Detail = env.Error
	}
	return answer{}, e
}

// call makes one attempt of r and decodes a success into out (when not nil).
func (c *Client) call(ctx context.Context, r request, out any) error {
	a, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(a.body, out); err != nil {
		return &UnexpectedAnswerError{Method: r.method, URL: c.base.Redacted() + r.path, StatusCode: a.status, Body: a.body[:min(len(a.body), 4096)]}
	}
	return nil
}

// retryAfter reads a Retry-After of seconds (the dispatcher's form); zero otherwise.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}
