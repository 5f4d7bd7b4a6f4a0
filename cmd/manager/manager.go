// Package manager is the entry point of `herald manager`: the operator reconciling
// WebhookEndpoints, WebhookSubscriptions, WebhookEventTypes and the dispatcher workload
// (controllers/). It only wires flags to the controllers; the behaviour lives there.
package manager

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/herald-dev/herald/controllers/endpoint"
	"github.com/herald-dev/herald/controllers/eventtype"
	"github.com/herald-dev/herald/controllers/subscription"
	"github.com/herald-dev/herald/controllers/workload"
	"github.com/herald-dev/herald/internal/logging"
	"github.com/herald-dev/herald/internal/scheme"
)

// Options are the manager's flags.
type Options struct {
	Log              logging.Options
	MetricsAddr      string
	HealthAddr       string
	LeaderElection   bool
	LeaderElectionNS string
	ManageWorkload   bool
	// Workload is the dispatcher workload the manager maintains, the dispatcher's own
	// configuration in it. Its outbound policy and served namespaces are the manager's
	// --allow-* and --watch-namespaces: one policy for the manager's URL checks and the
	// dispatcher's dial checks, and the same namespaces served.
	Workload workload.Config
}

// BindFlags registers every flag of `herald manager`.
func (o *Options) BindFlags(fs *pflag.FlagSet) {
	o.Log.Bind(fs)
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 disables it")
	fs.StringVar(&o.HealthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&o.LeaderElection, "leader-elect", false, "use leader election, so only one of several manager replicas acts")
	fs.StringVar(&o.LeaderElectionNS, "leader-election-namespace", "", "namespace of the leader election lease (default: in-cluster namespace)")
	fs.BoolVar(&o.ManageWorkload, "manage-dispatcher", true, "create and maintain the dispatcher workload; off when the dispatcher runs elsewhere (local development)")
	o.Workload.BindFlags(fs)
	policy := &o.Workload.Dispatcher.Outbound
	fs.BoolVar(&policy.AllowPlainHTTP, "allow-plain-http", false, "accept http:// endpoint URLs (https only by default)")
	fs.BoolVar(&policy.AllowPrivateNetworks, "allow-private-networks", false, "accept endpoints in private address ranges")
	fs.BoolVar(&policy.AllowLoopback, "allow-loopback", false, "accept loopback endpoints (local development only)")
	fs.StringSliceVar(&o.Workload.Dispatcher.WatchNamespaces, "watch-namespaces", nil, "namespaces Herald serves (default all): the manager watches endpoints, subscriptions and Secrets only there, and the dispatcher it deploys serves only them")
}

// NewCommand returns `herald manager`.
func NewCommand() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the operator: reconcile WebhookEndpoints, WebhookSubscriptions, WebhookEventTypes and the dispatcher workload",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, o)
		},
	}
	o.BindFlags(cmd.Flags())
	return cmd
}

func run(cmd *cobra.Command, o *Options) error {
	log := o.Log.Logger()
	ctrl.SetLogger(log)
	policy, namespaces := o.Workload.Dispatcher.Outbound, o.Workload.Dispatcher.WatchNamespaces
	if o.ManageWorkload {
		// Before anything connects: a bad flag should say so, not a kubeconfig error.
		if err := o.Workload.Validate(); err != nil {
			return err
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	var cacheOpts cache.Options
	if len(namespaces) > 0 {
		// Served namespaces only; the workload's own kinds are read in its namespace
		// (CacheByObject), whatever this says.
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	if o.ManageWorkload {
		// The dispatcher's objects are read only in its namespace and by label.
		cacheOpts.ByObject = o.Workload.CacheByObject()
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.HealthAddr,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        "manager.herald.dev",
		LeaderElectionNamespace: o.LeaderElectionNS,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := (&endpoint.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("herald-manager"),
		Policy:    policy,
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
	if o.ManageWorkload {
		if err := (&workload.Reconciler{Client: mgr.GetClient(), Config: o.Workload}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up dispatcher workload controller: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding ready check: %w", err)
	}
	log.Info("starting manager", "policy", policy, "manageDispatcher", o.ManageWorkload, "watchNamespaces", namespaces)
	return mgr.Start(cmd.Context())
}
