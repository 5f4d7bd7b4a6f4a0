package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/hack/framework"

	"golang.org/x/sys/unix"

	"github.com/herald-dev/herald/internal/testenv"
)

var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Join(wd, "..", "..")
}()

// The suite's own cluster, beside any `make cluster` (CLUSTER_NAME dev, index 0): name
// suite and index 1 unless CLUSTER_NAME and CLUSTER_INDEX say otherwise (two checkouts
// running the suite at once on one machine). A fixed folder per name, so a run that was
// killed is cleaned up by the next one.
var (
	clusterName  = envOr("CLUSTER_NAME", "suite")
	clusterIndex = envOr("CLUSTER_INDEX", "1")
	nodeIP       = "10.250." + clusterIndex + ".2"
)

const (
	heraldImage = "herald.local/herald:suite"
	testImage   = "herald.local/clustertest:suite"
	systemNS    = "herald-system"
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// cluster is one running cluster and the tools that drive it.
type cluster struct {
	t          *testing.T
	dir        string
	kubeconfig string
	// installLine is the `helm install` up.sh printed: what a user of `make cluster`
	// is told to run, which the suite runs as it is.
	installLine string
	kubectlBin  string
	helmBin     string
	env         []string
	netnsPath   string
	sock        string
	// Entries of the fixed host folders containerd and kubelet write to, before the
	// cluster started: what is new there after down.sh was left behind.
	hostBefore map[string]bool
}

// hostLeftovers lists the entries of the fixed host folders a node writes outside its own
// folder: pod network namespaces (containerd names them cni-<id>; other suites running
// beside this one, such as hack/chaos, make network namespaces of their own there), CNI
// results, /var/log/containers, shim sockets.
func hostLeftovers() map[string]bool {
	found := map[string]bool{}
	for _, pattern := range []string{"/run/netns/cni-*", "/var/lib/cni/results/*", "/var/log/containers/*", "/run/containerd/s/*"} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			found[m] = true
		}
	}
	return found
}

// requirements returns why the suite cannot run here, or "".
func requirements() string {
	if runtime.GOOS != "linux" {
		return "needs Linux (network namespaces, cgroups, containerd)"
	}
	if os.Geteuid() != 0 {
		return "needs root (a network namespace, containerd and the kubelet); run `sudo make test-cluster`"
	}
	var missing []string
	for _, bin := range []string{"containerd", "runc", "iptables", "conntrack", "nsenter", "openssl", "ip", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		missing = append(missing, "/usr/lib/cni/bridge")
	}
	if len(missing) > 0 {
		return fmt.Sprintf("missing %s: apt-get install the packages .ci/debian-packages lists for hack/cluster (.ci/run does)", strings.Join(missing, ", "))
	}
	return ""
}

// up starts the suite's cluster with hack/cluster/up.sh, and tears it down when the test
// ends (unless HERALD_CLUSTER_KEEP=1). Where it cannot run it skips loudly, or fails
// under CI=true, naming what is missing.
func up(t *testing.T) *cluster {
	if reason := requirements(); reason != "" {
		testenv.Unavailable(t, "CLUSTER SUITE", reason)
	}
	c := &cluster{t: t, dir: filepath.Join(os.TempDir(), "herald-cluster-"+clusterName), netnsPath: "/run/netns/herald-" + clusterName}
	c.sock = filepath.Join(c.dir, "containerd", "containerd.sock")
	c.env = append(os.Environ(), "CLUSTER_NAME="+clusterName, "CLUSTER_INDEX="+clusterIndex, "CLUSTER_DIR="+c.dir, "HERALD_IMAGE="+heraldImage)

	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = strings.TrimSpace(c.script("hack/envtest-assets.sh"))
	}
	c.kubectlBin = filepath.Join(assets, "kubectl")
	c.helmBin = os.Getenv("HELM")
	if c.helmBin == "" {
		c.helmBin = strings.TrimSpace(c.script("hack/tool.sh", "helm"))
	}

	c.hostBefore = hostLeftovers()
	start := time.Now()
	out := c.script("hack/cluster/up.sh")
	c.kubeconfig = ""
	for _, line := range strings.Split(out, "\n") {
		if k, ok := strings.CutPrefix(line, "export KUBECONFIG="); ok {
			c.kubeconfig = k
		}
		if strings.HasPrefix(line, "helm install ") {
			c.installLine = line
		}
	}
	if c.kubeconfig == "" || c.installLine == "" {
		t.Fatalf("hack/cluster/up.sh printed no export KUBECONFIG= line or no helm install line:\n%s", out)
	}
	t.Logf("TIMING cluster up (binaries cached or built, images imported, node Ready): %s", time.Since(start).Round(time.Second))
	home := t.TempDir()
	c.env = append(c.env, "KUBECONFIG="+c.kubeconfig, "HOME="+home,
		"HELM_CACHE_HOME="+filepath.Join(home, "helm-cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "helm-config"),
		"HELM_DATA_HOME="+filepath.Join(home, "helm-data"))
	t.Cleanup(func() {
		if t.Failed() {
			c.diagnose()
		}
		if os.Getenv("HERALD_CLUSTER_KEEP") == "1" {
			t.Logf("HERALD_CLUSTER_KEEP=1: cluster left up; export KUBECONFIG=%s; remove with CLUSTER_NAME=%s CLUSTER_INDEX=%s CLUSTER_DIR=%s hack/cluster/down.sh",
				c.kubeconfig, clusterName, clusterIndex, c.dir)
			return
		}
		c.script("hack/cluster/down.sh")
		c.checkNothingLeft()
	})
	return c
}

