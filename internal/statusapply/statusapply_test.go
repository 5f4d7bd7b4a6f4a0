package statusapply_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/statusapply"
	"github.com/herald-dev/herald/internal/testenv"
)

// k goes straight to the API server.
var k client.Client

func TestMain(m *testing.M) {
	os.Exit(testenv.RunSuite(m, func(s *testenv.Suite) error {
		k = s.Client
		return nil
	}))
}

// The two writers of a WebhookEndpoint's status each apply a struct holding exactly
// their fields, as controllers/endpoint and the dispatcher do. They are declared here,
// not borrowed, so the test pins the mechanism and not either writer's choice of fields.
type managerOwned struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

type dispatcherOwned struct {
	Conditions          []metav1.Condition `json:"conditions,omitempty"`
	ConsecutiveFailures int32              `json:"consecutiveFailures,omitempty"`
}

const (
	manager    = "test-manager"
	dispatcher = "test-dispatcher"
)

func condition(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: reason,
		LastTransitionTime: metav1.NewTime(time.Now().Truncate(time.Second))}
}

func newEndpoint(t *testing.T) *heraldv1.WebhookEndpoint {
	t.Helper()
	ep := &heraldv1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: testenv.NewNamespace(t, k, "statusapply-"), Name: "ep"},
		Spec:       heraldv1.WebhookEndpointSpec{URL: "https://example.com/hook"},
	}
	if err := k.Create(context.Background(), ep); err != nil {
		t.Fatalf("creating endpoint: %v", err)
	}
	return ep
}

func apply(t *testing.T, ep *heraldv1.WebhookEndpoint, status any, owner string) {
	t.Helper()
	if err := statusapply.Apply(context.Background(), k, "WebhookEndpoint", ep.Namespace, ep.Name, status, owner); err != nil {
		t.Fatalf("Apply as %s: %v", owner, err)
	}
}

func get(t *testing.T, ep *heraldv1.WebhookEndpoint) heraldv1.WebhookEndpointStatus {
	t.Helper()
	var got heraldv1.WebhookEndpoint
	if err := k.Get(context.Background(), client.ObjectKeyFromObject(ep), &got); err != nil {
		t.Fatal(err)
	}
	return got.Status
}

func wantCondition(t *testing.T, st heraldv1.WebhookEndpointStatus, typ string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	c := meta.FindStatusCondition(st.Conditions, typ)
	if c == nil || c.Status != status || c.Reason != reason {
		t.Fatalf("condition %s = %+v, want %s/%s; conditions %+v", typ, c, status, reason, st.Conditions)
	}
}

// TestApply_TwoWritersKeepTheirOwnFields: the manager and the dispatcher share the
// status and its conditions list; each apply changes only the applier's own entries.
func TestApply_TwoWritersKeepTheirOwnFields(t *testing.T) {
	ep := newEndpoint(t)
	apply(t, ep, &managerOwned{ObservedGeneration: 1, Conditions: []metav1.Condition{condition("Ready", metav1.ConditionTrue, "Valid")}}, manager)
	apply(t, ep, &dispatcherOwned{ConsecutiveFailures: 3, Conditions: []metav1.Condition{condition("Disabled", metav1.ConditionFalse, "Delivering")}}, dispatcher)

	st := get(t, ep)
	wantCondition(t, st, "Ready", metav1.ConditionTrue, "Valid")
	wantCondition(t, st, "Disabled", metav1.ConditionFalse, "Delivering")
	if st.ObservedGeneration != 1 || st.ConsecutiveFailures != 3 {
		t.Fatalf("status = %+v, want observedGeneration 1 (manager) and consecutiveFailures 3 (dispatcher)", st)
	}

	// The manager re-applies its view: the dispatcher's condition and counter stay.
	apply(t, ep, &managerOwned{ObservedGeneration: 2, Conditions: []metav1.Condition{condition("Ready", metav1.ConditionFalse, "InvalidURL")}}, manager)
	st = get(t, ep)
	wantCondition(t, st, "Ready", metav1.ConditionFalse, "InvalidURL")
	wantCondition(t, st, "Disabled", metav1.ConditionFalse, "Delivering")
	if st.ObservedGeneration != 2 || st.ConsecutiveFailures != 3 {
		t.Fatalf("after the manager's second apply: %+v, want observedGeneration 2 and the dispatcher's consecutiveFailures 3 kept", st)
	}

	// A field its owner stops applying is removed (a success resets the counter to
	// zero, which omitempty leaves out): status never keeps a stale figure.
	apply(t, ep, &dispatcherOwned{Conditions: []metav1.Condition{condition("Disabled", metav1.ConditionFalse, "Delivering")}}, dispatcher)
	st = get(t, ep)
	if st.ConsecutiveFailures != 0 {
		t.Fatalf("consecutiveFailures = %d after its owner stopped applying it, want it removed", st.ConsecutiveFailures)
	}
	wantCondition(t, st, "Ready", metav1.ConditionFalse, "InvalidURL")
}

// TestApply_TakesBackAFieldSomeoneElseSet: a person who edits a condition with their own
// field manager does not block the component: Apply forces ownership.
func TestApply_TakesBackAFieldSomeoneElseSet(t *testing.T) {
	ep := newEndpoint(t)
	apply(t, ep, &managerOwned{Conditions: []metav1.Condition{condition("Ready", metav1.ConditionTrue, "Valid")}}, manager)
	apply(t, ep, &managerOwned{Conditions: []metav1.Condition{condition("Ready", metav1.ConditionTrue, "EditedByHand")}}, "kubectl-edit")
	wantCondition(t, get(t, ep), "Ready", metav1.ConditionTrue, "EditedByHand")
	apply(t, ep, &managerOwned{Conditions: []metav1.Condition{condition("Ready", metav1.ConditionFalse, "InvalidURL")}}, manager)
	wantCondition(t, get(t, ep), "Ready", metav1.ConditionFalse, "InvalidURL")
}

// TestApply_Errors: what is and is not an error for the caller's retry.
func TestApply_Errors(t *testing.T) {
	ns := testenv.NewNamespace(t, k, "statusapply-")
	status := &managerOwned{Conditions: []metav1.Condition{condition("Ready", metav1.ConditionTrue, "Valid")}}
	for _, c := range []struct {
		why  string
		kind string
		name string
		want string // "" for no error
	}{
		{"an endpoint deleted meanwhile is no error: there is nothing left to report on", "WebhookEndpoint", "gone", ""},
		{"the same for a subscription", "WebhookSubscription", "gone", ""},
		{"a kind the API server does not serve is an error naming the object", "WebhookNothing", "x", "WebhookNothing " + ns + "/x"},
	} {
		t.Run(c.why, func(t *testing.T) {
			err := statusapply.Apply(context.Background(), k, c.kind, ns, c.name, status, manager)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Apply: %v, want nil", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Apply = %v, want an error naming %q", err, c.want)
			}
		})
	}
	// A status that cannot be encoded is refused before anything is sent.
	if err := statusapply.Apply(context.Background(), k, "WebhookEndpoint", ns, "ep", make(chan int), manager); err == nil || !strings.Contains(err.Error(), "encoding status") {
		t.Fatalf("Apply(chan) = %v, want an encoding error", err)
	}
}
