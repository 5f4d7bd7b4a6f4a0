package v1alpha1_test

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/apirefs"
)

// TestSecretReferences_CoverEveryReferenceFieldOfTheTypes holds the hand-written list of
// an endpoint's Secret references to the Go types: every SecretKeySelector or
// LocalObjectReference field found by reflection, set alone, must come back from
// SecretReferences under its own path, and nothing else may. A new reference field
// added to the types without being listed fails here (and the admission policy's
// equivalent in charts/, against the real API server).
func TestSecretReferences_CoverEveryReferenceFieldOfTheTypes(t *testing.T) {
	paths := apirefs.Paths()
	// The fields of today, so that a reflection that finds nothing cannot pass.
	for _, want := range []string{"spec.secretRef", "spec.previousSecretRef", "spec.headers[].valueFrom",
		"spec.tls.clientCertificateSecretRef", "spec.auth.oauth2.clientIDRef", "spec.auth.oauth2.clientSecretRef"} {
		if !slices.Contains(paths, want) {
			t.Errorf("reflection over the types did not find %s among %v", want, paths)
		}
	}
	for _, path := range paths {
		ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: "shop"}}
		if err := apirefs.Set(ep, path, "probe"); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range ep.SecretReferences() {
			if !slices.Contains(paths, apirefs.Normalize(r.Field)) {
				t.Errorf("SecretReferences names field %s, which is no reference field of the types (%v)", r.Field, paths)
			}
			found = found || (apirefs.Normalize(r.Field) == path && r.Name == "probe")
		}
		if !found {
			t.Errorf("%s set to Secret probe, but SecretReferences() = %+v does not list it: add it there and to the admission policy", path, ep.SecretReferences())
		}
		if !slices.Contains(ep.ReferencedSecretNames(), "probe") {
			t.Errorf("%s set to Secret probe, but ReferencedSecretNames() = %v leaves it out", path, ep.ReferencedSecretNames())
		}
	}
}

func TestSecretReferences_UnsetSigningSecretIsTheDefaultName(t *testing.T) {
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: "shop"}}
	refs := ep.SecretReferences()
	if len(refs) != 1 || refs[0] != (heraldv1.SecretReference{Field: "spec.secretRef", Name: "billing-signing", Defaulted: true}) {
		t.Errorf("SecretReferences() of an endpoint without secretRef = %+v, want the default billing-signing", refs)
	}
}