// script runs a repository script with the cluster's environment, streaming its stderr
// into the test log, and returns its stdout.
func (c *cluster) script(path string, args ...string) string {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, path), args...)
	cmd.Dir = repoRoot
	cmd.Env = c.env
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting %s: %v", path, err)
	}
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		c.t.Log(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		c.t.Fatalf("%s %s: %v", path, strings.Join(args, " "), err)
	}
	return stdout.String()
}

// run runs a command with the cluster's environment and returns its stdout, or an error
// holding its stderr.
func (c *cluster) run(stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot
	cmd.Env = c.env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

func (c *cluster) kubectl(args ...string) string {
	c.t.Helper()
	out, err := c.run(nil, c.kubectlBin, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) apply(namespace, manifest string) {
	c.t.Helper()
	args := []string{"apply", "-f", "-"}
	if namespace != "" {
		args = append(args, "-n", namespace)
	}
	if _, err := c.run([]byte(manifest), c.kubectlBin, args...); err != nil {
		c.t.Fatalf("%v\nmanifest:\n%s", err, manifest)
	}
}

func (c *cluster) helm(args ...string) string {
	c.t.Helper()
	out, err := c.run(nil, c.helmBin, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) ctr(args ...string) string {
	c.t.Helper()
	out, err := c.run(nil, "ctr", append([]string{"--address", c.sock, "-n", "k8s.io"}, args...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// jsonpath reads one field; "" when the object or the field is missing.
func (c *cluster) jsonpath(namespace, object, path string) string {
	out, err := c.run(nil, c.kubectlBin, "get", "-n", namespace, object, "-o", "jsonpath="+path)
	if err != nil {
		return ""
	}
	return out
}

// eventually polls cond every 250ms until it holds, failing after within; cond says what
// it saw, for the failure message.
func (c *cluster) eventually(within time.Duration, what string, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s; last seen: %s", within, what, saw)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// podReport is the evidence line of a pod: phase, node, and per container the image,
// its id and the restart count.
func (c *cluster) podReport(namespace, selector string) string {
	c.t.Helper()
	out := c.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o",
		`jsonpath={range .items[*]}pod {.metadata.name} phase={.status.phase} node={.spec.nodeName} ip={.status.podIP}{range .status.containerStatuses[*]} [container {.name} ready={.ready} restarts={.restartCount} image={.image} imageID={.imageID}]{end}{"\n"}{end}`)
	return strings.TrimSpace(out)
}

// listenInNetns opens a TCP listener inside the cluster's network namespace, so pods reach
// it at the node's address: the suite's receivers run in this process, where the test can
// count what they got. Only the calling thread enters the namespace; the socket keeps it.
func listenInNetns(nsPath, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Left locked when switching back fails: the thread then dies with this goroutine
		// instead of running others in the wrong namespace.
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer self.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			done <- result{err: fmt.Errorf("opening %s: %w", nsPath, err)}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("entering %s: %w", nsPath, err)}
			return
		}
		ln, lerr := net.Listen("tcp", addr)
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			if ln != nil {
				ln.Close()
			}
			done <- result{err: fmt.Errorf("leaving %s: %w", nsPath, err)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{ln: ln, err: lerr}
	}()
	r := <-done
	return r.ln, r.err
}

// diagnose logs what a person would look at first when the suite fails.
func (c *cluster) diagnose() {
	for _, args := range [][]string{
		{"get", "nodes,pods,pvc,pv,svc,statefulsets,deployments", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"describe", "pods", "-n", systemNS},
		{"logs", "-n", systemNS, "-l", "app.kubernetes.io/part-of=herald", "--all-containers", "--tail=80", "--prefix"},
	} {
		out, err := c.run(nil, c.kubectlBin, args...)
		c.t.Logf("DIAGNOSE kubectl %s:\n%s%v", strings.Join(args, " "), out, errOrEmpty(err))
	}
	for _, name := range []string{"kubelet", "containerd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
		c.t.Logf("DIAGNOSE %s log tail:\n%s", name, framework.Tail(filepath.Join(c.dir, "logs", name+".log"), 25))
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// checkNothingLeft fails the test when down.sh left a process, mount, network namespace or
// cgroup of the cluster behind.
func (c *cluster) checkNothingLeft() {
	var left []string
	if _, err := os.Stat(c.netnsPath); !errors.Is(err, os.ErrNotExist) {
		left = append(left, "network namespace "+c.netnsPath)
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mounts), c.dir) {
		left = append(left, "mounts under "+c.dir)
	}
	if _, err := os.Stat(c.dir); !errors.Is(err, os.ErrNotExist) {
		left = append(left, "folder "+c.dir)
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/herald-" + clusterName)
	left = append(left, cgroups...)
	// Every component runs with the cluster folder in its command line.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(c.dir)) {
			left = append(left, "process "+strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " "))
		}
	}
	for entry := range hostLeftovers() {
		if !c.hostBefore[entry] {
			left = append(left, entry)
		}
	}
	if len(left) > 0 {
		c.t.Errorf("hack/cluster/down.sh left behind: %s", strings.Join(left, "; "))
	} else {
		c.t.Log("down.sh left nothing behind (no process, network namespace, mounts, cgroups, pod netns, CNI results, log links or folder)")
	}
}
