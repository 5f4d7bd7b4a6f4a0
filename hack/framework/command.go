package framework

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tools are the command-line tools of a run and the environment every one of them gets.
type Tools struct {
	// KubectlBin, HelmBin and HeraldBin are the binaries' paths.
	KubectlBin, HelmBin, HeraldBin string
	// Dir is the working folder of the commands.
	Dir string
	// Env is every command's environment: the test's, with a HOME and helm folders of
	// the run's own and KUBECONFIG set, so that a developer's kubeconfig, kubectl cache,
	// helm repositories and HERALD_* settings stay out.
	Env []string
}

// IsolatedEnv is the test process's environment with HOME, helm's folders and
// KUBECONFIG pointing into dir, and HERALD_URL and HERALD_TOKEN emptied.
func IsolatedEnv(t testing.TB, dir, kubeconfig string) []string {
	t.Helper()
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(),
		"HOME="+home, "KUBECONFIG="+kubeconfig, "HERALD_URL=", "HERALD_TOKEN=",
		"HELM_CACHE_HOME="+filepath.Join(home, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "helm-config"),
		"HELM_DATA_HOME="+filepath.Join(home, "helm-data"),
	)
}

// Command is one invocation of a tool, built up before it runs.
type Command struct {
	tools   *Tools
	bin     string
	args    []string
	env     []string
	stdin   []byte
	timeout time.Duration
}

// Result is a finished command.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Output is stdout and stderr together, for messages.
func (r Result) Output() string { return r.Stderr + r.Stdout }

// Command starts a command of any binary.
func (tl *Tools) Command(bin string, args ...string) *Command {
	return &Command{tools: tl, bin: bin, args: args, timeout: 5 * time.Minute}
}

// Kubectl starts a kubectl command (as the run's admin unless As says otherwise).
func (tl *Tools) Kubectl(args ...string) *Command {
	return tl.Command(must(tl.KubectlBin, "kubectl"), args...)
}

// Helm starts a helm command.
func (tl *Tools) Helm(args ...string) *Command { return tl.Command(must(tl.HelmBin, "helm"), args...) }

// Herald starts a herald command, the CLI as a user runs it.
func (tl *Tools) Herald(args ...string) *Command {
	return tl.Command(must(tl.HeraldBin, "herald"), args...)
}

// must returns a tool's path, failing loudly when a suite forgot to set it.
func must(path, name string) string {
	if path == "" {
		panic("framework.Tools: no " + name + " binary set")
	}
	return path
}

// WithEnv adds environment variables (NAME=value; later entries win).
func (c *Command) WithEnv(kv ...string) *Command {
	c.env = append(c.env, kv...)
	return c
}

// As runs the command with another kubeconfig (a user's, a ServiceAccount's).
func (c *Command) As(kubeconfig string) *Command { return c.WithEnv("KUBECONFIG=" + kubeconfig) }

// WithStdin feeds b to the command.
func (c *Command) WithStdin(b []byte) *Command {
	c.stdin = b
	return c
}

// WithTimeout bounds the command (default 5 minutes); it is killed after.
func (c *Command) WithTimeout(d time.Duration) *Command {
	c.timeout = d
	return c
}

// String is the command line, for messages.
func (c *Command) String() string {
	return filepath.Base(c.bin) + " " + strings.Join(c.args, " ")
}

// Run runs the command and returns how it ended; it fails the test only when the
// command cannot be run at all.
func (c *Command) Run(t testing.TB) Result {
	t.Helper()
	r, err := c.Exec()
	if err != nil {
		t.Fatalf("running %s: %v", c, err)
	}
	return r
}

// Exec is Run without a test: the error is for a command that could not run.
func (c *Command) Exec() (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, c.args...)
	cmd.Dir = c.tools.Dir
	cmd.Env = append(append([]string(nil), c.tools.Env...), c.env...)
	if c.stdin != nil {
		cmd.Stdin = bytes.NewReader(c.stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	case err != nil:
		return r, err
	}
	return r, nil
}

// Must runs the command and returns its stdout; a non-zero exit fails the test with
// the command's output.
func (c *Command) Must(t testing.TB) string {
	t.Helper()
	r := c.Run(t)
	if r.Code != 0 {
		t.Fatalf("%s exited %d:\n%s", c, r.Code, r.Output())
	}
	return r.Stdout
}
