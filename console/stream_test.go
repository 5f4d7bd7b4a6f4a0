package console

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// breakingCluster reads the API server and ends a list with an error after its first
// `after` endpoints (0: never), as a connection that breaks would.
type breakingCluster struct {
	*KubeCluster
	after int
}

func (c breakingCluster) Endpoints(ctx context.Context, ns string, p Page) (*heraldv1.WebhookEndpointList, error) {
	if c.after > 0 && p.Each != nil {
		each, n := p.Each, 0
		p.Each = func(ep *heraldv1.WebhookEndpoint) error {
			if n == c.after {
				return errors.New("the connection to the API server broke")
			}
			n++
			return each(ep)
		}
	}
	return c.KubeCluster.Endpoints(ctx, ns, p)
}

// TestNamespacePage_RowsAsTheListArrives: the namespace page sends its rows as the API
// server's list arrives, and the page around them is whole: its stream's range (the
// first and the last name) at the end; a list that breaks off ends the table with why
// and no live updates (they would leave the missing rows missing).
func TestNamespacePage_RowsAsTheListArrives(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ns = "streamed"
	namespaceWithEndpoints(ctx, t, ns, "a", "b", "c")
	kc, err := NewKubeCluster(env.Config, ns)
	if err != nil {
		t.Fatal(err)
	}
	page := func(after int) string {
		t.Helper()
		srv, err := New(Options{Cluster: breakingCluster{kc, after}, Deliveries: noDispatcher{}, Actions: noDispatcher{}})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv.Handler())
		defer ts.Close()
		srv.SetHost(ts.Listener.Addr().String())
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
		for _, u := range []string{srv.URL(), ts.URL + "/ns/" + ns} {
			resp, err := hc.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s\n%s", u, resp.Status, raw)
			}
			if u != srv.URL() {
				return string(raw)
			}
		}
		return ""
	}

	whole := page(0)
	for _, want := range []string{`<tr id="ep-a">`, `<tr id="ep-b">`, `<tr id="ep-c">`, "from=a&amp;", "to=c", "No WebhookSubscriptions.", "</html>"} {
		if !strings.Contains(whole, want) {
			t.Errorf("the page lacks %q:\n%s", want, whole)
		}
	}
	if strings.Contains(whole, rowsMark) || strings.Contains(whole, "broke off") {
		t.Errorf("the page shows its rows' mark or a broken list:\n%s", whole)
	}

	broken := page(2)
	for _, want := range []string{`<tr id="ep-a">`, `<tr id="ep-b">`, "The list of endpoints broke off after 2: ", "the connection to the API server broke", "Reload the page for the latest.", "</html>"} {
		if !strings.Contains(broken, want) {
			t.Errorf("the page of a broken list lacks %q:\n%s", want, broken)
		}
	}
	if strings.Contains(broken, `<tr id="ep-c">`) || strings.Contains(broken, "data-live") {
		t.Errorf("the page of a broken list shows c or follows live updates:\n%s", broken)
	}
}
