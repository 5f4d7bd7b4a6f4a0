package charts_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/controllers/endpoint"
	"github.com/herald-dev/herald/controllers/subscription"
	"github.com/herald-dev/herald/internal/outbound"
)

// The Argo CD health checks, and the argocd-cm snippet that carries copies of them.
const (
	endpointHealthLua     = "charts/herald/argocd/webhookendpoint-health.lua"
	subscriptionHealthLua = "charts/herald/argocd/webhooksubscription-health.lua"
	argocdCM              = "charts/herald/argocd/argocd-cm.yaml"
)

var updateArgoCDConfigMap = flag.Bool("update-argocd-cm", false,
	"rewrite the scripts in "+argocdCM+" from the .lua files instead of failing on a difference")

func TestArgoCDHealth_WebhookEndpointFromRealStatus(t *testing.T) {
	startHeraldControllers(t)
	script := readRepoFile(t, endpointHealthLua)
	ctx := context.Background()

	tests := []struct {
		name string
		// state brings endpoint "ep" into the state under test and returns it as the API
		// server stored it, the way Argo CD's cache holds it.
		state func(t *testing.T, ns string) *unstructured.Unstructured
		want  string
		msg   []string
	}{
		{
			name: "a fresh object has no status yet: Herald has not spoken",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				return createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
			},
			want: "Progressing", msg: []string{"Waiting for Herald to reconcile generation 1 (observed: 0)"},
		},
		{
			name: "Ready=True",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonReady)
			},
			want: "Healthy", msg: []string{"signing secret ep-signing resolved"},
		},
		{
			name: "a spec edit the manager has not reconciled yet: status describes the old spec",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				u := waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonReady)
				setSpec(t, u, "10s", "timeout")
				// The update's response is the object as stored at that instant: generation
				// 2 with the status of generation 1, before any controller could react.
				if err := k8s.Update(ctx, u); err != nil {
					t.Fatal(err)
				}
				return u
			},
			want: "Progressing", msg: []string{"generation 2 (observed: 1)"},
		},
		{
			name: "InvalidURL needs a person",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, newEndpoint(ns, "https://127.0.0.1/in"))
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonInvalidURL)
			},
			want: "Degraded", msg: []string{"InvalidURL: ", "127.0.0.1"},
		},
		{
			name: "SecretKeyMissing: Herald never writes a Secret it did not create",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ep-signing"},
					Data:       map[string][]byte{"other": []byte("x")},
				})
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonSecretKeyMissing)
			},
			want: "Degraded", msg: []string{`SecretKeyMissing: signing Secret ep-signing has no key "secret"`},
		},
		{
			name: "PreviousSecretNotFound: the old secret of a rotation is never generated",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				ep := newEndpoint(ns, "https://hooks.example.com/in")
				ep.Spec.PreviousSecretRef = &heraldv1.SecretKeySelector{Name: "ep-signing-old"}
				createObject(t, ep)
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonPreviousSecretNotFound)
			},
			want: "Degraded", msg: []string{"PreviousSecretNotFound: previous signing Secret ep-signing-old does not exist"},
		},
		{
			name: "SecretNotFound resolves by itself: Herald generates a new one once the old is gone",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				// A finalizer keeps the deleted Secret around, so the endpoint stays in the
				// window between "being deleted" and "generated again".
				secret := &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ep-signing", Finalizers: []string{"test.herald.dev/hold"}},
					Data:       map[string][]byte{"secret": []byte("whsec_dGVzdA==")},
				}
				createObject(t, secret)
				t.Cleanup(func() {
					patch := []byte(`{"metadata":{"finalizers":null}}`)
					if err := k8s.Patch(ctx, secret, client.RawPatch(types.MergePatchType, patch)); err != nil {
						t.Errorf("releasing Secret: %v", err)
					}
				})
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonReady)
				if err := k8s.Delete(ctx, secret); err != nil {
					t.Fatal(err)
				}
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonSecretNotFound)
			},
			want: "Progressing", msg: []string{"SecretNotFound: signing Secret ep-signing is being deleted"},
		},
		{
			name: "a header Secret only a person can create: Degraded, not Progressing forever",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				ep := newEndpoint(ns, "https://hooks.example.com/in")
				ep.Spec.Headers = []heraldv1.HeaderSpec{{Name: "Authorization",
					ValueFrom: &heraldv1.SecretKeySelector{Name: "api-token", Key: "token"}}}
				createObject(t, ep)
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonReferencedSecretNotFound)
			},
			want: "Degraded", msg: []string{"ReferencedSecretNotFound: Secret api-token for the header Authorization does not exist"},
		},
		{
			name: "a Standard Webhooks secret that is not whsec_ + base64: the dispatcher could not sign",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ep-signing"},
					Data:       map[string][]byte{"secret": []byte("not-base64!")},
				})
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonInvalidSecret)
			},
			want: "Degraded", msg: []string{"InvalidSecret: signing Secret ep-signing", "whsec_"},
		},
		{
			name: "the dispatcher holds deliveries the manager would send: Ready says so",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonReady)
				applyDeliveringFalse(t, ns, "ep", heraldv1.ReasonSecretKeyMissing, "signing Secret ep-signing has no key \"secret\"")
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonSecretKeyMissing)
			},
			want: "Degraded", msg: []string{"SecretKeyMissing: the dispatcher holds deliveries: signing Secret ep-signing"},
		},
		{
			name: "spec.suspend holds deliveries on purpose: Argo CD's Suspended",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				ep := newEndpoint(ns, "https://hooks.example.com/in")
				ep.Spec.Suspend = true
				createObject(t, ep)
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonSuspended)
			},
			want: "Suspended", msg: []string{"spec.suspend is true"},
		},
		{
			name: "auto-disabled by the dispatcher",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				return disabledEndpoint(t, ns, nil)
			},
			want: "Degraded", msg: []string{
				"Auto-disabled: 5 consecutive failed attempts; last: HTTP 503",
				"re-enable by setting annotation hooks.herald.dev/reenable to a new value, or by changing the spec",
			},
		},
		{
			name: "auto-disabled, before the manager mirrors it into Ready",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonReady)
				// The apply's response: Disabled=True next to the manager's Ready=True.
				u := applyDispatcherStatus(t, ns, "ep", nil)
				if c := mustCondition(t, u, heraldv1.ConditionReady); c.Status != metav1.ConditionTrue {
					t.Fatalf("Ready = %+v; the row needs the instant before the manager reacts", c)
				}
				return u
			},
			want: "Degraded", msg: []string{"Auto-disabled: 5 consecutive failed attempts"},
		},
		{
			name: "re-enable annotation set (with kubectl or in Git), dispatcher not done yet",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				u := disabledEndpoint(t, ns, nil)
				patch := []byte(`{"metadata":{"annotations":{"hooks.herald.dev/reenable":"2026-01-01"}}}`)
				if err := k8s.Patch(ctx, u, client.RawPatch(types.MergePatchType, patch)); err != nil {
					t.Fatal(err)
				}
				return u
			},
			want: "Progressing", msg: []string{"Re-enable requested (hooks.herald.dev/reenable=2026-01-01); waiting for the dispatcher"},
		},
		{
			name: "re-enable annotation already acted on and disabled again: the old value re-enables nothing",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				u := disabledEndpoint(t, ns, map[string]any{"lastHandledReenable": "2026-01-01"})
				patch := []byte(`{"metadata":{"annotations":{"hooks.herald.dev/reenable":"2026-01-01"}}}`)
				if err := k8s.Patch(ctx, u, client.RawPatch(types.MergePatchType, patch)); err != nil {
					t.Fatal(err)
				}
				return u
			},
			want: "Degraded", msg: []string{"Auto-disabled: "},
		},
		{
			name: "spec edited after the auto-disable: the manager has caught up, the dispatcher re-enables next",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				u := disabledEndpoint(t, ns, nil)
				setSpec(t, u, "10s", "timeout")
				if err := k8s.Update(ctx, u); err != nil {
					t.Fatal(err)
				}
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonDisabled)
			},
			want: "Progressing", msg: []string{"Spec changed after the endpoint was auto-disabled"},
		},
		{
			name: "a Service that does not exist: deliveries wait for it",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				ep := newEndpoint(ns, "")
				ep.Spec.Service = &heraldv1.ServiceReference{Name: "receiver", Port: 8443}
				createObject(t, ep)
				return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonServiceNotFound)
			},
			want: "Degraded", msg: []string{"ServiceNotFound: Service receiver does not exist in namespace"},
		},
		{
			name: "Throttled by the receiver: deliveries still flow, slower",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				return deliveryState(t, ns, map[string]any{"state": heraldv1.DeliveryThrottled, "throttle": map[string]any{
					"requestsPerSecond": "12.5", "maxInFlight": int64(2), "reason": "429",
					"since": time.Now().UTC().Format(time.RFC3339), "pausedUntil": "2026-12-07T03:00:00Z"}})
			},
			want: "Healthy", msg: []string{"Throttled: the receiver answered 429; Herald sends at most 12.5 requests/s with 2 in flight",
				"paused until 2026-12-07T03:00:00Z (Retry-After)"},
		},
		{
			name: "Failing: the last attempts failed, retries follow",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				return deliveryState(t, ns, map[string]any{"state": heraldv1.DeliveryFailing, "consecutiveFailures": int64(2),
					"lastAttempt": map[string]any{"time": time.Now().UTC().Format(time.RFC3339), "statusCode": int64(500), "error": "HTTP 500"}})
			},
			want: "Degraded", msg: []string{"Failing: 2 consecutive failed attempts; last: HTTP 500. Retries follow the schedule"},
		},
		{
			name: "the transform failed on an event",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				return deliveryState(t, ns, map[string]any{"transformErrors": int64(1), "conditions": []any{map[string]any{
					"type": heraldv1.ConditionTransformHealthy, "status": "False", "reason": heraldv1.ReasonTransformFailed,
					"message": "event evt_1 (type order.created): no such key: namespace", "observedGeneration": int64(1),
					"lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}}})
			},
			want: "Degraded", msg: []string{"TransformFailed: event evt_1 (type order.created): no such key: namespace"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := tt.state(t, argoNamespace(t))
			assertHealth(t, script, obj, tt.want, tt.msg)
		})
	}
}

// deliveryState brings a Ready endpoint to a status the dispatcher writes (its field
// manager, server-side apply), and returns it as stored.
func deliveryState(t *testing.T, ns string, status map[string]any) *unstructured.Unstructured {
	t.Helper()
	createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
	waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonReady)
	u := &unstructured.Unstructured{Object: map[string]any{"status": status}}
	u.SetGroupVersionKind(heraldv1.GroupVersion.WithKind("WebhookEndpoint"))
	u.SetNamespace(ns)
	u.SetName("ep")
	if err := k8s.Status().Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner("herald-dispatcher"), client.ForceOwnership); err != nil {
		t.Fatalf("applying the dispatcher's status: %v", err)
	}
	return getObject(t, ns, "WebhookEndpoint", "ep")
}

