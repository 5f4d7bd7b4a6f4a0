package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"
)

// Supervisor owns the child processes of one run: it starts them with their output in
// a log file each, stops them when the test ends, reports one that died without being
// asked to, and on a failed test tails every child's log into the test log (and keeps
// the logs folder when asked to, as the evidence of a failure).
type Supervisor struct {
	t       testing.TB
	logDir  string
	baseEnv []string

	// TailLines is how much of each child's log a failed test shows (default 40).
	TailLines int
	// RaceReports, when set, fails the test when a child's log holds a data race
	// report (testenv.RaceReport), also one a child stopped or killed on purpose wrote
	// just before: for children built with the race detector (BuildInput.Race).
	RaceReports bool
	// KeepLogsAs, when set, names a folder under the system's temporary folder the logs
	// are copied to when the test fails (its timestamp appended): the run's own folder
	// goes with the test.
	KeepLogsAs string

	mu    sync.Mutex
	procs []*Process
}

// NewSupervisor returns a supervisor whose children log under logDir and inherit env.
func NewSupervisor(t testing.TB, logDir string, env []string) *Supervisor {
	t.Helper()
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := &Supervisor{t: t, logDir: logDir, baseEnv: env, TailLines: 40}
	t.Cleanup(s.report)
	return s
}

// StartInput describes a child to start.
type StartInput struct {
	// Name names the process in messages and its log file (<Name>.log).
	Name string
	// Binary and Args are what to run.
	Binary string
	Args   []string
	// Env is added to the supervisor's environment (later entries win).
	Env []string
	// Dir is the working folder (default: the log folder's parent).
	Dir string
	// Grace is how long a stop at the end of the test waits after SIGTERM before
	// SIGKILL (default 15s).
	Grace time.Duration
}

// Process is a child in a process group of its own, so that stopping it stops whatever
// it started. Should the test binary be killed outright, the kernel kills it too.
type Process struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	// expected is set before the test stops or kills it on purpose.
	expected atomic.Bool
}

// Start starts a child; it fails the test when the binary cannot be started.
func (s *Supervisor) Start(in StartInput) *Process {
	s.t.Helper()
	logPath := filepath.Join(s.logDir, in.Name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(in.Binary, in.Args...)
	cmd.Dir = in.Dir
	if cmd.Dir == "" {
		cmd.Dir = filepath.Dir(s.logDir)
	}
	cmd.Env = append(append([]string(nil), s.baseEnv...), in.Env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		s.t.Fatalf("starting %s: %v", in.Name, err)
	}
	p := &Process{Name: in.Name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	grace := in.Grace
	if grace == 0 {
		grace = 15 * time.Second
	}
	s.t.Cleanup(func() { p.Stop(grace) })
	return p
}

// Pid is the process id (also its process group's).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (nil while it runs or after exit status 0).
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the process group, as the kubelet would, and SIGKILL after
// grace; it returns once the process has ended.
func (p *Process) Stop(grace time.Duration) {
	p.expected.Store(true)
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.done
	}
}

// Kill sends SIGKILL to the process group and waits for the process to end.
func (p *Process) Kill() {
	p.expected.Store(true)
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// Signal sends sig to the process alone (not its group), for a child that stops its own
// children in order (make, a local stack); Wait then waits for it.
func (p *Process) Signal(sig syscall.Signal) {
	p.expected.Store(true)
	if !p.Exited() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Wait waits up to within for the process to end and reports whether it did.
func (p *Process) Wait(within time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(within):
		return false
	}
}

// Output is the process's log so far.
func (p *Process) Output() string {
	raw, err := os.ReadFile(p.Log)
	if err != nil {
		return err.Error()
	}
	return string(raw)
}

// Tail is the last n lines of the process's log, indented.
func (p *Process) Tail(n int) string { return Tail(p.Log, n) }

// Failure reports a child that died without the test asking it to, with the end of its
// log; nil when every child runs or was stopped on purpose.
func (s *Supervisor) Failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.Exited() && !p.expected.Load() {
			return fmt.Errorf("%s exited (%v); the end of its log:\n%s", p.Name, p.err, p.Tail(30))
		}
	}
	return nil
}

// Processes are the children started so far.
func (s *Supervisor) Processes() []*Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Process(nil), s.procs...)
}

// Races lists the children whose log holds a data race report, each with the end of
// its log.
func (s *Supervisor) Races() []string {
	var out []string
	for _, p := range s.Processes() {
		if raw, err := os.ReadFile(p.Log); err == nil && strings.Contains(string(raw), testenv.RaceReport) {
			out = append(out, fmt.Sprintf("%s reported a data race:\n%s", p.Name, p.Tail(60)))
		}
	}
	return out
}

// report runs when the test ends, after every child was stopped: the data races found
// when asked to, and on failure the end of every child's log.
func (s *Supervisor) report() {
	if s.RaceReports {
		for _, r := range s.Races() {
			s.t.Error(r)
		}
	}
	if !s.t.Failed() {
		return
	}
	for _, p := range s.Processes() {
		s.t.Logf("the end of %s's log (%s):\n%s", p.Name, p.Log, p.Tail(s.TailLines))
	}
	if s.KeepLogsAs == "" {
		return
	}
	kept := filepath.Join(os.TempDir(), s.KeepLogsAs+"-"+time.Now().Format("20060102-150405"))
	if out, err := exec.Command("cp", "-r", s.logDir, kept).CombinedOutput(); err != nil {
		s.t.Logf("keeping the logs: %v %s", err, out)
	} else {
		s.t.Logf("every process's log is kept in %s", kept)
	}
}

// Tail is the last n lines of a file, indented by four spaces.
func Tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "    " + err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
