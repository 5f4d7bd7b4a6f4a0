package app_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/config"
)

// BenchmarkDispatcher_IdleEndpoints is the whole dispatcher (informers, resolver,
// engine, store) with many WebhookEndpoints that receive nothing, each with its own
// signing Secret and a subscription to an event type of its own, on a real API server:
// what the objects cost once the dispatcher serves them (Go heap after GC per endpoint;
// bench scenario f gives the process's RSS without the API side), and how long a
// dispatcher restarted on the same store takes until it serves them. Endpoints: 1,000,
// or HERALD_SCALE_ENDPOINTS.
func BenchmarkDispatcher_IdleEndpoints(b *testing.B) {
	n := 1000
	if testenv.Race {
		// make test-race runs every benchmark once to keep it working, and under the race
		// detector its figures mean nothing (shadow memory, 5-10x the CPU): a tenth of
		// the objects exercises the same path in a tenth of the time.
		n = 100
	}
	if v, err := strconv.Atoi(os.Getenv("HERALD_SCALE_ENDPOINTS")); err == nil && v > 0 {
		n = v
	}
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		b.Fatal(err)
	}
	ns := fmt.Sprintf("scale-%d", time.Now().UnixNano()%1_000_000)
	s := newSink(b)
	mustCreate(b, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	store := config.Store{DataDir: b.TempDir()}
	// Endpoints served for the measurement go idle again within a second.
	quiet := func(o *app.Options) {
		o.Config.Store, o.Log, o.Config.Status.Interval, o.IdleAfter = store, logr.Discard(), 5*time.Second, 500*time.Millisecond
	}

	d := startDispatcherWith(b, quiet)
	h0, g0 := heapAfterGC()
	created := time.Now()
	createEndpoints(b, c, ns, s.URL, n)
	b.Logf("%d endpoints, Secrets and subscriptions created in %s", n, time.Since(created).Round(time.Millisecond))
	servesAll(b, d, s, ns, n, "first")
	time.Sleep(2 * time.Second) // the sampled endpoints idle again
	h1, g1 := heapAfterGC()
	b.ReportMetric(float64(h1-h0)/float64(n), "heap-B/endpoint")
	b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/endpoint")

	// A restart on the same store: from the start of the process's dispatcher to the
	// sampled endpoints served.
	d.stop()
	start := time.Now()
	d = startDispatcherWith(b, quiet)
	servesAll(b, d, s, ns, n, "restart")
	b.ReportMetric(time.Since(start).Seconds(), "restart-s")
	b.ReportMetric(float64(n), "endpoints")
}

func heapAfterGC() (heap uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, runtime.NumGoroutine()
}

// createEndpoints creates n endpoints "ep-<i>" with their Secrets and subscriptions to
// the event type "scale.ep-<i>", eight at a time.
func createEndpoints(b *testing.B, c client.Client, ns, url string, n int) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				name := fmt.Sprintf("ep-%d", i)
				for _, o := range []client.Object{
					&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-signing", Namespace: ns}, StringData: map[string]string{"secret": secretV1}},
					&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: heraldv1.WebhookEndpointSpec{URL: url}},
					&heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: heraldv1.WebhookSubscriptionSpec{
						EndpointRef: heraldv1.LocalObjectReference{Name: name}, EventTypes: []string{"scale." + name},
					}},
				} {
					if err := c.Create(context.Background(), o); err != nil {
						select {
						case errs <- fmt.Errorf("creating %T %s: %w", o, o.GetName(), err):
						default:
						}
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// servesAll publishes one event to each of 20 endpoints spread over the n, the last
// created among them, and waits until all arrived.
func servesAll(b *testing.B, d *dispatcher, s *sink, ns string, n int, round string) {
	step := max(1, n/20)
	var ids []string
	for i := step - 1; i < n; i += step {
		id := fmt.Sprintf("evt_%s_%d", round, i)
		// The dispatcher may not know the endpoint yet: matched 0 is not an error for
		// ingest, so publish again until it routes.
		deadline := time.Now().Add(2 * time.Minute)
		for d.publish(ns, id, fmt.Sprintf("scale.ep-%d", i)) == 0 {
			if time.Now().After(deadline) {
				b.Fatalf("endpoint ep-%d not routed to within 2m", i)
			}
			id += "r"
			time.Sleep(50 * time.Millisecond)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		s.waitEvent(b, id, 2*time.Minute)
	}
}
