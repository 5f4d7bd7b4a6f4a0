package admin

import (
	"net/http"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/pkg/wire"
)

// The attempt summary is the attempt log counted per minute: what a chart of the last
// hour's outcomes needs, in one request for a whole namespace (herald console draws it
// above the list of endpoints, and must not ask once per endpoint).
const (
	// summaryStep is the width of one bucket.
	summaryStep = time.Minute
	// defaultSummaryMinutes and maxSummaryMinutes bound the window (?minutes=).
	defaultSummaryMinutes = 60
	maxSummaryMinutes     = 24 * 60
	// maxSummaryRecords bounds what one summary reads from the store (about 450 B a
	// record): a namespace delivering faster than that in the window gets the oldest
	// part of it counted, and Truncated says so.
	maxSummaryRecords = 200_000
)

// summary answers GET /v1/namespaces/{namespace}/attempts:summary: every endpoint of the
// namespace that exists now (what deleted ones left is not counted).
func (h *Handler) summary(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("namespace")
	if !validNamespace(w, ns) {
		return
	}
	if _, ok := h.authorize(w, r, h.opts.Read, ns, "reading the attempt summary"); !ok {
		return
	}
	h.writeSummary(w, r, queue.HistoryQuery{Namespace: ns})
}

// endpointSummary answers GET .../endpoints/{name}/attempts:summary.
func (h *Handler) endpointSummary(w http.ResponseWriter, r *http.Request) {
	k, _, ok := h.target(w, r, h.opts.Read, "reading the attempt summary")
	if !ok {
		return
	}
	h.writeSummary(w, r, queue.HistoryQuery{Endpoint: k})
}

func (h *Handler) writeSummary(w http.ResponseWriter, r *http.Request, q queue.HistoryQuery) {
	minutes := defaultSummaryMinutes
	if v := r.URL.Query().Get("minutes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxSummaryMinutes {
			writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "minutes", "minutes must be a number from 1 to %d", maxSummaryMinutes)
			return
		}
		minutes = n
	}
	now := h.opts.Now()
	// Whole minutes, the current one last: a bucket means the same minute on every call.
	end := now.Truncate(summaryStep).Add(summaryStep)
	since := end.Add(-time.Duration(minutes) * summaryStep)
	q.Since = since
	out := wire.AttemptSummary{Since: since.UTC(), StepSeconds: int(summaryStep / time.Second), Buckets: make([]wire.SummaryBucket, minutes)}
	for i := range out.Buckets {
		out.Buckets[i].Start = since.Add(time.Duration(i) * summaryStep).UTC()
	}
	sums := make([]float64, minutes)
	current := h.currentEndpoints(q)
	read := 0
	err := h.opts.Store.Attempts(r.Context(), q, func(rec *queue.AttemptRecord) bool {
		if read == maxSummaryRecords {
			out.Truncated = true
			return false
		}
		read++
		if !current(rec.Endpoint, rec.EndpointUID) {
			return true
		}
		i := int(rec.Time.Sub(since) / summaryStep)
		if i < 0 || i >= minutes {
			return true // stored in the window, started just before it
		}
		b := &out.Buckets[i]
		if rec.Failed() {
			b.Failed++
		} else {
			b.Delivered++
		}
		ms := float64(rec.DurationMicros) / 1000
		sums[i] += ms
		b.MaxMillis = max(b.MaxMillis, ms)
		return true
	})
	if err != nil {
		h.opts.Log.Error(err, "reading the attempt summary", "namespace", q.Namespace, "endpoint", q.Endpoint.String())
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "the attempt log cannot be read right now; retry")
		return
	}
	for i := range out.Buckets {
		if n := out.Buckets[i].Delivered + out.Buckets[i].Failed; n > 0 {
			out.Buckets[i].MeanMillis = sums[i] / float64(n)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// validNamespace answers 400 and returns false for a path namespace that cannot be one.
func validNamespace(w http.ResponseWriter, ns string) bool {
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "namespace", "namespace %q is not a valid namespace name", ns)
		return false
	}
	return true
}

// currentEndpoints tells the records of the endpoint objects that exist now from those
// of deleted ones (until reclaimed), asking Lookup once per endpoint name.
func (h *Handler) currentEndpoints(q queue.HistoryQuery) func(name, uid string) bool {
	if q.Endpoint.UID != "" {
		// The store selected by UID already.
		return func(string, string) bool { return true }
	}
	seen := map[string]delivery.Key{}
	return func(name, uid string) bool {
		k, ok := seen[name]
		if !ok {
			k, _ = h.opts.Lookup(q.Namespace, name)
			seen[name] = k
		}
		return k.UID != "" && k.UID == uid
	}
}
