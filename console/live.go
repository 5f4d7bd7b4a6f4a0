package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/watch"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// Live updates. The API server tells the console what changes: each open page's stream
// watches the namespace's WebhookEndpoints from the resourceVersion the page was
// rendered at (?rv=), so that nothing that changes between the page's read and its
// stream is missed, and a namespace of 10,000 endpoints is not sent first (a watch from
// a resourceVersion sends only what changed after it). The console tells the browser
// with server-sent events, each carrying the re-rendered HTML of what changed on that
// page: the rows of the page's range of names, an endpoint's status, an event's
// deliveries. assets/live.js puts them in place. Server-sent events rather than a
// WebSocket: one direction is all it takes, they reconnect by themselves, and the
// browser needs a few dozen lines of script for them.
//
// What a page shows from the dispatcher (attempts, dead letters, an event's history,
// the charts) is read again when one of its endpoints changes, at most every
// refreshEvery, and the charts every chartEvery: per page, never per endpoint.
const (
	flushEvery   = 500 * time.Millisecond
	refreshEvery = 2 * time.Second
	chartEvery   = 30 * time.Second
	keepAlive    = 20 * time.Second
	// rewatchAfter is the pause before a failed watch is tried again.
	rewatchAfter = 5 * time.Second
)

type hub struct {
	cluster Cluster
	log     logr.Logger
}

// listener is one open page's interest: the endpoints it shows, what changed of them
// since it last looked, and notices to show.
type listener struct {
	match func(name string) bool
	wake  chan struct{}

	mu      sync.Mutex
	pending map[string]*heraldv1.WebhookEndpoint // changed since take; nil: deleted
	notice  string
}

func newHub(c Cluster, log logr.Logger) *hub {
	return &hub{cluster: c, log: log}
}

// listen starts a page's watch of namespace ns from resourceVersion rv ("": from now
// on); stop ends it. One watch per open page: a person's console has a few open, and a
// page's changes start where its own read ended.
func (h *hub) listen(ns, rv string, match func(string) bool) (l *listener, stop func()) {
	l = &listener{match: match, wake: make(chan struct{}, 1), pending: map[string]*heraldv1.WebhookEndpoint{}}
	ctx, cancel := context.WithCancel(context.Background())
	go h.watch(ctx, ns, rv, l)
	return l, cancel
}

func (h *hub) watch(ctx context.Context, ns, rv string, l *listener) {
	for ctx.Err() == nil {
		w, err := h.cluster.WatchEndpoints(ctx, ns, rv)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.notify("Live updates are paused: " + err.Error())
			select {
			case <-ctx.Done():
				return
			case <-time.After(rewatchAfter):
			}
			continue
		}
		l.notify("")
		rv = h.drain(ctx, w, l, rv)
		w.Stop()
	}
}

// drain passes a watch's events on until it ends, and returns where to watch from next.
func (h *hub) drain(ctx context.Context, w watch.Interface, l *listener, rv string) string {
	for {
		select {
		case <-ctx.Done():
			return rv
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv
			}
			switch ev.Type {
			case watch.Error:
				if apierrors.IsResourceExpired(apierrors.FromObject(ev.Object)) || apierrors.IsGone(apierrors.FromObject(ev.Object)) {
					// Changes were missed: start from now, and say that a reload shows them.
					l.notify("Some changes were missed while the console reconnected: reload the page to see them.")
					return ""
				}
				h.log.Info("watch error", "error", apierrors.FromObject(ev.Object).Error())
				return rv
			case watch.Bookmark:
				if m, err := meta.Accessor(ev.Object); err == nil {
					rv = m.GetResourceVersion()
				}
			case watch.Added, watch.Modified, watch.Deleted:
				ep, ok := ev.Object.(*heraldv1.WebhookEndpoint)
				if !ok {
					continue
				}
				rv = ep.ResourceVersion
				if ev.Type == watch.Deleted {
					ep = nil
				}
				l.changed(ev.Object.(*heraldv1.WebhookEndpoint).Name, ep)
			}
		}
	}
}

// changed notes a change of one of the page's endpoints (nil: deleted).
func (l *listener) changed(name string, ep *heraldv1.WebhookEndpoint) {
	if !l.match(name) {
		return
	}
	l.mu.Lock()
	l.pending[name] = ep
	l.mu.Unlock()
	l.poke()
}

func (l *listener) notify(notice string) {
	l.mu.Lock()
	l.notice = notice
	l.mu.Unlock()
	l.poke()
}

func (l *listener) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take returns what changed since the last call, and the notice.
func (l *listener) take() (map[string]*heraldv1.WebhookEndpoint, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.pending
	l.pending = map[string]*heraldv1.WebhookEndpoint{}
	return out, l.notice
}

// patch is one element to replace, by id, with new HTML.
type patch struct {
	ID   string `json:"id"`
	HTML string `json:"html"`
}

// stream writes server-sent events.
type stream struct {
	w http.ResponseWriter
	f http.Flusher
}

func newStream(w http.ResponseWriter) (*stream, bool) {
	f, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported here", http.StatusInternalServerError)
		return nil, false
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	// Reconnect after 3 s when the stream breaks.
	fmt.Fprint(w, "retry: 3000\n\n")
	f.Flush()
	return &stream{w: w, f: f}, true
}

func (s *stream) send(event string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, raw); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

