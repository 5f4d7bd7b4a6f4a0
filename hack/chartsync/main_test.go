package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/herald-dev/herald/internal/testenv"
)

// A CRD whose description reads like a Helm template: the chart copy must render back
// to exactly this text instead of being evaluated (or failing) in Helm.
const trickyCRD = `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  annotations:
    controller-gen.kubebuilder.io/version: v0.23.0
  name: widgets.example.dev
spec:
  group: example.dev
  names:
    kind: Widget
    plural: widgets
  scope: Namespaced
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        description: 'Rendered like {{ .Release.Name }} or {{- fail "boom" }}; a lone }} too.'
        type: object
    served: true
    storage: true
`

const roles = `---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: herald-manager
rules:
- apiGroups:
  - example.dev
  resources:
  - widgets
  verbs:
  - get
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: herald-manager
  namespace: herald-system
rules:
- apiGroups:
  - apps
  resources:
  - statefulsets
  verbs:
  - patch
`

func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRun_TemplatesRenderBackToTheGeneratedCRDAndOutputIsStable(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "config/crd/bases/example.dev_widgets.yaml", trickyCRD)
	writeFile(t, root, "config/rbac/role.yaml", roles)
	writeFile(t, root, "charts/herald/Chart.yaml", "apiVersion: v2\nname: herald\nversion: 0.0.1\n")
	writeFile(t, root, "charts/herald/templates/crds/removed.yaml", "a CRD that no longer exists\n")

	if err := run(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, crdDstDir, "removed.yaml")); !os.IsNotExist(err) {
		t.Errorf("stale chart CRD was kept (stat err=%v)", err)
	}
	first := snapshot(t, root)
	if err := run(root); err != nil {
		t.Fatal(err)
	}
	if second := snapshot(t, root); !reflect.DeepEqual(first, second) {
		t.Error("a second run changed the output: chartsync is not deterministic")
	}

	helm, err := testenv.Tool("helm")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helm, "template", "x", filepath.Join(root, "charts/herald"), "--set", "crds.enabled=true")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	var got, want unstructured.Unstructured
	if err := yaml.Unmarshal(out, &got.Object); err != nil {
		t.Fatalf("rendered CRD does not parse: %v\n%s", err, out)
	}
	if err := yaml.Unmarshal([]byte(trickyCRD), &want.Object); err != nil {
		t.Fatal(err)
	}
	ann := got.GetAnnotations()
	if ann["helm.sh/resource-policy"] != "keep" || ann["argocd.argoproj.io/sync-wave"] != "-1" {
		t.Errorf("annotations = %v", ann)
	}
	delete(ann, "helm.sh/resource-policy")
	delete(ann, "argocd.argoproj.io/sync-wave")
	got.SetAnnotations(ann)
	if !reflect.DeepEqual(got.Object, want.Object) {
		t.Errorf("rendered CRD differs from the generated one:\n%s", out)
	}

	cmd = exec.Command(helm, "template", "x", filepath.Join(root, "charts/herald"), "--set", "crds.enabled=false")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "CustomResourceDefinition") {
		t.Errorf("crds.enabled=false: err=%v, output:\n%s", err, out)
	}

	rules := first[filepath.Join(filesDstDir, roleOut)]
	if !strings.Contains(rules, "statefulsets") || strings.Contains(rules, "widgets") {
		t.Errorf("%s holds the wrong rules:\n%s", roleOut, rules)
	}
}

func TestRun_RefusesARoleOutsideTheReleaseNamespace(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "config/crd/bases/example.dev_widgets.yaml", trickyCRD)
	writeFile(t, root, "config/rbac/role.yaml", strings.Replace(roles, "namespace: herald-system", "namespace: kube-system", 1))
	err := run(root)
	if err == nil || !strings.Contains(err.Error(), "namespace=herald-system") {
		t.Fatalf("run() = %v, want an error telling to use namespace=herald-system in the marker", err)
	}
}

func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range []string{crdDstDir, filesDstDir} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(root, dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Join(dir, e.Name())] = string(data)
		}
	}
	return out
}
