package workload

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"
)

// Desired returns the objects the reconciler applies, for the tests that compare them
// with what the API server stored.
func (r *Reconciler) Desired(ctx context.Context) ([]runtime.ApplyConfiguration, error) {
	owner, err := r.ownerReference(ctx)
	if err != nil {
		return nil, err
	}
	rendered, checksum, err := render(r.Config.Rendered())
	if err != nil {
		return nil, err
	}
	var out []runtime.ApplyConfiguration
	for _, o := range r.Config.desired(owner, rendered, checksum) {
		out = append(out, o.obj)
	}
	return out, nil
}
