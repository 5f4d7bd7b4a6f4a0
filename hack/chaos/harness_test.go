package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/hack/framework"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/herald-dev/herald/internal/scheme"
	"github.com/herald-dev/herald/internal/testenv"
)

var repoRoot = testenv.RepoRoot()

const chartNS = "herald-system"

// harness holds the tools and processes of one run.
type harness struct {
	t          *testing.T
	dir        string
	herald     string
	kubectl    string
	helm       string
	kubeconfig string
	env        []string
	kube       client.Client // the cluster admin, straight to the API server

	mu    sync.Mutex
	procs []*proc
}

// proc is a child process in a process group of its own.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
	// expected is set before the test stops or kills it on purpose.
	expected bool
}

func goCmd(args ...string) *exec.Cmd {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goTool, args...)
	cmd.Dir = repoRoot
	return cmd
}

// setup builds herald and nats-server and starts a real etcd and kube-apiserver.
func setup(t *testing.T) *harness {
	t.Helper()
	start := time.Now()
	dir := t.TempDir()
	h := &harness{t: t, dir: dir, herald: filepath.Join(dir, "bin", "herald")}
	args := []string{"build", "-o", h.herald, "-ldflags", "-X github.com/herald-dev/herald/internal/version.Version=chaos"}
	buildEnv := append(os.Environ(), "CGO_ENABLED=0")
	if testenv.RaceBuild() {
		// Three dispatchers and a manager under faults: where the races would be.
		args = append(args, "-race")
		buildEnv = append(os.Environ(), "CGO_ENABLED=1")
	}
	build := goCmd(append(args, ".")...)
	build.Env = buildEnv
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the chaos suite runs the herald binary, and `go %s .` failed (%v):\n%s", strings.Join(args, " "), err, out)
	}
	assets, err := testenv.Assets()
	if err != nil {
		t.Fatal(err)
	}
	if h.helm, err = testenv.Tool("helm"); err != nil {
		t.Fatal(err)
	}
	h.kubectl = filepath.Join(assets, "kubectl")
	ctrllog.SetLogger(logr.Discard())
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("starting etcd and kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stopping envtest: %v", err)
		}
	})
	admin, err := env.AddUser(envtest.User{Name: "chaos-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	h.kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(h.kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	if h.kube, err = client.New(rest.CopyConfig(admin.Config()), client.Options{Scheme: scheme.New()}); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	h.env = append(os.Environ(), "GORACE="+testenv.RaceOptions, "HOME="+home, "KUBECONFIG="+h.kubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(home, "helm-cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "helm-config"),
		"HELM_DATA_HOME="+filepath.Join(home, "helm-data"))
	t.Cleanup(func() {
		// A race-built process stops at its first data race; one stopped or killed on
		// purpose may have reported one just before.
		for _, p := range h.procs {
			if raw, err := os.ReadFile(p.log); err == nil && strings.Contains(string(raw), testenv.RaceReport) {
				t.Errorf("%s reported a data race:\n%s", p.name, framework.Tail(p.log, 60))
			}
		}
		if !t.Failed() {
			return
		}
		for _, p := range h.procs {
			t.Logf("the end of %s's log:\n%s", p.name, framework.Tail(p.log, 15))
		}
		// The run's folder goes with the test; the logs are the evidence of a failure.
		kept := filepath.Join(os.TempDir(), "heraldchaos-logs-"+time.Now().Format("20060102-150405"))
		if out, err := exec.Command("cp", "-r", filepath.Join(dir, "logs"), kept).CombinedOutput(); err != nil {
			t.Logf("keeping the logs: %v %s", err, out)
		} else {
			t.Logf("every process's log is kept in %s", kept)
		}
	})
	t.Logf("herald built (race detector: %v) and control plane up in %s", testenv.RaceBuild(), time.Since(start).Round(100*time.Millisecond))
	return h
}

// must runs a tool and fails the test, with its output, when it does not exit 0.
func (h *harness) must(name string, args ...string) string {
	h.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = h.dir, h.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		h.t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String()
}

// installChart applies the CRDs and the chart's RBAC as the e2e does, so the manager
// and the dispatchers run with the permissions the chart gives them.
func (h *harness) installChart() {
	h.t.Helper()
	crds := filepath.Join(repoRoot, "config", "crd", "bases")
	h.must(h.kubectl, "apply", "--server-side", "-f", crds)
	h.must(h.kubectl, "wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
	h.must(h.kubectl, "create", "namespace", chartNS)
	rendered := h.must(h.helm, "template", "herald", filepath.Join(repoRoot, "charts", "herald"), "--namespace", chartNS,
		"--set", "dispatcher.mode=external", "--set", "dispatcher.nats.url=nats://heraldchaos:4222")
	chart := filepath.Join(h.dir, "chart.yaml")
	if err := os.WriteFile(chart, []byte(rendered), 0o600); err != nil {
		h.t.Fatal(err)
	}
	h.must(h.kubectl, "apply", "--server-side", "-f", chart)
	// The manager creates the dispatcher's ServiceAccount with its workload; here the
	// dispatchers are processes, so it is created as the manager would.
	h.must(h.kubectl, "create", "serviceaccount", "herald-dispatcher", "-n", chartNS)
}

// serviceAccountKubeconfig writes a kubeconfig whose user is a token of the chart's
// ServiceAccount, the way a Pod reaches the API server.
func (h *harness) serviceAccountKubeconfig(sa string) string {
	h.t.Helper()
	token := strings.TrimSpace(h.must(h.kubectl, "create", "token", sa, "-n", chartNS, "--duration=6h"))
	admin, err := clientcmd.LoadFromFile(h.kubeconfig)
	if err != nil {
		h.t.Fatal(err)
	}
	cur := admin.Contexts[admin.CurrentContext]
	out := clientcmdapi.NewConfig()
	out.Clusters["envtest"] = admin.Clusters[cur.Cluster]
	out.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: token}
	out.Contexts[sa] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: sa}
	out.CurrentContext = sa
	path := filepath.Join(h.dir, sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*out, path); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// startProc starts a child with its output in a log file under the run's folder.
