package framework

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/herald-dev/herald/pkg/client"
)

// ChartNamespace is where the suites install the chart.
const ChartNamespace = "herald-system"

// ChartInput configures InstallCRDsAndChart.
type ChartInput struct {
	// Namespace of the release (default ChartNamespace).
	Namespace string
	// CRDFieldManager and ChartFieldManager are the server-side apply field managers of
	// the CRDs and of the chart's objects (default kubectl's own), as a person and Helm
	// or Argo CD would each have their own.
	CRDFieldManager, ChartFieldManager string
	// Set are `helm template --set` values.
	Set []string
}

// Chart is what InstallCRDsAndChart applied.
type Chart struct {
	// Path is the rendered chart as applied; Rendered its content.
	Path, Rendered string
	// CRDsApplied and ChartApplied are kubectl's answers.
	CRDsApplied, ChartApplied string
}

// InstallCRDsAndChart applies config/crd/bases and waits for the CRDs to be
// established, then renders charts/herald with `helm template` and applies it with
// `kubectl apply --server-side`: the chart's RBAC (the user ClusterRoles
// herald-publisher and herald-operator, the manager's and the dispatcher's rules) and
// everything else it holds. Nothing runs the chart's Deployment (envtest has no
// kubelet); suites run the binaries as processes under its ServiceAccounts.
func (r *Run) InstallCRDsAndChart(t testing.TB, in ChartInput) Chart {
	t.Helper()
	ns := in.Namespace
	if ns == "" {
		ns = ChartNamespace
	}
	var out Chart
	crds := filepath.Join(RepoRoot, "config", "crd", "bases")
	out.CRDsApplied = r.Kubectl(withFieldManager([]string{"apply", "--server-side", "-f", crds}, in.CRDFieldManager)...).Must(t)
	r.Kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds).Must(t)
	r.Kubectl("create", "namespace", ns).Must(t)
	args := []string{"template", "herald", filepath.Join(RepoRoot, "charts", "herald"), "--namespace", ns}
	for _, s := range in.Set {
		args = append(args, "--set", s)
	}
	out.Rendered = r.Helm(args...).Must(t)
	out.Path = filepath.Join(r.Dir, "chart.yaml")
	if err := os.WriteFile(out.Path, []byte(out.Rendered), 0o600); err != nil {
		t.Fatal(err)
	}
	out.ChartApplied = r.Kubectl(withFieldManager([]string{"apply", "--server-side", "-f", out.Path}, in.ChartFieldManager)...).Must(t)
	return out
}

func withFieldManager(args []string, fm string) []string {
	if fm == "" {
		return args
	}
	return append(args, "--field-manager="+fm)
}

// ServiceAccountKubeconfig writes a kubeconfig whose user is a token of a
// ServiceAccount, the way a Pod reaches the API server.
func (r *Run) ServiceAccountKubeconfig(t testing.TB, namespace, sa string) string {
	t.Helper()
	token := r.Cluster.Token(t, TokenInput{Namespace: namespace, ServiceAccount: sa, Duration: 6 * time.Hour})
	return r.Cluster.KubeconfigForToken(t, r.Dir, sa, token)
}

// EnsureServiceAccount creates a ServiceAccount unless it exists.
func (r *Run) EnsureServiceAccount(t testing.TB, namespace, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.Cluster.Clientset.CoreV1().ServiceAccounts(namespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating ServiceAccount %s/%s: %v", namespace, name, err)
	}
}

// Component is a running herald manager or dispatcher and its addresses (host:port).
type Component struct {
	*Process
	Health, Metrics, Ingest string
	// Kubeconfig is the ServiceAccount's it runs with.
	Kubeconfig string
}

// IngestURL is the dispatcher's ingest (and endpoint API) base URL.
func (c *Component) IngestURL() string { return "http://" + c.Ingest }

