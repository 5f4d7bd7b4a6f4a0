package cluster

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/herald-dev/herald/internal/refreceiver"
)

// receivers serves every test endpoint at http://<node>:<port>/hooks/<name>, inside the
// cluster's network namespace, and checks each request with the receivers transcribed
// from the reference documents (internal/refreceiver), which share no code with Herald.
type receivers struct {
	base string
	srv  *http.Server

	mu        sync.Mutex
	endpoints map[string]*endpoint
}

type endpoint struct {
	style, prefix string
	secret        string
	failing       bool
	// Per event id: accepted deliveries (verified, answered 200) and every attempt.
	delivered map[string]int
	attempts  map[string]int
	refused   []string
}

func newReceivers(ln net.Listener) *receivers {
	r := &receivers{base: "http://" + ln.Addr().String(), endpoints: map[string]*endpoint{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r
}

func (r *receivers) close() { _ = r.srv.Close() }

// add registers an endpoint; its secret comes later, from the Secret the manager made.
func (r *receivers) add(name, style, prefix string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endpoints[name] = &endpoint{style: style, prefix: prefix, delivered: map[string]int{}, attempts: map[string]int{}}
	return r.base + "/hooks/" + name
}

func (r *receivers) setSecret(name, secret string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endpoints[name].secret = secret
}

func (r *receivers) setFailing(name string, failing bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endpoints[name].failing = failing
}

func (r *receivers) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	name := strings.TrimPrefix(req.URL.Path, "/hooks/")
	body, err := io.ReadAll(io.LimitReader(req.Body, 2<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ep, ok := r.endpoints[name]
	if !ok {
		http.NotFound(w, req)
		return
	}
	id := req.Header.Get("Webhook-Id")
	if id == "" {
		id = req.Header.Get(ep.prefix + "-Event-Id")
	}
	ep.attempts[id]++
	if ep.failing {
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	}
	if problem := ep.verify(req.Header, body); problem != "" {
		ep.refused = append(ep.refused, fmt.Sprintf("%s event %s: %s", name, id, problem))
		http.Error(w, "Invalid signature", http.StatusUnauthorized)
		return
	}
	ep.delivered[id]++
	_, _ = w.Write([]byte("OK"))
}

// verify applies the reference receiver of the endpoint's style; "" when it accepts.
func (ep *endpoint) verify(h http.Header, body []byte) string {
	sig, ts := ep.prefix+"-Signature", ep.prefix+"-Timestamp"
	switch ep.style {
	case "StandardWebhooks":
		if !refreceiver.StandardWebhooks(ep.secret, h, body, time.Now()) {
			return "Standard Webhooks signature does not verify"
		}
	case "TimestampedPrefixedHex":
		if !refreceiver.Tork(ep.secret, h, body, sig, ts) {
			return "Tork (TimestampedPrefixedHex) signature does not verify"
		}
	case "BodyPrefixedHex":
		if !refreceiver.Bolor(ep.secret, h, body, sig) {
			return "Bolor (BodyPrefixedHex) signature does not verify"
		}
	case "TimestampedHex":
		event, ok := refreceiver.Praxis(ep.secret, h, body, sig, ts, ep.prefix+"-Event", time.Now())
		if !ok || event == "" {
			return "Praxis (TimestampedHex) signature does not verify"
		}
	default:
		return "unknown style " + ep.style
	}
	return ""
}

// tally is what one endpoint received of a set of event ids.
type tally struct {
	delivered, lost, duplicates, attempts int
	missing                               []string
}

func (r *receivers) tally(name string, ids []string) tally {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep := r.endpoints[name]
	var t tally
	for _, id := range ids {
		n := ep.delivered[id]
		t.attempts += ep.attempts[id]
		if n == 0 {
			t.lost++
			if len(t.missing) < 10 {
				t.missing = append(t.missing, id)
			}
			continue
		}
		t.delivered++
		t.duplicates += n - 1
	}
	return t
}

func (r *receivers) deliveredCount(name, prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id := range r.endpoints[name].delivered {
		if strings.HasPrefix(id, prefix) {
			n++
		}
	}
	return n
}

func (r *receivers) attemptsOf(name, id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.endpoints[name].attempts[id]
}

func (r *receivers) refusals() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ep := range r.endpoints {
		out = append(out, ep.refused...)
	}
	return out
}
