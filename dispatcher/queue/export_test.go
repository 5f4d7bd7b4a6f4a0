package queue

import "context"

// Ack settles a delivery without counting it, waiting for the server's confirmation:
// tests that only take deliveries out of the way.
func (p *Pending) Ack(ctx context.Context) error { return p.msg.DoubleAck(ctx) }
