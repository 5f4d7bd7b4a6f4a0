package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/herald-dev/herald/internal/scheme"
)

type stack struct {
	cfg       config
	start     time.Time
	startedBy string // what start is the time of, for printed durations
	con       *console

	mu       sync.Mutex
	children []*child
	stopping bool

	lock       *os.File
	env        *envtest.Environment
	rest       *rest.Config
	client     client.Client
	clientset  *kubernetes.Clientset
	kubeconfig string
	receiver   *receiver
	stopRecv   context.CancelFunc

	ingestURL string
	// caFile is the CA of the dispatcher's TLS, for HERALD_CA_FILE.
	caFile   string
	producer *identity
	operator *identity
	// demoEvent is an event the demo delivered to billing, for the operator's hint to
	// read its attempts; empty without the demo.
	demoEvent     string
	firstDelivery time.Time
}

func newStack(cfg config, start time.Time) *stack {
	// envtest logs through controller-runtime; its messages are of no use here, and
	// without a logger controller-runtime prints a warning with a stack trace.
	ctrllog.SetLogger(logr.Discard())
	return &stack{cfg: cfg, start: start, con: &console{out: os.Stdout}}
}

func (s *stack) etcdDir() string       { return filepath.Join(s.cfg.state, "etcd") }
func (s *stack) certDir() string       { return filepath.Join(s.cfg.state, "run", "apiserver") }
func (s *stack) dispatcherDir() string { return filepath.Join(s.cfg.state, "dispatcher") }
func (s *stack) logDir() string        { return filepath.Join(s.cfg.state, "logs") }
func (s *stack) kubectl() string       { return filepath.Join(s.cfg.assets, "kubectl") }

// rel shortens a path inside the checkout for printing.
func (s *stack) rel(p string) string {
	if r, err := filepath.Rel(s.cfg.root, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

func (s *stack) since() string { return time.Since(s.start).Round(100 * time.Millisecond).String() }

func (s *stack) run(ctx context.Context) error {
	for _, d := range []string{s.cfg.state, s.logDir(), filepath.Dir(s.certDir())} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// etcd refuses a data folder others can read.
	if err := os.MkdirAll(s.etcdDir(), 0o700); err != nil {
		return err
	}
	lock, err := lockState(s.cfg.state)
	if err != nil {
		return err
	}
	s.lock = lock
	s.stopLeftovers()

	if err := s.startControlPlane(); err != nil {
		return err
	}
	if err := s.writeKubeconfig(); err != nil {
		return err
	}
	if err := s.applyCRDs(ctx); err != nil {
		return err
	}
	if err := s.applyChartRBAC(ctx); err != nil {
		return err
	}

	recvCtx, stopRecv := context.WithCancel(context.Background())
	s.stopRecv = stopRecv
	ln, err := listenPreferred(s.cfg.receiverPort)
	if err != nil {
		return fmt.Errorf("demo receiver: %w", err)
	}
	s.receiver = newReceiver(s.client, s.con, filepath.Join(s.cfg.state, "deliveries"))
	s.receiver.serve(recvCtx, ln)
	s.con.Stackf("demo receiver listening on %s (one path per endpoint: /<namespace>/<endpoint>)", s.receiver.base)

	if err := s.startHerald(ctx); err != nil {
		return err
	}
	if err := s.identities(ctx); err != nil {
		return err
	}
	if s.cfg.demo {
		if err := s.demo(ctx); err != nil {
			return err
		}
	}
	s.printHints()

	// Up until interrupted, or until a child dies.
	ticker := time.NewTicker(500 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
			if err := s.childFailure(); err != nil {
				return err
			}
		}
	}
}

func (s *stack) startControlPlane() error {
	reused := false
	if _, err := os.Stat(filepath.Join(s.etcdDir(), "member")); err == nil {
		reused = true
	}
	etcdLog, err := os.Create(filepath.Join(s.logDir(), "etcd.log"))
	if err != nil {
		return err
	}
	apiLog, err := os.Create(filepath.Join(s.logDir(), "kube-apiserver.log"))
	if err != nil {
		return err
	}
	// Fresh certificates every run: envtest only generates them, and learns the CA,
	// when the folder is empty.
	if err := os.RemoveAll(s.certDir()); err != nil {
		return err
	}
	if err := os.MkdirAll(s.certDir(), 0o700); err != nil {
		return err
	}
	if reused {
		s.con.Stackf("starting etcd + kube-apiserver (state kept from the last run in %s)", s.rel(s.etcdDir()))
	} else {
		s.con.Stackf("starting etcd + kube-apiserver (new state in %s)", s.rel(s.etcdDir()))
	}
	// envtest's API server already runs with RBAC authorization and a service-account
	// signing key, which is what TokenRequest, TokenReview and SubjectAccessReview (the
	// dispatcher's producer authentication) need. Only the key and the issuer are made
	// to last (keepServiceAccountIssuer).
	apiServer := &envtest.APIServer{CertDir: s.certDir(), Out: apiLog, Err: apiLog}
	if err := s.keepServiceAccountIssuer(apiServer); err != nil {
		return err
	}
	s.env = &envtest.Environment{
		BinaryAssetsDirectory: s.cfg.assets,
		ControlPlane: envtest.ControlPlane{
			Etcd:      &envtest.Etcd{DataDir: s.etcdDir(), Out: etcdLog, Err: etcdLog},
			APIServer: apiServer,
		},
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	t0 := time.Now()
	cfg, err := s.env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w\n  etcd log (%s):\n%s\n  kube-apiserver log (%s):\n%s",
			err, s.rel(etcdLog.Name()), tail(etcdLog.Name(), 8), s.rel(apiLog.Name()), tail(apiLog.Name(), 8))
	}
	s.rest = cfg
	if s.client, err = client.New(cfg, client.Options{Scheme: scheme.New()}); err != nil {
		return err
	}
	if s.clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	s.con.Stackf("API server %s ready in %s (logs: %s)", cfg.Host, time.Since(t0).Round(100*time.Millisecond), s.rel(s.logDir()))
	return nil
}

