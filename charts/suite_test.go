package charts_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/herald-dev/herald/internal/testenv"
)

// The chart and kustomize tests share one API server, the pinned helm and the kubectl
// built with the API server.
var (
	env        *testenv.Env
	k8s        client.Client
	helmBin    string
	kubectlBin string
	kubeconfig string
	toolEnv    []string
	repoRoot   = testenv.RepoRoot()
	chartDir   = filepath.Join(testenv.RepoRoot(), "charts", "herald")
)

// releaseNamespace is where the chart and config/default install to.
const releaseNamespace = "herald-system"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var err error
	if helmBin, err = testenv.Tool("helm"); err != nil {
		return fail(err)
	}
	assets, err := testenv.Assets()
	if err != nil {
		return fail(err)
	}
	kubectlBin = filepath.Join(assets, "kubectl")

	scratch, err := os.MkdirTemp("", "herald-charts-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(scratch)
	// Keep helm away from the developer's own repositories, plugins and cache.
	toolEnv = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(scratch, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(scratch, "helm-config"),
		"HELM_DATA_HOME="+filepath.Join(scratch, "helm-data"),
	)

	if env, err = testenv.Start(); err != nil {
		return fail(err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	admin, err := env.AddUser(envtest.User{Name: "chart-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail(fmt.Errorf("adding admin user: %w", err))
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return fail(fmt.Errorf("writing kubeconfig: %w", err))
	}
	kubeconfig = filepath.Join(scratch, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return fail(err)
	}
	toolEnv = append(toolEnv, "KUBECONFIG="+kubeconfig)

	if k8s, err = client.New(env.Config, client.Options{Scheme: env.Scheme}); err != nil {
		return fail(err)
	}
	// Pod Security admission warns about any workload in the chart that would not run
	// under the restricted profile; the tests fail on such a warning.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		return fail(fmt.Errorf("creating namespace %s: %w", releaseNamespace, err))
	}
	return m.Run()
}

// command runs a tool and returns stdout; a failure carries stderr, which is where helm
// and kubectl explain themselves.
func command(stdin []byte, name string, args ...string) (string, error) {
	stdout, _, err := commandOutputs(stdin, name, args...)
	return stdout, err
}

func commandOutputs(stdin []byte, name string, args ...string) (string, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot
	cmd.Env = toolEnv
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), stderr.String(), fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), stderr.String(), nil
}

func mustCommand(t *testing.T, stdin []byte, name string, args ...string) string {
	t.Helper()
	out, err := command(stdin, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// helmTemplate renders the chart as release "herald" in releaseNamespace.
func helmTemplate(t *testing.T, args ...string) string {
	t.Helper()
	return mustCommand(t, nil, helmBin, append([]string{"template", "herald", chartDir, "--namespace", releaseNamespace}, args...)...)
}

// serverDryRun has the API server validate, default and admit every object without
// persisting it: schema, CEL rules, RBAC escalation checks and Pod Security all apply.
// It returns stdout and stderr together, because Pod Security speaks in warnings.
func serverDryRun(t *testing.T, manifests string, extra ...string) string {
	t.Helper()
	args := append([]string{"apply", "--server-side", "--dry-run=server", "--field-manager=chart-test", "-f", "-"}, extra...)
	stdout, stderr, err := commandOutputs([]byte(manifests), kubectlBin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return stdout + stderr
}

// objects parses a multi-document YAML stream, skipping empty documents.
func objects(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifests)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading YAML stream: %v", err)
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatalf("parsing document: %v\n%s", err, doc)
		}
		if len(obj.Object) > 0 {
			out = append(out, obj)
		}
	}
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q among the rendered objects", kind, name)
	return nil
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	return objects(t, string(data))
}