func TestArgoCDHealth_WebhookSubscriptionFromRealStatus(t *testing.T) {
	startHeraldControllers(t)
	script := readRepoFile(t, subscriptionHealthLua)
	ctx := context.Background()

	tests := []struct {
		name  string
		state func(t *testing.T, ns string) *unstructured.Unstructured
		want  string
		msg   []string
	}{
		{
			name: "a fresh object has no status yet",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				return createObject(t, newSubscription(ns, "ep", ""))
			},
			want: "Progressing", msg: []string{"Waiting for Herald to validate generation 1 (observed: 0)"},
		},
		{
			name: "Ready=True",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				createObject(t, newSubscription(ns, "ep", "event.data.amount > 1000"))
				return waitForReason(t, ns, "WebhookSubscription", "sub", heraldv1.ReasonReady)
			},
			want: "Healthy", msg: []string{"routes to WebhookEndpoint ep"},
		},
		{
			name: "a spec edit not validated yet",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				createObject(t, newSubscription(ns, "ep", ""))
				u := waitForReason(t, ns, "WebhookSubscription", "sub", heraldv1.ReasonReady)
				setSpec(t, u, "event.type != 'x'", "filter")
				if err := k8s.Update(ctx, u); err != nil {
					t.Fatal(err)
				}
				return u
			},
			want: "Progressing", msg: []string{"generation 2 (observed: 1)"},
		},
		{
			name: "EndpointNotFound",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, newSubscription(ns, "missing", ""))
				return waitForReason(t, ns, "WebhookSubscription", "sub", heraldv1.ReasonEndpointNotFound)
			},
			want: "Degraded", msg: []string{"EndpointNotFound: WebhookEndpoint missing does not exist in namespace " + "%NS%"},
		},
		{
			name: "EndpointNotFound heals by itself once the endpoint is applied (out-of-order sync)",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, newSubscription(ns, "ep", ""))
				waitForReason(t, ns, "WebhookSubscription", "sub", heraldv1.ReasonEndpointNotFound)
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				return waitForReason(t, ns, "WebhookSubscription", "sub", heraldv1.ReasonReady)
			},
			want: "Healthy",
		},
		{
			name: "InvalidFilter: the CEL compiler's message reaches Argo CD",
			state: func(t *testing.T, ns string) *unstructured.Unstructured {
				createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
				createObject(t, newSubscription(ns, "ep", "event.data.amount >"))
				return waitForReason(t, ns, "WebhookSubscription", "sub", heraldv1.ReasonInvalidFilter)
			},
			want: "Degraded", msg: []string{"InvalidFilter: "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := argoNamespace(t)
			obj := tt.state(t, ns)
			for i := range tt.msg {
				tt.msg[i] = strings.ReplaceAll(tt.msg[i], "%NS%", ns)
			}
			assertHealth(t, script, obj, tt.want, tt.msg)
		})
	}
}

