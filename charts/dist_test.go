package charts_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestMakeDist_InstallManifestAppliesAndRunsTheReleaseImage runs `make dist` without the
// cross builds (minutes each) and checks what a user of the release gets: an
// install.yaml the API server accepts as a whole, that lands everything in
// herald-system, runs the release image for both the manager and the dispatcher it
// creates, and matches checksums.txt.
func TestMakeDist_InstallManifestAppliesAndRunsTheReleaseImage(t *testing.T) {
	const (
		version = "v9.8.7-rc.1"
		// A registry with a port: the ':' of the port is not the tag's.
		img = "registry.example.com:5000/team/herald:" + version
	)
	dist := t.TempDir()
	makeDist(t, "DIST="+dist, "DIST_PLATFORMS=", "VERSION="+version, "IMG="+img)

	assertChecksums(t, dist, []string{"install.yaml"})
	data, err := os.ReadFile(filepath.Join(dist, "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifests := string(data)
	objs := objects(t, manifests)

	// kubectl apply -f creates in file order: the namespace must come before what goes in it.
	if first := objs[0]; first.GetKind() != "Namespace" || first.GetName() != releaseNamespace ||
		first.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("first object is %s %s (labels %v), want Namespace %s enforcing restricted Pod Security",
			first.GetKind(), first.GetName(), first.GetLabels(), releaseNamespace)
	}
	for _, kind := range []string{"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount", "Deployment"} {
		if !hasKind(objs, kind) {
			t.Errorf("install.yaml has no %s", kind)
		}
	}
	// Without a namespace, kubectl would put an object in the user's current namespace.
	for _, o := range objs {
		mapping, err := k8s.RESTMapper().RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version)
		if err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace && o.GetNamespace() != releaseNamespace {
			t.Errorf("%s %s is in namespace %q, want %s", o.GetKind(), o.GetName(), o.GetNamespace(), releaseNamespace)
		}
		if v, ok := o.GetLabels()["app.kubernetes.io/version"]; ok && v != version {
			t.Errorf("%s %s is labelled app.kubernetes.io/version=%s, want the release %s", o.GetKind(), o.GetName(), v, version)
		}
	}

	out := serverDryRun(t, manifests)
	if got := strings.Count(out, "(server dry run)"); got != len(objs) {
		t.Errorf("API server accepted %d of %d objects:\n%s", got, len(objs), out)
	}
	if strings.Contains(out, "PodSecurity") {
		t.Errorf("a pod template violates the restricted Pod Security profile:\n%s", out)
	}

	deploy := find(t, objs, "Deployment", "herald-manager")
	if got := container(t, deploy).Image; got != img {
		t.Errorf("manager image = %s, want %s", got, img)
	}
	cfg := managerConfig(t, deploy)
	if cfg.Image != img {
		t.Errorf("--dispatcher-image = %s, want %s", cfg.Image, img)
	}
	assertWiring(t, objs, deploy, cfg)
}

func TestMakeDist_RefusesAnImageWithoutATag(t *testing.T) {
	for _, img := range []string{"registry.example.com:5000/herald", "ghcr.io/herald-dev/herald@sha256:0123"} {
		cmd := exec.Command("make", "dist", "DIST="+t.TempDir(), "DIST_PLATFORMS=", "IMG="+img, "HELM="+helmBin)
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("make dist IMG=%s succeeded; the chart would get a repository it cannot split", img)
		}
		if !strings.Contains(string(out), "dist.sh: IMG="+img) {
			t.Errorf("make dist IMG=%s failed without saying what is wrong with IMG:\n%s", img, out)
		}
	}
}

func makeDist(t *testing.T, vars ...string) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"dist", "HELM=" + helmBin}, vars...)...)
	cmd.Dir = repoRoot
	cmd.Env = toolEnv
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make dist: %v\n%s", err, out)
	}
}

// assertChecksums checks dist/checksums.txt as `sha256sum -c` would, and that it lists
// exactly the given files.
func assertChecksums(t *testing.T, dist string, files []string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dist, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("checksums.txt line %q is not in sha256sum format", sc.Text())
		}
		data, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256(data); hex.EncodeToString(h[:]) != sum {
			t.Errorf("checksums.txt: %s does not match %s", sum, name)
		}
		listed[name] = true
	}
	for _, name := range files {
		if !listed[name] {
			t.Errorf("checksums.txt does not list %s", name)
		}
	}
	if len(listed) != len(files) {
		t.Errorf("checksums.txt lists %v, want %v", sortedKeys(listed), files)
	}
}

// TestCRDs_CarryArgoCDSyncAnnotationsInEveryInstallPath: whether Argo CD syncs the chart,
// config/default or the CRDs alone, the CRDs come first (wave -1) and are never pruned or
// deleted with the Application, which would delete every custom resource.
func TestCRDs_CarryArgoCDSyncAnnotationsInEveryInstallPath(t *testing.T) {
	paths := map[string][]*unstructured.Unstructured{
		"helm chart":       objects(t, helmTemplate(t)),
		"config/default":   objects(t, mustCommand(t, nil, kubectlBin, "kustomize", "config/default")),
		"config/crd/bases": objects(t, mustCommand(t, nil, kubectlBin, "kustomize", "config/crd")),
	}
	bases, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(bases) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	for name, objs := range paths {
		n := 0
		for _, o := range objs {
			if o.GetKind() != "CustomResourceDefinition" {
				continue
			}
			n++
			ann := o.GetAnnotations()
			if ann["argocd.argoproj.io/sync-wave"] != "-1" {
				t.Errorf("%s: CRD %s has sync-wave %q, want -1", name, o.GetName(), ann["argocd.argoproj.io/sync-wave"])
			}
			opts := strings.Split(ann["argocd.argoproj.io/sync-options"], ",")
			for _, want := range []string{"Prune=false", "Delete=false"} {
				if !containsTrimmed(opts, want) {
					t.Errorf("%s: CRD %s sync-options %q lack %s", name, o.GetName(), ann["argocd.argoproj.io/sync-options"], want)
				}
			}
		}
		if n != len(bases) {
			t.Errorf("%s renders %d CRDs, want the %d of config/crd/bases", name, n, len(bases))
		}
	}
}

func containsTrimmed(list []string, want string) bool {
	for _, s := range list {
		if strings.TrimSpace(s) == want {
			return true
		}
	}
	return false
}
