// Package manager is the entry point of `herald manager`: the operator reconciling
// WebhookEndpoints, WebhookSubscriptions, WebhookEventTypes and the dispatcher workload
// (controllers/). It only wires flags to the controllers; the behaviour lives there.
package manager

import (
	"fmt"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/herald-dev/herald/controllers/endpoint"
	"github.com/herald-dev/herald/controllers/eventtype"
	"github.com/herald-dev/herald/controllers/subscription"
	"github.com/herald-dev/herald/controllers/workload"
	"github.com/herald-dev/herald/internal/logging"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/scheme"
)

type managerOptions struct {
	log              logging.Options
	metricsAddr      string
	healthAddr       string
	leaderElection   bool
	leaderElectionNS string
	policy           outbound.Policy
	workload         workload.Config
	manageWorkload   bool
	watchNamespaces  []string
}

// NewCommand returns `herald manager`.
func NewCommand() *cobra.Command {
	o := &managerOptions{}
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the operator: reconcile WebhookEndpoints, WebhookSubscriptions, WebhookEventTypes and the dispatcher workload",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runManager(cmd, o)
		},
	}
	fs := cmd.Flags()
	o.log.Bind(fs)
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 disables it")
	fs.StringVar(&o.healthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&o.leaderElection, "leader-elect", false, "use leader election, so only one of several manager replicas acts")
	fs.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "namespace of the leader election lease (default: in-cluster namespace)")
	fs.BoolVar(&o.policy.AllowPlainHTTP, "allow-plain-http", false, "accept http:// endpoint URLs (https only by default)")
	fs.BoolVar(&o.policy.AllowPrivateNetworks, "allow-private-networks", false, "accept endpoints in private address ranges")
	fs.BoolVar(&o.policy.AllowLoopback, "allow-loopback", false, "accept loopback endpoints (local development only)")
	fs.StringSliceVar(&o.watchNamespaces, "watch-namespaces", nil, "namespaces Herald serves (default all): the manager watches endpoints, subscriptions and Secrets only there, and the dispatcher it deploys serves only them")
	fs.BoolVar(&o.manageWorkload, "manage-dispatcher", true, "create and maintain the dispatcher workload; off when the dispatcher runs elsewhere (local development)")
	o.workload.BindFlags(fs)
	return cmd
}

func runManager(cmd *cobra.Command, o *managerOptions) error {
	log := o.log.Logger()
	ctrl.SetLogger(log)
	if o.manageWorkload {
		// Before anything connects: a bad flag should say so, not a kubeconfig error.
		if err := o.workload.Validate(); err != nil {
			return err
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	var cacheOpts cache.Options
	if len(o.watchNamespaces) > 0 {
		// Served namespaces only; the workload's own kinds are read in its namespace
		// (CacheByObject), whatever this says.
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.watchNamespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	if o.manageWorkload {
		// The dispatcher's objects are read only in its namespace and by label.
		cacheOpts.ByObject = o.workload.CacheByObject()
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.healthAddr,
		LeaderElection:          o.leaderElection,
		LeaderElectionID:        "manager.herald.dev",
		LeaderElectionNamespace: o.leaderElectionNS,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := (&endpoint.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("herald-manager"),
		Policy:    o.policy,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up endpoint controller: %w", err)
	}
	if err := (&subscription.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("herald-manager"),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up subscription controller: %w", err)
	}
	if err := (&eventtype.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("herald-manager"),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up event type controller: %w", err)
	}
	if o.manageWorkload {
		// One policy for both: the manager's URL checks and the dispatcher's dial checks;
		// and the same namespaces served.
		o.workload.Outbound = o.policy
		o.workload.WatchNamespaces = o.watchNamespaces
		if err := (&workload.Reconciler{Client: mgr.GetClient(), Config: o.workload}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up dispatcher workload controller: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding ready check: %w", err)
	}
	log.Info("starting manager", "policy", o.policy, "manageDispatcher", o.manageWorkload, "watchNamespaces", o.watchNamespaces)
	return mgr.Start(cmd.Context())
}
