package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestIngest_CountsFinalStatusCodesOfRealRequests(t *testing.T) {
	m, reg := newMetrics(t, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("/accepted", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	mux.HandleFunc("/bad", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "bad body", http.StatusBadRequest) })
	mux.HandleFunc("/implicit", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/silent", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/hints", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusTooManyRequests)
	})
	srv := httptest.NewServer(m.Ingest(mux))
	defer srv.Close()

	for _, path := range []string{"/accepted", "/accepted", "/bad", "/implicit", "/silent", "/hints"} {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	want := `
# HELP herald_ingest_requests_total Requests to the ingest API by HTTP status code.
# TYPE herald_ingest_requests_total counter
herald_ingest_requests_total{code="200"} 2
herald_ingest_requests_total{code="202"} 2
herald_ingest_requests_total{code="400"} 1
herald_ingest_requests_total{code="429"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "herald_ingest_requests_total"); err != nil {
		t.Error(err)
	}
	if n := histogramFamily(t, reg, "herald_ingest_request_duration_seconds").GetSampleCount(); n != 6 {
		t.Errorf("%d request durations, want 6", n)
	}
}

func TestIngest_OffersFlusherExactlyWhenTheServerDoes(t *testing.T) {
	m, _ := newMetrics(t, nil)
	var flusher bool
	var deadlineErr error
	h := m.Ingest(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, flusher = w.(http.Flusher)
		// Reaches the server's writer through Unwrap; without it this fails with
		// http.ErrNotSupported.
		deadlineErr = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute))
		if flusher {
			w.(http.Flusher).Flush()
		}
	}))

	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// The flush sent the headers early; the end of the body is written only once the
	// middleware has returned, so reading to it orders the assertions after counting.
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !flusher {
		t.Error("a handler behind the middleware lost http.Flusher")
	}
	if deadlineErr != nil {
		t.Errorf("http.ResponseController through the middleware: %v", deadlineErr)
	}
	if got := testutil.ToFloat64(m.c.ingestRequests.WithLabelValues("200")); got != 1 {
		t.Errorf("a flushed response counted %v times as 200, want 1", got)
	}

	// A writer that cannot flush must not be dressed up as one that can.
	h.ServeHTTP(plainWriter{httptest.NewRecorder()}, httptest.NewRequest(http.MethodPost, "/", nil))
	if flusher {
		t.Error("the middleware claims http.Flusher over a writer without it")
	}
}

// plainWriter hides everything of a ResponseWriter but the interface itself.
type plainWriter struct{ rec *httptest.ResponseRecorder }

func (p plainWriter) Header() http.Header         { return p.rec.Header() }
func (p plainWriter) Write(b []byte) (int, error) { return p.rec.Write(b) }
func (p plainWriter) WriteHeader(code int)        { p.rec.WriteHeader(code) }