// Status shapes the controllers cannot produce today (a Ready condition of a newer or
// older Herald), pinned so that the checks stay on the safe side.
func TestArgoCDHealth_UnknownStatesAreNeverHealthy(t *testing.T) {
	tests := []struct {
		name   string
		script string
		ready  map[string]any
		want   string
	}{
		{"a Ready=False reason this version does not know needs a person", endpointHealthLua,
			map[string]any{"status": "False", "reason": "SomethingNew", "message": "m"}, "Degraded"},
		{"Ready=Unknown is still being worked out", endpointHealthLua,
			map[string]any{"status": "Unknown", "reason": "Checking", "message": "m"}, "Progressing"},
		{"InvalidEventType (refused by the CRD today, reported by older ones)", subscriptionHealthLua,
			map[string]any{"status": "False", "reason": "InvalidEventType", "message": "m"}, "Degraded"},
		{"Ready=Unknown on a subscription", subscriptionHealthLua,
			map[string]any{"status": "Unknown", "reason": "Checking", "message": "m"}, "Progressing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.ready["type"] = "Ready"
			obj := &unstructured.Unstructured{Object: map[string]any{
				"metadata": map[string]any{"name": "x", "generation": int64(3)},
				"status":   map[string]any{"observedGeneration": int64(3), "conditions": []any{tt.ready}},
			}}
			assertHealth(t, readRepoFile(t, tt.script), obj, tt.want, nil)
		})
	}
}

