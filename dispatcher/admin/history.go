package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/pkg/wire"
)

func (h *Handler) startReplay(w http.ResponseWriter, r *http.Request) {
	k, who, ok := h.target(w, r, h.opts.Replay, "replaying")
	if !ok {
		return
	}
	var req wire.ReplaySelectionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidJSON, "", "body must be JSON {since?, until?, eventType?, eventIds?, from?, all?}: %v", err)
		return
	}
	now := h.opts.Now()
	sel := replay.Selection{EventType: req.EventType, EventIDs: req.EventIDs}
	var err error
	if req.Since != "" {
		if sel.Since, err = replay.ParseTime(req.Since, now); err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "since", "since: %v", err)
			return
		}
	}
	if req.Until != "" {
		if sel.Until, err = replay.ParseTime(req.Until, now); err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "until", "until: %v", err)
			return
		}
	}
	sel.DeadLetters = len(req.From) == 0
	for _, f := range req.From {
		dl, dv, err := replay.ParseSources(f)
		if err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "from", "%v", err)
			return
		}
		sel.DeadLetters, sel.Delivered = sel.DeadLetters || dl, sel.Delivered || dv
	}
	selects := req.Since != "" || req.Until != "" || req.EventType != "" || len(req.EventIDs) > 0
	if selects == req.All {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "all",
			"select with since, until, eventType or eventIds, or set all: true to replay everything stored (not both)")
		return
	}
	if err := sel.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "", "%v", err)
		return
	}
	id := replayID(now)
	n, err := h.opts.Replayer.Start(r.Context(), k, replay.Request{ID: id, Selection: sel, By: caller(who)})
	switch {
	case errors.Is(err, replay.ErrBusy):
		writeError(w, http.StatusConflict, wire.CodeConflict, "", "%v; see status.replay and start again when it is done", err)
		return
	case err != nil:
		h.opts.Log.Error(err, "starting a replay", "endpoint", k.String())
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "the replay could not start; retry")
		return
	}
	writeJSON(w, http.StatusAccepted, wire.ReplayStarted{ID: id, Selection: sel.String(), Selected: n})
}

// lastReplayID is the millisecond of the last replay id this process gave.
var lastReplayID atomic.Int64

// replayID names a replay started through the API: its start in milliseconds, one
// later than the last id given when that millisecond is taken. Ids must differ: the
// replay lease's holder is the replica and the id, so two requests given one id in the
// same millisecond would both hold the endpoint's lease, and both replays run.
func replayID(now time.Time) string {
	for {
		last, ms := lastReplayID.Load(), now.UnixMilli()
		ms = max(ms, last+1)
		if lastReplayID.CompareAndSwap(last, ms) {
			return "rpl-" + strconv.FormatInt(ms, 36)
		}
	}
}

func attemptOf(rec *queue.AttemptRecord) wire.Attempt {
	return wire.Attempt{
		Endpoint: rec.Endpoint, EventID: rec.EventID, EventType: rec.EventType, DeliveryID: rec.DeliveryID,
		Attempt: rec.Attempt, Replay: rec.Replay, Time: rec.Time, DurationMillis: float64(rec.DurationMicros) / 1000,
		StatusCode: rec.StatusCode, Error: rec.Error, Headers: rec.Headers, Body: rec.Body, Final: rec.Final,
	}
}

// bodies decides, once per endpoint and request, whether the caller sees the response
// bodies of the records it reads; the permission is asked only when a record has one.
type bodies struct {
	h       *Handler
	r       *http.Request
	id      auth.Identity
	ns      string
	allowed map[string]bool
	// withheld is the BodiesWithheld of the answer.
	withheld string
}

// keep strips a's body unless the caller may read it, and reports false when the
// decision could not be made.
func (b *bodies) keep(endpoint string, a *wire.Attempt) bool {
	if a.Body == "" {
		return true
	}
	ok, seen := b.allowed[endpoint]
	if !seen {
		if b.h.opts.Responses != nil {
			var err error
			if ok, err = b.h.opts.Responses(b.r.Context(), b.id, b.ns, endpoint); err != nil {
				b.h.opts.Log.Error(err, "authorizing the reading of response bodies", "namespace", b.ns, "endpoint", endpoint)
				return false
			}
		}
		if b.allowed == nil {
			b.allowed = map[string]bool{}
		}
		b.allowed[endpoint] = ok
	}
	if !ok {
		a.Body = ""
		who := b.id.Name
		if who == "" {
			who = "this identity"
		}
		b.withheld = fmt.Sprintf("response bodies withheld, forbidden: %s may not %s in namespace %s; the records are complete otherwise",
			who, PermissionResponses, b.ns)
	}
	return true
}

