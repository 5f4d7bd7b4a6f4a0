package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/hack/framework"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsCluster is a three-node JetStream cluster of real nats-server processes. With
// network namespaces (root) every node runs in a namespace of its own behind a veth on
// a bridge, so one node can be cut off; without them all three listen on 127.0.0.1.
type natsCluster struct {
	t     *testing.T
	bin   string
	net   *netLab // nil: nodes on 127.0.0.1, no partitions possible
	nodes []*natsNode
}

type natsNode struct {
	name    string // server_name, which JetStream names leaders by
	index   int
	conf    string
	client  string // host:port of the client listener
	monitor string // host:port of the monitoring listener (/healthz)
	netns   string // "" on 127.0.0.1
	proc    *proc
	started int // how many times it was started, for the log names
}

// buildNATS builds nats-server at the version go.mod requires with hack/nats-server.sh,
// which caches it under bin/ for this suite, the cluster suite and make bench alike.
func buildNATS(t *testing.T) string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(filepath.Join(repoRoot, "hack", "nats-server.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/nats-server.sh: %v", err)
	}
	t.Logf("nats-server ready in %s", time.Since(start).Round(100*time.Millisecond))
	return strings.TrimSpace(string(out))
}

// newNATS lays out the three nodes (addresses, configuration files, stores); startAll
// runs them.
func newNATS(t *testing.T, h *harness, bin string, lab *netLab) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t, bin: bin, net: lab}
	dir := filepath.Join(h.dir, "nats")
	type ports struct{ host, client, route, monitor string }
	var addrs []ports
	var routes []string
	for i := range 3 {
		p := ports{"127.0.0.1", framework.FreePort(t), framework.FreePort(t), framework.FreePort(t)}
		if lab != nil {
			// A namespace of its own: the same ports on every node, as on machines.
			p = ports{lab.nodeIP(i), "4222", "6222", "8222"}
		}
		addrs = append(addrs, p)
		routes = append(routes, "nats-route://"+p.host+":"+p.route)
	}
	for i, p := range addrs {
		n := &natsNode{name: fmt.Sprintf("heraldchaos-%d", i), index: i,
			client: p.host + ":" + p.client, monitor: p.host + ":" + p.monitor}
		if lab != nil {
			n.netns = lab.nodeNetns(i)
		}
		store := filepath.Join(dir, n.name)
		if err := os.MkdirAll(store, 0o700); err != nil {
			t.Fatal(err)
		}
		n.conf = filepath.Join(dir, n.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: "%s:%s"
http: "%s:%s"
jetstream {
  store_dir: %q
}
cluster {
  name: heraldchaos
  listen: "%s:%s"
  routes: [%s]
}
`, n.name, p.host, p.client, p.host, p.monitor, store, p.host, p.route, strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
	}
	return c
}

// startAll starts every node and waits for the cluster to be healthy.
func (c *natsCluster) startAll(h *harness) {
	c.t.Helper()
	for _, n := range c.nodes {
		c.start(h, n)
	}
	for _, n := range c.nodes {
		c.waitHealthy(c.t, h, n, 60*time.Second)
	}
}

// start runs one node (again), in its network namespace when there is one.
func (c *natsCluster) start(h *harness, n *natsNode) {
	c.t.Helper()
	n.started++
	args := []string{"-c", n.conf}
	name := c.bin
	if n.netns != "" {
		// ip netns exec execs the server itself, so its pid is the server's.
		args = append([]string{"netns", "exec", n.netns, c.bin}, args...)
		name = "ip"
	}
	n.proc = h.startProc(fmt.Sprintf("%s.%d", n.name, n.started), name, nil, args...)
}

// kill SIGKILLs a node, as a lost machine would go.
func (c *natsCluster) kill(n *natsNode) {
	n.proc.kill()
}

// waitHealthy waits for the node's /healthz, which answers 200 once its JetStream is
// current with the cluster (meta leader known, its streams caught up).
func (c *natsCluster) waitHealthy(t *testing.T, h *harness, n *natsNode, within time.Duration) {
	t.Helper()
	h.eventually(t, within, n.name+" /healthz", func() bool {
		resp, err := http.Get("http://" + n.monitor + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// urls is the comma-separated client URL list a dispatcher gets with --nats-url.
func (c *natsCluster) urls() string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, "nats://"+n.client)
	}
	return strings.Join(out, ",")
}

// streamInfo asks JetStream, through any node that answers, about a stream.
func (c *natsCluster) streamInfo(stream string) (*jetstream.StreamInfo, error) {
	nc, err := nats.Connect(c.urls(), nats.Timeout(3*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	return s.CachedInfo(), nil
}

// streams asks JetStream, through any node that answers, about every stream: Herald's
// queues and histories, and the key-value buckets (KV_<bucket>).
func (c *natsCluster) streams() ([]*jetstream.StreamInfo, error) {
	nc, err := nats.Connect(c.urls(), nats.Timeout(3*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*jetstream.StreamInfo
	list := js.ListStreams(ctx)
	for info := range list.Info() {
		out = append(out, info)
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("listing streams: %w", err)
	}
	return out, nil
}

// leader returns the node leading a stream.
func (c *natsCluster) leader(stream string) (*natsNode, *jetstream.StreamInfo, error) {
	info, err := c.streamInfo(stream)
	if err != nil {
		return nil, nil, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil, info, fmt.Errorf("stream %s has no leader", stream)
	}
	for _, n := range c.nodes {
		if n.name == info.Cluster.Leader {
			return n, info, nil
		}
	}
	return nil, info, fmt.Errorf("stream %s is led by %q, not a node of this cluster", stream, info.Cluster.Leader)
}

// placement describes where a stream lives: replicas, leader, followers and whether
// they are current.
func placement(info *jetstream.StreamInfo) string {
	if info == nil || info.Cluster == nil {
		return "unknown"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "R%d leader %s", info.Config.Replicas, info.Cluster.Leader)
	for _, r := range info.Cluster.Replicas {
		state := "current"
		if !r.Current {
			state = "behind"
		}
		if r.Offline {
			state = "offline"
		}
		fmt.Fprintf(&b, ", %s %s", r.Name, state)
	}
	return b.String()
}

// netLab is the network of one run: a hub namespace holding a bridge, one namespace per
// NATS node with a veth onto the bridge, and a veth from the root namespace onto the
// bridge, through which the dispatchers (in the root namespace) reach the nodes. Names
// start with heraldchaos<slot>; the slot is claimed with a directory under /run/heraldchaos
// holding the owner's pid, so two runs on one machine take two slots and a run that was
// killed outright is swept by the next one.
type netLab struct {
	t    *testing.T
	slot int
	dir  string
}

const labRoot = "/run/heraldchaos"

// netnsRequirement returns why network namespaces cannot be made here, or "".
func netnsRequirement() string {
	if os.Geteuid() != 0 {
		return "the partition scenario runs every NATS node in a network namespace of its own (ip netns add, veth pairs, a bridge), which needs root: run `sudo make chaos`, or set HERALD_CHAOS_NO_NETNS=1 to skip that scenario (loudly)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "the partition scenario needs the ip command (iproute2)"
	}
	return ""
}

func (l *netLab) name(suffix string) string { return fmt.Sprintf("heraldchaos%d%s", l.slot, suffix) }
func (l *netLab) hubNetns() string          { return l.name("-hub") }
func (l *netLab) nodeNetns(i int) string    { return l.name(fmt.Sprintf("-n%d", i)) }
func (l *netLab) rootLink() string          { return l.name("") } // at most heraldchaos255: 14 characters
func (l *netLab) nodeIP(i int) string       { return fmt.Sprintf("10.249.%d.%d", 100+l.slot, 10+i) }
func (l *netLab) rootIP() string            { return fmt.Sprintf("10.249.%d.1", 100+l.slot) }
func (l *netLab) subnet() string            { return fmt.Sprintf("10.249.%d.0/24", 100+l.slot) }

// newNetLab sweeps the leftovers of killed runs, claims a slot and builds the network.
// Everything it makes is removed when the test ends, and the removal is checked.
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if err := os.MkdirAll(labRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	sweepStaleLabs(t)
	l := &netLab{t: t}
	for l.slot = 0; l.slot < 100; l.slot++ {
		l.dir = filepath.Join(labRoot, strconv.Itoa(l.slot))
		if err := os.Mkdir(l.dir, 0o755); err == nil {
			break
		}
	}
	if l.slot == 100 {
		t.Fatalf("no free slot under %s", labRoot)
	}
	if err := os.WriteFile(filepath.Join(l.dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.remove()
		if left := l.leftovers(); len(left) > 0 {
			t.Errorf("the network of the run was not removed: %s", strings.Join(left, "; "))
		}
	})
	if routes := ipOut(t, "route", "show", "to", "match", l.rootIP()); strings.Contains(routes, "10.249.") {
		t.Fatalf("%s is routed already (%s); the suite needs that /24 for itself", l.subnet(), strings.TrimSpace(routes))
	}

	hub := l.hubNetns()
	l.ip("netns", "add", hub)
	l.ip("-n", hub, "link", "set", "lo", "up")
	l.ip("-n", hub, "link", "add", "br0", "type", "bridge")
	l.ip("-n", hub, "link", "set", "br0", "up")
	// The root namespace's leg: its address is where the dispatchers' traffic comes from.
	l.ip("link", "add", l.rootLink(), "type", "veth", "peer", "name", "root", "netns", hub)
	l.ip("-n", hub, "link", "set", "root", "master", "br0", "up")
	l.ip("addr", "add", l.rootIP()+"/24", "dev", l.rootLink())
	l.ip("link", "set", l.rootLink(), "up")
	for i := range 3 {
		ns := l.nodeNetns(i)
		l.ip("netns", "add", ns)
		l.ip("-n", ns, "link", "set", "lo", "up")
		l.ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", fmt.Sprintf("n%d", i), "netns", hub)
		l.ip("-n", hub, "link", "set", fmt.Sprintf("n%d", i), "master", "br0", "up")
		l.ip("-n", ns, "addr", "add", l.nodeIP(i)+"/24", "dev", "eth0")
		l.ip("-n", ns, "link", "set", "eth0", "up")
	}
	t.Logf("network: slot %d, %s: root %s, nodes %s %s %s (namespaces %s-*)", l.slot, l.subnet(), l.rootIP(), l.nodeIP(0), l.nodeIP(1), l.nodeIP(2), l.name(""))
	return l
}

// isolate cuts node i off from everything (the other nodes and every dispatcher): its
// only link goes down, so packets are dropped without a reset, as in a real partition.
func (l *netLab) isolate(i int) { l.ip("-n", l.nodeNetns(i), "link", "set", "eth0", "down") }

// heal brings node i's link back; its address and connected route come back with it.
func (l *netLab) heal(i int) { l.ip("-n", l.nodeNetns(i), "link", "set", "eth0", "up") }

func (l *netLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces (their veth ends go with them) and the root link, then
// the slot. The processes in the namespaces were stopped by their own cleanups, which
// ran first (registered later).
func (l *netLab) remove() {
	for _, ns := range []string{l.nodeNetns(0), l.nodeNetns(1), l.nodeNetns(2), l.hubNetns()} {
		_ = exec.Command("ip", "netns", "delete", ns).Run()
	}
	_ = exec.Command("ip", "link", "delete", l.rootLink()).Run()
	_ = os.RemoveAll(l.dir)
}

// leftovers lists what remains of the run's network.
func (l *netLab) leftovers() []string {
	var left []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], l.name("-")) {
			left = append(left, "netns "+f[0])
		}
	}
	if exec.Command("ip", "link", "show", l.rootLink()).Run() == nil {
		left = append(left, "link "+l.rootLink())
	}
	if _, err := os.Stat(l.dir); err == nil {
		left = append(left, l.dir)
	}
	return left
}

// sweepStaleLabs removes the networks of runs whose process is gone (a test binary
// killed outright runs no cleanup).
func sweepStaleLabs(t *testing.T) {
	entries, _ := os.ReadDir(labRoot)
	for _, e := range entries {
		slot, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, _ := os.ReadFile(filepath.Join(labRoot, e.Name(), "pid"))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			continue
		}
		stale := &netLab{t: t, slot: slot, dir: filepath.Join(labRoot, e.Name())}
		for i := range 3 {
			killNetnsPids(stale.nodeNetns(i))
		}
		stale.remove()
		t.Logf("removed the network of a run that was killed (slot %d, pid %d)", slot, pid)
	}
}

// killNetnsPids kills what still runs in a stale namespace (nats-server of a killed run).
func killNetnsPids(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("ip %s: %v", strings.Join(args, " "), err)
		}
	}
	return string(out)
}