func TestArgoCDConfigMap_CarriesTheScriptsAndMergesIntoArgocdCM(t *testing.T) {
	keys := map[string]string{
		"resource.customizations.health.hooks.herald.dev_WebhookEndpoint":     endpointHealthLua,
		"resource.customizations.health.hooks.herald.dev_WebhookSubscription": subscriptionHealthLua,
		"resource.customizations.health.hooks.herald.dev_WebhookEventType":    eventTypeHealthLua,
	}
	if *updateArgoCDConfigMap {
		writeArgoCDConfigMap(t, keys)
	}
	snippet := readRepoFile(t, argocdCM)
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(snippet), &cm); err != nil {
		t.Fatalf("%s: %v", argocdCM, err)
	}
	if len(cm.Data) != len(keys) {
		t.Errorf("%s has keys %v, want exactly %v", argocdCM, sortedKeys(cm.Data), sortedKeys(keys))
	}
	for key, file := range keys {
		if cm.Data[key] != readRepoFile(t, file) {
			t.Errorf("%s: %s is not a copy of %s; run go test ./charts -run TestArgoCDConfigMap -update-argocd-cm", argocdCM, key, file)
		}
	}

	// The documented command, against a live argocd-cm holding settings of its own.
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cm.Namespace}}); err != nil {
		t.Fatal(err)
	}
	live := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: cm.Namespace, Name: cm.Name},
		Data:       map[string]string{"url": "https://argocd.example.com"},
	}
	if err := k8s.Create(ctx, live); err != nil {
		t.Fatal(err)
	}
	mustCommand(t, nil, kubectlBin, "-n", "argocd", "patch", "configmap", "argocd-cm", "--patch-file", filepath.Join(repoRoot, argocdCM))
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(live), live); err != nil {
		t.Fatal(err)
	}
	if live.Data["url"] != "https://argocd.example.com" {
		t.Errorf("the patch dropped argocd-cm's own settings: %v", sortedKeys(live.Data))
	}
	for key, file := range keys {
		if live.Data[key] != readRepoFile(t, file) {
			t.Errorf("argocd-cm %s after the patch differs from %s", key, file)
		}
	}
}

