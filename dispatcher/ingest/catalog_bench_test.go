package ingest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/herald-dev/herald/dispatcher/catalog"
	"github.com/herald-dev/herald/dispatcher/ingest"
)

// nopAcceptor accepts everything and keeps nothing: the benchmark measures ingest.
type nopAcceptor struct{}

func (nopAcceptor) Accept(_ context.Context, _ string, events []ingest.Event) ([]ingest.Result, error) {
	out := make([]ingest.Result, len(events))
	for i := range events {
		out[i] = ingest.Result{ID: events[i].ID, Matched: 1}
	}
	return out, nil
}

// A schema of the 1 KiB order the decode benchmarks use: every field typed, the line
// items each checked.
const order1KiBSchema = `{
  "type": "object", "required": ["order_id", "customer", "items"], "additionalProperties": false,
  "properties": {
    "order_id": {"type": "integer", "minimum": 1},
    "customer": {"type": "string", "pattern": "^c-[0-9]+$"},
    "items": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {"item": {"type": "object", "required": ["sku", "qty", "price_cents"], "properties": {
    "sku": {"type": "string", "pattern": "^SKU-"}, "name": {"type": "string", "maxLength": 200},
    "qty": {"type": "integer", "minimum": 1}, "price_cents": {"type": "integer", "minimum": 0}}}}
}`

func order1KiB(i int) string {
	var items []string
	for j := range 12 {
		items = append(items, fmt.Sprintf(`{"sku":"SKU-%06d","name":"Widget number %d","qty":%d,"price_cents":%d}`, j, j, j+1, 1999+j))
	}
	return fmt.Sprintf(`{"id":"order-%08d","type":"order.created","source":"shop/eu-1","created_at":"2026-01-02T15:04:05Z","data":{"order_id":%d,"customer":"c-42","items":[%s]}}`,
		i+1, i+1, strings.Join(items, ","))
}

// BenchmarkPublish_Catalog is the ingest handler on a 1 KiB event, authorization to
// acceptance (the store left out), without a catalog and with the event's type declared
// with a schema that checks every field: the difference is what enforcing a schema
// costs per event. Compare the two in one run:
//
//	go test ./dispatcher/ingest -run XXX -bench Publish_Catalog -count 6 | benchstat -col /schemas -
func BenchmarkPublish_Catalog(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run("schemas="+mode, func(b *testing.B) {
			o := ingest.Options{Acceptor: nopAcceptor{}, Authorizer: tokenAuthorizer, Log: logr.Discard()}
			if mode == "on" {
				cat := catalog.New()
				cat.Set(eventType("team-a", "order-created", "order.created", order1KiBSchema))
				o.Catalog = cat
			}
			h, err := ingest.NewHandler(o)
			if err != nil {
				b.Fatal(err)
			}
			// A real server (ingest sets the connection's read deadline), on loopback with
			// keep-alive, the same for both variants.
			srv := httptest.NewServer(h)
			defer srv.Close()
			client := srv.Client()
			body := order1KiB(1)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			// CPU time of the process (client and server both) per request: on shared
			// cores the wall time per op says more about the neighbours than about us.
			cpu0 := processCPU()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+single, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+goodToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
