package console

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/pkg/wire"
)

// One API server for the package's tests of what the console reads from it.
var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	env, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	return m.Run()
}

// noDispatcher answers for a dispatcher these tests do not run: the pages show its
// refusal where they would show what it knows, and the rest stands.
type noDispatcher struct{}

var errNoDispatcher = errors.New("no dispatcher in this test")

func (noDispatcher) DeadLetters(context.Context, string, string, int) (*wire.DeadLetterList, error) {
	return nil, errNoDispatcher
}
func (noDispatcher) Attempts(context.Context, string, string, string, int) (*wire.AttemptList, error) {
	return nil, errNoDispatcher
}
func (noDispatcher) Event(context.Context, string, string) (*wire.EventHistory, error) {
	return nil, errNoDispatcher
}
func (noDispatcher) Summary(context.Context, string, string, int) (*wire.AttemptSummary, error) {
	return nil, errNoDispatcher
}
func (noDispatcher) Enable(context.Context, string, string) (*wire.EnableResponse, error) {
	return nil, errNoDispatcher
}
func (noDispatcher) ReplayDeadLetters(context.Context, string, string, wire.ReplayRequest) (*wire.ReplayResponse, error) {
	return nil, errNoDispatcher
}
func (noDispatcher) Replay(context.Context, string, string, wire.ReplaySelectionRequest) (*wire.ReplayStarted, error) {
	return nil, errNoDispatcher
}

var liveAttr = regexp.MustCompile(`data-live="([^"]+)"`)

// TestLive_APageGetsWhatChangedOfItsRowsSinceItWasRead: a namespace page's stream
// sends the rows of that page that changed since the page was read from the API server,
// even a change made before the browser opened the stream, and nothing of the
// namespace's other endpoints (a page of 2 of 3 here; of 1,000 of 10,000 in use).
func TestLive_APageGetsWhatChangedOfItsRowsSinceItWasRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ns = "live"
	k8s := namespaceWithEndpoints(ctx, t, ns, "a", "b", "c")
	disable := func(name string) {
		t.Helper()
		var ep heraldv1.WebhookEndpoint
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ep); err != nil {
			t.Fatal(err)
		}
		meta.SetStatusCondition(&ep.Status.Conditions, metav1.Condition{Type: heraldv1.ConditionDisabled, Status: metav1.ConditionTrue,
			Reason: "GoneResponse", Message: "the receiver answered 410 Gone"})
		if err := k8s.Status().Update(ctx, &ep); err != nil {
			t.Fatal(err)
		}
	}

	kc, err := NewKubeCluster(env.Config, ns)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Cluster: kc, Deliveries: noDispatcher{}, Actions: noDispatcher{}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	srv.SetHost(ts.Listener.Addr().String())
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	get := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			raw, _ := io.ReadAll(resp.Body)
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, raw)
		}
		return resp
	}
	get(srv.URL()).Body.Close() // the cookie

	resp := get(ts.URL + "/ns/" + ns + "?limit=2")
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := liveAttr.FindSubmatch(page)
	if m == nil {
		t.Fatalf("the namespace page names no stream:\n%s", page)
	}
	// Changed after the page was read and before its stream opens.
	disable("a")

	stream := get(ts.URL + html.UnescapeString(string(m[1])))
	defer stream.Body.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stream.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// next returns the data of the next patch that carries want.
	next := func(want string) string {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the stream ended before a patch with %q", want)
				}
				if strings.HasPrefix(l, "data: ") && strings.Contains(l, want) {
					return l
				}
			case <-deadline:
				t.Fatalf("no patch with %q within 15s", want)
			}
		}
	}
	if got := next(`"id":"ep-a"`); !strings.Contains(got, "Disabled") || !strings.Contains(got, "the receiver answered 410 Gone") {
		t.Errorf("a's row, changed before the stream opened, should read Disabled and why: %s", got)
	}
	// c is not on the page: its change is not sent; b's is.
	disable("c")
	disable("b")
	if got := next(`"id":"ep-b"`); strings.Contains(got, `"id":"ep-c"`) {
		t.Errorf("the stream sent c, which is not on the page, with b")
	}
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, `"id":"ep-c"`) {
				t.Errorf("the stream sent c, which is not on the page")
			}
		case <-time.After(2 * flushEvery):
			return
		}
	}
}

// namespaceWithEndpoints creates the namespace ns on the test's API server with an
// endpoint of each name (https://<name>.example.com/hooks), and returns a client of it.
func namespaceWithEndpoints(ctx context.Context, t *testing.T, ns string, names ...string) client.Client {
	t.Helper()
	k8s, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: heraldv1.WebhookEndpointSpec{URL: "https://" + name + ".example.com/hooks"}}
		if err := k8s.Create(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	return k8s
}