// assertHealth runs script on obj as Argo CD would and checks the verdict.
func assertHealth(t *testing.T, script string, obj *unstructured.Unstructured, want string, msg []string) {
	t.Helper()
	got, message := argoHealth(t, script, obj)
	if got != want {
		t.Errorf("health = %s (%q), want %s\nstatus: %v", got, message, want, obj.Object["status"])
	}
	for _, m := range msg {
		if !strings.Contains(message, m) {
			t.Errorf("health message %q does not contain %q", message, m)
		}
	}
}

// argoHealth runs a health script the way Argo CD runs one from argocd-cm (util/lua in
// argoproj/argo-cd): a Lua state with only the package, base and table libraries (Argo
// CD adds a restricted os, which ours do not use, and the string library only where an
// operator opts in to open libraries, which ours must not need), a one-second deadline,
// the unstructured object as the global `obj`, and the returned table read as
// {status, message}.
func argoHealth(t *testing.T, script string, obj *unstructured.Unstructured) (status, message string) {
	t.Helper()
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			t.Fatalf("opening Lua library %s: %v", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", luaValue(L, obj.Object))
	if err := L.DoString(script); err != nil {
		t.Fatalf("health script failed (Argo CD would show the error instead of a health): %v", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health script returned %s, want a table", L.Get(-1).Type())
	}
	s, okS := ret.RawGetString("status").(lua.LString)
	m, okM := ret.RawGetString("message").(lua.LString)
	if !okS || !okM {
		t.Fatalf("health script returned status %v and message %v, want two strings", ret.RawGetString("status"), ret.RawGetString("message"))
	}
	switch s {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
	default:
		t.Fatalf("health status %q is not one Argo CD knows; it would show Unknown", s)
	}
	return string(s), string(m)
}

// luaValue converts an unstructured value as Argo CD's decodeValue does: JSON numbers
// (int64 from the API machinery, float64) become Lua numbers, lists become arrays.
func luaValue(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		arr := L.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(luaValue(L, item))
		}
		return arr
	case map[string]any:
		tbl := L.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), luaValue(L, item))
		}
		return tbl
	}
	return lua.LNil
}