// Client is the Go client of the dispatcher's HTTP APIs (pkg/client), what producers and
// tools use, sending token. It does not retry, so that a suite sees every answer.
func (c *Component) Client(t testing.TB, token string) *client.Client {
	t.Helper()
	cl, err := client.New(c.IngestURL(), client.Options{Token: token, Retry: client.Retry{Attempts: 1}, UserAgent: "herald-suite"})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// ManagerInput configures StartManager.
type ManagerInput struct {
	// Namespace of the chart (default ChartNamespace).
	Namespace string
	// Args are flags beside the addresses, such as the outbound policy's.
	Args []string
	// NoWait returns without waiting for /readyz (WaitReady waits).
	NoWait bool
}

// StartManager runs `herald manager` as the chart's ServiceAccount herald-manager,
// without managing the dispatcher workload (the dispatcher is a process here), and
// waits until it is ready.
func (r *Run) StartManager(t testing.TB, in ManagerInput) *Component {
	t.Helper()
	ns := in.Namespace
	if ns == "" {
		ns = ChartNamespace
	}
	c := &Component{Health: FreeAddr(t), Kubeconfig: r.ServiceAccountKubeconfig(t, ns, "herald-manager")}
	args := append([]string{"manager", "--manage-dispatcher=false", "--metrics-bind-address=0", "--health-probe-bind-address=" + c.Health}, in.Args...)
	c.Process = r.Start(StartInput{Name: "manager", Binary: r.HeraldBin, Args: args, Env: []string{"KUBECONFIG=" + c.Kubeconfig}})
	if !in.NoWait {
		r.WaitReady(t, c, 90*time.Second)
	}
	return c
}

// DispatcherInput configures StartDispatcher.
type DispatcherInput struct {
	// Name of the process (default "dispatcher").
	Name string
	// Namespace of the chart (default ChartNamespace).
	Namespace string
	// Ingest, Health and Metrics addresses; free ones when empty. A replica restarted
	// keeps its addresses, as a pod does.
	Ingest, Health, Metrics string
	// Kubeconfig to run with; the chart's ServiceAccount herald-dispatcher when empty.
	Kubeconfig string
	// Args are flags beside the addresses (the store, the outbound policy, intervals).
	// Without --nats-url, --data-dir is set to a folder of the run.
	Args []string
	// NoWait returns without waiting for /readyz.
	NoWait bool
}

// StartDispatcher runs `herald dispatcher` as the chart's ServiceAccount
// herald-dispatcher (created here, as the manager would with the workload) and waits
// until it is ready.
func (r *Run) StartDispatcher(t testing.TB, in DispatcherInput) *Component {
	t.Helper()
	ns := in.Namespace
	if ns == "" {
		ns = ChartNamespace
	}
	name := in.Name
	if name == "" {
		name = "dispatcher"
	}
	c := &Component{Ingest: in.Ingest, Health: in.Health, Metrics: in.Metrics, Kubeconfig: in.Kubeconfig}
	for _, a := range []*string{&c.Ingest, &c.Health, &c.Metrics} {
		if *a == "" {
			*a = FreeAddr(t)
		}
	}
	if c.Kubeconfig == "" {
		r.EnsureServiceAccount(t, ns, "herald-dispatcher")
		c.Kubeconfig = r.ServiceAccountKubeconfig(t, ns, "herald-dispatcher")
	}
	args := []string{"dispatcher", "--ingest-bind-address=" + c.Ingest, "--metrics-bind-address=" + c.Metrics, "--health-probe-bind-address=" + c.Health}
	if !hasFlag(in.Args, "--nats-url") && !hasFlag(in.Args, "--data-dir") {
		args = append(args, "--data-dir="+filepath.Join(r.Dir, name+"-store"))
	}
	args = append(args, in.Args...)
	c.Process = r.Start(StartInput{Name: name, Binary: r.HeraldBin, Args: args, Env: []string{"KUBECONFIG=" + c.Kubeconfig}})
	if !in.NoWait {
		r.WaitReady(t, c, 2*time.Minute)
	}
	return c
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// WaitReady waits for a component's /readyz to answer 200.
func (r *Run) WaitReady(t testing.TB, c *Component, within time.Duration) {
	t.Helper()
	r.Eventually(t, within, "herald "+c.Name+" /readyz", Bool(func() bool { return Ready(c.Health) }))
}

// Ready reports whether the /readyz at addr (host:port) answers 200.
func Ready(addr string) bool {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