func (h *harness) startProc(name, bin string, env []string, args ...string) *proc {
	h.t.Helper()
	logPath := filepath.Join(h.dir, "logs", name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		h.t.Fatal(err)
	}
	f, err := os.Create(logPath)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = h.dir
	cmd.Env = append(append([]string(nil), h.env...), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Should the test binary be killed outright, the kernel stops the child too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		h.t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	h.t.Cleanup(func() { p.stop(15 * time.Second) })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process group and waits for it to be gone.
func (p *proc) kill() {
	p.expected = true
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM, as the kubelet would, and SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	p.expected = true
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// childFailure reports a process that died without the test asking it to.
func (h *harness) childFailure() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.procs {
		if p.exited() && !p.expected {
			return fmt.Errorf("%s exited (%v); the end of its log:\n%s", p.name, p.err, framework.Tail(p.log, 30))
		}
	}
	return nil
}

// eventually polls cond until it holds, failing after within or when a child died.
func (h *harness) eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	h.eventuallyf(t, within, what, func() (bool, string) { return cond(), "" })
}

// eventuallyf is eventually whose condition also says where it stands, for the failure.
func (h *harness) eventuallyf(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if err := h.childFailure(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last seen: %s)", within, what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ready reports whether a /readyz answers 200.
func ready(addr string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// dispatcher is one replica: its fixed addresses survive restarts, as a pod's do.
type dispatcher struct {
	index                   int
	ingest, health, metrics string
	proc                    *proc
	starts                  int
}

// stack is everything a scenario drives.
type stack struct {
	h           *harness
	nats        *natsCluster
	dispatchers []*dispatcher
	dispatchKC  string
	manager     *proc
	// extraFlags are added to every replica's flags from its next start on.
	extraFlags []string
}

// startManager runs `herald manager` with the chart's ServiceAccount, not managing the
// dispatcher workload (the dispatchers are processes here).
func (s *stack) startManager() {
	h := s.h
	kc := h.serviceAccountKubeconfig("herald-manager")
	health := framework.FreeAddr(h.t)
	s.manager = h.startProc("manager", h.herald, []string{"KUBECONFIG=" + kc},
		"manager", "--manage-dispatcher=false", "--allow-plain-http", "--allow-loopback",
		"--metrics-bind-address=0", "--health-probe-bind-address="+health)
	h.eventually(h.t, 90*time.Second, "herald manager /readyz", func() bool { return ready(health) })
}

// dispatcherFlags are the flags of every replica. --nats-replicas is left to its default
// on purpose: the suite measures what a user of the defaults gets. --ack-wait is
// shortened from 2m so that the deliveries a killed replica held are handed to another
// within the run; it bounds the latency after a kill, and the table shows it.
const ackWait = "15s"

func (s *stack) startDispatcher(d *dispatcher) {
	h := s.h
	d.starts++
	args := append([]string{"dispatcher", "--nats-url=" + s.nats.urls(), "--allow-plain-http", "--allow-loopback",
		"--ingest-bind-address=" + d.ingest, "--metrics-bind-address=" + d.metrics, "--health-probe-bind-address=" + d.health,
		"--status-interval=1s", "--ack-wait=" + ackWait}, s.extraFlags...)
	d.proc = h.startProc(fmt.Sprintf("dispatcher-%d.%d", d.index, d.starts), h.herald, []string{"KUBECONFIG=" + s.dispatchKC}, args...)
}

func (s *stack) waitDispatcherReady(t *testing.T, d *dispatcher, within time.Duration) {
	t.Helper()
	s.h.eventually(t, within, fmt.Sprintf("dispatcher %d /readyz", d.index), func() bool { return ready(d.health) })
}

// startDispatchers starts three replicas at once, as a Deployment would.
func (s *stack) startDispatchers() {
	s.dispatchKC = s.h.serviceAccountKubeconfig("herald-dispatcher")
	for i := range 3 {
		d := &dispatcher{index: i, ingest: framework.FreeAddr(s.h.t), health: framework.FreeAddr(s.h.t), metrics: framework.FreeAddr(s.h.t)}
		s.dispatchers = append(s.dispatchers, d)
		s.startDispatcher(d)
	}
	for _, d := range s.dispatchers {
		s.waitDispatcherReady(s.h.t, d, 2*time.Minute)
	}
}

// restartDispatcher starts a replica again after it was killed or stopped and waits
// until it is ready, as the kubelet restarts a container.
func (s *stack) restartDispatcher(t *testing.T, d *dispatcher) {
	s.startDispatcher(d)
	s.waitDispatcherReady(t, d, 2*time.Minute)
}

// get reads an object straight from the API server.
func (h *harness) get(obj client.Object, ns, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
}

func (h *harness) create(objs ...client.Object) {
	h.t.Helper()
	for _, o := range objs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := h.kube.Create(ctx, o)
		cancel()
		if err != nil {
			h.t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}
