package app_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// A flood of dead letters is summed up in Events rather than dropped: every dead letter
// is either named in its own DeliveryFailed Event or counted in an aggregate one, and the
// status counter is exact.
func TestDispatcher_DeadLetterFloodIsAggregatedNotLost(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "flood"
	var healthy atomic.Bool
	var requests atomic.Int64
	s := newSink(t)
	s.Config.Handler = wrapFailing(s.Config.Handler, &healthy, &requests)
	fixture(t, c, ns, "down", heraldv1.WebhookEndpointSpec{
		URL: s.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"10ms"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](0)},
	})
	d := startDispatcher(t)
	const n = 30
	for i := range n {
		d.publish(ns, fmt.Sprintf("evt_flood_%02d", i), "x")
	}
	waitEndpoint(t, c, ns, "down", "every dead letter counted", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.Counters != nil && e.Status.Counters.DeadLettered == n
	})
	aggregate := regexp.MustCompile(`^(\d+) more deliveries dead-lettered`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list eventsv1.EventList
		if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		named, summed, individual := map[string]bool{}, 0, 0
		for _, e := range list.Items {
			if e.Reason != "DeliveryFailed" {
				continue
			}
			if m := aggregate.FindStringSubmatch(e.Note); m != nil {
				k, _ := strconv.Atoi(m[1])
				count := int32(1)
				if e.Series != nil {
					count = e.Series.Count
				}
				summed += k * int(count)
				continue
			}
			individual++
			for i := range n {
				if id := fmt.Sprintf("evt_flood_%02d", i); strings.Contains(e.Note, id) {
					named[id] = true
				}
			}
		}
		if len(named)+summed == n {
			if individual >= n {
				t.Fatalf("%d individual DeliveryFailed Events for %d dead letters: not aggregated", individual, n)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Events name %d dead letters and aggregate %d, want %d in all", len(named), summed, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
