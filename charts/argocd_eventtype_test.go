package charts_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/controllers/eventtype"
)

const eventTypeHealthLua = "charts/herald/argocd/webhookeventtype-health.lua"

// The WebhookEventType health check, run as Argo CD runs it on objects whose status the
// real event type controller wrote.
func TestArgoCDHealth_WebhookEventTypeFromRealStatus(t *testing.T) {
	startEventTypeController(t)
	script := readRepoFile(t, eventTypeHealthLua)
	newEventType := func(ns, name, typ, schema string, examples ...string) *heraldv1.WebhookEventType {
		return &heraldv1.WebhookEventType{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: heraldv1.WebhookEventTypeSpec{Type: typ, Schema: schema, Examples: examples}}
	}
	tests := []struct {
		name  string
		state func(t *testing.T, ns string) *unstructured.Unstructured
		want  string
	}{
		{"a fresh object has no status yet", func(t *testing.T, ns string) *unstructured.Unstructured {
			return createObject(t, newEventType(ns, "paid", "invoice.paid", `{"type":"object"}`))
		}, "Progressing"},
		{"Ready=True", func(t *testing.T, ns string) *unstructured.Unstructured {
			createObject(t, newEventType(ns, "paid", "invoice.paid", `{"type":"object"}`, `{}`))
			return waitForReason(t, ns, "WebhookEventType", "paid", heraldv1.ReasonReady)
		}, "Healthy"},
		{"InvalidSchema: a person must fix it", func(t *testing.T, ns string) *unstructured.Unstructured {
			createObject(t, newEventType(ns, "paid", "invoice.paid", `{"$ref":"https://example.com/s.json"}`))
			return waitForReason(t, ns, "WebhookEventType", "paid", heraldv1.ReasonInvalidSchema)
		}, "Degraded"},
		{"InvalidExample", func(t *testing.T, ns string) *unstructured.Unstructured {
			createObject(t, newEventType(ns, "paid", "invoice.paid", `{"type":"object"}`, `[1]`))
			return waitForReason(t, ns, "WebhookEventType", "paid", heraldv1.ReasonInvalidExample)
		}, "Degraded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := argoNamespace(t)
			assertHealth(t, script, tt.state(t, ns), tt.want, nil)
		})
	}
}

func startEventTypeController(t *testing.T) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&eventtype.Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("herald-manager")}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}
