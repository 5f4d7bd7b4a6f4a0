package console

import (
	"fmt"
	"io"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// BenchmarkRender_NamespacePage renders the namespace page's rows alone (no API server,
// no browser): the console's own share of BenchmarkConsole_NamespacePage in
// hack/console.
func BenchmarkRender_NamespacePage(b *testing.B) {
	p, err := parsePages(time.Now)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 1000} {
		page := namespacePage{base: base{Title: "bench"}, Namespace: "bench", Limit: 1000}
		for i := range n {
			ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ep-%04d", i), Namespace: "bench"},
				Spec: heraldv1.WebhookEndpointSpec{URL: "https://example.com/hooks"},
				Status: heraldv1.WebhookEndpointStatus{Counters: &heraldv1.DeliveryCounters{Delivered: 1000},
					LastAttempt: &heraldv1.DeliveryAttempt{Time: metav1.Now(), StatusCode: 204}}}
			page.Endpoints = append(page.Endpoints, viewOf(ep))
		}
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			for b.Loop() {
				if err := p.byName["namespace"].ExecuteTemplate(io.Discard, "layout", page); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
