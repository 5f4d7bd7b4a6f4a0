package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/herald-dev/herald/hack/framework"
	"github.com/herald-dev/herald/internal/testenv"
)

// setup builds herald (with the race detector under `make test`: three dispatchers and
// a manager under faults are where the races would be) and starts a real etcd and
// kube-apiserver; the processes' logs end the test log of a failure, and are kept.
func setup(t *testing.T) *framework.Run {
	t.Helper()
	r := framework.NewRun(t, framework.RunInput{Name: "chaos", Race: testenv.RaceBuild()})
	r.TailLines = 15
	return r
}

// installChart applies the CRDs and the chart's RBAC as the e2e does, so the manager
// and the dispatchers run with the permissions the chart gives them.
func installChart(t *testing.T, r *framework.Run) {
	t.Helper()
	r.InstallCRDsAndChart(t, framework.ChartInput{Set: []string{"dispatcher.mode=external", "dispatcher.nats.url=nats://heraldchaos:4222"}})
	// The manager creates the dispatcher's ServiceAccount with its workload; here the
	// dispatchers are processes, so it is created as the manager would.
	r.EnsureServiceAccount(t, framework.ChartNamespace, "herald-dispatcher")
}

// dispatcher is one replica: its fixed addresses survive restarts, as a pod's do.
type dispatcher struct {
	index                   int
	ingest, health, metrics string
	proc                    *framework.Component
	starts                  int
}

// stack is everything a scenario drives.
type stack struct {
	h           *framework.Run
	nats        *natsCluster
	dispatchers []*dispatcher
	dispatchKC  string
	manager     *framework.Component
	// extraFlags are added to every replica's flags from its next start on.
	extraFlags []string
}

// startManager runs `herald manager` with the chart's ServiceAccount, not managing the
// dispatcher workload (the dispatchers are processes here), and waits until it is ready.
func (s *stack) startManager(t *testing.T) {
	s.manager = s.h.StartManager(t, framework.ManagerInput{Args: []string{"--allow-plain-http", "--allow-loopback"}})
}

// dispatcherFlags are the flags of every replica. --nats-replicas is left to its default
// on purpose: the suite measures what a user of the defaults gets. --ack-wait is
// shortened from 2m so that the deliveries a killed replica held are handed to another
// within the run; it bounds the latency after a kill, and the table shows it.
const ackWait = "15s"

func (s *stack) startDispatcher(t *testing.T, d *dispatcher) {
	t.Helper()
	d.starts++
	args := append([]string{"--nats-url=" + s.nats.urls(), "--allow-plain-http", "--allow-loopback",
		"--status-interval=1s", "--ack-wait=" + ackWait}, s.extraFlags...)
	d.proc = s.h.StartDispatcher(t, framework.DispatcherInput{Name: fmt.Sprintf("dispatcher-%d.%d", d.index, d.starts),
		Ingest: d.ingest, Health: d.health, Metrics: d.metrics, Kubeconfig: s.dispatchKC, Args: args, NoWait: true})
}

func (s *stack) waitDispatcherReady(t *testing.T, d *dispatcher, within time.Duration) {
	t.Helper()
	s.h.WaitReady(t, d.proc, within)
}

// startDispatchers starts three replicas at once, as a Deployment would.
func (s *stack) startDispatchers(t *testing.T) {
	s.dispatchKC = s.h.ServiceAccountKubeconfig(t, framework.ChartNamespace, "herald-dispatcher")
	for i := range 3 {
		d := &dispatcher{index: i, ingest: framework.FreeAddr(t), health: framework.FreeAddr(t), metrics: framework.FreeAddr(t)}
		s.dispatchers = append(s.dispatchers, d)
		s.startDispatcher(t, d)
	}
	for _, d := range s.dispatchers {
		s.waitDispatcherReady(t, d, 2*time.Minute)
	}
}

// restartDispatcher starts a replica again after it was killed or stopped and waits
// until it is ready, as the kubelet restarts a container.
func (s *stack) restartDispatcher(t *testing.T, d *dispatcher) {
	s.startDispatcher(t, d)
	s.waitDispatcherReady(t, d, 2*time.Minute)
}

// get reads an object straight from the API server.
func (s *stack) get(obj client.Object, ns, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.h.Cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
}

func (s *stack) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.h.Cluster.Client.Create(ctx, o)
		cancel()
		if err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}
