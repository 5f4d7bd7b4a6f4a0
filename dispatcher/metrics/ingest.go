package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Ingest wraps the ingest API to count its requests by status code and time them.
func (m *Metrics) Ingest(h http.Handler) http.Handler {
	c := m.c
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := c.now()
		rec := &statusRecorder{ResponseWriter: w}
		var ww http.ResponseWriter = rec
		// Only claim to flush when the server can: a handler that type-asserts
		// http.Flusher must see what the server really offers.
		if _, ok := w.(http.Flusher); ok {
			ww = flushingRecorder{rec}
		}
		h.ServeHTTP(ww, r)
		code := rec.code
		if code == 0 {
			// Nothing written: net/http answers 200.
			code = http.StatusOK
		}
		c.ingestCode(code).Inc()
		c.ingestDuration.Observe(c.now().Sub(start).Seconds())
	})
}

// ingestCode returns the counter of one status code. Codes are few and fixed by the
// handler; caching their counters saves formatting the code and hashing the label on
// every request.
func (c *collectors) ingestCode(code int) prometheus.Counter {
	c.codesMu.RLock()
	ctr := c.codes[code]
	c.codesMu.RUnlock()
	if ctr != nil {
		return ctr
	}
	c.codesMu.Lock()
	defer c.codesMu.Unlock()
	if ctr := c.codes[code]; ctr != nil {
		return ctr
	}
	ctr = c.ingestRequests.WithLabelValues(strconv.Itoa(code))
	c.codes[code] = ctr
	return ctr
}

// statusRecorder remembers the status code a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (w *statusRecorder) WriteHeader(code int) {
	// 1xx answers (103 Early Hints) are informational; the final code follows.
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer (deadlines,
// hijacking) through the recorder.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type flushingRecorder struct{ *statusRecorder }

func (w flushingRecorder) Flush() {
	if w.code == 0 {
		// A flush sends the headers, and with them the implicit 200.
		w.code = http.StatusOK
	}
	w.ResponseWriter.(http.Flusher).Flush()
}
