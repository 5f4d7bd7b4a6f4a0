package cluster

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/hack/framework"
)

// suite is the state the steps share: they run in order on one cluster, each starting
// from where the previous one left Herald.
type suite struct {
	*cluster
	recv     *receivers
	ingest   string // http://<dispatcher Service ClusterIP>:8080
	producer int    // producer pods started, for unique names
	// apiServerToken makes producers publish with the pod's default ServiceAccount token
	// (the API server's audience) instead of a projected one for Herald's: the upgrade
	// from a release that knew no audience runs with dispatcher.auth.acceptAPIServerAudience.
	apiServerToken bool
}

const shopNS = "shop"

// TestCluster runs Herald as real pods: helm install, the manager building the
// dispatcher, a producer pod publishing through the Service, every signature style
// verified by reference receivers, the failure lifecycle, pods killed under a publish
// stream, helm uninstall/upgrade and the kustomize install. Steps stop at the first failure
// (each depends on the state the previous one left).
func TestCluster(t *testing.T) {
	begin := time.Now()
	s := &suite{cluster: up(t)}
	ln, err := listenInNetns(s.netnsPath, nodeIP+":0")
	if err != nil {
		t.Fatalf("listening in the cluster's network namespace: %v", err)
	}
	s.recv = newReceivers(ln)
	t.Cleanup(s.recv.close)
	t.Logf("receivers listen at %s, inside the node's network namespace", s.recv.base)
	s.logNode()
	s.buildTestImage()

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"HelmInstallDefaultValues", s.helmInstall},
		{"ChartRolesAggregateIntoEditAndAdmin", s.rolesAggregate},
		{"ProducerPodEverySignatureStyle", s.everySignatureStyle},
		{"FailuresDisableDeadLetterReplay", s.failureLifecycle},
		{"DispatcherPodDeletedAndKilledUnderLoad", s.dispatcherKilledUnderLoad},
		{"ManagerPodDeletedAndKilledUnderLoad", s.managerKilledUnderLoad},
		{"ServiceByReferenceReceiverPod", s.serviceByReference},
		{"HelmUninstallKeepsCRDsAndResources", s.helmUninstall},
		{"HelmUpgradeFromPreviousUnderLoad", s.helmUpgradeFromPrevious},
		{"KustomizeConfigDefault", s.kustomize},
		{"ExternalNATSClusterThreeDispatchers", s.externalMode},
	}
	for _, step := range steps {
		stepStart := time.Now()
		s.t = t
		ok := t.Run(step.name, func(t *testing.T) {
			s.t = t
			step.run(t)
		})
		s.t = t
		t.Logf("TIMING step %s: %s", step.name, time.Since(stepStart).Round(100*time.Millisecond))
		if !ok {
			t.Fatalf("step %s failed; the later steps depend on it", step.name)
		}
	}
	if r := s.recv.refusals(); len(r) > 0 {
		t.Errorf("reference receivers refused %d deliveries: %s", len(r), strings.Join(r, "; "))
	}
	t.Logf("TIMING cluster suite total: %s", time.Since(begin).Round(time.Second))
}

// logNode prints the node as the evidence of a real one: name, runtime, kubelet, OS.
func (s *suite) logNode() {
	s.t.Log("node: " + s.kubectl("get", "nodes", "-o",
		`jsonpath={range .items[*]}{.metadata.name} Ready={.status.conditions[?(@.type=="Ready")].status} runtime={.status.nodeInfo.containerRuntimeVersion} kubelet={.status.nodeInfo.kubeletVersion} kernel={.status.nodeInfo.kernelVersion} os={.status.nodeInfo.osImage} internalIP={.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}`))
}

// buildTestImage builds the producer and the in-cluster receiver into one image (the
// producer its entrypoint; the receiver's pod names /receiver) and imports it.
func (s *suite) buildTestImage() {
	s.t.Helper()
	var adds []string
	for _, cmd := range []string{"producer", "receiver"} {
		bin := filepath.Join(s.dir, "images", cmd)
		if out, err := s.goBuild("-o", bin, "./hack/cluster/"+cmd); err != nil {
			s.t.Fatalf("building the %s: %v\n%s", cmd, err, out)
		}
		adds = append(adds, bin+"=/"+cmd)
	}
	s.importImage(testImage, "/producer", adds...)
}

