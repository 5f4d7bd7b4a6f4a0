package main

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// clock: every timestamp of a run is nanoseconds since base (monotonic), plus one so
// that zero means "not set". Load generator and receivers share the process, so their
// timestamps compare directly.
var base = time.Now()

func now() int64 { return int64(time.Since(base)) + 1 }

func toTime(ns int64) time.Duration { return time.Duration(ns - 1) }

const (
	chunkBits = 16
	chunkLen  = 1 << chunkBits
	maxChunks = 1 << 12 // 268M events
)

// stamps maps event index → timestamp, lock-free, growing in chunks as indexes appear.
type stamps struct {
	chunks [maxChunks]atomic.Pointer[[chunkLen]atomic.Int64]
}

func (s *stamps) slot(i int64) *atomic.Int64 {
	c := i >> chunkBits
	if i < 0 || c >= maxChunks {
		return nil
	}
	p := s.chunks[c].Load()
	if p == nil {
		p = new([chunkLen]atomic.Int64)
		if !s.chunks[c].CompareAndSwap(nil, p) {
			p = s.chunks[c].Load()
		}
	}
	return &p[i&(chunkLen-1)]
}

// first records v for i unless i already has a stamp; it reports whether it did.
func (s *stamps) first(i, v int64) bool {
	sl := s.slot(i)
	return sl != nil && sl.CompareAndSwap(0, v)
}

func (s *stamps) set(i, v int64) {
	if sl := s.slot(i); sl != nil {
		sl.Store(v)
	}
}

func (s *stamps) get(i int64) int64 {
	c := i >> chunkBits
	if i < 0 || c >= maxChunks {
		return 0
	}
	p := s.chunks[c].Load()
	if p == nil {
		return 0
	}
	return p[i&(chunkLen-1)].Load()
}

// each calls f for every set stamp, in index order, up to n.
func (s *stamps) each(n int64, f func(i, v int64)) {
	for c := int64(0); c < maxChunks && c<<chunkBits < n; c++ {
		p := s.chunks[c].Load()
		if p == nil {
			continue
		}
		for j := int64(0); j < chunkLen; j++ {
			i := c<<chunkBits | j
			if i >= n {
				return
			}
			if v := p[j].Load(); v != 0 {
				f(i, v)
			}
		}
	}
}

// receiver is a plain net/http server on 127.0.0.1 standing in for a webhook
// receiver. It answers 204 at once (or never, when hang is set), and records when each
// event id first arrived; repeats are counted as duplicates (delivery is at least once).
type receiver struct {
	name string
	url  string
	hang bool
	srv  *http.Server

	got      stamps
	unique   atomic.Int64
	dups     atomic.Int64
	requests atomic.Int64
	unknown  atomic.Int64
	last     atomic.Int64 // latest first-receipt stamp
}

// eventHeader is where the receiver finds the event id: the header Herald sends with
// the endpoint's prefix (X-Herald), and the one the ceiling's direct POSTs carry.
const eventHeader = "X-Herald-Event-Id"

func startReceiver(name string, hang bool) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc := &receiver{name: name, url: "http://" + ln.Addr().String() + "/hook", hang: hang}
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = rc.srv.Serve(ln) }()
	return rc, nil
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.requests.Add(1)
	if rc.hang {
		// Never answer: hold the request until the sender gives up.
		<-r.Context().Done()
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	at := now()
	id := r.Header.Get(eventHeader)
	i, err := strconv.ParseInt(id[min(1, len(id)):], 10, 64)
	if err != nil || len(id) < 2 || id[0] != 'e' {
		rc.unknown.Add(1)
	} else if rc.got.first(i, at) {
		rc.unique.Add(1)
		for {
			l := rc.last.Load()
			if at <= l || rc.last.CompareAndSwap(l, at) {
				break
			}
		}
	} else {
		rc.dups.Add(1)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) close() { _ = rc.srv.Close() }
