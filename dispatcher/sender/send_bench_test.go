package sender_test

// Benchmarks of one delivery attempt against a receiver on 127.0.0.1 (in this
// process): Target.Send (envelope, Standard Webhooks signature, POST, drain), next to a
// plain POST of the same body with the same kind of client, which is what the sender
// adds to. ns/op and cpu-ns/op (process CPU, receiver included) are per attempt.
//
//	go test ./dispatcher/sender -run '^$' -bench . -benchtime 20000x

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/routing"
)

func sendBenchCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var sendBenchData = bytes.Repeat([]byte(`{"sku":"SKU-000001","qty":1}`), 36)[:1000]

func sendBenchReceiver(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// parallel runs f from workers goroutines (the endpoint's maxInFlight) b.N times in all.
func parallel(b *testing.B, workers int, f func()) {
	var wg sync.WaitGroup
	work := make(chan struct{}, workers)
	b.ReportAllocs()
	cpu := sendBenchCPU()
	for range workers {
		wg.Go(func() {
			for range work {
				f()
			}
		})
	}
	n := 0
	for b.Loop() {
		work <- struct{}{}
		n++
	}
	close(work)
	wg.Wait()
	b.ReportMetric(float64(sendBenchCPU()-cpu)/float64(n), "cpu-ns/op")
}

func BenchmarkSend_Envelope1KiB(b *testing.B) {
	srv := sendBenchReceiver(b)
	sg, err := signer.New(heraldv1.SignatureStandardWebhooks, "", []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), nil)
	if err != nil {
		b.Fatal(err)
	}
	t := sender.New(sender.Config{
		URL: srv.URL, Signer: sg, HeaderPrefix: "X-Herald",
		Format: heraldv1.PayloadEnvelope, Timeout: 10 * time.Second, MaxInFlight: 8,
		Policy: outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true},
	})
	defer t.Close()
	d := &sender.Message{EventID: "evt_01J00000000000000000000000",
		EventType: "order.created", CreatedAt: time.Now(), Data: sendBenchData, DeliveryID: "dlv_0123456789abcdef01234567", Attempt: 1}
	ctx := context.Background()
	parallel(b, 8, func() {
		if out := t.Send(ctx, d); !out.OK() {
			b.Error(out.Err)
		}
	})
}

// BenchmarkPlainPOST_1KiB is the floor: the same body POSTed by a plain keep-alive
// client with 8 connections, no envelope, no signature.
func BenchmarkPlainPOST_1KiB(b *testing.B) {
	srv := sendBenchReceiver(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, MaxConnsPerHost: 8, DisableCompression: true}}
	defer client.CloseIdleConnections()
	body := append(append([]byte(`{"id":"evt_01J00000000000000000000000","type":"order.created","created_at":"2026-01-02T15:04:05.123456789Z","data":`), sendBenchData...), '}')
	parallel(b, 8, func() {
		resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	})
}

// BenchmarkSend_ResponseBody: what keeping a 1 KiB answer's body for the attempt log
// costs, with four secret values (signing secret, two headers, a client secret) to
// redact from it, against not keeping it (None, the default).
func BenchmarkSend_ResponseBody(b *testing.B) {
	answer := bytes.Repeat([]byte(`{"error":"bad_request","detail":"field x"}`), 25)[:1024]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(answer)
	}))
	b.Cleanup(srv.Close)
	const signing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	sg, err := signer.New(heraldv1.SignatureStandardWebhooks, "", []byte(signing), nil)
	if err != nil {
		b.Fatal(err)
	}
	secrets := []sender.Secret{{What: "signing secret", Value: []byte(signing)},
		{What: "header X-Api-Key", Value: []byte("ak_0123456789abcdef0123456789")},
		{What: "header X-Tenant-Token", Value: []byte("tt/abcdefghijklmnop+qrstuv")},
		{What: "OAuth2 client secret", Value: []byte("s3cr3t/with+specials")}}
	for _, policy := range []heraldv1.ResponseBodyPolicy{heraldv1.ResponseBodyNone, heraldv1.ResponseBodyOnFailure} {
		b.Run(string(policy), func(b *testing.B) {
			t := sender.New(sender.Config{
				URL: srv.URL, Signer: sg, Timeout: 10 * time.Second, MaxInFlight: 8,
				Policy: outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}, ResponseBody: policy, Secrets: secrets,
			})
			defer t.Close()
			d := &sender.Message{EventID: "evt_01J00000000000000000000000",
				EventType: "order.created", CreatedAt: time.Now(), Data: sendBenchData, DeliveryID: "dlv_0123456789abcdef01234567", Attempt: 1}
			parallel(b, 8, func() {
				if out := t.Send(context.Background(), d); out.StatusCode != http.StatusBadRequest || (policy != heraldv1.ResponseBodyNone) != (len(out.Body) == len(answer)) {
					b.Errorf("attempt = %d, %d bytes kept", out.StatusCode, len(out.Body))
				}
			})
		})
	}
}

// BenchmarkSend_Shapes1KiB: one attempt of the same 1 KiB event in each body shape,
// signed, against the Envelope of the same run: the CloudEvents modes (binary: the
// attributes in ce-* headers; structured: one application/cloudevents+json document,
// with a subject and an extension carried from the producer) and an Envelope whose
// body a typical transform makes (pick and rename four fields: decoding the stored
// data into CEL values and encoding the result come on top of the envelope's work).
func BenchmarkSend_Shapes1KiB(b *testing.B) {
	srv := sendBenchReceiver(b)
	sg, err := signer.New(heraldv1.SignatureStandardWebhooks, "", []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), nil)
	if err != nil {
		b.Fatal(err)
	}
	transform, err := routing.CompileTransform(`{"order": event.id, "kind": event.type, "lines": size(event.data.items), "first": event.data.items[0].sku}`)
	if err != nil {
		b.Fatal(err)
	}
	data := append(append([]byte(`{"items":[`), bytes.TrimSuffix(bytes.Repeat([]byte(`{"sku":"SKU-000001","qty":1},`), 34), []byte(","))...), ']', '}')
	for _, c := range []struct {
		name      string
		format    heraldv1.PayloadFormat
		transform *routing.Transform
	}{
		{"Envelope", heraldv1.PayloadEnvelope, nil},
		{"CloudEventsBinary", heraldv1.PayloadCloudEventsBinary, nil},
		{"CloudEventsStructured", heraldv1.PayloadCloudEventsStructured, nil},
		{"EnvelopeTransformed", heraldv1.PayloadEnvelope, transform},
	} {
		b.Run(c.name, func(b *testing.B) {
			t := sender.New(sender.Config{
				URL: srv.URL, Signer: sg, HeaderPrefix: "X-Herald", Transform: c.transform,
				Format: c.format, Timeout: 10 * time.Second, MaxInFlight: 8,
				Policy: outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true},
			})
			defer t.Close()
			d := &sender.Message{EventID: "evt_01J00000000000000000000000", Source: "/shop/orders",
				Attributes: []byte(`{"comexampletenant":"eu-1","subject":"o-1"}`),
				EventType:  "order.created", CreatedAt: time.Now(), Data: data, DeliveryID: "dlv_0123456789abcdef01234567", Attempt: 1}
			ctx := context.Background()
			parallel(b, 8, func() {
				if out := t.Send(ctx, d); !out.OK() {
					b.Error(out.Err)
				}
			})
		})
	}
}
