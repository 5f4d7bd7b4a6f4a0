package queue

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Group commit of accepted ids. Every ingest request waits for its accepted ids to be
// stored before its 202, one write after its deliveries'. One event per request (bench
// e: 6,300 a second from 8 producers) made that a write per event, each waited for in
// turn. Here the requests of a namespace that arrive while its last write is out are
// gathered and written together when it returns: a request alone is written at once, as
// before, and under load one write carries the ids of every request that came during
// the one before. Each request still returns only once its own ids are stored.

// maxGroupIDs bounds the ids of one accepted message (about 10 bytes each).
const maxGroupIDs = 8192

// acceptedGroup is the ids of one namespace's requests to be written in one message.
type acceptedGroup struct {
	fps  []uint64
	ms   []uint32
	done chan struct{}
	err  error // set before done is closed
}

// acceptedWriter writes each namespace's accepted ids, one message at a time per
// namespace, the requests that came meanwhile gathered into the next.
type acceptedWriter struct {
	s  *jsStore
	mu sync.Mutex
	// queued are the groups of a namespace waiting for its write in progress; a
	// namespace is in queued exactly while one of its writes is out.
	queued map[string][]*acceptedGroup
}

func newAcceptedWriter(s *jsStore) *acceptedWriter {
	return &acceptedWriter{s: s, queued: map[string][]*acceptedGroup{}}
}

// remember stores fps (with their matched counts) as accepted in namespace and returns
// once they are stored (or ctx ends first: they may be stored all the same).
func (w *acceptedWriter) remember(ctx context.Context, namespace string, fps []uint64, ms []uint32) error {
	w.mu.Lock()
	q, writing := w.queued[namespace]
	var g *acceptedGroup
	if writing && len(q) > 0 && len(q[len(q)-1].fps)+len(fps) <= maxGroupIDs {
		g = q[len(q)-1]
	} else {
		g = &acceptedGroup{done: make(chan struct{})}
		if writing {
			w.queued[namespace] = append(q, g)
		}
	}
	g.fps, g.ms = append(g.fps, fps...), append(g.ms, ms...)
	if !writing {
		w.queued[namespace] = nil
	}
	w.mu.Unlock()
	if !writing {
		w.write(namespace, g)
	}
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		return fmt.Errorf("recording accepted events: %w", ctx.Err())
	}
}

// write stores g, then hands the namespace's next gathered group to a write of its own.
func (w *acceptedWriter) write(namespace string, g *acceptedGroup) {
	g.err = w.s.writeAccepted(namespace, g.fps, g.ms)
	close(g.done)
	w.mu.Lock()
	q := w.queued[namespace]
	if len(q) == 0 {
		delete(w.queued, namespace)
		w.mu.Unlock()
		return
	}
	next := q[0]
	w.queued[namespace] = q[1:]
	w.mu.Unlock()
	// Not on this goroutine: it is a request's, which has its answer to give.
	go w.write(namespace, next)
}

// writeAccepted stores one message of accepted ids and indexes them. Its time limit is
// its own, not a request's: the message carries other requests' ids too.
func (s *jsStore) writeAccepted(namespace string, fps []uint64, ms []uint32) error {
	body := make([]byte, 0, len(acceptedMagic)+len(fps)*10)
	body = append(body, acceptedMagic[:]...)
	for i, fp := range fps {
		body = binary.BigEndian.AppendUint64(body, fp)
		body = binary.AppendUvarint(body, uint64(ms[i]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if _, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: acceptedSubjectPrefix + namespace, Data: body}); err != nil {
		return fmt.Errorf("recording accepted events: %w", s.storeError(err))
	}
	s.seen.add(time.Now(), fps, ms)
	return nil
}
