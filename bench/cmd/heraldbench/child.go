package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// child is a dispatcher process started by the harness.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	dir     string
	logFile string
	ingest  string // host:port
	control string // http://host:port
	exited  chan struct{}
}

// startChild starts a dispatcher on a fresh store: embedded in a temporary directory,
// or on the external NATS cluster at natsURL.
func startChild(name, natsURL, observer, env string, verbosity int) (*child, error) {
	dir, err := os.MkdirTemp("", "heraldbench-"+name+"-")
	if err != nil {
		return nil, err
	}
	return startChildIn(dir, natsURL, observer, env, verbosity)
}

// startChildIn starts a dispatcher on the store in dir, which a stopped child may have
// left: a restart.
func startChildIn(dir, natsURL, observer, env string, verbosity int) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &child{dir: dir, logFile: filepath.Join(dir, "dispatcher.log"), exited: make(chan struct{})}
	cfg, _ := json.Marshal(childConfig{DataDir: filepath.Join(dir, "store"), NATSURL: natsURL, Observer: observer, LogFile: c.logFile, Verbosity: verbosity})
	c.cmd = exec.Command(exe, childRole, string(cfg))
	c.cmd.Stderr = os.Stderr
	c.cmd.Env = os.Environ()
	for _, kv := range strings.Split(env, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			c.cmd.Env = append(c.cmd.Env, kv)
		}
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "READY ") {
				ready <- line
			}
		}
	}()
	select {
	case line := <-ready:
		f := strings.Fields(line)
		c.ingest, c.control = f[1], "http://"+f[2]
		return c, nil
	case <-c.exited:
		os.RemoveAll(dir)
		return nil, errors.New("dispatcher child exited before it was ready")
	case <-time.After(60 * time.Second):
		c.stop()
		c.remove()
		return nil, errors.New("dispatcher child not ready within 60s")
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.control+path, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(msg))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func (c *child) mem() procMem {
	m, _ := readProcMem(c.pid())
	return m
}

func (c *child) cpu() time.Duration {
	d, _ := readProcCPU(c.pid())
	return d
}

// stop asks the child to stop and kills it if it does not; remove deletes its store
// and log.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	_ = c.stdin.Close()
}

func (c *child) remove() { os.RemoveAll(c.dir) }
