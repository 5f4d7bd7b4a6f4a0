package cli

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/scheme"
)

type dispatcherOptions struct {
	log         logOptions
	healthAddr  string
	metricsAddr string
}

func newDispatcherCommand() *cobra.Command {
	o := &dispatcherOptions{}
	cmd := &cobra.Command{
		Use:   "dispatcher",
		Short: "Run the dispatcher (this build: watches configuration and serves health only)",
		Long: `Run the Herald dispatcher.

In this build the dispatcher only starts, watches WebhookEndpoints, WebhookSubscriptions
and Secrets through informers, and serves /healthz and /readyz. The delivery engine
(ingest API, JetStream queue, signing and retries) is not part of this build yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDispatcher(cmd, o)
		},
	}
	fs := cmd.Flags()
	o.log.bind(fs)
	fs.StringVar(&o.healthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":9090", "address of the Prometheus metrics endpoint; 0 disables it")
	return cmd
}

func runDispatcher(cmd *cobra.Command, o *dispatcherOptions) error {
	log := o.log.logger()
	ctrl.SetLogger(log)
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme.New(),
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.healthAddr,
	})
	if err != nil {
		return fmt.Errorf("creating dispatcher: %w", err)
	}
	// Start the informers now so that configuration is watched from the first second,
	// and readiness reflects whether the caches have synced.
	for _, obj := range []client.Object{&heraldv1.WebhookEndpoint{}, &heraldv1.WebhookSubscription{}, &corev1.Secret{}} {
		if _, err := mgr.GetCache().GetInformer(cmd.Context(), obj); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("informers not synced")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding ready check: %w", err)
	}
	log.Info("starting dispatcher (configuration watch and health only in this build)")
	return mgr.Start(cmd.Context())
}
