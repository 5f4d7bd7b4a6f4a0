// Package verify holds repository-level checks that are not about one package: here,
// that every generated file checked in is what the generators produce today.
package verify

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

// generatedPaths are compared between the checkout and a fresh regeneration.
var generatedPaths = []string{
	"api/v1alpha1/zz_generated.deepcopy.go",
	"config/crd/bases",
	"config/rbac/role.yaml",
	"charts/herald/templates/crds",
	"charts/herald/files",
}

// TestGeneratedFilesAreFresh regenerates deepcopy code, CRDs, RBAC and the chart's copies
// of them in a scratch copy of the repository, with the same commands as `make generate
// manifests`, and fails when anything checked in differs: a marker edited without
// running the generators must not reach main.
func TestGeneratedFilesAreFresh(t *testing.T) {
	cg, err := testenv.Tool("controller-gen")
	if err != nil {
		t.Fatal(err)
	}
	root := testenv.RepoRoot()
	scratch := t.TempDir()
	copyTree(t, root, scratch)

	run(t, scratch, cg, "object:headerFile=hack/boilerplate.go.txt", "paths=./api/...")
	run(t, scratch, cg, "rbac:roleName=herald-manager", "crd", "paths=./...",
		"output:crd:artifacts:config=config/crd/bases", "output:rbac:artifacts:config=config/rbac")
	run(t, scratch, "go", "run", "./hack/chartsync")

	for _, p := range generatedPaths {
		want := readTree(t, filepath.Join(scratch, p))
		got := readTree(t, filepath.Join(root, p))
		for name, w := range want {
			g, ok := got[name]
			switch {
			case !ok:
				t.Errorf("%s is missing; run `make generate manifests`", filepath.Join(p, name))
			case !bytes.Equal(g, w):
				t.Errorf("%s is stale; run `make generate manifests`", filepath.Join(p, name))
			}
		}
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("%s is no longer generated; delete it or run `make manifests`", filepath.Join(p, name))
			}
		}
	}
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// copyTree copies the sources (not bin/, .git/ or build output) into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			switch rel {
			case ".git", "bin", "dist", ".local":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copying repository: %v", err)
	}
}

// readTree returns the files under path (or path itself) keyed by relative name.
func readTree(t *testing.T, path string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	info, err := os.Stat(path)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	if !info.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out[""] = data
		return out
	}
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		out[rel] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
