package testenv

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS runs a real NATS server with JetStream on a port of 127.0.0.1 for one test and
// returns its URL: the external-cluster mode, in which several dispatcher replicas
// share one store.
func NATS(t *testing.T) string {
	t.Helper()
	return startNATS(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}).ClientURL()
}

// NATSOpts is NATS with the server's options adjusted first (storage limits).
func NATSOpts(t *testing.T, adjust func(*server.Options)) string {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	adjust(o)
	return startNATS(t, o).ClientURL()
}

// NATSConfig is NATS configured by conf, nats-server's configuration file syntax (for
// what options cannot say, such as accounts and their JetStream limits); the store
// directory and a free port on 127.0.0.1 are set here. It returns the client URL
// without credentials.
func NATSConfig(t *testing.T, conf string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(f)
	if err != nil {
		t.Fatalf("NATS configuration: %v", err)
	}
	o.Host, o.Port, o.StoreDir, o.NoSigs, o.NoLog = "127.0.0.1", -1, t.TempDir(), true, true
	return startNATS(t, o).ClientURL()
}

func startNATS(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// Cluster is a real JetStream cluster of NATS servers on 127.0.0.1, each with its own
// file store, whose nodes a test can stop and start again (same ports, same disk) as a
// node crash and its return.
type Cluster struct {
	t       *testing.T
	opts    []*server.Options
	servers []*server.Server
}

// NATSCluster starts an n-node JetStream cluster and waits until it has a meta leader.
func NATSCluster(t *testing.T, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: make([]*server.Options, n), servers: make([]*server.Server, n)}
	clientPorts, routePorts := freePorts(t, n), freePorts(t, n)
	var routes []*url.URL
	for i := range n {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", routePorts[i])})
	}
	for i := range n {
		c.opts[i] = &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1", Port: clientPorts[i],
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "herald-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  routes,
			NoSigs:  true, NoLog: true,
		}
	}
	for i := range n {
		c.Start(i)
	}
	t.Cleanup(func() {
		for i := range c.servers {
			c.Stop(i)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !c.servers[0].JetStreamIsClustered() || c.servers[0].JetStreamIsCurrent() == false {
		if time.Now().After(deadline) {
			t.Fatal("the NATS cluster did not elect a JetStream meta leader within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// URL is every node's client URL, comma-separated, as --nats-url takes it.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return strings.Join(urls, ",")
}

// Stop shuts node i down, as a crash of its machine would (its disk is kept).
func (c *Cluster) Stop(i int) {
	if s := c.servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.servers[i] = nil
	}
}

// Start starts node i (again), on its ports and its disk.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	o := *c.opts[i]
	s, err := server.NewServer(&o)
	if err != nil {
		c.t.Fatalf("NATS node %d: %v", i+1, err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		c.t.Fatalf("NATS node %d did not start", i+1)
	}
	c.servers[i] = s
}

// freePorts reserves n ports the kernel picks; they are released just before use.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		defer ln.Close()
	}
	return ports
}
