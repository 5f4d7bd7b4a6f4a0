package charts_test

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/herald-dev/herald/internal/testenv"
)

// TestChart_NoDriftAsGitOpsSeesIt applies the chart server-side, as Argo CD does with
// ServerSideApply=true, reads every object back and compares it as testenv.Drift says.
// A field the API server stores differently from the chart (on 907df01: GOMEMLIMIT's
// resourceFieldRef without divisor, to which the API server adds divisor "0") keeps
// the Application OutOfSync and selfHeal syncing in a loop.
func TestChart_NoDriftAsGitOpsSeesIt(t *testing.T) {
	for name, values := range map[string][]string{
		"default values": nil,
		"external NATS":  externalValues,
	} {
		t.Run(name, func(t *testing.T) {
			manifests := helmTemplate(t, values...)
			mustCommand(t, []byte(manifests), kubectlBin, "apply", "--server-side", "--force-conflicts", "--field-manager=argocd-controller", "-f", "-")
			for _, desired := range objects(t, manifests) {
				live := &unstructured.Unstructured{}
				live.SetGroupVersionKind(desired.GroupVersionKind())
				if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: desired.GetNamespace(), Name: desired.GetName()}, live); err != nil {
					t.Fatalf("reading back %s %s: %v", desired.GetKind(), desired.GetName(), err)
				}
				for _, d := range testenv.Drift(desired.Object, live.Object) {
					t.Errorf("%s %s drifts: %s", desired.GetKind(), desired.GetName(), d)
				}
			}
		})
	}
}