func (s *stream) ping() error {
	if _, err := fmt.Fprint(s.w, ": keep-alive\n\n"); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

// follow runs a page's stream: on each change of its endpoints (at most every
// flushEvery) it sends what render returns, on each tick of every what tick returns.
func (s *Server) follow(w http.ResponseWriter, r *http.Request, ns string, match func(string) bool,
	render func(ctx context.Context, changed map[string]*heraldv1.WebhookEndpoint) []patch,
	every time.Duration, tick func(ctx context.Context) []patch) {
	st, ok := newStream(w)
	if !ok {
		return
	}
	l, stop := s.hub.listen(ns, r.URL.Query().Get("rv"), match)
	defer stop()
	ctx := r.Context()
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	alive := time.NewTicker(keepAlive)
	defer alive.Stop()
	lastNotice := ""
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-alive.C:
			err = st.ping()
		case <-ticker.C:
			if tick != nil {
				if ps := tick(ctx); len(ps) > 0 {
					err = st.send("patch", ps)
				}
			}
		case <-l.wake:
			// Let a burst of changes gather into one message.
			select {
			case <-ctx.Done():
				return
			case <-time.After(flushEvery):
			}
			changed, notice := l.take()
			if notice != lastNotice {
				lastNotice = notice
				err = st.send("notice", notice)
			}
			if len(changed) > 0 && err == nil {
				if ps := render(ctx, changed); len(ps) > 0 {
					err = st.send("patch", ps)
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *Server) liveNamespace(w http.ResponseWriter, r *http.Request) {
	ns, ok := s.validNamespace(w, r)
	if !ok {
		return
	}
	from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
	match := func(name string) bool { return name >= from && (to == "" || name <= to) }
	s.follow(w, r, ns, match, func(_ context.Context, changed map[string]*heraldv1.WebhookEndpoint) []patch {
		var out []patch
		for name, ep := range changed {
			var v endpointView
			if ep == nil {
				v = endpointView{Namespace: ns, Name: name, Deleted: true}
			} else {
				v = viewOf(ep)
			}
			if html, err := s.fragment("row", v); err == nil {
				out = append(out, patch{ID: rowID(name), HTML: html})
			}
		}
		return out
	}, chartEvery, func(ctx context.Context) []patch {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		sum, err := s.opts.Deliveries.Summary(ctx, ns, "", chartMinutes)
		if err != nil {
			return nil
		}
		html, err := s.fragment("chart", chartOf(sum, "Attempts in "+ns+", last hour", "chart"))
		if err != nil {
			return nil
		}
		return []patch{{ID: "chart", HTML: html}}
	})
}

func (s *Server) liveEndpoint(w http.ResponseWriter, r *http.Request) {
	ns, name, ok := s.validEndpoint(w, r)
	if !ok {
		return
	}
	var last time.Time
	parts := func(ctx context.Context, v *endpointView) []patch {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		last = time.Now()
		p := s.readEndpointParts(ctx, v)
		var out []patch
		for _, part := range []struct{ id, tmpl string }{{"ep-attempts", "attempts"}, {"ep-deadletters", "deadLetters"}, {"ep-chart", "epChart"}} {
			if html, err := s.fragment(part.tmpl, p); err == nil {
				out = append(out, patch{ID: part.id, HTML: html})
			}
		}
		return out
	}
	var current *endpointView
	s.follow(w, r, ns, func(n string) bool { return n == name }, func(ctx context.Context, changed map[string]*heraldv1.WebhookEndpoint) []patch {
		ep, ok := changed[name]
		if !ok {
			return nil
		}
		var v endpointView
		if ep == nil {
			v = endpointView{Namespace: ns, Name: name, Deleted: true}
		} else {
			v = viewOf(ep)
		}
		current = &v
		var out []patch
		if html, err := s.fragment("epStatus", v); err == nil {
			out = append(out, patch{ID: "ep-status", HTML: html})
		}
		if ep != nil && time.Since(last) >= refreshEvery {
			out = append(out, parts(ctx, &v)...)
		}
		return out
	}, refreshEvery, func(ctx context.Context) []patch {
		// A change that came too soon after the last read is read on the next tick.
		if current == nil || current.Deleted || last.After(time.Now().Add(-refreshEvery)) {
			return nil
		}
		v := current
		current = nil
		return parts(ctx, v)
	})
}

func (s *Server) liveEvent(w http.ResponseWriter, r *http.Request) {
	ns, ok := s.validNamespace(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	first := s.readEventParts(ctx, ns, id)
	cancel()
	routed := map[string]bool{}
	if first.History != nil {
		for _, d := range first.History.Deliveries {
			routed[d.Endpoint] = true
		}
	}
	// Read once more on the first tick: what happened between the page's read and this
	// stream (the event page has no resourceVersion to watch from).
	pending := true
	read := func(ctx context.Context) []patch {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		html, err := s.fragment("deliveries", s.readEventParts(ctx, ns, id))
		if err != nil {
			return nil
		}
		return []patch{{ID: "ev-deliveries", HTML: html}}
	}
	s.follow(w, r, ns, func(n string) bool { return routed[n] }, func(context.Context, map[string]*heraldv1.WebhookEndpoint) []patch {
		// The attempt records are written a moment after the status: read on the tick.
		pending = true
		return nil
	}, refreshEvery, func(ctx context.Context) []patch {
		if !pending {
			return nil
		}
		pending = false
		return read(ctx)
	})
}
