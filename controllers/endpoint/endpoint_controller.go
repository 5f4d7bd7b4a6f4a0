// Package endpoint reconciles WebhookEndpoints: it resolves (or generates) the signing
// Secret and reports readiness. STUB — being replaced.
package endpoint

import (
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/herald-dev/herald/internal/outbound"
)

// Reconciler reconciles WebhookEndpoints.
type Reconciler struct {
	Client    client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	Policy    outbound.Policy
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error { return nil }
