package console

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/scheme"
)

// BenchmarkConsole_NamespacePage times a namespace page in Chromium, from the
// navigation to a frame drawn with the last row (rendered-ms, the page's own clock): the
// console asks the dispatcher for the namespace's attempt summary and lists the page
// from the API server, sending each row as the list arrives, and the browser lays the
// rows out as they come. It also reports the renderer's CPU time for the page
// (renderer-cpu-ms), and where the wall-clock time of the last load went (first-byte-ms
// and server-ms: the console's answer from the request to its first and its last byte;
// browser-ms: after it; first-paint-ms: the first frame with content, from the
// navigation). endpoints=1000 is the page the issue
// asks to render within a second; endpoints=10, measured in the same run, is the
// baseline the README compares it with. The endpoints carry a status as the dispatcher
// writes it (conditions, counters, a last attempt), so every cell of a row is filled.
func BenchmarkConsole_NamespacePage(b *testing.B) {
	br := newBrowser(b)
	w := newWorld(b, false)
	url := w.startConsole("console-bench", w.identity("ops", "herald-operator"), "--page-size=1000")
	base := strings.Split(url, "?")[0]
	br.do("open the console", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("h1")))
	for _, n := range []int{10, 1000} {
		space := fmt.Sprintf("bench-%d", n)
		w.Kubectl("create", "namespace", space).Must(b)
		w.Kubectl("create", "rolebinding", "ops-herald-operator", "-n", space, "--clusterrole=herald-operator", "--serviceaccount="+ns+":ops").Must(b)
		createEndpoints(b, w, space, n)
		waitStatusWritten(b, w, space, n)
		last := fmt.Sprintf("#ep-ep-%04d", n-1)
		page := base + "ns/" + space + "?limit=1000"
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			// Rendered: the page loaded (the navigation waits for its load event) and a frame
			// drawn after it, with the last row in the document. The time is the page's own
			// clock from the navigation's start, so it leaves out how long chromedp takes to
			// ask (it follows every DOM node of a page it queries with CSS selectors).
			rendered := fmt.Sprintf(`new Promise(function(done){requestAnimationFrame(function(){requestAnimationFrame(function(){done(document.querySelector(%q) ? performance.now() : -1)})})})`, last)
			var sum float64
			cpu := map[string]float64{}
			for b.Loop() {
				before := rendererCPU(b, br)
				br.do("load the page", chromedp.Navigate(page))
				ctx, cancel := context.WithTimeout(br.ctx, 30*time.Second)
				ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](rendered, chromedp.EvalAwaitPromise))
				cancel()
				if err != nil || ms < 0 {
					b.Fatalf("the page of %d endpoints did not render its last row %s: %v\n%s", n, last, err, br.pageText())
				}
				sum += ms
				after := rendererCPU(b, br)
				for k, v := range after {
					if v < before[k] { // a new renderer process for the page
						before = nil
					}
				}
				for k, v := range after {
					cpu[k] += v - before[k]
				}
			}
			b.StopTimer()
			b.ReportMetric(sum/float64(b.N), "rendered-ms")
			b.ReportMetric(cpu["TaskDuration"]/float64(b.N), "renderer-cpu-ms")
			b.ReportMetric(cpu["RecalcStyleDuration"]/float64(b.N), "style-cpu-ms")
			b.ReportMetric(cpu["LayoutDuration"]/float64(b.N), "layout-cpu-ms")
			// Where the last load's time went: the console's answer (API server, dispatcher,
			// rendering) and the browser's work after it.
			// Where the last load's time went: the console's answer, from the request to its
			// first byte (the API server's first endpoints read, the chart) and to its last
			// (the rows are sent as the list arrives, while the browser parses those before
			// them), and the browser's work after it.
			timing := eval[map[string]float64](br, `(function(){var t=performance.getEntriesByType("navigation")[0];var o={first: t.responseStart - t.requestStart, server: t.responseEnd - t.requestStart, browser: t.domComplete - t.responseEnd, kb: t.encodedBodySize/1024};performance.getEntriesByType("paint").forEach(function(p){if(p.name=="first-contentful-paint")o.paint=p.startTime});return o})()`)
			b.ReportMetric(timing["paint"], "first-paint-ms")
			b.ReportMetric(timing["first"], "first-byte-ms")
			b.ReportMetric(timing["server"], "server-ms")
			b.ReportMetric(timing["browser"], "browser-ms")
			b.ReportMetric(timing["kb"], "html-KiB")
			if rows := eval[float64](br, `document.querySelectorAll("table.endpoints tbody tr").length`); int(rows) != n {
				b.Fatalf("the page lists %v rows, want %d", rows, n)
			}
		})
	}
}

