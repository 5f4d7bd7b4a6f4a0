package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Scenario g is scale-out: the dispatcher on an external three-node JetStream cluster of
// real nats-server processes (on 127.0.0.1, streams with 3 replicas, Herald's default
// there), 1:1 as in a, with 1 and with 3 dispatcher replicas. On one machine the
// replicas share the same cores as the NATS servers, the producer and the receiver: this
// shows what scale-out costs per delivery, not how it speeds up.

type scaleOutResult struct {
	Replicas             int     `json:"dispatcher_replicas"`
	NATSNodes            int     `json:"nats_nodes"`
	DispatcherCPUSeconds float64 `json:"dispatcher_cpu_seconds"`
	NATSCPUSeconds       float64 `json:"nats_cpu_seconds"`
	NATSPeakRSSMiB       float64 `json:"nats_peak_rss_mib_per_node"`
}

// natsCluster is three nats-server processes forming a JetStream cluster.
type natsCluster struct {
	dir   string
	nodes []*natsNode
}

type natsNode struct {
	cmd     *exec.Cmd
	client  string
	monitor string
	exited  chan struct{}
}

func (n *natsNode) mem() procMem {
	m, _ := readProcMem(n.cmd.Process.Pid)
	return m
}

func freeLoopbackPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}

// startNATSCluster starts a fresh cluster (its own stores) and waits until every node
// reports healthy.
func startNATSCluster(bin, name string) (*natsCluster, error) {
	dir, err := os.MkdirTemp("", "heraldbench-nats-"+name+"-")
	if err != nil {
		return nil, err
	}
	nc := &natsCluster{dir: dir}
	type ports struct{ client, route, monitor string }
	var all []ports
	var routes []string
	for range 3 {
		var p ports
		for _, dst := range []*string{&p.client, &p.route, &p.monitor} {
			if *dst, err = freeLoopbackPort(); err != nil {
				return nil, err
			}
		}
		all = append(all, p)
		routes = append(routes, "nats-route://127.0.0.1:"+p.route)
	}
	for i, p := range all {
		server := fmt.Sprintf("bench-%d", i)
		conf := filepath.Join(dir, server+".conf")
		err := os.WriteFile(conf, []byte(fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:%s"
http: "127.0.0.1:%s"
jetstream { store_dir: %q }
cluster {
  name: heraldbench
  listen: "127.0.0.1:%s"
  routes: [%s]
}
`, server, p.client, p.monitor, filepath.Join(dir, server), p.route, strings.Join(routes, ", "))), 0o600)
		if err != nil {
			nc.stop()
			return nil, err
		}
		logf, err := os.Create(filepath.Join(dir, server+".log"))
		if err != nil {
			nc.stop()
			return nil, err
		}
		n := &natsNode{cmd: exec.Command(bin, "-c", conf), client: "127.0.0.1:" + p.client,
			monitor: "127.0.0.1:" + p.monitor, exited: make(chan struct{})}
		n.cmd.Stdout, n.cmd.Stderr = logf, logf
		if err := n.cmd.Start(); err != nil {
			logf.Close()
			nc.stop()
			return nil, fmt.Errorf("starting %s: %w", bin, err)
		}
		go func() { _ = n.cmd.Wait(); logf.Close(); close(n.exited) }()
		nc.nodes = append(nc.nodes, n)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range nc.nodes {
		for {
			resp, err := http.Get("http://" + n.monitor + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-n.exited:
				nc.stop()
				return nil, fmt.Errorf("nats-server exited while starting; see %s", dir)
			default:
			}
			if time.Now().After(deadline) {
				nc.stop()
				return nil, errors.New("the NATS cluster was not healthy within 60s")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nc, nil
}

func (nc *natsCluster) url() string {
	var urls []string
	for _, n := range nc.nodes {
		urls = append(urls, "nats://"+n.client)
	}
	return strings.Join(urls, ",")
}

func (nc *natsCluster) cpu() time.Duration {
	var d time.Duration
	for _, n := range nc.nodes {
		c, _ := readProcCPU(n.cmd.Process.Pid)
		d += c
	}
	return d
}

func (nc *natsCluster) stop() {
	for _, n := range nc.nodes {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range nc.nodes {
		select {
		case <-n.exited:
		case <-time.After(15 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
	}
	os.RemoveAll(nc.dir)
}

// scenarioG runs a's workload on a fresh external cluster per replica count.
func (b *bench) scenarioG() (*scenarioResult, error) {
	if b.o.NATSServer == "" {
		return nil, errors.New("g needs a nats-server binary: -nats-server (make bench builds one into bin/)")
	}
	g := &scenarioResult{Name: "g", Title: "scale-out — 1:1 on an external 3-node NATS cluster, streams R3, 1 and 3 dispatchers"}
	for _, replicas := range []int{1, 3} {
		name := fmt.Sprintf("g%d", replicas)
		title := fmt.Sprintf("1:1 on 3 NATS nodes (R3), %d dispatcher(s)", replicas)
		logf("%s: %s", name, title)
		nc, err := startNATSCluster(b.o.NATSServer, name)
		if err != nil {
			return nil, err
		}
		r, err := func() (*scenarioResult, error) {
			defer nc.stop()
			s, err := b.newSetupOn(name, 1, 0, "", nc, replicas)
			if err != nil {
				return nil, err
			}
			defer s.close()
			return b.measure(s, name, title, 1, 0)
		}()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r.CeilingPercent = 100 * r.DeliveriesPerSecond / b.res.Ceiling1.PerSecond
		if r.Deliveries > 0 {
			r.CPUSecondsPer1k = r.CPUSeconds / float64(r.Deliveries) * 1000
		}
		so := r.ScaleOut
		logf("%s: CPU per delivery %.3f ms (dispatchers %.3f, NATS %.3f), NATS peak RSS %.0f MiB per node",
			name, r.CPUSecondsPer1k, so.DispatcherCPUSeconds/float64(max(r.Deliveries, 1))*1000,
			so.NATSCPUSeconds/float64(max(r.Deliveries, 1))*1000, so.NATSPeakRSSMiB)
		g.ScaleOutRuns = append(g.ScaleOutRuns, r)
	}
	return g, nil
}
