// Package scheme builds the runtime.Scheme shared by the manager, the dispatcher and the
// CLI: the Kubernetes built-in types plus Herald's own.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// New returns a scheme with the Kubernetes built-ins and the hooks.herald.dev types.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(heraldv1.AddToScheme(s))
	return s
}
