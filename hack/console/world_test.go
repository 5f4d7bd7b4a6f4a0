package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/hack/framework"
	"github.com/herald-dev/herald/internal/testenv"
)

const ns = "shop"

// world is Herald running on a real API server, with a namespace of endpoints and the
// identities the console is opened as.
type world struct {
	*framework.Run
	t          testing.TB
	dispatcher *framework.Component
}

// newWorld installs the chart, runs the dispatcher (and, with manager, the manager) and
// creates the namespace.
func newWorld(t testing.TB, manager bool) *world {
	t.Helper()
	w := &world{Run: framework.NewRun(t, framework.RunInput{Name: "console"}), t: t}
	w.InstallCRDsAndChart(t, framework.ChartInput{})
	policy := []string{"--allow-plain-http", "--allow-loopback"}
	var m *framework.Component
	if manager {
		m = w.StartManager(t, framework.ManagerInput{Args: policy, NoWait: true})
	}
	w.dispatcher = w.StartDispatcher(t, framework.DispatcherInput{Args: append(policy, "--status-interval=500ms"), NoWait: true})
	if m != nil {
		w.WaitReady(t, m, 90*time.Second)
	}
	w.WaitReady(t, w.dispatcher, 90*time.Second)
	w.Kubectl("create", "namespace", ns).Must(t)
	return w
}

// identity is a ServiceAccount of the namespace bound to one of the chart's
// ClusterRoles, allowed to mint tokens of itself (what the CLI, and so the console,
// sends the dispatcher), with a kubeconfig of its own.
func (w *world) identity(name, clusterRole string) string {
	t := w.t
	t.Helper()
	w.Kubectl("create", "serviceaccount", name, "-n", ns).Must(t)
	w.Kubectl("create", "rolebinding", name+"-"+clusterRole, "-n", ns, "--clusterrole="+clusterRole, "--serviceaccount="+ns+":"+name).Must(t)
	w.Kubectl("create", "role", name+"-herald-token", "-n", ns, "--verb=create", "--resource=serviceaccounts/token", "--resource-name="+name).Must(t)
	w.Kubectl("create", "rolebinding", name+"-herald-token", "-n", ns, "--role="+name+"-herald-token", "--serviceaccount="+ns+":"+name).Must(t)
	return w.ServiceAccountKubeconfig(t, ns, name)
}

var consoleURL = regexp.MustCompile(`http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]+`)

// startConsole runs `herald console` as the kubeconfig's user and returns the address
// it printed.
func (w *world) startConsole(name, kubeconfig string, extra ...string) string {
	t := w.t
	t.Helper()
	args := append([]string{"console", "--kubeconfig", kubeconfig, "-n", ns, "--open=false", "--server", w.dispatcher.IngestURL()}, extra...)
	p := w.Start(framework.StartInput{Name: name, Binary: w.HeraldBin, Args: args})
	var url string
	w.Eventually(t, 30*time.Second, "herald console prints its address", framework.Bool(func() bool {
		url = consoleURL.FindString(p.Output())
		return url != ""
	}))
	return url
}

// endpoint creates a WebhookEndpoint as the cluster admin.
func (w *world) endpoint(ep *heraldv1.WebhookEndpoint) {
	w.t.Helper()
	ep.Namespace = ns
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Cluster.Client.Create(ctx, ep); err != nil {
		w.t.Fatalf("creating WebhookEndpoint %s: %v", ep.Name, err)
	}
}

func (w *world) subscription(name, endpoint, filter string, types ...string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := &heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: heraldv1.WebhookSubscriptionSpec{EndpointRef: heraldv1.LocalObjectReference{Name: endpoint}, EventTypes: types, Filter: filter}}
	if err := w.Cluster.Client.Create(ctx, sub); err != nil {
		w.t.Fatalf("creating WebhookSubscription %s: %v", name, err)
	}
}

// signingSecret waits for the Secret the manager generates for an endpoint.
func (w *world) signingSecret(endpoint string) string {
	w.t.Helper()
	var secret string
	w.Eventually(w.t, 60*time.Second, "the signing Secret of "+endpoint, framework.Bool(func() bool {
		var s corev1.Secret
		err := w.Cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: endpoint + "-signing"}, &s)
		secret = string(s.Data["secret"])
		return err == nil && secret != ""
	}))
	return secret
}

