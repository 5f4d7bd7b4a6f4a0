package client

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/herald-dev/herald/pkg/wire"
)

// APIError is an answer of the dispatcher other than a success.
type APIError struct {
	// Method and URL are the request's (the URL without credentials).
	Method, URL string
	// StatusCode and Status are the HTTP status ("429 Too Many Requests").
	StatusCode int
	Status     string
	// Detail is the dispatcher's error envelope. Its Code is empty when the answer was
	// not one (another server, or a proxy in between); Body then holds what came.
	Detail wire.Error
	// RetryAfter is the dispatcher's Retry-After (429, 503), zero when it sent none.
	RetryAfter time.Duration
	// Body is the start of the answer as it came (at most 4 KiB).
	Body []byte
}

func (e *APIError) Error() string {
	if e.Detail.Code != "" {
		return fmt.Sprintf("%s %s: %s: %s (%s)", e.Method, e.URL, e.Status, e.Detail.Message, e.Detail.Code)
	}
	body := strings.TrimSpace(string(e.Body))
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	return fmt.Sprintf("%s %s: %s: %q, which is not Herald's error envelope", e.Method, e.URL, e.Status, body)
}

// Temporary reports whether the same request may succeed later: 408, 429 and 5xx.
func (e *APIError) Temporary() bool {
	return e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// UnexpectedAnswerError is a success whose body is not what Herald answers: the server
// is probably not a dispatcher (or not its ingest address).
type UnexpectedAnswerError struct {
	Method, URL string
	StatusCode  int
	// Body is the start of the answer (at most 4 KiB).
	Body []byte
}

func (e *UnexpectedAnswerError) Error() string {
	body := strings.TrimSpace(string(e.Body))
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	return fmt.Sprintf("%s %s answered %d with %q, which is not Herald's answer: is the server the dispatcher's address?", e.Method, e.URL, e.StatusCode, body)
}
