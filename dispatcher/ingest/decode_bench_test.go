package ingest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// event1KiB is a Herald JSON event of about 1 KiB, most of it data, as a typical
// business event (an order with line items) would be.
func event1KiB(i int) string {
	var items []string
	for j := range 12 {
		items = append(items, fmt.Sprintf(`{"sku":"SKU-%06d","name":"Widget number %d","qty":%d,"price_cents":%d}`, j, j, j+1, 1999+j))
	}
	return fmt.Sprintf(`{"id":"order-%08d","type":"order.created","source":"shop/eu-1","created_at":"2026-01-02T15:04:05Z","data":{"order_id":%d,"customer":"c-42","items":[%s]}}`,
		i, i, strings.Join(items, ","))
}

func benchDecoder() *decoder {
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	return &decoder{now: func() time.Time { return now }, maxBatch: 1000}
}

func BenchmarkDecode_Single1KiB(b *testing.B) {
	body := []byte(event1KiB(1))
	if len(body) < 1000 || len(body) > 1100 {
		b.Fatalf("event is %d bytes, want about 1 KiB", len(body))
	}
	d, h := benchDecoder(), http.Header{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.single(mediaJSON, h, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode_Batch100x1KiB(b *testing.B) {
	events := make([]string, 100)
	for i := range events {
		events[i] = event1KiB(i)
	}
	body := []byte(`{"events":[` + strings.Join(events, ",") + `]}`)
	d, h := benchDecoder(), http.Header{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		evs, err := d.batch(mediaJSON, h, body)
		if err != nil || len(evs) != 100 {
			b.Fatal(err, len(evs))
		}
	}
}

func BenchmarkDecode_CloudEventBinary1KiB(b *testing.B) {
	body := []byte(event1KiB(1))
	h := http.Header{}
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Id", "order-1")
	h.Set("Ce-Source", "shop/eu-1")
	h.Set("Ce-Type", "order.created")
	h.Set("Ce-Time", "2026-01-02T15:04:05Z")
	h.Set("Content-Type", mediaJSON)
	d := benchDecoder()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.single(mediaJSON, h, body); err != nil {
			b.Fatal(err)
		}
	}
}