// publish sends an event with a producer's token until the dispatcher routes it to
// wantMatched endpoints (it learns of endpoints and subscriptions a moment after they
// are created), and returns the id that was: id, or id-tryN. Earlier tries go where
// they matched.
func (w *world) publish(token, id, typ, data string, wantMatched int) string {
	w.t.Helper()
	try := 0
	routed := ""
	w.Eventually(w.t, 30*time.Second, fmt.Sprintf("event %s routed to %d endpoints", id, wantMatched), func() error {
		try++
		eid := id
		if try > 1 {
			eid = fmt.Sprintf("%s-try%d", id, try)
		}
		body := fmt.Sprintf(`{"id":%q,"type":%q,"data":%s}`, eid, typ, data)
		req, _ := http.NewRequest(http.MethodPost, w.dispatcher.IngestURL()+"/v1/namespaces/"+ns+"/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var res struct {
			Matched int `json:"matched"`
		}
		var raw bytes.Buffer
		_, _ = raw.ReadFrom(resp.Body)
		_ = json.Unmarshal(raw.Bytes(), &res)
		if resp.StatusCode != http.StatusAccepted || res.Matched != wantMatched {
			return fmt.Errorf("%s: %s", resp.Status, raw.String())
		}
		routed = eid
		return nil
	})
	return routed
}

// producerToken is a token for Herald's audience of a publisher ServiceAccount.
func (w *world) producerToken() string {
	w.t.Helper()
	w.Kubectl("create", "serviceaccount", "producer", "-n", ns).Must(w.t)
	w.Kubectl("create", "rolebinding", "producer-herald-publisher", "-n", ns, "--clusterrole=herald-publisher", "--serviceaccount="+ns+":producer").Must(w.t)
	return w.Cluster.Token(w.t, framework.TokenInput{Namespace: ns, ServiceAccount: "producer", Audiences: []string{auth.Audience}})
}

func schedule(d ...string) heraldv1.RetrySpec { return heraldv1.RetrySpec{Schedule: d} }

func failures(n int32) heraldv1.AutoDisableSpec {
	return heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To(n)}
}

// browser is a headless Chromium driven through chromedp, with the flags that work on
// the build machines (no sandbox as root, no GPU, no network of its own) and a fresh
// profile.
type browser struct {
	t     testing.TB
	ctx   context.Context
	shots string
}

// chromium finds Debian's Chromium; without it the test skips loudly, or fails under
// CI (which installs it: .ci/debian-packages).
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Unavailable(t, "the console's browser tests (hack/console)", "no Chromium on PATH: apt-get install chromium")
	return ""
}

func newBrowser(t testing.TB) *browser {
	t.Helper()
	exe := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		// No crash reporter: it would outlive the browser.
		chromedp.Flag("disable-breakpad", true), chromedp.Flag("disable-crash-reporter", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start the browser on this context: the first action's context owns the tab, and
	// the later ones have timeouts of their own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	dir := os.Getenv("HERALD_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "herald-test-artifacts")
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ctx: ctx, shots: dir}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage text:\n%s", what, err, b.pageText())
	}
}

// eval runs JavaScript in the page and returns its value.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// pageText is what a person reads on the page.
func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// html is the page's markup as the browser holds it now.
func (b *browser) html() string {
	return eval[string](b, "document.documentElement.outerHTML")
}

// waitText waits until the element of the CSS selector reads substr, without touching
// the page.
func (b *browser) waitText(sel, substr string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	js := fmt.Sprintf(`(function(){var e=document.querySelector(%q);return e?e.innerText:""})()`, sel)
	last := ""
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		last, _ = chromedp.Run(ctx, chromedp.Evaluate[string](js))
		cancel()
		if strings.Contains(last, substr) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.t.Fatalf("%s never read %q within %s; it reads:\n%s\npage:\n%s", sel, substr, within, last, b.pageText())
}

// shot saves a screenshot of the whole page as name.png in the artifacts folder.
func (b *browser) shot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s (%d KiB)", path, len(png)/1024)
	return path
}
