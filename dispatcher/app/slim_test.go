package app

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSlimCachedDropsWhatTheDispatcherNeverReads(t *testing.T) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: "billing-signing",
			Annotations: map[string]string{
				corev1.LastAppliedConfigAnnotation: `{"apiVersion":"v1","kind":"Secret","stringData":{"secret":"whsec_..."}}`,
				"hooks.herald.dev/reenable":        "r1",
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
		},
		Data: map[string][]byte{"secret": []byte("whsec_x")},
	}
	out, err := slimCached(s)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Secret)
	if len(got.ManagedFields) != 0 {
		t.Errorf("managedFields kept: %v", got.ManagedFields)
	}
	if _, ok := got.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		t.Error("last-applied-configuration kept: a second copy of the Secret in the cache")
	}
	if got.Annotations["hooks.herald.dev/reenable"] != "r1" || string(got.Data["secret"]) != "whsec_x" {
		t.Errorf("dropped what the dispatcher reads: annotations %v, data %v", got.Annotations, got.Data)
	}
}