// startHeraldControllers runs the manager's endpoint and subscription reconcilers, as
// `herald manager` wires them, for the rest of the test.
func startHeraldControllers(t *testing.T) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// One manager per test, each registering the same controller names.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&endpoint.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("herald-manager"),
		Policy:    outbound.Policy{}, // the production default: https to public addresses
	}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	if err := (&subscription.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("herald-manager"),
	}).SetupWithManager(mgr); err != nil {
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

// disabledEndpoint creates a Ready endpoint "ep", has the dispatcher disable it and
// waits until the manager mirrors that into Ready.
func disabledEndpoint(t *testing.T, ns string, extraStatus map[string]any) *unstructured.Unstructured {
	t.Helper()
	createObject(t, newEndpoint(ns, "https://hooks.example.com/in"))
	waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonReady)
	applyDispatcherStatus(t, ns, "ep", extraStatus)
	return waitForReason(t, ns, "WebhookEndpoint", "ep", heraldv1.ReasonDisabled)
}

// applyDeliveringFalse writes the dispatcher's Delivering=False condition, as the
// dispatcher does while it holds an endpoint's deliveries.
func applyDeliveringFalse(t *testing.T, ns, name, reason, message string) {
	t.Helper()
	current := getObject(t, ns, "WebhookEndpoint", name)
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": heraldv1.GroupVersion.String(), "kind": "WebhookEndpoint",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"status": map[string]any{"conditions": []any{map[string]any{
			"type": heraldv1.ConditionDelivering, "status": "False", "reason": reason, "message": message,
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339), "observedGeneration": current.GetGeneration(),
		}}},
	}}
	if err := k8s.Status().Patch(context.Background(), u, client.Apply, client.FieldOwner("herald-dispatcher"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

// TestArgoCDHealth_SelfResolvingReasonsMatchTheAPI: the Lua script's list of reasons
// that heal by themselves (Progressing) is exactly api/v1alpha1's, so a reason added in
// Go without a decision here, or a stale one left in the script, fails.
func TestArgoCDHealth_SelfResolvingReasonsMatchTheAPI(t *testing.T) {
	script := readRepoFile(t, endpointHealthLua)
	start := strings.Index(script, "local SELF_RESOLVING = {")
	end := strings.Index(script[start:], "}")
	if start < 0 || end < 0 {
		t.Fatal("SELF_RESOLVING table not found in the endpoint health script")
	}
	var inLua []string
	for _, line := range strings.Split(script[start+len("local SELF_RESOLVING = {"):start+end], "\n") {
		if name, _, ok := strings.Cut(strings.TrimSpace(line), " = true"); ok {
			inLua = append(inLua, name)
		}
	}
	want := slices.Sorted(slices.Values(heraldv1.SelfResolvingReasons))
	if slices.Sort(inLua); !slices.Equal(inLua, want) {
		t.Fatalf("SELF_RESOLVING in %s = %v, api/v1alpha1.SelfResolvingReasons = %v", endpointHealthLua, inLua, want)
	}
}

// applyDispatcherStatus writes what the dispatcher writes when it auto-disables an
// endpoint: its own status fields by server-side apply under its field manager, the
// Disabled condition stamped with the generation it saw. It returns the applied object.
func applyDispatcherStatus(t *testing.T, ns, name string, extra map[string]any) *unstructured.Unstructured {
	t.Helper()
	current := getObject(t, ns, "WebhookEndpoint", name)
	status := map[string]any{
		"consecutiveFailures": int64(5),
		"disabledReason":      "ConsecutiveFailures",
		"disabledAt":          time.Now().UTC().Format(time.RFC3339),
		"conditions": []any{map[string]any{
			"type":               heraldv1.ConditionDisabled,
			"status":             "True",
			"reason":             "ConsecutiveFailures",
			"message":            "5 consecutive failed attempts; last: HTTP 503",
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
			"observedGeneration": current.GetGeneration(),
		}},
	}
	for k, v := range extra {
		status[k] = v
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": status}}
	u.SetGroupVersionKind(heraldv1.GroupVersion.WithKind("WebhookEndpoint"))
	u.SetNamespace(ns)
	u.SetName(name)
	if err := k8s.Status().Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner("herald-dispatcher"), client.ForceOwnership); err != nil {
		t.Fatalf("applying the dispatcher's status: %v", err)
	}
	return u
}

func newEndpoint(ns, url string) *heraldv1.WebhookEndpoint {
	return &heraldv1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ep"},
		Spec:       heraldv1.WebhookEndpointSpec{URL: url},
	}
}

func newSubscription(ns, endpointName, filter string) *heraldv1.WebhookSubscription {
	return &heraldv1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sub"},
		Spec: heraldv1.WebhookSubscriptionSpec{
			EndpointRef: heraldv1.LocalObjectReference{Name: endpointName},
			EventTypes:  []string{"invoice.*"},
			Filter:      filter,
		},
	}
}