// writeKubeconfig writes the admin kubeconfig with a context named herald-local whose
// namespace is the demo namespace, so plain `kubectl get whe` shows the samples.
func (s *stack) writeKubeconfig() error {
	kc, err := clientcmd.Load(s.env.KubeConfig)
	if err != nil {
		return fmt.Errorf("reading envtest's kubeconfig: %w", err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil {
		return errors.New("envtest's kubeconfig has no current context")
	}
	const name = "herald-local"
	out := clientcmdapi.NewConfig()
	out.Clusters[name] = kc.Clusters[ctx.Cluster]
	out.AuthInfos[name+"-admin"] = kc.AuthInfos[ctx.AuthInfo]
	c := *ctx
	c.Cluster, c.AuthInfo, c.Namespace = name, name+"-admin", s.cfg.namespace
	out.Contexts[name] = &c
	out.CurrentContext = name
	s.kubeconfig = filepath.Join(s.cfg.state, "kubeconfig")
	if err := clientcmd.WriteToFile(*out, s.kubeconfig); err != nil {
		return fmt.Errorf("writing %s: %w", s.kubeconfig, err)
	}
	if err := os.Chmod(s.kubeconfig, 0o600); err != nil {
		return err
	}
	s.con.Stackf("admin kubeconfig (context herald-local, namespace %s) written to %s", s.cfg.namespace, s.kubeconfig)
	return nil
}

// applyCRDs installs the CRDs the way a person would, with kubectl's server-side apply.
func (s *stack) applyCRDs(ctx context.Context) error {
	dir := filepath.Join(s.cfg.root, "config", "crd", "bases")
	s.con.Stackf("kubectl apply --server-side -f %s", s.rel(dir))
	if err := s.runKubectl(ctx, "apply", "--server-side", "--force-conflicts", "-f", dir); err != nil {
		return err
	}
	return s.runKubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "-f", dir)
}

// applyChartRBAC installs the ClusterRoles the chart gives users of Herald
// (herald-publisher for producers, herald-operator for the people who run endpoints,
// herald-editor and herald-response-reader) and its admission policy on Secret
// references, rendered by helm from charts/herald as `helm install herald` would name
// them, so the identities below and the CLI's hints meet the same roles and the same
// refusals as on a cluster. The chart's manager and dispatcher RBAC is left out: here
// they run with the admin kubeconfig.
func (s *stack) applyChartRBAC(ctx context.Context) error {
	chart := filepath.Join(s.cfg.root, "charts", "herald")
	args := []string{"template", "herald", chart, "--namespace", "herald-system"}
	shown := "helm template herald " + s.rel(chart) + " --namespace herald-system"
	for _, t := range chartUserRoles {
		args = append(args, "--show-only", t)
		shown += " --show-only " + t
	}
	s.con.Stackf("%s | kubectl apply --server-side -f -", shown)
	render := exec.CommandContext(ctx, s.cfg.helm, args...)
	var rendered, stderr bytes.Buffer
	render.Stdout, render.Stderr = &rendered, &stderr
	// helm keeps caches and repositories under HOME; none are needed to render a local
	// chart, and a developer's helm settings have no say in what the stack installs.
	render.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(s.cfg.state, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(s.cfg.state, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(s.cfg.state, "helm", "data"))
	if err := render.Run(); err != nil {
		return fmt.Errorf("rendering the chart's RBAC (helm %s): %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return s.runKubectlInput(ctx, &rendered, "apply", "--server-side", "--force-conflicts", "--field-manager=helm", "-f", "-")
}

// chartUserRoles are the chart templates of the roles for Herald's users, and of the
// policy that judges what they write.
var chartUserRoles = []string{"templates/publisher-rbac.yaml", "templates/operator-rbac.yaml",
	"templates/editor-rbac.yaml", "templates/response-reader-rbac.yaml", "templates/secret-reference-policy.yaml"}

func (s *stack) runKubectl(ctx context.Context, args ...string) error {
	return s.runKubectlInput(ctx, nil, args...)
}

func (s *stack) runKubectlInput(ctx context.Context, stdin io.Reader, args ...string) error {
	cmd := exec.CommandContext(ctx, s.kubectl(), args...)
	cmd.Stdin = stdin
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.kubeconfig)
	w := &prefixWriter{con: s.con, prefix: "        "}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// startHerald starts the manager and the dispatcher and waits until both are ready.
func (s *stack) startHerald(ctx context.Context) error {
	mHealth, err := freeAddr(0)
	if err != nil {
		return err
	}
	dHealth, err := freeAddr(0)
	if err != nil {
		return err
	}
	dMetrics, err := freeAddr(0)
	if err != nil {
		return err
	}
	ingest, err := freeAddr(s.cfg.ingestPort)
	if err != nil {
		return err
	}
	// The ingest and endpoint API over TLS, as on a cluster with dispatcher.tls.enabled.
	certFile, keyFile, caFile, err := s.dispatcherTLS()
	if err != nil {
		return fmt.Errorf("the dispatcher's TLS: %w", err)
	}
	s.caFile = caFile
	s.ingestURL = "https://" + ingest
	env := []string{"KUBECONFIG=" + s.kubeconfig}
	// Loopback and plain http are allowed because the demo receiver is on 127.0.0.1; a
	// cluster keeps both off.
	manager := []string{s.cfg.herald, "manager", "--log-dev",
		"--manage-dispatcher=false", "--allow-plain-http", "--allow-loopback",
		"--metrics-bind-address=0", "--health-probe-bind-address=" + mHealth}
	dispatcher := []string{s.cfg.herald, "dispatcher", "--log-dev",
		"--data-dir=" + s.dispatcherDir(), "--allow-plain-http", "--allow-loopback",
		"--ingest-bind-address=" + ingest, "--tls-cert-file=" + certFile, "--tls-key-file=" + keyFile,
		"--metrics-bind-address=" + dMetrics,
		"--health-probe-bind-address=" + dHealth}
	s.con.Stackf("starting %s", strings.Join(append([]string{s.rel(manager[0])}, manager[1:]...), " "))
	if _, err := s.startChild("manager", manager, env); err != nil {
		return err
	}
	s.con.Stackf("starting %s", strings.Join(append([]string{s.rel(dispatcher[0])}, dispatcher[1:]...), " "))
	if _, err := s.startChild("dispatcher", dispatcher, env); err != nil {
		return err
	}
	// Each process is asked for /readyz only once it has shown it could be ready: a
	// failing readiness check is logged by controller-runtime at INFO ("healthz check
	// failed"), so polling it from the first instant printed that line a dozen times on
	// every start, about nothing. The manager's check is a ping, ready once its health
	// server listens; the dispatcher opens its ingest port only after it has loaded
	// every endpoint and subscription, which is what its check waits for too.
	for _, w := range []struct{ name, signal, health string }{
		{"manager", mHealth, mHealth},
		{"dispatcher", ingest, dHealth},
	} {
		err := s.waitFor(ctx, w.name+" ready", 2*time.Minute, func() (bool, error) {
			conn, err := net.DialTimeout("tcp", w.signal, time.Second)
			if err != nil {
				return false, nil
			}
			conn.Close()
			resp, err := http.Get("http://" + w.health + "/readyz")
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
		if err != nil {
			return err
		}
	}
	s.con.Stackf("manager and dispatcher ready %s after %s; ingest API on %s, dispatcher metrics on http://%s/metrics", s.since(), s.startedBy, s.ingestURL, dMetrics)
	return nil
}

// waitFor polls cond until it holds, the timeout passes, ctx ends or a child dies.
func (s *stack) waitFor(ctx context.Context, what string, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if err := s.childFailure(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// childFailure reports a child that exited while the stack was not stopping.
func (s *stack) childFailure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil
	}
	for _, c := range s.children {
		if c.exited() {
			return fmt.Errorf("%s exited (%v); its last lines (%s):\n%s", c.name, c.err,
				s.rel(c.log.Name()), tail(c.log.Name(), 15))
		}
	}
	return nil
}

// shutdown stops everything in reverse order of starting: the children first, so the
// dispatcher drains while the API server still answers, then the control plane.
func (s *stack) shutdown() {
	s.mu.Lock()
	s.stopping = true
	children := append([]*child(nil), s.children...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(15 * time.Second)
		}()
	}
	wg.Wait()
	if len(children) > 0 {
		s.con.Stackf("stopped manager and dispatcher")
	}
	if s.stopRecv != nil {
		s.stopRecv()
	}
	if s.env != nil {
		if err := s.env.Stop(); err != nil {
			s.con.Stackf("stopping the control plane: %v", err)
		} else {
			s.con.Stackf("stopped kube-apiserver and etcd; state kept in %s (delete it for a fresh start)", s.rel(s.cfg.state))
		}
	}
	if s.lock != nil {
		s.lock.Close()
	}
}

// kill is the second Ctrl-C: no grace for anyone.
func (s *stack) kill() {
	s.mu.Lock()
	s.stopping = true
	children := append([]*child(nil), s.children...)
	s.mu.Unlock()
	for _, c := range children {
		c.kill()
	}
	// envtest's own Stop waits out its stop timeout; etcd and kube-apiserver are found
	// by their state paths instead.
	s.signalOurs(syscall.SIGKILL, false)
}
