// Package workload keeps the dispatcher workload in shape. STUB — being replaced.
package workload

import (
	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Config is the dispatcher workload the manager maintains, from the manager's flags.
type Config struct {
	Namespace string
}

// BindFlags registers the manager flags that fill the Config.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Namespace, "dispatcher-namespace", "herald-system", "namespace of the dispatcher workload")
}

// Reconciler reconciles the dispatcher workload.
type Reconciler struct {
	Client client.Client
	Config Config
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error { return nil }