// rendererCPU is the CPU time the page's renderer has spent on its main thread's tasks
// (TaskDuration: parsing, style, layout, script; RecalcStyleDuration and
// LayoutDuration of it), in ms: on a machine shared with other work it varies far less
// than the wall-clock figures.
func rendererCPU(b *testing.B, br *browser) map[string]float64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(br.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (map[string]float64, error) {
		if _, err := cdp.Call(ctx, t, performance.Enable, performance.EnableParams{TimeDomain: performance.EnableTimeDomainThreadTicks}); err != nil {
			return nil, err
		}
		m, err := cdp.Call(ctx, t, performance.GetMetrics, cdp.Empty{})
		if err != nil {
			return nil, err
		}
		out := map[string]float64{}
		for _, x := range m.Metrics {
			switch x.Name {
			case "TaskDuration", "RecalcStyleDuration", "LayoutDuration":
				out[x.Name] = x.Value * 1000
			}
		}
		if len(out) != 3 {
			return nil, fmt.Errorf("the renderer's metrics lack some of TaskDuration, RecalcStyleDuration, LayoutDuration: %v", out)
		}
		return out, nil
	})
	if err != nil {
		b.Fatalf("reading the renderer's CPU time: %v", err)
	}
	return v
}

// waitStatusWritten waits until the dispatcher has written the status of the n
// endpoints of space (it writes those it learns of at its client's pace, some 20 a
// second) and no endpoint has changed for 2 s: the page is then measured alone, not
// with the API server busy writing and the page's live stream re-sending rows.
func waitStatusWritten(b *testing.B, w *world, space string, n int) {
	b.Helper()
	start := time.Now()
	last, since := "", time.Now()
	w.Eventually(b, 3*time.Minute, fmt.Sprintf("the dispatcher's status on the %d endpoints of %s, unchanged for 2 s", n, space), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var l heraldv1.WebhookEndpointList
		if err := w.Cluster.Client.List(ctx, &l, client.InNamespace(space)); err != nil {
			return err
		}
		written, newest := 0, ""
		for i := range l.Items {
			if l.Items[i].Status.State != "" {
				written++
			}
			if rv := l.Items[i].ResourceVersion; len(rv) > len(newest) || (len(rv) == len(newest) && rv > newest) {
				newest = rv
			}
		}
		if newest != last {
			last, since = newest, time.Now()
		}
		if written < n || time.Since(since) < 2*time.Second {
			return fmt.Errorf("%d of %d written, the last change %s ago", written, n, time.Since(since).Round(time.Second))
		}
		return nil
	})
	b.Logf("the dispatcher wrote the status of the %d endpoints of %s within %s", n, space, time.Since(start).Round(time.Second))
}

// createEndpoints creates n endpoints in space with a status, 8 at a time.
func createEndpoints(b *testing.B, w *world, space string, n int) {
	b.Helper()
	start := time.Now()
	// The admin's client is throttled as client-go's default (5 requests a second).
	cfg := rest.CopyConfig(w.Cluster.Config)
	cfg.QPS, cfg.Burst = 500, 500
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	now := metav1.NewTime(time.Now().Add(-time.Minute))
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ep-%04d", i), Namespace: space},
				Spec: heraldv1.WebhookEndpointSpec{URL: fmt.Sprintf("https://receiver-%04d.example.com/hooks", i)}}
			if err := c.Create(ctx, ep); err != nil {
				errs <- err
				return
			}
			ep.Status = heraldv1.WebhookEndpointStatus{
				Counters:    &heraldv1.DeliveryCounters{Delivered: int64(1000 + i), FailedAttempts: int64(i % 7), DeadLettered: int64(i % 3)},
				LastAttempt: &heraldv1.DeliveryAttempt{Time: now, EventID: fmt.Sprintf("evt_%d", i), StatusCode: 204, LatencyMilliseconds: 12},
			}
			for _, c := range []string{heraldv1.ConditionReady, heraldv1.ConditionDelivering} {
				meta.SetStatusCondition(&ep.Status.Conditions, metav1.Condition{Type: c, Status: metav1.ConditionTrue, Reason: c, Message: "ok"})
			}
			meta.SetStatusCondition(&ep.Status.Conditions, metav1.Condition{Type: heraldv1.ConditionDisabled, Status: metav1.ConditionFalse, Reason: heraldv1.ReasonEnabled, Message: "enabled"})
			// A merge patch: the dispatcher writes the status of the endpoints it learns
			// of meanwhile.
			raw, err := json.Marshal(map[string]any{"status": ep.Status})
			if err != nil {
				errs <- err
				return
			}
			if err := c.Status().Patch(ctx, ep, client.RawPatch(types.MergePatchType, raw)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("creating endpoints in %s: %v", space, err)
	}
	b.Logf("created %d endpoints with their status in %s", n, time.Since(start).Round(100*time.Millisecond))
}