// createObject creates obj as an unstructured object and returns the API server's response,
// so that what the checks see went through the API server's JSON like Argo CD's cache.
func createObject(t *testing.T, obj client.Object) *unstructured.Unstructured {
	t.Helper()
	gvk, err := apiutil.GVKForObject(obj, env.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	if err := k8s.Create(context.Background(), u); err != nil {
		t.Fatalf("creating %s %s: %v", gvk.Kind, obj.GetName(), err)
	}
	return u
}

func getObject(t *testing.T, ns, kind, name string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(heraldv1.GroupVersion.WithKind(kind))
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		t.Fatal(err)
	}
	return u
}

// waitForReason polls the API server until the manager has reconciled the object's
// current generation with the given Ready reason, and returns the object.
func waitForReason(t *testing.T, ns, kind, name, reason string) *unstructured.Unstructured {
	t.Helper()
	var last string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		u := getObject(t, ns, kind, name)
		observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		if c := findCondition(t, u, heraldv1.ConditionReady); c != nil {
			if c.Reason == reason && observed == u.GetGeneration() {
				return u
			}
			last = fmt.Sprintf("Ready=%s reason %s at observedGeneration %d of %d: %s", c.Status, c.Reason, observed, u.GetGeneration(), c.Message)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s %s/%s never reached Ready reason %s; last: %s", kind, ns, name, reason, last)
	return nil
}

func findCondition(t *testing.T, u *unstructured.Unstructured, kind string) *metav1.Condition {
	t.Helper()
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var conds []metav1.Condition
	for _, r := range raw {
		var c metav1.Condition
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.(map[string]any), &c); err != nil {
			t.Fatal(err)
		}
		conds = append(conds, c)
	}
	return meta.FindStatusCondition(conds, kind)
}

func mustCondition(t *testing.T, u *unstructured.Unstructured, kind string) *metav1.Condition {
	t.Helper()
	c := findCondition(t, u, kind)
	if c == nil {
		t.Fatalf("%s has no %s condition: %v", u.GetName(), kind, u.Object["status"])
	}
	return c
}

func setSpec(t *testing.T, u *unstructured.Unstructured, value string, field string) {
	t.Helper()
	if err := unstructured.SetNestedField(u.Object, value, "spec", field); err != nil {
		t.Fatal(err)
	}
}

// argoNamespace creates a namespace for one row.
func argoNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "argocd-health-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func readRepoFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// writeArgoCDConfigMap rewrites the data of the argocd-cm snippet from the scripts,
// keeping its comment header.
func writeArgoCDConfigMap(t *testing.T, keys map[string]string) {
	t.Helper()
	old := readRepoFile(t, argocdCM)
	head, _, ok := strings.Cut(old, "\ndata:\n")
	if !ok {
		t.Fatalf("%s has no data section to rewrite", argocdCM)
	}
	var b strings.Builder
	b.WriteString(head + "\ndata:\n")
	for _, key := range sortedKeys(keys) {
		b.WriteString("  " + key + ": |\n")
		for _, line := range strings.SplitAfter(strings.TrimSuffix(readRepoFile(t, keys[key]), "\n"), "\n") {
			if strings.TrimSpace(line) != "" {
				b.WriteString("    ")
			}
			b.WriteString(line)
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(filepath.Join(repoRoot, argocdCM), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
