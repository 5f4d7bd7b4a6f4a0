package queue

import "github.com/nats-io/nats.go"

// NATSConn is the store's client connection, for tests that wait on its callbacks.
func NATSConn(st Store) *nats.Conn { return st.(*jsStore).nc }
