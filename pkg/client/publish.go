package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/herald-dev/herald/pkg/wire"
)

// Publish sends one event to namespace's routes and returns once the dispatcher has
// stored it (202), retrying as Options.Retry says. An event without an id gets one
// before the first attempt, so that a retry repeats it; the result names it.
func (c *Client) Publish(ctx context.Context, namespace string, e wire.Event) (wire.PublishResult, error) {
	if e.ID == "" {
		e.ID = wire.NewEventID(c.now())
	}
	body, err := appendEvent(nil, e)
	if err != nil {
		return wire.PublishResult{}, err
	}
	raw, err := c.PublishRaw(ctx, namespace, body, false)
	if err != nil {
		return wire.PublishResult{}, err
	}
	var res wire.PublishResult
	if err := json.Unmarshal(raw, &res); err != nil || res.ID == "" {
		return wire.PublishResult{}, c.unexpected(wire.EventsPath(namespace), raw)
	}
	return res, nil
}

// PublishBatch sends events as one batch (at most the dispatcher's --max-batch-events,
// 100 by default), validated together and stored before the answer, with one result per
// event in order. A batch is not atomic: after a failure some of its events may be
// stored, which is why retrying it whole is safe (ids deduplicate).
func (c *Client) PublishBatch(ctx context.Context, namespace string, events []wire.Event) ([]wire.PublishResult, error) {
	body := append(make([]byte, 0, 256*len(events)), `{"events":[`...)
	var err error
	for i, e := range events {
		if e.ID == "" {
			e.ID = wire.NewEventID(c.now())
		}
		if i > 0 {
			body = append(body, ',')
		}
		if body, err = appendEvent(body, e); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	body = append(body, "]}"...)
	raw, err := c.PublishRaw(ctx, namespace, body, true)
	if err != nil {
		return nil, err
	}
	var res wire.BatchResult
	if err := json.Unmarshal(raw, &res); err != nil || len(res.Results) != len(events) {
		return nil, c.unexpected(wire.EventsBatchPath(namespace), raw)
	}
	return res.Results, nil
}

// PublishRaw sends body as it is: one event in any form the ingest API takes (Herald
// JSON, a structured CloudEvent) or, with batch, a batch. It retries like Publish, which
// is safe only when the body names its events' ids. It returns the 202 answer unread:
// for producers that encode their events themselves and need nothing back.
func (c *Client) PublishRaw(ctx context.Context, namespace string, body []byte, batch bool) ([]byte, error) {
	r := request{method: http.MethodPost, path: wire.EventsPath(namespace), body: body}
	if batch {
		r.path = wire.EventsBatchPath(namespace)
	}
	pause := c.retry.Backoff
	for attempt := 1; ; attempt++ {
		a, err := c.do(ctx, r)
		if err == nil {
			return a.body, nil
		}
		if !retryable(ctx, err) || (c.retry.Attempts > 0 && attempt >= c.retry.Attempts) {
			return nil, err
		}
		if c.retry.OnRetry != nil {
			c.retry.OnRetry(err)
		}
		wait := jitter(pause)
		var api *APIError
		if errors.As(err, &api) && api.RetryAfter > wait {
			wait = api.RetryAfter
		}
		pause = min(2*pause, c.retry.MaxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up after %d attempts: %w)", err, attempt, ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Client) unexpected(path string, raw []byte) error {
	return &UnexpectedAnswerError{Method: http.MethodPost, URL: c.base.Redacted() + path, StatusCode: http.StatusAccepted, Body: raw[:min(len(raw), 4096)]}
}

// retryable reports whether a failed attempt may succeed if made again: an answer that
// says so (APIError.Temporary), or no answer at all (the connection failed or broke),
// while the caller still waits.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var api *APIError
	if errors.As(err, &api) {
		return api.Temporary()
	}
	// What the request could not even be made of (a token file missing) is not a
	// failure of the dispatcher's, nor is a certificate this client does not trust or
	// plain HTTP on a TLS port: trying again changes nothing.
	var urlErr *url.Error
	if !errors.As(err, &urlErr) {
		return false
	}
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var record tls.RecordHeaderError
	return !errors.As(err, &verify) && !errors.As(err, &unknown) && !errors.As(err, &host) && !errors.As(err, &record)
}

// jitter returns d give or take a fifth.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(2*d/5+1)
}

// appendEvent writes e in Herald's JSON form around its data, which is copied as it is:
// encoding/json would compact it and escape <, > and & in it, while the dispatcher
// delivers data byte for byte, so marshalling would change what receivers get (and
// what they verify the signature of).
func appendEvent(b []byte, e wire.Event) ([]byte, error) {
	if !json.Valid(e.Data) {
		return nil, errors.New("client: the event's data is not one JSON value")
	}
	b = append(b, `{"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	if e.Source != "" {
		b = append(b, `,"source":`...)
		b = appendString(b, e.Source)
	}
	if !e.CreatedAt.IsZero() {
		b = append(b, `,"created_at":"`...)
		b = e.CreatedAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, `,"data":`...)
	b = append(b, e.Data...)
	return append(b, '}'), nil
}

// appendString writes s as a JSON string.
func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