// goBuild builds a static binary (the images have no libc), with the caller's
// environment: the tools' private HOME would give Go an empty module and build cache.
func (s *suite) goBuild(args ...string) (string, error) {
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("go build %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// importImage makes an OCI tar with hack/cluster/ociimage and imports it into the node's
// containerd.
func (s *suite) importImage(name, entrypoint string, adds ...string) {
	s.t.Helper()
	tarball := filepath.Join(s.dir, "images", strings.NewReplacer("/", "_", ":", "_").Replace(name)+".tar")
	args := []string{"-o", tarball, "-name", name, "-user", "65532:65532", "-entrypoint", entrypoint}
	for _, a := range adds {
		args = append(args, "-add", a)
	}
	if _, err := s.run(nil, filepath.Join(s.dir, "images", "ociimage"), args...); err != nil {
		s.t.Fatalf("building image %s: %v", name, err)
	}
	s.ctr("images", "import", tarball)
}

// helmValues are the --set flags of the install line up.sh printed (the local image, the
// outbound policy for the suite's plain-http receivers on the node's private address),
// with the image tag given: one source for every helm command of the suite.
func (s *suite) helmValues(tag string) []string {
	var out []string
	f := strings.Fields(s.installLine)
	for i := 0; i+1 < len(f); i++ {
		if f[i] != "--set" {
			continue
		}
		v := f[i+1]
		if strings.HasPrefix(v, "image.tag=") {
			v = "image.tag=" + tag
		}
		out = append(out, "--set", v)
	}
	return out
}

// helmInstall runs the `helm install` line `make cluster` prints, as printed.
func (s *suite) helmInstall(t *testing.T) {
	// The README installs into a namespace that enforces the restricted Pod Security level.
	s.apply("", fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %s
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/warn: restricted
`, systemNS))
	if !strings.Contains(s.installLine, " -n "+systemNS+" ") || !strings.Contains(s.installLine, "image.tag=suite") {
		t.Fatalf("up.sh printed %q: not into %s, or not the suite's image", s.installLine, systemNS)
	}
	start := time.Now()
	t.Log(s.installLine)
	// The line names `helm`: the pinned one comes first on PATH.
	env := append(append([]string(nil), s.env...), "PATH="+filepath.Dir(s.helmBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd := exec.Command("bash", "-c", s.installLine)
	cmd.Dir, cmd.Env = repoRoot, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", s.installLine, err, out)
	}
	t.Log(string(out))
	t.Logf("TIMING helm install --wait (manager Ready): %s", time.Since(start).Round(100*time.Millisecond))
	t.Log(s.podReport(systemNS, "app.kubernetes.io/component=manager"))

	s.waitDispatcherReady("")
	t.Logf("TIMING helm install -> herald-dispatcher-0 Ready: %s", time.Since(start).Round(100*time.Millisecond))
	claim := s.jsonpath(systemNS, "pod/herald-dispatcher-0", `{.spec.volumes[?(@.persistentVolumeClaim)].persistentVolumeClaim.claimName}`)
	phase := s.jsonpath(systemNS, "pvc/"+claim, "{.status.phase} volume={.spec.volumeName} capacity={.status.capacity.storage}")
	if !strings.HasPrefix(phase, "Bound") {
		t.Fatalf("the dispatcher's claim %q is %q, want Bound", claim, phase)
	}
	t.Logf("dispatcher claim %s: %s", claim, phase)
	t.Log(s.kubectl("get", "statefulsets,deployments,services,pods,pvc", "-n", systemNS, "-o", "wide"))
	s.ingest = "http://" + s.jsonpath(systemNS, "service/herald-dispatcher", "{.spec.clusterIP}") + ":8080"
	t.Logf("dispatcher Service: %s", s.ingest)
}

// rolesAggregate: the chart's herald-publisher and herald-operator ClusterRoles carry the
// aggregate-to-edit/admin labels, so the cluster's own aggregation controller (in
// kube-controller-manager) folds them into the built-in roles: a namespace editor may
// publish and operate endpoints, a viewer may do neither.
func (s *suite) rolesAggregate(t *testing.T) {
	s.kubectl("create", "rolebinding", "suite-editor", "--clusterrole=edit", "--serviceaccount="+systemNS+":suite-editor", "-n", systemNS)
	s.kubectl("create", "rolebinding", "suite-viewer", "--clusterrole=view", "--serviceaccount="+systemNS+":suite-viewer", "-n", systemNS)
	// A SubjectAccessReview, as the dispatcher asks it: kubectl auth can-i cannot name
	// events.hooks.herald.dev, which is a permission and no resource type.
	allowed := func(who, verb, resource string) string {
		out, err := s.run([]byte(fmt.Sprintf(`apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: system:serviceaccount:%[1]s:%[2]s
  groups: [system:serviceaccounts, "system:serviceaccounts:%[1]s", system:authenticated]
  resourceAttributes: {namespace: %[1]s, verb: %[3]s, group: hooks.herald.dev, resource: %[4]s}
`, systemNS, who, verb, resource)), s.kubectlBin, "create", "-f", "-", "-o", "jsonpath={.status.allowed}")
		if err != nil {
			t.Fatal(err)
		}
		return cmp.Or(strings.TrimSpace(out), "false")
	}
	for _, c := range []struct{ who, verb, resource, want string }{
		{"suite-editor", "create", "events", "true"},           // herald-publisher
		{"suite-editor", "update", "webhookendpoints", "true"}, // herald-editor
		{"suite-editor", "replay", "webhookendpoints", "true"}, // herald-operator
		{"suite-viewer", "create", "events", "false"},
		{"suite-viewer", "update", "webhookendpoints", "false"},
	} {
		s.eventually(time.Minute, fmt.Sprintf("%s may %s %s.hooks.herald.dev: %s", c.who, c.verb, c.resource, c.want), func() (bool, string) {
			got := allowed(c.who, c.verb, c.resource)
			return got == c.want, got
		})
		t.Logf("SubjectAccessReview %s %s.hooks.herald.dev as %s: allowed=%s", c.verb, c.resource, c.who, c.want)
	}
}

// waitDispatcherReady waits for a herald-dispatcher-0 other than the pod uid notUID to be
// Ready, and logs it.
func (s *suite) waitDispatcherReady(notUID string) string {
	s.t.Helper()
	var uid string
	s.eventually(4*time.Minute, "herald-dispatcher-0 Ready", func() (bool, string) {
		got := s.jsonpath(systemNS, "pod/herald-dispatcher-0", `{.metadata.uid} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}`)
		f := strings.Fields(got)
		if len(f) == 3 && f[0] != notUID && f[2] == "True" {
			uid = f[0]
			return true, got
		}
		return false, got
	})
	s.t.Log(s.podReport(systemNS, "app.kubernetes.io/component=dispatcher"))
	return uid
}

// endpointManifest is one WebhookEndpoint and its subscription to eventTypes.
func endpointManifest(name, url, style, prefix, extraSpec string, eventTypes ...string) string {
	sig := "    style: " + style
	if prefix != "" {
		sig += "\n    headerPrefix: " + prefix
	}
	return fmt.Sprintf(`apiVersion: hooks.herald.dev/v1alpha1
kind: WebhookEndpoint
metadata:
  name: %[1]s
spec:
  url: %[2]s
  secretRef:
    name: %[1]s-signing
  signature:
%[3]s
%[4]s---
apiVersion: hooks.herald.dev/v1alpha1
kind: WebhookSubscription
metadata:
  name: %[1]s
spec:
  endpointRef:
    name: %[1]s
  eventTypes: ["%[5]s"]
---
`, name, url, sig, extraSpec, strings.Join(eventTypes, `", "`))
}

// addEndpoint applies an endpoint served by the suite's receivers, waits for Ready and
// gives the receiver the signing secret the manager generated.
func (s *suite) addEndpoint(name, style, prefix, extraSpec string, eventTypes ...string) {
	s.t.Helper()
	headerPrefix := prefix
	if style == "StandardWebhooks" {
		headerPrefix = ""
	}
	url := s.recv.add(name, style, prefix)
	s.apply(shopNS, endpointManifest(name, url, style, headerPrefix, extraSpec, eventTypes...))
	s.kubectl("wait", "-n", shopNS, "--for=condition=Ready", "--timeout=90s", "whe/"+name, "whs/"+name)
	raw := s.jsonpath(shopNS, "secret/"+name+"-signing", "{.data.secret}")
	secret, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(secret) == 0 {
		s.t.Fatalf("signing Secret of %s: %q (%v)", name, raw, err)
	}
	s.recv.setSecret(name, string(secret))
}

// producerRun is one finished producer pod.
type producerRun struct {
	accepted   []string // ids answered 202
	matched    map[string]int
	duplicates int // answers with duplicate=true (a retried publish the dispatcher had kept)
	log        string
}

// startProducer runs the producer as a pod in the shop namespace, with a ServiceAccount
// token for Herald's audience that Kubernetes projects into it (the README's pod spec;
// the pod has no API server token at all), and returns the pod's name.
func (s *suite) startProducer(prefix, types string, count int, rate float64, wantMatched int) string {
	s.t.Helper()
	s.producer++
	name := fmt.Sprintf("producer-%d", s.producer)
	token, mount, volume := "/var/run/secrets/herald/token", `
      volumeMounts:
        - {name: herald-token, mountPath: /var/run/secrets/herald, readOnly: true}`, `
  automountServiceAccountToken: false
  volumes:
    - name: herald-token
      projected:
        sources:
          - serviceAccountToken:
              audience: hooks.herald.dev
              expirationSeconds: 3600
              path: token`
	if s.apiServerToken {
		token, mount, volume = "/var/run/secrets/kubernetes.io/serviceaccount/token", "", ""
	}
	s.apply(shopNS, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
  labels: {app: producer, name: %[1]s}
spec:
  serviceAccountName: producer%[11]s
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: producer
      image: %[2]s
      imagePullPolicy: IfNotPresent
      args: ["-server", %[3]q, "-namespace", %[4]q, "-id-prefix", %[5]q, "-types", %[6]q, "-count", "%[7]d", "-rate", "%[8]g", "-want-matched", "%[9]d",
             "-token-file", %[10]q]%[12]s
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
`, name, testImage, s.ingest, shopNS, prefix, types, count, rate, wantMatched, token, volume, mount))
	return name
}

