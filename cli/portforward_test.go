package cli

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestForwardTarget_ARunningReadyPodAndThePortTheServiceLeadsTo: herald console's
// port-forward goes where the Service would send a connection: a running, ready Pod
// (not one starting, failing its readiness or being deleted), on the container port the
// Service's port names (the workload's Service says "ingest") or numbers.
func TestForwardTarget_ARunningReadyPodAndThePortTheServiceLeadsTo(t *testing.T) {
	svc := func(target intstr.IntOrString) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "herald-system", Name: "herald-dispatcher"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
				{Name: "metrics", Port: 9090, TargetPort: intstr.FromString("metrics")},
				{Name: "ingest", Port: 8080, TargetPort: target},
			}}}
	}
	pod := func(name string, phase corev1.PodPhase, ready corev1.ConditionStatus, deleting bool) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "dispatcher", Ports: []corev1.ContainerPort{
				{Name: "metrics", ContainerPort: 9090}, {Name: "ingest", ContainerPort: 18080},
			}}}},
			Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{}
		}
		return p
	}
	starting := pod("starting", corev1.PodPending, corev1.ConditionFalse, false)
	unready := pod("unready", corev1.PodRunning, corev1.ConditionFalse, false)
	leaving := pod("leaving", corev1.PodRunning, corev1.ConditionTrue, true)
	ready := pod("ready", corev1.PodRunning, corev1.ConditionTrue, false)

	for _, tc := range []struct {
		why      string
		svc      *corev1.Service
		port     int32
		pods     []corev1.Pod
		wantPod  string
		wantPort int32
		wantErr  string
	}{
		{why: "a named target port: the ready Pod's container port of that name", svc: svc(intstr.FromString("ingest")), port: 8080,
			pods: []corev1.Pod{starting, unready, leaving, ready}, wantPod: "ready", wantPort: 18080},
		{why: "a numbered target port", svc: svc(intstr.FromInt32(18081)), port: 8080, pods: []corev1.Pod{ready}, wantPod: "ready", wantPort: 18081},
		{why: "no target port: the Service's port", svc: svc(intstr.IntOrString{}), port: 8080, pods: []corev1.Pod{ready}, wantPod: "ready", wantPort: 8080},
		{why: "no Pod that would be sent traffic", svc: svc(intstr.FromString("ingest")), port: 8080, pods: []corev1.Pod{starting, unready, leaving},
			wantErr: "no running, ready Pod behind Service herald-system/herald-dispatcher"},
		{why: "a port the Service does not have", svc: svc(intstr.FromString("ingest")), port: 8443, pods: []corev1.Pod{ready},
			wantErr: "Service herald-system/herald-dispatcher has no port 8443"},
	} {
		gotPod, gotPort, err := forwardTarget(tc.svc, tc.pods, tc.port)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: got %s:%d, %v; want the error %q", tc.why, gotPod, gotPort, err, tc.wantErr)
			}
		case err != nil || gotPod != tc.wantPod || gotPort != tc.wantPort:
			t.Errorf("%s: got %s:%d, %v; want %s:%d", tc.why, gotPod, gotPort, err, tc.wantPod, tc.wantPort)
		}
	}
}
