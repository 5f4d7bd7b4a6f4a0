package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestREADME_ShowsTheInstallLineMakeClusterPrints: the README's cluster section shows the
// `helm install` line `make cluster` prints (with its defaults), the one the suite runs.
// Without root, unlike TestCluster.
func TestREADME_ShowsTheInstallLineMakeClusterPrints(t *testing.T) {
	cmd := exec.Command("bash", "-c", `source hack/cluster/lib.sh && helm_install_line`)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CLUSTER_NAME=", "CLUSTER_DIR=", "HERALD_IMAGE=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm_install_line: %v\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	if !strings.Contains(line, "image.tag=dev") {
		t.Fatalf("make cluster's line for its default image herald.local/herald:dev is %q", line)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(readme), "\n") {
		if l == line {
			return
		}
	}
	t.Errorf("README.md does not show the line `make cluster` prints; it should read, on a line of its own:\n%s", line)
}