// waitProducer waits for the producer pod to finish and reads what it published.
func (s *suite) waitProducer(pod string, within time.Duration) producerRun {
	s.t.Helper()
	s.eventually(within, "producer pod "+pod+" Succeeded", func() (bool, string) {
		phase := s.jsonpath(shopNS, "pod/"+pod, "{.status.phase}")
		if phase == "Failed" {
			out, _ := s.run(nil, s.kubectlBin, "logs", "-n", shopNS, pod, "--tail=30")
			s.t.Fatalf("producer pod %s Failed:\n%s", pod, out)
		}
		return phase == "Succeeded", phase
	})
	s.t.Log(s.podReport(shopNS, "app=producer,name="+pod))
	logs := s.kubectl("logs", "-n", shopNS, pod)
	run := producerRun{matched: map[string]int{}, log: logs}
	re := regexp.MustCompile(`^accepted id=(\S+) type=\S+ matched=(\d+) duplicate=(\w+)`)
	for _, line := range strings.Split(logs, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			run.accepted = append(run.accepted, m[1])
			run.matched[m[1]], _ = strconv.Atoi(m[2])
			if m[3] == "true" {
				run.duplicates++
			}
		}
	}
	last := strings.TrimSpace(logs[strings.LastIndex(strings.TrimSpace(logs), "\n")+1:])
	s.t.Logf("producer %s: %s (%d accepted, %d answered duplicate)", pod, last, len(run.accepted), run.duplicates)
	return run
}

