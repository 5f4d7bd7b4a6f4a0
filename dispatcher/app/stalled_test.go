package app_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/internal/testenv"
)

// stall opens a connection, sends a request's headers and the start of a chunked body
// that never ends, and returns the status line of the answer and whether the dispatcher
// then closed the connection, or an error when no answer came within 15s.
func stall(addr, ns, token string) (status string, closed bool, err error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return "", false, err
	}
	defer conn.Close()
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := fmt.Fprintf(conn, "POST /v1/namespaces/%s/events HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n%sTransfer-Encoding: chunked\r\n\r\n6\r\n{\"id\":", ns, auth); err != nil {
		return "", false, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", false, fmt.Errorf("no answer: %w", err)
	}
	var buf [64]byte
	for {
		if _, err := resp.Body.Read(buf[:]); err != nil {
			break
		}
	}
	_, err = conn.Read(buf[:]) // EOF once the dispatcher has closed its side
	return resp.Status, err != nil && !isTimeout(err), nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// stallMany runs n stalls at once and counts the answers by status line.
func stallMany(t *testing.T, n int, addr, ns, token string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			status, closed, err := stall(addr, ns, token)
			key := status
			switch {
			case err != nil:
				key = err.Error()
			case !closed:
				key = status + " (connection left open)"
			}
			mu.Lock()
			got[key]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

func goroutinesSettle(t *testing.T, baseline int, what string) int {
	t.Helper()
	var n int
	testenv.Eventually(t, 20*time.Second, func() error {
		if n = runtime.NumGoroutine(); n > baseline+50 {
			return fmt.Errorf("%d goroutines %s, %d before", n, what, baseline)
		}
		return nil
	})
	return n
}

func heapMiB() float64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

// Observed on 907df01: 2,000 unauthenticated connections sending a chunked body that
// never ends took the dispatcher from 383 to 2,388 goroutines and from 61 to 150 MiB,
// all still open after 130s: a refusal drained the body before answering. Now a refusal
// is answered at once without reading the body and the connection closed; an
// authenticated body that never ends gets 408 after the body timeout; beyond the
// concurrency cap a request gets 429 at once.
func TestDispatcher_StalledIngestConnectionsAreBounded(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "stalled"
	s := newSink(t)
	fixture(t, c, ns, "ep", heraldv1.WebhookEndpointSpec{URL: s.URL})
	const limit, timeout = 32, 2 * time.Second
	d := startDispatcherWith(t, func(o *app.Options) {
		o.Config.Ingest.MaxConcurrent, o.Config.Ingest.BodyTimeout = limit, timeout
	})
	d.publish(ns, "evt_first", "x") // the API key is known from here on
	u, _ := url.Parse(d.url)
	runtime.GC()
	baseline, heapBefore := runtime.NumGoroutine(), heapMiB()

	start := time.Now()
	got := stallMany(t, 2000, u.Host, ns, "")
	if got["401 Unauthorized"] != 2000 {
		t.Errorf("2,000 unauthenticated stalled bodies: %v; want every one 401 at once, connection closed", got)
	}
	t.Logf("2,000 unauthenticated stalled bodies answered in %s", time.Since(start).Round(time.Millisecond))
	after := goroutinesSettle(t, baseline, "after 2,000 refused stalled connections")
	runtime.GC()
	t.Logf("goroutines %d before, %d after; heap in use %.1f MiB before, %.1f MiB after", baseline, after, heapBefore, heapMiB())

	// Authenticated: up to the cap wait for their bodies until the timeout (408), the
	// rest are refused at once (429), every connection is closed.
	start = time.Now()
	got = stallMany(t, 200, u.Host, ns, apiKey(t, ns))
	elapsed := time.Since(start)
	timedOut, refused := got["408 Request Timeout"], got["429 Too Many Requests"]
	if timedOut+refused != 200 || timedOut > limit || timedOut == 0 {
		t.Errorf("200 authenticated stalled bodies with a cap of %d: %v; want at most %d 408s, the rest 429, every connection closed", limit, got, limit)
	}
	if elapsed < timeout {
		t.Errorf("the stalled bodies were answered after %s, before the body timeout of %s", elapsed, timeout)
	}
	t.Logf("200 authenticated stalled bodies: %d timed out (408) after %s, %d refused (429)", timedOut, elapsed.Round(time.Millisecond), refused)
	goroutinesSettle(t, baseline, "after 200 stalled authenticated bodies")

	// And the API still serves.
	d.publish(ns, "evt_last", "x")
	s.waitEvent(t, "evt_last", 30*time.Second)
	if strings.Contains(fmt.Sprint(got), "left open") {
		t.Error("a connection was left open")
	}
}
