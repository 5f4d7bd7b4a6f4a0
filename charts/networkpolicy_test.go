package charts_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/herald-dev/herald/controllers/workload"
)

// The chart's NetworkPolicies: off by default; on, accepted by the API server, selecting
// the pods the manager and the chart make, with the dispatcher's ingress on its API
// port from the producers' namespaces and its egress to DNS, the API server, NATS in
// external mode and the receivers (private ranges only where the outbound policy
// allows them). Without a CNI that enforces them (envtest has none) this checks what
// the policies say, not what a network does with them.
func TestNetworkPolicy_SelectsHeraldsPodsAndOpensWhatTheyUse(t *testing.T) {
	for _, o := range objects(t, helmTemplate(t)) {
		if o.GetKind() == "NetworkPolicy" {
			t.Fatalf("NetworkPolicy %s rendered by default", o.GetName())
		}
	}
	producers := []string{"--set", "networkPolicy.enabled=true", "--set-string", "networkPolicy.producers.namespaceSelector.herald\\.dev/publishes=true"}
	for _, tt := range []struct {
		name                  string
		values                []string
		nats, privateExcepted bool
	}{
		{"embedded", producers, false, true},
		{"external NATS", append(append([]string{}, producers...), externalValues...), true, true},
		{"private receivers allowed", append(append([]string{}, producers...), "--set", "outbound.allowPrivateNetworks=true"), false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			manifests := helmTemplate(t, tt.values...)
			objs := objects(t, manifests)
			// Other tests of the package apply the chart in this namespace for real.
			out := serverDryRun(t, manifests, "--force-conflicts")
			if got := strings.Count(out, "(server dry run)"); got != len(objs) {
				t.Fatalf("API server accepted %d of %d objects:\n%s", got, len(objs), out)
			}
			deploy := find(t, objs, "Deployment", "herald-manager")
			cfg := managerConfig(t, deploy)

			var disp, mgr networkingv1.NetworkPolicy
			convert(t, find(t, objs, "NetworkPolicy", cfg.Name), &disp)
			convert(t, find(t, objs, "NetworkPolicy", "herald-manager"), &mgr)
			// The labels the manager puts on the dispatcher's pods.
			dispatcherPod := labels.Set{workload.LabelName: "herald", workload.LabelComponent: workload.ComponentValue, workload.LabelInstance: cfg.Name}
			if sel := labels.SelectorFromSet(disp.Spec.PodSelector.MatchLabels); len(disp.Spec.PodSelector.MatchLabels) == 0 || !sel.Matches(dispatcherPod) {
				t.Errorf("dispatcher policy selects %v, not the dispatcher's pods %v", disp.Spec.PodSelector.MatchLabels, dispatcherPod)
			}
			var d appsv1.Deployment
			convert(t, deploy, &d)
			if sel := labels.SelectorFromSet(mgr.Spec.PodSelector.MatchLabels); !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("manager policy selects %v, not the manager's pods %v", mgr.Spec.PodSelector.MatchLabels, d.Spec.Template.Labels)
			}

			api := disp.Spec.Ingress[0]
			if len(api.Ports) != 1 || api.Ports[0].Port.IntValue() != workload.IngestPort || api.From[0].NamespaceSelector.MatchLabels["herald.dev/publishes"] != "true" {
				t.Errorf("dispatcher ingress = %+v, want port %d from the producers' namespaces", api, workload.IngestPort)
			}
			ports := func(p networkingv1.NetworkPolicy) (out []int) {
				for _, e := range p.Spec.Egress {
					for _, port := range e.Ports {
						out = append(out, port.Port.IntValue())
					}
				}
				return out
			}
			for _, p := range []networkingv1.NetworkPolicy{disp, mgr} {
				if got := ports(p); !slices.Contains(got, 53) || !slices.Contains(got, 443) || !slices.Contains(got, 6443) {
					t.Errorf("%s egress ports %v, want DNS and the API server", p.Name, got)
				}
			}
			if got := slices.Contains(ports(disp), 4222); got != tt.nats {
				t.Errorf("dispatcher egress to NATS: %v, want %v", got, tt.nats)
			}
			receivers := disp.Spec.Egress[len(disp.Spec.Egress)-1]
			if len(receivers.Ports) != 0 || len(receivers.To) != 2 || receivers.To[0].IPBlock.CIDR != "0.0.0.0/0" {
				t.Fatalf("receivers rule = %+v, want any port to 0.0.0.0/0 and ::/0", receivers)
			}
			if got := slices.Contains(receivers.To[0].IPBlock.Except, "10.0.0.0/8") && slices.Contains(receivers.To[1].IPBlock.Except, "fc00::/7"); got != tt.privateExcepted {
				t.Errorf("private ranges excepted from the receivers: %v, want %v (%+v)", got, tt.privateExcepted, receivers.To)
			}
			if len(mgr.Spec.Egress) != 2 {
				t.Errorf("manager egress = %+v, want the API server and DNS only", mgr.Spec.Egress)
			}
		})
	}
}
