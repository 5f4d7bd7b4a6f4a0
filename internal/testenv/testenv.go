// Package testenv starts a real kube-apiserver and etcd (envtest) with Herald's CRDs
// installed, for tests. The binaries come from KUBEBUILDER_ASSETS or, when that is unset,
// from hack/envtest-assets.sh, which builds them from the Go module proxy once and caches
// them under bin/. So both `make test` and a bare `go test ./...` work on a fresh clone.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/herald-dev/herald/internal/scheme"
)

// Env is a running API server.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	Scheme *runtime.Scheme
}

// RepoRoot is the root of the Herald checkout.
func RepoRoot() string {
	if _, file, _, _ := goruntime.Caller(0); filepath.IsAbs(file) {
		return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	}
	// Built with -trimpath (as `make test` builds), the file is named by its import path.
	// A test runs in its package's folder: the root is the nearest folder above holding
	// Herald's go.mod.
	dir, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if mod, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.HasPrefix(string(mod), "module github.com/herald-dev/herald\n") {
			return d
		}
		if d == filepath.Dir(d) {
			panic("testenv: no Herald go.mod above " + dir)
		}
	}
}

// Scheme returns a scheme with the Kubernetes built-ins and Herald's types.
func Scheme() *runtime.Scheme {
	return scheme.New()
}

// Assets returns the folder holding kube-apiserver and etcd, building them if needed.
func Assets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	out, err := runHack("envtest-assets.sh")
	if err != nil {
		return "", fmt.Errorf("building envtest assets: %w", err)
	}
	return out, nil
}

// Tool returns the path of a pinned dev tool (controller-gen, helm), installing it once.
// An environment variable named after the tool (CONTROLLER_GEN, HELM) takes precedence.
func Tool(name string) (string, error) {
	env := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	out, err := runHack("tool.sh", name)
	if err != nil {
		return "", fmt.Errorf("installing %s: %w", name, err)
	}
	return out, nil
}

func runHack(script string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", script), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/%s: %w: %s", script, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Start starts an API server with Herald's CRDs from config/crd/bases.
func Start() (*Env, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	return &Env{Environment: env, Config: cfg, Scheme: Scheme()}, nil
}
