package framework

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"
)

// Run is one suite's world: a scratch folder, the herald binary, a control plane, the
// tools with an isolated environment and the supervisor of the children.
type Run struct {
	T   testing.TB
	Dir string
	*Tools
	*Supervisor
	Cluster *ControlPlane
}

// RunInput configures NewRun.
type RunInput struct {
	// Name prefixes the admin user and the folder of logs kept on failure.
	Name string
	// APIServerFlags are extra kube-apiserver flags.
	APIServerFlags map[string]string
	// Race builds herald with the race detector and runs every child with
	// GORACE=testenv.RaceOptions, so that a data race stops the process (a watched wait
	// then fails), and fails the test on any race report in a child's log.
	Race bool
}

// NewRun builds (or finds) the herald binary, starts the control plane and returns the
// run; everything stops when the test ends.
func NewRun(t testing.TB, in RunInput) *Run {
	t.Helper()
	start := time.Now()
	dir := t.TempDir()
	herald := BuildHerald(t, BuildInput{Race: in.Race})
	helm, err := testenv.Tool("helm")
	if err != nil {
		t.Fatal(err)
	}
	cp := StartControlPlane(t, ControlPlaneInput{Dir: dir, Admin: in.Name + "-admin", APIServerFlags: in.APIServerFlags})
	env := IsolatedEnv(t, dir, cp.Kubeconfig)
	if in.Race {
		env = append(env, "GORACE="+testenv.RaceOptions)
	}
	r := &Run{
		T: t, Dir: dir, Cluster: cp,
		Tools:      &Tools{KubectlBin: cp.Kubectl(), HelmBin: helm, HeraldBin: herald, Dir: dir, Env: env},
		Supervisor: NewSupervisor(t, filepath.Join(dir, "logs"), env),
	}
	r.KeepLogsAs = "herald-" + in.Name + "-logs"
	r.RaceReports = in.Race
	t.Logf("herald ready (race detector: %v) and control plane up %s after the start", in.Race, time.Since(start).Round(100*time.Millisecond))
	return r
}

// Wait is a Wait that also ends as soon as a child died unasked.
func (r *Run) Wait(within time.Duration) Wait {
	return Wait{Within: within, Watch: r.Supervisor}
}

// Eventually polls cond for up to within, failing at once when a child died unasked.
func (r *Run) Eventually(t testing.TB, within time.Duration, what string, cond Condition) {
	t.Helper()
	r.Wait(within).Eventually(t, what, cond)
}
