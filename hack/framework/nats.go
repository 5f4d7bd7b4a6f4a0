package framework

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NATSServer returns the path of nats-server at the version go.mod requires, built by
// hack/nats-server.sh, which caches it under bin/ for the suites and make bench alike.
func NATSServer(t testing.TB) string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(filepath.Join(RepoRoot, "hack", "nats-server.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/nats-server.sh: %v", err)
	}
	t.Logf("nats-server ready in %s", time.Since(start).Round(100*time.Millisecond))
	return strings.TrimSpace(string(out))
}
