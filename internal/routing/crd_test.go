package routing

import (
	"os"
	"testing"

	"sigs.k8s.io/yaml"
)

// The CRD bounds spec.filter's length, which is all the API server can judge of it (it
// cannot estimate the cost of a CEL expression held in a string); everything else about
// a filter is judged here, once. MaxFilterLength must say what the schema says, and the
// schema must not grow a second copy of the filter's rules.
func TestCRD_FilterIsBoundedByLengthOnlyAndAgreesWithMaxFilterLength(t *testing.T) {
	raw, err := os.ReadFile("../../config/crd/bases/hooks.herald.dev_webhooksubscriptions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string
				Schema struct {
					OpenAPIV3Schema struct {
						Properties map[string]struct {
							Properties map[string]map[string]any
						}
					} `json:"openAPIV3Schema"`
				}
			}
		}
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) == 0 {
		t.Fatal("the CRD has no versions")
	}
	for _, v := range crd.Spec.Versions {
		filter := v.Schema.OpenAPIV3Schema.Properties["spec"].Properties["filter"]
		if filter == nil {
			t.Fatalf("%s: no spec.filter in the schema", v.Name)
		}
		if got, ok := filter["maxLength"].(float64); !ok || int(got) != MaxFilterLength {
			t.Errorf("%s: spec.filter maxLength = %v, MaxFilterLength = %d", v.Name, filter["maxLength"], MaxFilterLength)
		}
		if rules, ok := filter["x-kubernetes-validations"]; ok {
			t.Errorf("%s: spec.filter has x-kubernetes-validations %v; the filter's judge is routing.CompileFilter, once", v.Name, rules)
		}
	}
}
