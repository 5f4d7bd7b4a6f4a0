package cluster

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The in-cluster receiver of serviceByReference: a pod behind a ClusterIP Service in the
// shop namespace, which its endpoint names by reference (spec.service), never by URL.
const (
	svcEndpoint = "incluster"
	svcName     = "receiver"
	// The Service's port differs from the pod's, so a delivery arrives only through the
	// Service's cluster IP and kube-proxy's rules (there is no cluster DNS here either).
	svcPort, svcTargetPort = 80, 8080
	// A namespace that is not the endpoint's, holding a Service of its own.
	otherNS = "elsewhere"
)

// serviceByReference runs under the chart's default outbound policy (private networks
// refused: every other endpoint of the suite turns InvalidURL) an endpoint whose
// destination is a Service in its namespace. Herald reads the Service and dials its
// cluster IP, the one private destination the endpoint is let through to; the receiver
// pod verifies every signature. The Service deleted: Ready=False ServiceNotFound, the
// events published meanwhile pending, neither attempted nor dead-lettered; created again
// (with another cluster IP): they arrive. A reference cannot leave the namespace: the
// API server refuses a namespace field, a Service of another namespace is not found,
// and its cluster IP as a URL is refused by the policy. The step removes what it made;
// the policy stays until helmUninstall, the next step, uninstalls the release.
func (s *suite) serviceByReference(t *testing.T) {
	uid := s.jsonpath(systemNS, "pod/herald-dispatcher-0", "{.metadata.uid}")
	args := append([]string{"upgrade", "herald", filepath.Join(repoRoot, "charts", "herald"), "-n", systemNS, "--wait", "--timeout", "3m"},
		s.helmValues("suite")...)
	// The last --set of a key wins: the chart's default for private networks.
	args = append(args, "--set", "outbound.allowPrivateNetworks=false")
	t.Log(s.helm(args...))
	s.waitDispatcherReady(uid)
	// The policy in force: a URL endpoint on the node's private address is refused.
	s.eventually(time.Minute, "stream (a URL on the node's private address) Ready=False InvalidURL", func() (bool, string) {
		got := s.readyCondition("stream")
		return strings.HasPrefix(got, "False InvalidURL"), got
	})
	t.Logf("outbound.allowPrivateNetworks=false in force: stream is %s", s.readyCondition("stream"))

	// The endpoint before its Service: held, and saying why.
	s.apply(shopNS, fmt.Sprintf(`apiVersion: hooks.herald.dev/v1alpha1
kind: WebhookEndpoint
metadata:
  name: %[1]s
spec:
  service: {name: %[2]s, port: %[3]d, path: /hooks, scheme: http}
  secretRef: {name: %[1]s-signing}
  signature: {style: StandardWebhooks}
---
apiVersion: hooks.herald.dev/v1alpha1
kind: WebhookSubscription
metadata:
  name: %[1]s
spec:
  endpointRef: {name: %[1]s}
  eventTypes: ["incluster.*"]
`, svcEndpoint, svcName, svcPort))
	s.waitServiceNotFound()
	// The receiver pod verifies with the signing secret the manager generated.
	s.apply(shopNS, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
  labels: {app: %[1]s}
spec:
  automountServiceAccountToken: false
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: receiver
      image: %[2]s
      imagePullPolicy: IfNotPresent
      command: ["/receiver", "-listen", ":%[3]d"]
      env:
        - name: WEBHOOK_SECRET
          valueFrom: {secretKeyRef: {name: %[4]s-signing, key: secret}}
      ports: [{containerPort: %[3]d}]
      readinessProbe:
        httpGet: {path: /healthz, port: %[3]d}
        periodSeconds: 1
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
`, svcName, testImage, svcTargetPort, svcEndpoint))
	s.kubectl("wait", "-n", shopNS, "--for=condition=Ready", "--timeout=2m", "pod/"+svcName)
	t.Log(s.podReport(shopNS, "app="+svcName))
	clusterIP := s.createService()
	s.eventually(90*time.Second, svcEndpoint+" Ready=True", func() (bool, string) {
		got := s.readyCondition(svcEndpoint)
		return strings.HasPrefix(got, "True "), got
	})
	t.Log("kubectl get whe -o wide\n" + s.kubectl("get", "whe", svcEndpoint, "-n", shopNS, "-o", "wide"))

	// Delivered through the Service, every one verified by the pod.
	first := s.publishRouted("incluster", "incluster.created", 20)
	seen := s.waitReceived(first)
	for _, id := range first {
		if r := seen[id]; r.host != fmt.Sprintf("%s.%s.svc:%d", svcName, shopNS, svcPort) || r.path != "/hooks" {
			t.Errorf("event %s arrived with Host %q and path %q, want %s.%s.svc:%d and /hooks", id, r.host, r.path, svcName, shopNS, svcPort)
		}
	}
	s.waitCounters(fmt.Sprintf("delivered=%d failed=0 deadLettered=0 pending=0", len(first)))
	t.Logf("%d events delivered to the pod behind Service %s (cluster IP %s), every signature verified", len(first), svcName, clusterIP)

	// The Service deleted: deliveries held, not attempted, not dead-lettered. The
	// dispatcher says it holds them before anything is published, so none can still go
	// out on a connection it kept open to the old address.
	held := s.dispatcherHolds()
	s.kubectl("delete", "service", svcName, "-n", shopNS, "--wait")
	s.waitServiceNotFound()
	s.eventually(time.Minute, "the dispatcher to hold incluster's deliveries (ServiceNotFound)", func() (bool, string) {
		n := s.dispatcherHolds()
		return n > held, fmt.Sprintf("%d log lines, %d before", n, held)
	})
	second := s.publishRouted("incluster-held", "incluster.held", 5)
	s.waitCounters(fmt.Sprintf("delivered=%d failed=0 deadLettered=0 pending=%d", len(first), len(second)))
	if got := s.received(); len(got) != len(first) {
		t.Fatalf("the pod received %d requests while the Service was missing, want %d (only the first %d)", len(got), len(first), len(first))
	}
	t.Logf("Service deleted: %s; %d events pending, none attempted or dead-lettered",
		s.readyCondition(svcEndpoint), len(second))
	t.Log("kubectl get whe -o wide\n" + s.kubectl("get", "whe", svcEndpoint, "-n", shopNS, "-o", "wide"))

	// Created again, at another cluster IP the dispatcher reads: the held events arrive.
	again := s.createService()
	s.waitReceived(second)
	s.waitCounters(fmt.Sprintf("delivered=%d failed=0 deadLettered=0 pending=0", len(first)+len(second)))
	t.Logf("Service created again (cluster IP %s, was %s): the %d held events delivered and verified", again, clusterIP, len(second))

	s.referenceStaysInNamespace()

	// Leave the suite as it was, but for the policy, which helm uninstall ends.
	s.kubectl("delete", "-n", shopNS, "whe/"+svcEndpoint, "whs/"+svcEndpoint, "pod/"+svcName, "service/"+svcName)
	s.kubectl("delete", "namespace", otherNS, "--wait=false")
}

// referenceStaysInNamespace: a reference names a Service of the endpoint's own namespace
// and nothing else. ServiceReference has no namespace field, and the CRD's structural
// schema makes the API server refuse one (kubectl asks for strict field validation);
// a name that exists only in another namespace is not found; that Service's cluster IP as
// a URL stays refused by the private-address rule.
func (s *suite) referenceStaysInNamespace() {
	t := s.t
	s.apply("", fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: %[1]s}
spec:
  ports: [{port: %[2]d, targetPort: %[3]d}]
`, otherNS, svcPort, svcTargetPort))
	otherIP := s.jsonpath(otherNS, "service/other", "{.spec.clusterIP}")
	if otherIP == "" {
		t.Fatalf("Service %s/other has no cluster IP", otherNS)
	}

	out, err := s.run([]byte(fmt.Sprintf(`apiVersion: hooks.herald.dev/v1alpha1
kind: WebhookEndpoint
metadata: {name: cross-namespace}
spec:
  service: {name: other, namespace: %s, port: %d, scheme: http}
  secretRef: {name: cross-namespace-signing}
  signature: {style: StandardWebhooks}
`, otherNS, svcPort)), s.kubectlBin, "apply", "-n", shopNS, "-f", "-")
	if err == nil || !strings.Contains(err.Error(), "Error from server") || !strings.Contains(err.Error(), `unknown field "spec.service.namespace"`) {
		t.Fatalf("an endpoint naming spec.service.namespace: got %v (%s), want the API server to refuse the unknown field", err, out)
	}
	t.Logf("spec.service.namespace refused by the API server: %s", lineWith(err.Error(), "unknown field"))

	s.apply(shopNS, fmt.Sprintf(`apiVersion: hooks.herald.dev/v1alpha1
kind: WebhookEndpoint
metadata: {name: other-name}
spec:
  service: {name: other, port: %[1]d, scheme: http}
  secretRef: {name: other-name-signing}
  signature: {style: StandardWebhooks}
---
apiVersion: hooks.herald.dev/v1alpha1
kind: WebhookEndpoint
metadata: {name: other-ip}
spec:
  url: http://%[2]s:%[1]d/hooks
  secretRef: {name: other-ip-signing}
  signature: {style: StandardWebhooks}
`, svcPort, otherIP))
	for _, c := range []struct{ name, want string }{
		{"other-name", "False ServiceNotFound Service other does not exist in namespace " + shopNS},
		{"other-ip", "False InvalidURL"},
	} {
		s.eventually(time.Minute, c.name+" "+c.want, func() (bool, string) {
			got := s.readyCondition(c.name)
			return strings.HasPrefix(got, c.want), got
		})
		t.Logf("%s: %s", c.name, s.readyCondition(c.name))
	}
	s.kubectl("delete", "whe", "other-name", "other-ip", "-n", shopNS)
}

