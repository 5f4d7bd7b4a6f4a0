package verify

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

// TestPreviousRelease_ArchiveHoldsTheRecordedCommit checks the sources the cluster suite
// upgrades from (hack/cluster/testdata/previous-release.*, made by
// hack/cluster/previous-release.sh): an archive of the binary's sources and the chart,
// nothing else, and, when the recorded commit is in this clone's history, every file
// byte for byte what that commit holds. (A shallow clone lacks the commit; the cluster
// suite building and installing the archive is then the check.)
func TestPreviousRelease_ArchiveHoldsTheRecordedCommit(t *testing.T) {
	root := testenv.RepoRoot()
	base := filepath.Join(root, "hack", "cluster", "testdata", "previous-release")
	record, err := os.ReadFile(base + ".commit")
	if err != nil {
		t.Fatal(err)
	}
	commit, _, _ := strings.Cut(strings.TrimSpace(string(record)), " ")
	if len(commit) != 40 {
		t.Fatalf("previous-release.commit starts with %q, want a full commit hash", commit)
	}
	files := readTarGz(t, base+".tar.gz")
	for _, must := range []string{"go.mod", "go.sum", "main.go", "charts/herald/Chart.yaml", "charts/herald/values.yaml"} {
		if _, ok := files[must]; !ok {
			t.Errorf("the archive has no %s", must)
		}
	}
	for name := range files {
		if strings.HasSuffix(name, "_test.go") || strings.Contains(name, "/testdata/") {
			t.Errorf("the archive holds %s: only what builds the binary and the chart belongs there", name)
		}
	}

	if err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		t.Logf("commit %s is not in this clone (shallow?): its files cannot be compared here", commit[:12])
		return
	}
	for name, got := range files {
		want, err := exec.Command("git", "-C", root, "show", commit+":"+name).Output()
		if err != nil {
			t.Errorf("%s is in the archive but not in commit %s: %v", name, commit[:12], err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from commit %s's; rerun hack/cluster/previous-release.sh %s", name, commit[:12], commit[:12])
		}
	}
	t.Logf("%d files, each as commit %s holds it", len(files), commit[:12])
}

// readTarGz returns the regular files of a .tar.gz by name.
func readTarGz(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
}
