package replay

import (
	"net/http"
	"time"

	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// History is where the Recorder writes (queue.HistoryWriter): asynchronously, so an
// attempt never waits for its record.
type History interface {
	Attempt(r *queue.AttemptRecord)
	Delivered(d *queue.Delivery, at time.Time)
}

// Recorder is the engine Observer that keeps the history: a record of every attempt
// (the attempt log keeps it when the store is opened with History.AttemptLog; it is the
// endpoint's last attempt on status either way) and every delivered delivery, retained
// for replay.
type Recorder struct {
	History History
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// ResponseHeaders are the response headers the attempt log keeps: enough to find the
// request in the receiver's own logs and to see why it refused. An allow-list, so that
// no header carrying a credential or a cookie is ever stored.
var ResponseHeaders = []string{
	"Content-Type", "Content-Length", "Date", "Server", "Retry-After",
	"X-Request-Id", "X-Correlation-Id", "X-Amzn-Requestid", "Cf-Ray", "Traceparent",
}

// Attempted implements delivery.Observer.
func (r *Recorder) Attempted(a delivery.Attempt) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	t := now()
	d := a.Delivery
	{
		rec := &queue.AttemptRecord{
			Namespace: a.Endpoint.Namespace, Endpoint: a.Endpoint.Name, EndpointUID: a.Endpoint.UID,
			EventID: d.EventID, EventType: d.EventType, DeliveryID: d.DeliveryID,
			Attempt: d.Attempt, Replay: d.Replay,
			Time:           t.Add(-a.Outcome.Latency).UTC(),
			DurationMicros: a.Outcome.Latency.Microseconds(),
			StatusCode:     a.Outcome.StatusCode,
			Headers:        headerSubset(a.Outcome.Header),
			Body:           string(a.Outcome.Body),
			Final:          a.Final,
		}
		if a.Outcome.Err != nil {
			rec.Error = a.Outcome.Err.Error()
		}
		r.History.Attempt(rec)
	}
	if a.Final && a.Outcome.OK() {
		r.History.Delivered(d, t)
	}
}

// DeadLettered implements delivery.Observer; dead letters are kept by the queue itself.
func (r *Recorder) DeadLettered(delivery.Key, *queue.DeadLetter) {}

func headerSubset(h http.Header) map[string]string {
	var out map[string]string
	for _, k := range ResponseHeaders {
		if v := h.Get(k); v != "" {
			if out == nil {
				out = make(map[string]string, 4)
			}
			out[k] = v
		}
	}
	return out
}
