package queuetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Layout1 is what the release before layout 2 (commit 84fbf14, endpoint data keyed by
// UID) stored for one endpoint object, written as that release wrote it: every field of
// a delivery in a NATS header of its own, one message per retained delivery and per
// attempt record on 256 buckets of event ids, one key-value record per accepted event
// id in the bucket HERALD_INGEST, the counters in the endpoint's shared state. It is
// spelled out here rather than borrowed from package queue, so that a change to queue's
// own layout cannot make the old one look like the new.
type Layout1 struct {
	Namespace, Name, UID string
	// Pending are the event ids of deliveries waiting (attempt 1, accepted at
	// AcceptedAt, stored now); Retrying the ids of deliveries waiting for their second
	// attempt (the first answered 503), due at RetryAt.
	Pending, Retrying []string
	RetryAt           time.Time
	AcceptedAt        time.Time
	// DeadLetters are event ids dead-lettered after 3 attempts answered 503.
	DeadLetters []string
	// Delivered are event ids delivered and retained, each with one attempt record.
	Delivered []string
	// Accepted are event ids remembered for idempotent ingest, each routed to one
	// endpoint.
	Accepted []string
	// State, when set, is the endpoint's shared state as JSON (outcome.State, with its
	// counters).
	State string
}

func (l Layout1) tokens() string { return l.Namespace + "." + token(l.Name) + "." + l.UID }

func (l Layout1) msg(subject, eventID string, attempt int) *nats.Msg {
	return headerMsg(l.Namespace, l.Name, l.AcceptedAt, subject, eventID, attempt, `{"layout":1,"id":"`+eventID+`"}`)
}

// WriteLayout1 stores l as the release before layout 2 did, in the streams and buckets
// that release made (it creates the bucket HERALD_INGEST, which layout 2 no longer
// makes; the others are made by queue.Open, their names and subjects unchanged).
func WriteLayout1(ctx context.Context, js jetstream.JetStream, l Layout1) error {
	// Registered before anything is stored for it, as that release did.
	state, err := js.KeyValue(ctx, "HERALD_ENDPOINT_STATE")
	if err != nil {
		return err
	}
	if _, err := state.Put(ctx, "known."+l.tokens(), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	for _, id := range l.Pending {
		m := l.msg("herald.dlv."+l.tokens(), id, 1)
		m.Header.Set(nats.MsgIdHdr, deliveryID(l.Namespace, id, l.Name)+"/1")
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("pending %s: %w", id, err)
		}
	}
	for _, id := range l.Retrying {
		m := l.msg("herald.dlv."+l.tokens(), id, 2)
		m.Header.Set("Herald-Not-Before", strconv.FormatInt(l.RetryAt.UnixMicro(), 10))
		m.Header.Set(nats.MsgIdHdr, deliveryID(l.Namespace, id, l.Name)+"/2")
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("retrying %s: %w", id, err)
		}
	}
	for _, id := range l.DeadLetters {
		m := l.msg("herald.dlq."+l.tokens(), id, 3)
		m.Header.Set("Herald-Dead-Reason", "RetriesExhausted")
		m.Header.Set("Herald-Dead-Status", "503")
		m.Header.Set("Herald-Dead-Error", "receiver answered 503")
		m.Header.Set("Herald-Dead-At", time.Now().UTC().Format(time.RFC3339Nano))
		m.Header.Set(nats.MsgIdHdr, "dead/"+deliveryID(l.Namespace, id, l.Name)+"/3")
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("dead letter %s: %w", id, err)
		}
	}
	for _, id := range l.Delivered {
		m := l.msg("herald.done."+l.tokens()+"."+bucket(id), id, 1)
		m.Header.Set("Herald-Delivered-At", strconv.FormatInt(time.Now().UnixMicro(), 10))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("delivered %s: %w", id, err)
		}
		rec, _ := json.Marshal(map[string]any{
			"namespace": l.Namespace, "endpoint": l.Name, "endpointUid": l.UID, "eventId": id, "eventType": "invoice.paid",
			"deliveryId": deliveryID(l.Namespace, id, l.Name), "attempt": 1, "time": time.Now().UTC(),
			"durationMicros": 1500, "statusCode": 200, "final": true,
		})
		if _, err := js.Publish(ctx, "herald.att."+l.tokens()+"."+bucket(id), rec); err != nil {
			return fmt.Errorf("attempt record %s: %w", id, err)
		}
	}
	if len(l.Accepted) > 0 {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: "HERALD_INGEST", TTL: 24 * time.Hour, Storage: jetstream.FileStorage,
		})
		if err != nil {
			return err
		}
		for _, id := range l.Accepted {
			sum := sha256.Sum256([]byte(id))
			if _, err := kv.Put(ctx, l.Namespace+"."+hex.EncodeToString(sum[:20]), []byte(`{"m":1}`)); err != nil {
				return fmt.Errorf("ingest record %s: %w", id, err)
			}
		}
	}
	if l.State != "" {
		if _, err := state.Put(ctx, "ep."+l.tokens(), []byte(l.State)); err != nil {
			return fmt.Errorf("state: %w", err)
		}
	}
	return nil
}

// WriteLayout1In writes l into the embedded store kept in dataDir, which no dispatcher
// has open, through a server of its own on that directory (as the embedded server of
// the release before ran it).
func WriteLayout1In(ctx context.Context, dataDir string, l Layout1) error {
	srv, err := server.NewServer(&server.Options{ServerName: "herald-embedded", JetStream: true, StoreDir: dataDir,
		DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		return err
	}
	go srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(30 * time.Second) {
		return errors.New("the server on the store's directory did not start within 30s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return WriteLayout1(ctx, js, l)
}