func (s *suite) everySignatureStyle(t *testing.T) {
	s.kubectl("create", "namespace", shopNS)
	s.kubectl("create", "serviceaccount", "producer", "-n", shopNS)
	// The chart's publisher ClusterRole, bound the way its values.yaml comment says.
	s.kubectl("create", "rolebinding", "producer-publisher", "-n", shopNS, "--clusterrole=herald-publisher", "--serviceaccount="+shopNS+":producer")

	styles := []struct{ name, style, prefix, extra string }{
		{"billing", "StandardWebhooks", "", "  payload:\n    format: Envelope\n"},
		{"governance", "TimestampedPrefixedHex", "X-Acme", ""},
		{"workspace", "BodyPrefixedHex", "X-Acme", "  payload:\n    format: Data\n"},
		{"evaluations", "TimestampedHex", "X-Acme", ""},
	}
	for _, st := range styles {
		s.addEndpoint(st.name, st.style, st.prefix, st.extra, "sig.*")
	}
	t.Log(s.kubectl("get", "whe,whs", "-n", shopNS))

	pod := s.startProducer("sig", "sig.checked", 3, 5, len(styles))
	run := s.waitProducer(pod, 3*time.Minute)
	var routed []string
	for _, id := range run.accepted {
		if run.matched[id] == len(styles) {
			routed = append(routed, id)
		}
	}
	if len(routed) < 3 {
		t.Fatalf("%d events matched all %d endpoints, want 3:\n%s", len(routed), len(styles), run.log)
	}
	for _, st := range styles {
		s.eventually(time.Minute, st.name+" ("+st.style+") to receive and verify 3 events", func() (bool, string) {
			tl := s.recv.tally(st.name, routed)
			return tl.lost == 0, fmt.Sprintf("%+v refused=%v", tl, s.recv.refusals())
		})
		tl := s.recv.tally(st.name, routed)
		t.Logf("%s (%s): %d verified by the reference receiver, %d duplicates", st.name, st.style, tl.delivered, tl.duplicates)
	}
	s.eventually(time.Minute, "status.counters.delivered on every endpoint", func() (bool, string) {
		out := s.kubectl("get", "whe", "-n", shopNS, "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.counters.delivered} {end}`)
		for _, f := range strings.Fields(out) {
			if n, _ := strconv.Atoi(f[strings.Index(f, "=")+1:]); n < 3 {
				return false, out
			}
		}
		return true, out
	})
	t.Log("kubectl get whe -n shop\n" + s.kubectl("get", "whe", "-n", shopNS))
}

func (s *suite) failureLifecycle(t *testing.T) {
	s.addEndpoint("flaky", "StandardWebhooks", "", `  retry:
    schedule: [1s, 1s]
    jitterPercent: 0
  autoDisable:
    afterConsecutiveFailures: 3
`, "flaky.*")
	s.recv.setFailing("flaky", true)
	run := s.waitProducer(s.startProducer("flaky", "flaky.failed", 1, 5, 1), 2*time.Minute)
	id := run.accepted[len(run.accepted)-1]

	s.eventually(2*time.Minute, "flaky Disabled=True after 3 failed attempts", func() (bool, string) {
		got := s.jsonpath(shopNS, "whe/flaky", `{.status.conditions[?(@.type=="Disabled")].status} failures={.status.consecutiveFailures} attempts=`) + strconv.Itoa(s.recv.attemptsOf("flaky", id))
		return strings.HasPrefix(got, "True"), got
	})
	s.eventually(2*time.Minute, "a DeliveryFailed Event naming "+id, func() (bool, string) {
		out := s.kubectl("get", "events", "-n", shopNS, "--field-selector", "involvedObject.name=flaky,reason=DeliveryFailed", "-o", "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}")
		return strings.Contains(out, id), out
	})
	t.Log(s.kubectl("get", "events", "-n", shopNS, "--field-selector", "involvedObject.name=flaky"))
	t.Log(s.kubectl("get", "whe", "flaky", "-n", shopNS))
	if got := s.recv.attemptsOf("flaky", id); got != 3 {
		t.Errorf("flaky received %d attempts of %s, want 3 (the first and two retries)", got, id)
	}

	// Healed: re-enable, then replay the dead letter; it keeps its event id.
	s.recv.setFailing("flaky", false)
	stamp := strconv.FormatInt(time.Now().UnixNano(), 10)
	s.kubectl("annotate", "whe", "flaky", "-n", shopNS, "hooks.herald.dev/reenable="+stamp, "--overwrite")
	s.eventually(time.Minute, "flaky Disabled=False", func() (bool, string) {
		got := s.jsonpath(shopNS, "whe/flaky", `{.status.conditions[?(@.type=="Disabled")].status}`)
		return got == "False" || got == "", got
	})
	s.kubectl("annotate", "whe", "flaky", "-n", shopNS, "hooks.herald.dev/replay-dead-letters="+stamp, "--overwrite")
	s.eventually(time.Minute, "the replayed "+id+" delivered and verified", func() (bool, string) {
		tl := s.recv.tally("flaky", []string{id})
		return tl.delivered == 1, fmt.Sprintf("%+v", tl)
	})
	s.eventually(time.Minute, "flaky's counters to show the replayed delivery", func() (bool, string) {
		got := s.jsonpath(shopNS, "whe/flaky", "{.status.counters.delivered} {.status.counters.deadLettered}")
		return strings.HasPrefix(got, "1 "), got
	})
	t.Log("kubectl get whe flaky\n" + s.kubectl("get", "whe", "flaky", "-n", shopNS))
}

// containerID is the runtime id of a pod's first container.
func (s *suite) containerID(namespace, pod string) string {
	s.t.Helper()
	id := s.jsonpath(namespace, "pod/"+pod, "{.status.containerStatuses[0].containerID}")
	id = strings.TrimPrefix(id, "containerd://")
	if id == "" {
		s.t.Fatalf("pod %s has no container id", pod)
	}
	return id
}

// killContainer sends SIGKILL to the container's process through containerd, as an OOM
// kill or a crash would end it, with no chance to drain.
func (s *suite) killContainer(namespace, pod string) {
	s.t.Helper()
	id := s.containerID(namespace, pod)
	restarts := s.jsonpath(namespace, "pod/"+pod, "{.status.containerStatuses[0].restartCount}")
	s.t.Logf("SIGKILL container %s of pod %s (restarts=%s)", id[:12], pod, restarts)
	s.ctr("tasks", "kill", "--signal", "SIGKILL", id)
	s.eventually(3*time.Minute, pod+" restarted after SIGKILL and Ready", func() (bool, string) {
		got := s.jsonpath(namespace, "pod/"+pod, `{.status.containerStatuses[0].restartCount} {.status.conditions[?(@.type=="Ready")].status}`)
		f := strings.Fields(got)
		return len(f) == 2 && f[0] != restarts && f[1] == "True", got
	})
}

// streamAndCheck runs a producer stream of count events to the stream endpoint, calls
// disrupt while it runs, then checks every accepted event was delivered.
func (s *suite) streamAndCheck(t *testing.T, prefix string, count int, disrupt func(progress func() int)) {
	pod := s.startProducer(prefix, "stream.tick", count, 10, 0)
	progress := func() int { return s.recv.deliveredCount("stream", prefix) }
	disrupt(progress)
	run := s.waitProducer(pod, 6*time.Minute)
	if len(run.accepted) != count {
		t.Errorf("producer had %d of %d events accepted:\n%s", len(run.accepted), count, lastLines(run.log, 20))
	}
	start := time.Now()
	var tl tally
	s.eventually(3*time.Minute, "every accepted event delivered", func() (bool, string) {
		tl = s.recv.tally("stream", run.accepted)
		return tl.lost == 0, fmt.Sprintf("lost=%d missing=%v", tl.lost, tl.missing)
	})
	t.Logf("RESULT %s: accepted=%d delivered=%d lost=%d duplicates=%d (deliveries beyond the first) attempts=%d; producer saw %d duplicate answers; drained %s after the stream",
		prefix, len(run.accepted), tl.delivered, tl.lost, tl.duplicates, tl.attempts, run.duplicates, time.Since(start).Round(100*time.Millisecond))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (s *suite) waitProgress(progress func() int, atLeast int) {
	s.t.Helper()
	s.eventually(3*time.Minute, fmt.Sprintf("%d deliveries of the stream", atLeast), func() (bool, string) {
		n := progress()
		return n >= atLeast, strconv.Itoa(n)
	})
}

func (s *suite) dispatcherKilledUnderLoad(t *testing.T) {
	s.addEndpoint("stream", "StandardWebhooks", "", "", "stream.*")
	uid := s.jsonpath(systemNS, "pod/herald-dispatcher-0", "{.metadata.uid}")
	s.streamAndCheck(t, "kill-dispatcher", 400, func(progress func() int) {
		s.waitProgress(progress, 40)
		t.Logf("kubectl delete pod herald-dispatcher-0 at %d delivered", progress())
		s.kubectl("delete", "pod", "herald-dispatcher-0", "-n", systemNS, "--wait=false")
		s.waitDispatcherReady(uid)
		at := progress()
		s.waitProgress(progress, at+40)
		s.killContainer(systemNS, "herald-dispatcher-0")
		t.Log(s.podReport(systemNS, "app.kubernetes.io/component=dispatcher"))
	})
}

func (s *suite) managerKilledUnderLoad(t *testing.T) {
	managerPod := func() string {
		return s.jsonpath(systemNS, "pods", `{.items[?(@.metadata.labels.app\.kubernetes\.io/component=="manager")].metadata.name}`)
	}
	s.streamAndCheck(t, "kill-manager", 300, func(progress func() int) {
		s.waitProgress(progress, 30)
		old := managerPod()
		t.Logf("kubectl delete pod %s at %d delivered", old, progress())
		s.kubectl("delete", "pod", old, "-n", systemNS, "--wait=false")
		var pod string
		s.eventually(3*time.Minute, "a new manager pod Ready", func() (bool, string) {
			pod = managerPod()
			if pod == "" || strings.Contains(pod, " ") || pod == old {
				return false, pod
			}
			return s.jsonpath(systemNS, "pod/"+pod, `{.status.conditions[?(@.type=="Ready")].status}`) == "True", pod
		})
		s.waitProgress(progress, progress()+30)
		s.killContainer(systemNS, pod)
		t.Log(s.podReport(systemNS, "app.kubernetes.io/component=manager"))
	})
}

func (s *suite) helmUninstall(t *testing.T) {
	t.Log(s.helm("uninstall", "herald", "-n", systemNS, "--wait", "--timeout", "3m"))
	s.eventually(2*time.Minute, "the manager and the dispatcher gone", func() (bool, string) {
		out := s.kubectl("get", "pods,statefulsets,deployments", "-n", systemNS, "-o", "name")
		return strings.TrimSpace(out) == "", out
	})
	crds := s.kubectl("get", "crd", "-o", "name")
	for _, want := range []string{"webhookendpoints.hooks.herald.dev", "webhooksubscriptions.hooks.herald.dev"} {
		if !strings.Contains(crds, want) {
			t.Errorf("CRD %s gone after helm uninstall (README promises it is kept)", want)
		}
	}
	left := s.kubectl("get", "whe,whs", "-n", shopNS, "-o", "name")
	if !strings.Contains(left, "webhookendpoint.hooks.herald.dev/billing") || !strings.Contains(left, "webhooksubscription.hooks.herald.dev/stream") {
		t.Errorf("resources after helm uninstall:\n%s\nwant the WebhookEndpoints and WebhookSubscriptions kept", left)
	}
	t.Logf("after helm uninstall: CRDs and %d resources kept; PVCs: %s", len(strings.Fields(left)),
		strings.TrimSpace(s.kubectl("get", "pvc", "-n", systemNS, "-o", "name")))
}

// previousRelease is the record of the release the upgrade step starts from, without its
// .tar.gz and .commit suffixes.
const previousRelease = "hack/cluster/testdata/previous-release"

// gitOutput runs git in the repository.
func gitOutput(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// imageOfTree builds herald from a source tree into an image and imports it.
func (s *suite) imageOfTree(tree, name string) {
	s.t.Helper()
	bin := filepath.Join(s.dir, "images", "herald-"+name[strings.LastIndex(name, ":")+1:])
	start := time.Now()
	if out, err := s.goBuild("-C", tree, "-trimpath", "-o", bin, "."); err != nil {
		s.t.Fatalf("building herald from %s: %v\n%s", tree, err, out)
	}
	s.t.Logf("TIMING herald built from %s in %s", tree, time.Since(start).Round(100*time.Millisecond))
	adds := []string{bin + "=/herald"}
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		adds = append(adds, "/etc/ssl/certs/ca-certificates.crt=/etc/ssl/certs/ca-certificates.crt")
	}
	s.importImage(name, "/herald", adds...)
}

// helmUpgradeFromPrevious installs the chart and image of the previous release, then
// upgrades to the working tree's under a steady publish stream: nothing accepted may be
// lost. The previous release's sources are checked in (hack/cluster/testdata, made by
// hack/cluster/previous-release.sh), so that a shallow clone without the Git remote runs
// this step too; HERALD_UPGRADE_FROM=<git ref> upgrades from that commit instead.
func (s *suite) helmUpgradeFromPrevious(t *testing.T) {
	prev := filepath.Join(s.dir, "prev-tree")
	if err := os.RemoveAll(prev); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(prev, 0o755); err != nil {
		t.Fatal(err)
	}
	var extract, what string
	if ref := os.Getenv("HERALD_UPGRADE_FROM"); ref != "" {
		rev, err := gitOutput("rev-parse", "--verify", ref+"^{commit}")
		if err != nil {
			t.Fatalf("HERALD_UPGRADE_FROM=%s: %v", ref, err)
		}
		// git archive, not a worktree: nothing is registered in the repository's .git.
		extract, what = fmt.Sprintf("git archive %s | tar -x -C %s", rev, prev), fmt.Sprintf("HERALD_UPGRADE_FROM=%s = %s", ref, rev[:12])
	} else {
		commit, err := os.ReadFile(filepath.Join(repoRoot, previousRelease+".commit"))
		if err != nil {
			t.Fatalf("the previous release's record: %v (hack/cluster/previous-release.sh makes it)", err)
		}
		extract = fmt.Sprintf("tar -xzf %s -C %s", filepath.Join(repoRoot, previousRelease+".tar.gz"), prev)
		what = previousRelease + ".tar.gz, the sources of " + strings.TrimSpace(string(commit))
	}
	if out, err := s.run(nil, "bash", "-c", extract); err != nil {
		t.Fatalf("extracting the previous release: %v\n%s", err, out)
	}
	t.Logf("previous release: %s", what)
	s.imageOfTree(prev, "herald.local/herald:prev")

	// The upgrade the README describes for producers still on the API server's token:
	// the new dispatcher accepts it too (dispatcher.auth.acceptAPIServerAudience) while
	// they move to projected tokens. A previous release that knows the value gets it as
	// well; one from before audiences accepts nothing else.
	s.apiServerToken = true
	defer func() { s.apiServerToken = false }()
	migrating := []string{"--set", "dispatcher.auth.acceptAPIServerAudience=true"}
	prevValues := s.helmValues("prev")
	if b, err := os.ReadFile(filepath.Join(prev, "charts", "herald", "values.yaml")); err == nil && strings.Contains(string(b), "acceptAPIServerAudience") {
		prevValues = append(prevValues, migrating...)
	}
	args := append([]string{"install", "herald", filepath.Join(prev, "charts", "herald"), "-n", systemNS, "--wait", "--timeout", "3m"}, prevValues...)
	t.Log(s.helm(args...))
	s.waitDispatcherImage("herald.local/herald:prev")
	s.ingest = "http://" + s.jsonpath(systemNS, "service/herald-dispatcher", "{.spec.clusterIP}") + ":8080"

	// Long enough (50 s at 10/s) to still be flowing when the upgraded dispatcher is
	// Ready, which took up to 34 s on a loaded machine.
	const count = 500
	s.streamAndCheck(t, "upgrade", count, func(progress func() int) {
		s.waitProgress(progress, 30)
		t.Logf("helm upgrade to the working tree at %d delivered", progress())
		start := time.Now()
		args := append(append([]string{"upgrade", "herald", filepath.Join(repoRoot, "charts", "herald"), "-n", systemNS, "--wait", "--timeout", "3m"}, s.helmValues("suite")...), migrating...)
		t.Log(s.helm(args...))
		s.waitDispatcherImage(heraldImage)
		t.Logf("TIMING helm upgrade -> dispatcher on the new image Ready: %s", time.Since(start).Round(100*time.Millisecond))
		// Deliveries go on from the new dispatcher (or the stream has ended; the tally
		// then shows whether every accepted event arrived).
		s.waitProgress(progress, min(progress()+30, count))
	})
	t.Log(s.podReport(systemNS, "app.kubernetes.io/part-of=herald"))
}

// waitDispatcherImage waits for herald-dispatcher-0 to run image and be Ready.
func (s *suite) waitDispatcherImage(image string) {
	s.t.Helper()
	s.eventually(5*time.Minute, "herald-dispatcher-0 Ready on "+image, func() (bool, string) {
		got := s.jsonpath(systemNS, "pod/herald-dispatcher-0", `{.spec.containers[0].image} {.status.conditions[?(@.type=="Ready")].status}`)
		return got == image+" True", got
	})
	s.t.Log(s.podReport(systemNS, "app.kubernetes.io/component=dispatcher"))
}

// kustomize installs with `kubectl apply -k config/default`, the README's kubectl path,
// whose manager runs ghcr.io/herald-dev/herald:0.1.0: that name is given to the local
// image (never pulled: IfNotPresent).
func (s *suite) kustomize(t *testing.T) {
	t.Log(s.helm("uninstall", "herald", "-n", systemNS, "--wait", "--timeout", "3m"))
	s.ctr("images", "tag", "--force", heraldImage, "ghcr.io/herald-dev/herald:0.1.0")
	if out, err := s.run(nil, s.kubectlBin, "apply", "--server-side", "--force-conflicts", "-k", filepath.Join(repoRoot, "config", "default")); err != nil {
		t.Fatal(err)
	} else {
		t.Log(out)
	}
	// The suite's receivers are plain http on a private address, which the kustomize
	// manifest (like the chart's defaults) refuses.
	s.kubectl("patch", "deployment", "herald-manager", "-n", systemNS, "--type=json", "-p",
		`[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--allow-plain-http=true"},`+
			`{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--allow-private-networks=true"}]`)
	s.kubectl("rollout", "status", "deployment/herald-manager", "-n", systemNS, "--timeout=3m")
	t.Log(s.podReport(systemNS, "app.kubernetes.io/component=manager"))
	s.waitDispatcherImage("ghcr.io/herald-dev/herald:0.1.0")
	s.ingest = "http://" + s.jsonpath(systemNS, "service/herald-dispatcher", "{.spec.clusterIP}") + ":8080"
	s.streamAndCheck(t, "kustomize", 50, func(progress func() int) {})
	// The runtime reports a container's image by the image's first name: drop the alias,
	// or the next steps' pods would read ghcr.io/herald-dev/herald:0.1.0.
	s.ctr("images", "rm", "ghcr.io/herald-dev/herald:0.1.0")
}

// logRestarts shows why a container restarted, the end of its previous run's log, and
// returns how many pods restarted.
func (s *suite) logRestarts(namespace, selector string) int {
	s.t.Helper()
	out := s.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].restartCount}{"\n"}{end}`)
	restarted := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || f[1] == "0" {
			continue
		}
		prev, err := s.run(nil, s.kubectlBin, "logs", "-n", namespace, f[0], "--previous", "--tail=15")
		s.t.Logf("pod %s restarted %s times; its previous run ended with:\n%s%s", f[0], f[1], prev, errOrEmpty(err))
		restarted++
	}
	return restarted
}

// externalMode runs a three-node NATS JetStream cluster as pods (nats-server built from
// the version in go.mod) and Herald with dispatcher.mode=external and three dispatcher
// replicas, then deletes one dispatcher pod under a publish stream.
func (s *suite) externalMode(t *testing.T) {
	if out, err := s.run(nil, s.kubectlBin, "delete", "-k", filepath.Join(repoRoot, "config", "default"), "--ignore-not-found", "--wait", "--timeout=3m"); err != nil {
		t.Fatal(err)
	} else {
		t.Log(out)
	}
	start := time.Now()
	// Static (CGO_ENABLED=0), cached under bin/ by the script the chaos suite and make
	// bench use too.
	natsBin := framework.NATSServer(t)
	t.Logf("TIMING nats-server built in %s", time.Since(start).Round(100*time.Millisecond))
	s.importImage("herald.local/nats:suite", "/nats-server", natsBin+"=/nats-server")

	// No cluster DNS: every NATS pod gets a Service with a fixed ClusterIP, which the routes
	// and the dispatchers' URL name.
	ips := []string{"10.96.200.10", "10.96.200.11", "10.96.200.12"}
	var manifest strings.Builder
	manifest.WriteString("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: nats\n  labels: {pod-security.kubernetes.io/enforce: restricted}\n---\n")
	var routes, urls []string
	for i, ip := range ips {
		routes = append(routes, "nats://"+ip+":6222")
		urls = append(urls, "nats://"+ip+":4222")
		fmt.Fprintf(&manifest, `apiVersion: v1
kind: Service
metadata: {name: nats-%d, namespace: nats}
spec:
  clusterIP: %s
  # Routes form before the pods are Ready (their readiness waits for the routes).
  publishNotReadyAddresses: true
  selector: {statefulset.kubernetes.io/pod-name: nats-%d}
  ports: [{name: client, port: 4222}, {name: cluster, port: 6222}]
---
`, i, ip, i)
	}
	fmt.Fprintf(&manifest, `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: nats, namespace: nats}