// readyCondition is the endpoint's Ready condition: "<status> <reason> <message>".
func (s *suite) readyCondition(name string) string {
	return s.jsonpath(shopNS, "whe/"+name, `{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].reason} {.status.conditions[?(@.type=="Ready")].message}`)
}

func (s *suite) waitServiceNotFound() {
	s.t.Helper()
	want := fmt.Sprintf("False ServiceNotFound Service %s does not exist in namespace %s", svcName, shopNS)
	s.eventually(time.Minute, svcEndpoint+" "+want, func() (bool, string) {
		got := s.readyCondition(svcEndpoint)
		return strings.HasPrefix(got, want), got
	})
}

// createService creates the receiver's ClusterIP Service and returns its cluster IP.
func (s *suite) createService() string {
	s.t.Helper()
	s.apply(shopNS, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  type: ClusterIP
  selector: {app: %[1]s}
  ports: [{name: http, port: %[2]d, targetPort: %[3]d}]
`, svcName, svcPort, svcTargetPort))
	ip := s.jsonpath(shopNS, "service/"+svcName, "{.spec.clusterIP}")
	s.t.Logf("Service %s/%s: cluster IP %s port %d -> pod port %d", shopNS, svcName, ip, svcPort, svcTargetPort)
	return ip
}

// publishRouted publishes count events with the producer pod and returns the ids routed
// to the in-cluster endpoint.
func (s *suite) publishRouted(prefix, eventType string, count int) []string {
	s.t.Helper()
	run := s.waitProducer(s.startProducer(prefix, eventType, count, 10, 1), 3*time.Minute)
	var routed []string
	for _, id := range run.accepted {
		if run.matched[id] == 1 {
			routed = append(routed, id)
		}
	}
	if len(routed) != count {
		s.t.Fatalf("%d of %d events routed to %s:\n%s", len(routed), count, svcEndpoint, run.log)
	}
	return routed
}

// receipt is one request the receiver pod logged.
type receipt struct {
	host, path string
	verified   bool
}

var receivedLine = regexp.MustCompile(`^received id=(\S*) host=(\S*) path=(\S*) verified=(\w+)$`)

// received reads the receiver pod's log: every request, by event id (the last of an id).
func (s *suite) received() map[string]receipt {
	out, err := s.run(nil, s.kubectlBin, "logs", "-n", shopNS, svcName)
	if err != nil {
		s.t.Fatal(err)
	}
	got := map[string]receipt{}
	for _, line := range strings.Split(out, "\n") {
		if m := receivedLine.FindStringSubmatch(line); m != nil {
			if m[4] != "true" {
				s.t.Fatalf("the receiver pod refused the signature of event %q:\n%s", m[1], out)
			}
			got[m[1]] = receipt{host: m[2], path: m[3], verified: true}
		}
	}
	return got
}

// waitReceived waits for the receiver pod to have verified every one of ids.
func (s *suite) waitReceived(ids []string) map[string]receipt {
	s.t.Helper()
	var got map[string]receipt
	s.eventually(2*time.Minute, fmt.Sprintf("the receiver pod to verify %d events", len(ids)), func() (bool, string) {
		got = s.received()
		var missing []string
		for _, id := range ids {
			if !got[id].verified {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0, fmt.Sprintf("missing %d: %v; whe: %s %s", len(missing), missing[:min(len(missing), 5)],
			s.readyCondition(svcEndpoint), s.jsonpath(shopNS, "whe/"+svcEndpoint, "{.status.state} {.status.lastAttempt}"))
	})
	return got
}

// waitCounters waits for the endpoint's status counters, as
// "delivered=%d failed=%d deadLettered=%d pending=%d".
func (s *suite) waitCounters(want string) {
	s.t.Helper()
	s.eventually(time.Minute, svcEndpoint+" counters "+want, func() (bool, string) {
		got := s.jsonpath(shopNS, "whe/"+svcEndpoint, "delivered={.status.counters.delivered} failed={.status.counters.failedAttempts} deadLettered={.status.counters.deadLettered} pending={.status.counters.pending}")
		return got == want, got
	})
}

// dispatcherHolds counts the dispatcher's log lines saying it holds the in-cluster
// endpoint's deliveries because its Service is missing.
func (s *suite) dispatcherHolds() int {
	out, err := s.run(nil, s.kubectlBin, "logs", "-n", systemNS, "herald-dispatcher-0", "--tail=-1")
	if err != nil {
		s.t.Fatal(err)
	}
	return len(slices.DeleteFunc(strings.Split(out, "\n"), func(line string) bool {
		return !strings.Contains(line, `"deliveries held"`) || !strings.Contains(line, "ServiceNotFound") ||
			!strings.Contains(line, `"`+svcEndpoint+`"`)
	}))
}

// lineWith is the first line of s holding sub.
func lineWith(s, sub string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
