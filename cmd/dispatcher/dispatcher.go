// Package dispatcher is the entry point of `herald dispatcher`: the delivery engine
// (dispatcher/app) run with its configuration (dispatcher/config), which its flags and
// its --config file fill in.
package dispatcher

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/logging"
)

// NewCommand returns `herald dispatcher`.
func NewCommand() *cobra.Command {
	cfg := config.Default()
	var file string
	cmd := &cobra.Command{
		Use:   "dispatcher",
		Short: "Run the delivery engine: ingest API, durable queue, signing, retries",
		Long: `Run the Herald dispatcher.

The dispatcher accepts events on its ingest API (POST /v1/namespaces/{ns}/events),
stores them in NATS JetStream (an embedded server with file storage under --data-dir,
or an external cluster with --nats-url), routes them to WebhookEndpoints through
WebhookSubscriptions, and delivers them signed, with retries and dead letters.

Its configuration can also be given as a file with --config: a
DispatcherConfiguration (apiVersion config.herald.dev/v1alpha1), which is what the
manager renders into the dispatcher's ConfigMap; every key and its default is in
dispatcher/config/testdata/defaults.yaml. A flat map of flag names to values, what
earlier managers rendered, is read too. A flag given on the command line wins over the
file.`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if file != "" {
				if err := config.Load(file, cmd.Flags(), &cfg); err != nil {
					return err
				}
			}
			// Before anything connects: a bad setting should say so, not a kubeconfig error.
			return cfg.Validate()
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "configuration file: a DispatcherConfiguration, or a flat map of flag names to values")
	config.BindFlags(cmd.Flags(), &cfg)
	return cmd
}

func run(ctx context.Context, cfg config.Dispatcher) error {
	log := logging.New(cfg.Log.Development, cfg.Log.Verbosity)
	ctrl.SetLogger(log)
	kube, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	return app.Run(ctx, kube, app.Options{
		Config: cfg,
		Authorizer: app.ClusterAuthorizer(app.AuthOptions{
			Auth: cfg.Auth, Namespaces: cfg.WatchNamespaces, Log: log.WithName("auth"),
		}),
		// The endpoint API takes tokens only: API keys are for producers.
		AdminAuthorizers: app.ClusterAdminAuthorizers(app.AuthOptions{
			Auth: cfg.Auth, Log: log.WithName("auth"),
		}),
		EgressUsername: os.Getenv(config.EnvProxyUsername),
		EgressPassword: os.Getenv(config.EnvProxyPassword),
		Log:            log,
	})
}