spec:
  replicas: 3
  podManagementPolicy: Parallel
  serviceName: nats
  selector: {matchLabels: {app: nats}}
  template:
    metadata: {labels: {app: nats}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: nats
          image: herald.local/nats:suite
          imagePullPolicy: IfNotPresent
          env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
          args: [--name, $(POD_NAME), --jetstream, --store_dir, /data, --port, "4222", --http_port, "8222",
                 --cluster_name, herald, --cluster, "nats://0.0.0.0:6222", --routes, %q]
          readinessProbe:
            httpGet: {path: /healthz, port: 8222}
            periodSeconds: 2
          volumeMounts: [{name: data, mountPath: /data}]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumes: [{name: data, emptyDir: {}}]
`, strings.Join(routes, ","))
	s.apply("nats", manifest.String())
	s.kubectl("rollout", "status", "statefulset/nats", "-n", "nats", "--timeout=4m")
	t.Log(s.podReport("nats", "app=nats"))

	s.apply("", fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels: {pod-security.kubernetes.io/enforce: restricted}\n", systemNS))
	values := filepath.Join(s.dir, "external-values.yaml")
	if err := os.WriteFile(values, []byte(fmt.Sprintf("dispatcher:\n  mode: external\n  replicas: 3\n  nats:\n    url: %q\n    streamReplicas: 3\n", strings.Join(urls, ","))), 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	args := append([]string{"install", "herald", filepath.Join(repoRoot, "charts", "herald"), "-n", systemNS, "--wait", "--timeout", "4m", "-f", values}, s.helmValues("suite")...)
	t.Log(s.helm(args...))
	s.eventually(5*time.Minute, "3 dispatcher replicas Ready", func() (bool, string) {
		got := s.jsonpath(systemNS, "deployment/herald-dispatcher", "{.status.readyReplicas}")
		return got == "3", got
	})
	t.Logf("TIMING helm install (external) -> 3 dispatchers Ready: %s", time.Since(start).Round(100*time.Millisecond))
	t.Log(s.podReport(systemNS, "app.kubernetes.io/component=dispatcher"))
	// Started together on a fresh NATS cluster, they wait for JetStream instead of
	// exiting and being restarted.
	if restarted := s.logRestarts(systemNS, "app.kubernetes.io/component=dispatcher"); restarted > 0 {
		t.Errorf("%d dispatcher pods restarted while starting on the NATS cluster, want 0", restarted)
	}
	if logs, err := s.run(nil, s.kubectlBin, "logs", "-n", systemNS, "-l", "app.kubernetes.io/component=dispatcher", "--tail=-1", "--prefix"); err == nil {
		waits := 0
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "JetStream not ready") {
				waits++
			}
		}
		t.Logf("dispatchers waited for JetStream %d times while starting", waits)
	}
	s.ingest = "http://" + s.jsonpath(systemNS, "service/herald-dispatcher", "{.spec.clusterIP}") + ":8080"

	// The CRDs went with `kubectl delete -k`, and the endpoints with them.
	s.addEndpoint("stream", "StandardWebhooks", "", "", "stream.*")
	const count = 200
	s.streamAndCheck(t, "external", count, func(progress func() int) {
		s.waitProgress(progress, 30)
		victim := strings.Fields(s.jsonpath(systemNS, "pods", `{.items[?(@.metadata.labels.app\.kubernetes\.io/component=="dispatcher")].metadata.name}`))
		if len(victim) == 0 {
			t.Fatal("no dispatcher pod")
		}
		t.Logf("kubectl delete pod %s (of %d) at %d delivered", victim[0], len(victim), progress())
		s.kubectl("delete", "pod", victim[0], "-n", systemNS, "--wait=false")
		// Deliveries go on from the new dispatcher (or the stream has ended; the tally
		// then shows whether every accepted event arrived).
		s.waitProgress(progress, min(progress()+30, count))
	})
	t.Log(s.podReport(systemNS, "app.kubernetes.io/part-of=herald"))
}
