// Package queuetest writes a store the way the release before UIDs did (commit
// 5758def), for upgrade tests: subjects, headers, keys and consumer names as that
// release wrote them, spelled out here rather than borrowed from package queue, so that
// a change to queue's own layout cannot make the old one look like the new.
package queuetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Legacy is what the previous release stored for one endpoint name.
type Legacy struct {
	Namespace, Name string
	// Pending are the event ids of deliveries waiting (attempt 1, accepted at
	// AcceptedAt, stored now).
	Pending    []string
	AcceptedAt time.Time
	// DeadLetters are event ids dead-lettered after 3 attempts answered 503.
	DeadLetters []string
	// Delivered are event ids delivered and retained, each with one attempt record.
	Delivered []string
	// State, when set, is the endpoint's shared state as JSON (outcome.State).
	State string
	// Consumer creates the endpoint's durable consumer, as an ordered endpoint keeps.
	Consumer bool
}

func token(name string) string { return strings.ReplaceAll(name, ".", "_") }

func bucket(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return hex.EncodeToString(sum[:1])
}

func deliveryID(ns, eventID, endpoint string) string {
	h := sha256.New()
	h.Write([]byte(ns))
	h.Write([]byte{0})
	h.Write([]byte(eventID))
	h.Write([]byte{0})
	h.Write([]byte(endpoint))
	return "dlv_" + hex.EncodeToString(h.Sum(nil)[:12])
}

func (l Legacy) msg(subject, eventID string, attempt int) *nats.Msg {
	return headerMsg(l.Namespace, l.Name, l.AcceptedAt, subject, eventID, attempt, `{"legacy":true,"id":"`+eventID+`"}`)
}

// headerMsg is a stored delivery as the releases before layout 2 wrote it: Herald's
// fields in one NATS header each, the event's data as the body. at zero is now.
func headerMsg(ns, endpoint string, at time.Time, subject, eventID string, attempt int, data string) *nats.Msg {
	if at.IsZero() {
		at = time.Now()
	}
	h := nats.Header{}
	h.Set("Herald-Event-Id", eventID)
	h.Set("Herald-Event-Type", "invoice.paid")
	h.Set("Herald-Event-Time", at.UTC().Format(time.RFC3339Nano))
	h.Set("Herald-Delivery-Id", deliveryID(ns, eventID, endpoint))
	h.Set("Herald-Namespace", ns)
	h.Set("Herald-Endpoint", endpoint)
	h.Set("Herald-Attempt", strconv.Itoa(attempt))
	h.Set("Herald-Accepted-At", strconv.FormatInt(at.UnixMicro(), 10))
	return &nats.Msg{Subject: subject, Header: h, Data: []byte(data)}
}

// Write stores l as the previous release did, in the streams and bucket package queue
// creates (their names and subjects did not change).
func Write(ctx context.Context, js jetstream.JetStream, l Legacy) error {
	ns, name := l.Namespace, token(l.Name)
	for _, id := range l.Pending {
		m := l.msg("herald.dlv."+ns+"."+name, id, 1)
		m.Header.Set(nats.MsgIdHdr, deliveryID(l.Namespace, id, l.Name)+"/1")
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("pending %s: %w", id, err)
		}
	}
	for _, id := range l.DeadLetters {
		m := l.msg("herald.dlq."+ns+"."+name, id, 3)
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
		m := l.msg("herald.done."+ns+"."+name+"."+bucket(id), id, 1)
		m.Header.Set("Herald-Delivered-At", strconv.FormatInt(time.Now().UnixMicro(), 10))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("delivered %s: %w", id, err)
		}
		rec, _ := json.Marshal(map[string]any{
			"namespace": l.Namespace, "endpoint": l.Name, "eventId": id, "eventType": "invoice.paid",
			"deliveryId": deliveryID(l.Namespace, id, l.Name), "attempt": 1, "time": time.Now().UTC(),
			"durationMicros": 1500, "statusCode": 200, "final": true,
		})
		if _, err := js.Publish(ctx, "herald.att."+ns+"."+name+"."+bucket(id), rec); err != nil {
			return fmt.Errorf("attempt record %s: %w", id, err)
		}
	}
	if l.State != "" {
		kv, err := js.KeyValue(ctx, "HERALD_ENDPOINT_STATE")
		if err != nil {
			return err
		}
		if _, err := kv.Put(ctx, "ep."+ns+"."+name, []byte(l.State)); err != nil {
			return fmt.Errorf("state: %w", err)
		}
	}
	if l.Consumer {
		if _, err := js.CreateOrUpdateConsumer(ctx, "HERALD_DELIVERIES", jetstream.ConsumerConfig{
			Durable: "ep_" + ns + "_" + name, FilterSubject: "herald.dlv." + ns + "." + name,
			AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1, MaxDeliver: -1,
		}); err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
	}
	return nil
}
