package queue

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Acknowledgements each confirmed, on replicated streams.
//
// The journal acknowledges a flush's deliveries and waits for the answer to the last
// one only: one server handles a consumer's acknowledgements in the order they come, so
// that answer confirms the others. A replicated consumer changes its leader when a node
// is lost or partitioned, and the acknowledgements that reach the old leader after it
// stepped down are dropped while a later one, sent to the new leader, is confirmed: the
// deliveries of the dropped ones, taken as acknowledged and closed in the tally, were
// handed out again, attempted again and counted twice (the chaos suite's over-count in a
// partition). On streams with more than one copy every acknowledgement therefore asks
// for its own answer; those not confirmed stay open in the tally like any failed one.
// The answers share one subscription of the store's connection; a clustered server
// sends each once the acknowledgement is replicated.

// ackAck is the acknowledgement's body (nats.go's "+ACK").
var ackAck = []byte("+ACK")

// ackConfirmer sends acknowledgements that are answered one by one.
type ackConfirmer struct {
	prefix string // the reply subjects' prefix: inbox, ".", call, ".", index
	sub    *nats.Subscription
	// publish sends a message; tests replace it to lose acknowledgements.
	publish func(*nats.Msg) error

	mu    sync.Mutex
	next  uint64
	calls map[uint64]*ackCall
}

type ackCall struct {
	confirmed []bool
	left      int
	done      chan struct{}
}

func newAckConfirmer(nc *nats.Conn) (*ackConfirmer, error) {
	c := &ackConfirmer{prefix: nc.NewInbox() + ".", publish: nc.PublishMsg, calls: map[uint64]*ackCall{}}
	sub, err := nc.Subscribe(c.prefix+"*.*", c.answer)
	if err != nil {
		return nil, fmt.Errorf("subscribing to acknowledgement answers: %w", err)
	}
	c.sub = sub
	return c, nil
}

// answer takes the server's answer to one acknowledgement. A status message (no
// responders: no consumer leader took it) confirms nothing.
func (c *ackConfirmer) answer(m *nats.Msg) {
	if m.Header.Get("Status") != "" { // nats.go's status header, unexported there
		return
	}
	call, index, ok := strings.Cut(strings.TrimPrefix(m.Subject, c.prefix), ".")
	if !ok {
		return
	}
	id, err1 := strconv.ParseUint(call, 10, 64)
	i, err2 := strconv.Atoi(index)
	if err1 != nil || err2 != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ac := c.calls[id]
	if ac == nil || i < 0 || i >= len(ac.confirmed) || ac.confirmed[i] {
		return
	}
	ac.confirmed[i] = true
	if ac.left--; ac.left == 0 {
		close(ac.done)
	}
}

// ack acknowledges msgs and reports, for each, whether its acknowledgement was
// confirmed before ctx ended.
func (c *ackConfirmer) ack(ctx context.Context, msgs []jetstream.Msg) []bool {
	ac := &ackCall{confirmed: make([]bool, len(msgs)), left: len(msgs), done: make(chan struct{})}
	c.mu.Lock()
	c.next++
	id := c.next
	c.calls[id] = ac
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.calls, id)
		c.mu.Unlock()
	}()
	reply := c.prefix + strconv.FormatUint(id, 10) + "."
	for i, m := range msgs {
		if err := c.publish(&nats.Msg{Subject: m.Reply(), Reply: reply + strconv.Itoa(i), Data: ackAck}); err != nil {
			break // the rest are not sent; they stay unconfirmed
		}
	}
	select {
	case <-ac.done:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(ac.confirmed)
}
