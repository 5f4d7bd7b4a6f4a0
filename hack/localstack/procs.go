package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a process started by the stack, in a process group of its own so that
// stopping it stops anything it started, and so that the terminal's Ctrl-C reaches only
// the stack, which then stops the children in order.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

func (s *stack) startChild(name string, args []string, env []string) (*child, error) {
	logPath := filepath.Join(s.cfg.state, "logs", name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = s.cfg.root
	cmd.Env = append(os.Environ(), env...)
	w := &prefixWriter{con: s.con, prefix: "[" + name + "] ", file: f, quiet: s.cfg.quiet}
	cmd.Stdout, cmd.Stderr = w, w
	// Pdeathsig: should the stack itself be killed (kill -9), the kernel stops the child
	// rather than leaving it running with nobody to stop it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), log: f}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop asks the process group to terminate and kills it after grace.
func (c *child) stop(grace time.Duration) {
	if c.exited() {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
}

func (c *child) kill() {
	if !c.exited() {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// lockState makes sure one stack at a time uses this state folder: a second one would
// fight over etcd's data and the ports.
func lockState(state string) (*os.File, error) {
	path := filepath.Join(state, "stack.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(f)
		f.Close()
		return nil, fmt.Errorf("another local stack is running from this checkout (pid %s): stop it with Ctrl-C in its terminal first",
			strings.TrimSpace(string(holder)))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// stopLeftovers stops processes an earlier stack from this checkout left behind because
// it was killed outright (kill -9, a closed VM): etcd would otherwise keep its data
// folder locked. With the state lock held no live stack owns them.
func (s *stack) stopLeftovers() { s.signalOurs(syscall.SIGTERM, true) }

// signalOurs signals the processes that run one of our binaries with one of our state
// paths (etcd's data folder, the API server's certificate folder, the dispatcher's data
// folder), so that nothing else on the machine is ever touched. With wait it reports
// each one, waits up to 10s for it to end and then kills it.
func (s *stack) signalOurs(sig syscall.Signal, wait bool) {
	markers := map[string]string{
		filepath.Join(s.cfg.assets, "etcd"):           "--data-dir=" + s.etcdDir(),
		filepath.Join(s.cfg.assets, "kube-apiserver"): "--cert-dir=" + s.certDir(),
		s.cfg.herald: "--data-dir=" + s.dispatcherDir(),
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		marker, ours := markers[argv[0]]
		if !ours || !contains(argv[1:], marker) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		_ = syscall.Kill(pid, sig)
		if !wait {
			continue
		}
		s.con.Stackf("stopped %s (pid %d), left running by an earlier local stack", filepath.Base(argv[0]), pid)
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// listenPreferred listens on 127.0.0.1:port, or on a free port when it is taken.
func listenPreferred(port int) (net.Listener, error) {
	if port > 0 {
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			return ln, nil
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// freeAddr returns a 127.0.0.1 address free right now, for a child to bind. preferred,
// when non-zero, is tried first.
func freeAddr(preferred int) (string, error) {
	ln, err := listenPreferred(preferred)
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// tail returns the last lines of a log file, for an error message.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(raw, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + string(bytes.Join(lines, []byte("\n    ")))
}
