package queue

import "context"

// Ack settles a delivery without counting it, waiting for the server's confirmation:
// tests that only take deliveries out of the way.
func (p *Pending) Ack(ctx context.Context) error { return p.msg.DoubleAck(ctx) }

// Holds counts what the store holds of one endpoint, per kind (holds).
func Holds(ctx context.Context, st Store, ep Endpoint) (Held, error) {
	return st.(*jsStore).holds(ctx, ep)
}