func (h *Handler) attempts(w http.ResponseWriter, r *http.Request) {
	k, id, ok := h.target(w, r, h.opts.Read, "reading the attempt log")
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "limit", "limit must be a number from 1 to 1000")
			return
		}
		limit = n
	}
	hq := queue.HistoryQuery{Endpoint: k, EventID: q.Get("eventId")}
	if v := q.Get("since"); v != "" {
		var err error
		if hq.Since, err = replay.ParseTime(v, h.opts.Now()); err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "since", "since: %v", err)
			return
		}
	}
	failed := q.Get("failed") == "true"
	out := wire.AttemptList{Items: []wire.Attempt{}}
	b := &bodies{h: h, r: r, id: id, ns: k.Namespace}
	undecided := false
	err := h.opts.Store.Attempts(r.Context(), hq, func(rec *queue.AttemptRecord) bool {
		if failed && !rec.Failed() {
			return true
		}
		if len(out.Items) == limit {
			out.More = true
			return false
		}
		a := attemptOf(rec)
		if undecided = !b.keep(k.Name, &a); undecided {
			return false
		}
		out.Items = append(out.Items, a)
		return true
	})
	if undecided {
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "whether response bodies may be shown could not be decided; retry")
		return
	}
	out.BodiesWithheld = b.withheld
	if err != nil {
		h.opts.Log.Error(err, "reading the attempt log", "endpoint", k.String())
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "the attempt log cannot be read right now; retry")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) event(w http.ResponseWriter, r *http.Request) {
	ns, id := r.PathValue("namespace"), r.PathValue("id")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "namespace", "namespace %q is not a valid namespace name", ns)
		return
	}
	who, ok := h.authorize(w, r, h.opts.Read, ns, "reading an event's history")
	if !ok {
		return
	}
	b := &bodies{h: h, r: r, id: who, ns: ns}
	undecided := false
	out := wire.EventHistory{EventID: id, Deliveries: []wire.EventDeliveries{}}
	at := map[string]int{}
	entry := func(endpoint, deliveryID string) *wire.EventDeliveries {
		i, ok := at[endpoint]
		if !ok {
			i = len(out.Deliveries)
			at[endpoint] = i
			out.Deliveries = append(out.Deliveries, wire.EventDeliveries{Endpoint: endpoint, DeliveryID: deliveryID, Attempts: []wire.Attempt{}})
		}
		return &out.Deliveries[i]
	}
	// The namespace's history holds what endpoints deleted since left, until it is
	// reclaimed: only the records of the endpoint objects that exist now are shown.
	current := func(name, uid string) bool {
		k, ok := h.opts.Lookup(ns, name)
		return ok && k.UID == uid
	}
	q := queue.HistoryQuery{Namespace: ns, EventID: id}
	err := h.opts.Store.Attempts(r.Context(), q, func(rec *queue.AttemptRecord) bool {
		// Another id of the same hash token (as good as impossible), or a deleted
		// endpoint's record.
		if rec.EventID != id || !current(rec.Endpoint, rec.EndpointUID) {
			return true
		}
		out.EventType = rec.EventType
		a := attemptOf(rec)
		if undecided = !b.keep(rec.Endpoint, &a); undecided {
			return false
		}
		e := entry(rec.Endpoint, rec.DeliveryID)
		e.Attempts = append(e.Attempts, a)
		switch {
		case rec.Final && !rec.Failed():
			e.State = wire.StateDelivered
		case rec.Final:
			e.State = wire.StateDeadLettered
		default:
			e.State = wire.StateRetrying
		}
		return true
	})
	if undecided {
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "whether response bodies may be shown could not be decided; retry")
		return
	}
	out.BodiesWithheld = b.withheld
	if err == nil {
		err = h.opts.Store.Delivered(r.Context(), q, func(d *queue.Retained) bool {
			if d.EventID != id || !current(d.Endpoint, d.EndpointUID) {
				return true
			}
			out.EventType = d.EventType
			out.CreatedAt, out.AcceptedAt = ptrTime(d.CreatedAt), ptrTime(d.AcceptedAt)
			e := entry(d.Endpoint, d.DeliveryID)
			e.State, e.DeliveredAt = wire.StateDelivered, ptrTime(d.DeliveredAt)
			return true
		})
	}
	if err != nil {
		h.opts.Log.Error(err, "reading an event's history", "namespace", ns)
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "the history cannot be read right now; retry")
		return
	}
	if len(out.Deliveries) == 0 {
		writeError(w, http.StatusNotFound, wire.CodeNotFound, "", "no attempt of event %q is in the attempt log of namespace %s (never routed, not attempted yet, or older than the log's retention)", id, ns)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func ptrTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
