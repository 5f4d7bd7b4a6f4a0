// Command localstack runs Herald on this machine end to end, for `make run`: a local
// etcd and kube-apiserver (envtest), Herald's CRDs applied with kubectl, `herald manager`
// and `herald dispatcher` as child processes, a demo receiver that verifies every
// signature style with pkg/verify, the sample endpoints pointed at that receiver, and a
// few events published through the ingest API with `herald publish`. It then stays up
// until interrupted and stops every process it started.
//
// State lives under .local/ (gitignored): etcd's data, the dispatcher's JetStream store,
// the kubeconfig and the logs of etcd and kube-apiserver. A second run reuses it, so
// endpoints, their signing Secrets and undelivered events survive a restart, as they
// would in a cluster. Delete .local/ for a fresh start.
//
// hack/local-stack.sh builds what this needs and runs it; run that, not this.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

type config struct {
	root         string // the Herald checkout
	assets       string // etcd, kube-apiserver, kubectl
	herald       string // bin/herald
	helm         string // renders the chart's RBAC
	state        string // .local
	namespace    string // where the samples go
	ingestPort   int
	receiverPort int
	quiet        bool // child logs to files only
	demo         bool // apply samples and publish events
}

func main() {
	start, startedBy := time.Now(), "the local stack started"
	cfg := config{}
	flag.StringVar(&cfg.root, "root", ".", "the Herald checkout")
	flag.StringVar(&cfg.assets, "assets", "", "folder with etcd, kube-apiserver and kubectl (hack/envtest-assets.sh prints it)")
	flag.StringVar(&cfg.herald, "herald", "bin/herald", "the herald binary (make build)")
	flag.StringVar(&cfg.helm, "helm", "", "the helm binary (hack/tool.sh helm prints it)")
	flag.StringVar(&cfg.state, "state", ".local", "state folder, kept between runs")
	flag.StringVar(&cfg.namespace, "namespace", "herald-demo", "namespace of the sample endpoints and subscriptions")
	flag.IntVar(&cfg.ingestPort, "ingest-port", 8080, "preferred port of the ingest API on 127.0.0.1 (a free one if taken)")
	flag.IntVar(&cfg.receiverPort, "receiver-port", 9000, "preferred port of the demo receiver on 127.0.0.1 (a free one if taken)")
	flag.BoolVar(&cfg.quiet, "quiet", false, "write the manager's and dispatcher's logs to .local/logs only")
	flag.BoolVar(&cfg.demo, "demo", true, "apply config/samples and publish demo events")
	flag.Parse()

	// hack/local-stack.sh passes its own start, so times include building the stack.
	if ns, err := strconv.ParseInt(os.Getenv("LOCAL_STACK_STARTED_NS"), 10, 64); err == nil {
		start = time.Unix(0, ns)
		startedBy = "hack/local-stack.sh started"
	}
	if err := cfg.resolve(); err != nil {
		fmt.Fprintf(os.Stderr, "local-stack: %v\n", err)
		os.Exit(2)
	}
	s := newStack(cfg, start)
	s.startedBy = startedBy

	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-signals
		s.con.Stackf("stopping (Ctrl-C again to kill at once)")
		cancel()
		<-signals
		s.con.Stackf("killing every process started here")
		s.kill()
		os.Exit(130)
	}()

	err := s.run(ctx)
	cancel()
	s.shutdown()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "local-stack: %v\n", err)
		os.Exit(1)
	}
}

// resolve makes every path absolute, so child processes and printed hints do not depend
// on the working directory.
func (c *config) resolve() error {
	root, err := filepath.Abs(c.root)
	if err != nil {
		return err
	}
	c.root = root
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	c.herald, c.state = abs(c.herald), abs(c.state)
	if c.assets == "" {
		return errors.New("--assets is required: run hack/local-stack.sh, which builds the control-plane binaries and passes their folder")
	}
	if c.helm == "" {
		return errors.New("--helm is required: run hack/local-stack.sh, which installs the pinned helm and passes it")
	}
	c.assets, c.helm = abs(c.assets), abs(c.helm)
	for _, bin := range []string{filepath.Join(c.assets, "etcd"), filepath.Join(c.assets, "kube-apiserver"), filepath.Join(c.assets, "kubectl"), c.herald, c.helm} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s is missing: run hack/local-stack.sh (or make run), which builds it", bin)
		}
	}
	return nil
}
