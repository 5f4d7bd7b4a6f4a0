package queue

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// A delivery of layout 2 reads back as it was written, every field; the data is the
// body's tail, untouched.
func TestDelivery_EncodeDecodeRoundTrip(t *testing.T) {
	for _, d := range []Delivery{
		{Namespace: "shop", Endpoint: "billing.eu", EventID: "evt_1", EventType: "invoice.paid", DeliveryID: "dlv_1", Attempt: 1,
			CreatedAt: time.Date(2026, 12, 7, 1, 2, 3, 456789012, time.UTC), Data: []byte(`{"a":1}`)},
		{Namespace: "ns", Endpoint: "e", EventID: strings.Repeat("ü\x00\n\"", 200), EventType: "t", EventSource: "src/x",
			CreatedAtText: "2026-12-07T01:02:03+01:00", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			TraceState: "k=v", DeliveryID: "dlv_2", Attempt: 6, NotBefore: time.UnixMicro(1_800_000_000_123_456),
			AcceptedAt: time.UnixMicro(1_700_000_000_000_001), Replay: 3, CreatedAt: time.Unix(-62135596800, 0).UTC(),
			Attributes: []byte(`{"comexampletenant":"eu-1","subject":"o-1"}`), Data: []byte{0, 1, 2, 255}},
		{Namespace: "ns", Endpoint: "e", EventID: "x", EventType: "t", DeliveryID: "d", Attempt: 2, CreatedAt: time.Unix(0, 0).UTC()},
	} {
		got, err := decodeDelivery(d.encode(nil))
		if err != nil {
			t.Fatalf("%s: %v", d.DeliveryID, err)
		}
		if len(d.Data) == 0 {
			d.Data = got.Data[:0]
		}
		if !reflect.DeepEqual(got, d) {
			t.Errorf("round trip:\n got  %+v\n want %+v", got, d)
		}
	}
	// A body written before the carried attributes were added ends after Replay.
	d := Delivery{Namespace: "ns", Endpoint: "e", EventID: "x", EventType: "t", DeliveryID: "d", Attempt: 2, Replay: 1,
		CreatedAt: time.Unix(0, 0).UTC(), Data: []byte(`{}`)}
	body := d.encode(nil)
	n := int(body[3]) // one varint byte: the fields are short
	before := append(append(append([]byte{}, body[:3]...), byte(n-1)), body[4:4+n-1]...)
	before = append(before, d.Data...)
	if got, err := decodeDelivery(before); err != nil || !reflect.DeepEqual(got, d) {
		t.Errorf("a body without the attributes field: %+v, %v", got, err)
	}
	if _, err := decodeDelivery([]byte(`{"not":"a delivery"}`)); err == nil {
		t.Error("a JSON body decoded as a delivery")
	}
	bad := (&Delivery{Namespace: "ns", Endpoint: "e", EventID: "x", DeliveryID: "d", Attempt: 1}).encode(nil)
	if _, err := decodeDelivery(bad[:8]); err == nil {
		t.Error("a truncated delivery decoded")
	}
}

// A delivery stored by the releases before layout 2 (every field a header) is read as
// before, and one of layout 2 by its body; the UID is the subject's either way.
func TestParseDelivery_BothLayouts(t *testing.T) {
	ep := Endpoint{Namespace: "shop", Name: "billing", UID: "0f1e2d3c-0000-4000-8000-000000000001"}
	h := nats.Header{}
	for k, v := range map[string]string{hdrEventID: "evt_1", hdrEventType: "invoice.paid", hdrEventTime: "2026-12-07T01:02:03Z",
		hdrDeliveryID: "dlv_1", hdrNamespace: "shop", hdrEndpoint: "billing", hdrAttempt: "2", hdrNotBefore: "1800000000000000"} {
		h.Set(k, v)
	}
	old, err := parseDelivery(DeliverySubject(ep), h, []byte(`{"a":1}`))
	if err != nil || old.EventID != "evt_1" || old.Attempt != 2 || old.EndpointUID != ep.UID || old.NotBefore.UnixMicro() != 1800000000000000 {
		t.Fatalf("layout 1: %+v, %v", old, err)
	}
	m := old.toMsg(DeliverySubject(ep))
	if len(m.Header) != 1 || m.Header.Get(nats.MsgIdHdr) != "dlv_1/2" {
		t.Errorf("layout 2 headers = %v, want the message id alone", m.Header)
	}
	got, err := parseDelivery(m.Subject, m.Header, m.Data)
	if err != nil || !reflect.DeepEqual(got, old) {
		t.Errorf("layout 2: %+v, %v; want %+v", got, err, old)
	}
}

// The attempt log's hand-written JSON reads back as encoding/json reads its own, for the
// strings a receiver can put in it (its body and headers).
func TestAttemptRecord_AppendJSONReadsBackAsEncodingJSON(t *testing.T) {
	weird := "a\"b\\c\n\r\t\x00\x1f <&> \u2028\u2029 ü 😀 \xff\xfe end"
	for _, r := range []AttemptRecord{
		{Namespace: "shop", Endpoint: "billing", EventID: "evt_1", EventType: "invoice.paid", DeliveryID: "dlv_1", Attempt: 1,
			Time: time.Date(2026, 12, 7, 1, 2, 3, 456789000, time.UTC), DurationMicros: 1500, StatusCode: 204, Final: true},
		{Namespace: "shop", Endpoint: "billing", EndpointUID: "uid", EventID: weird, EventType: weird, DeliveryID: "dlv_2", Attempt: 3, Replay: 2,
			Time: time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC), DurationMicros: 30_000_000, StatusCode: 503, Error: weird,
			Headers: map[string]string{"Retry-After": "30", "X-Request-Id": weird, "Content-Type": "text/plain"}, Body: weird},
	} {
		var got, want AttemptRecord
		if err := json.Unmarshal(r.appendJSON(nil), &got); err != nil {
			t.Fatalf("%s: %v\n%s", r.DeliveryID, err, r.appendJSON(nil))
		}
		raw, _ := json.Marshal(r)
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got  %+v\n want %+v", r.DeliveryID, got, want)
		}
	}
}

// A batch holds its records in order, sealed into another message past its size.
func TestHistory_BatchesRecordsInOrderAndSealsFullOnes(t *testing.T) {
	var h history
	for i := range 10 {
		h.add("a", 64, func(b []byte) []byte { return append(b, strings.Repeat(string(rune('0'+i)), 20)...) })
	}
	var got []string
	for _, body := range h.take() {
		if body[0] != "a" || !isBatch([]byte(body[1])) {
			t.Fatalf("batch %q", body)
		}
		_ = records([]byte(body[1]), func(_ int, rec []byte) bool { got = append(got, string(rec[:1])); return true })
	}
	if strings.Join(got, "") != "0123456789" || !h.empty() {
		t.Errorf("records %v, want 0..9 in order", got)
	}
}
