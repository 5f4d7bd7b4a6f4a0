package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/refreceiver"
	"github.com/herald-dev/herald/pkg/verify"
)

// harness holds the tools and the processes of one run.
type harness struct {
	t          *testing.T
	dir        string // scratch: kubeconfigs, manifests as applied, logs, the store
	herald     string
	kubectl    string
	helm       string
	kubeconfig string   // cluster admin
	env        []string // for every child: isolated HOME, helm dirs, KUBECONFIG
	procs      []*proc
	metrics    string // the dispatcher's metrics address, host:port
}

// result is a finished command.
type result struct {
	stdout, stderr string
	code           int
}

// run runs a tool with the harness environment plus extra variables.
func (h *harness) run(extraEnv []string, stdin []byte, name string, args ...string) result {
	h.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = h.dir
	cmd.Env = append(append([]string(nil), h.env...), extraEnv...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		h.t.Fatalf("running %s: %v", name, err)
	}
	return r
}

// must runs a tool and fails the test, with its output, when it does not exit 0.
func (h *harness) must(extraEnv []string, name string, args ...string) string {
	h.t.Helper()
	r := h.run(extraEnv, nil, name, args...)
	if r.code != 0 {
		h.t.Fatalf("%s %s exited %d:\n%s%s", filepath.Base(name), strings.Join(args, " "), r.code, r.stderr, r.stdout)
	}
	return r.stdout
}

func (h *harness) kubectlMust(args ...string) string {
	h.t.Helper()
	return h.must(nil, h.kubectl, args...)
}

// heraldMust runs the herald CLI as a user would, with extra environment such as
// HERALD_TOKEN (a token belongs in the environment, not in the process list).
func (h *harness) heraldMust(extraEnv []string, args ...string) string {
	h.t.Helper()
	return h.must(extraEnv, h.herald, args...)
}

// eventually polls cond every 200ms until it holds or within passes.
func (h *harness) eventually(within time.Duration, what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if err := h.childFailure(); err != nil {
			h.t.Fatal(err)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeKubeconfig writes a kubeconfig for the admin's cluster whose user is a bearer
// token, the way a Pod's ServiceAccount reaches the API server.
func (h *harness) writeKubeconfig(name, token string) string {
	h.t.Helper()
	admin, err := clientcmd.LoadFromFile(h.kubeconfig)
	if err != nil {
		h.t.Fatal(err)
	}
	cur := admin.Contexts[admin.CurrentContext]
	out := clientcmdapi.NewConfig()
	out.Clusters["envtest"] = admin.Clusters[cur.Cluster]
	out.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	out.Contexts[name] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: name}
	out.CurrentContext = name
	path := filepath.Join(h.dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*out, path); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// proc is a herald process, in a process group of its own so that stopping it stops
// everything it started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (h *harness) start(name string, env []string, args ...string) *proc {
	h.t.Helper()
	logPath := filepath.Join(h.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(h.herald, args...)
	cmd.Dir = h.dir
	cmd.Env = append(append([]string(nil), h.env...), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Should the test binary be killed outright, the kernel stops the child too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		h.t.Fatalf("starting herald %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	h.procs = append(h.procs, p)
	h.t.Cleanup(func() { p.stop(15 * time.Second) })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, as the kubelet would, and kills after grace.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// childFailure reports a herald process that died, with the end of its log.
func (h *harness) childFailure() error {
	for _, p := range h.procs {
		if p.exited() {
			return fmt.Errorf("herald %s exited (%v); the end of its log:\n%s", p.name, p.err, tail(p.log, 30))
		}
	}
	return nil
}

// waitReady waits for a herald process's /readyz.
func (h *harness) waitReady(p *proc, healthAddr string) {
	h.t.Helper()
	h.eventually(90*time.Second, "herald "+p.name+" /readyz", func() bool {
		resp, err := http.Get("http://" + healthAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// freeAddr is a 127.0.0.1 address nobody listens on right now, for a child to bind.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// receiver is one webhook receiver on 127.0.0.1. It verifies each request twice with
// the endpoint's signing secret: as a user of pkg/verify would, and with the receiver
// transcribed from the style's reference document (internal/refreceiver, which shares no
// code with Herald), so a misreading shared by Herald's signer and its verifier cannot
// pass. It answers 204 when both accept, 401 when either refuses, or 500 while it is
// told to fail.
type receiver struct {
	endpoint string
	style    heraldv1.SignatureStyle
	prefix   string
	srv      *httptest.Server

	mu            sync.Mutex
	secret        string
	authorization string // expected Authorization header; "" = not checked
	failing       bool
	requests      []request
}

type request struct {
	eventID, attempt string
	status           int
	problem          string // why it was refused, when it was
	header           http.Header
	body             []byte
}

func newReceiver(t *testing.T, ep *heraldv1.WebhookEndpoint) *receiver {
	r := &receiver{endpoint: ep.Name, style: ep.Spec.SignatureStyle(), prefix: ep.Spec.HeaderPrefix()}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) URL() string { return r.srv.URL + "/hooks/" + r.endpoint }

func (r *receiver) setSecret(s string)        { r.mu.Lock(); r.secret = s; r.mu.Unlock() }
func (r *receiver) setAuthorization(s string) { r.mu.Lock(); r.authorization = s; r.mu.Unlock() }
func (r *receiver) setFailing(f bool)         { r.mu.Lock(); r.failing = f; r.mu.Unlock() }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	rec := request{header: req.Header.Clone(), body: body}
	for name, vals := range req.Header {
		switch {
		case strings.HasSuffix(name, "-Event-Id"):
			rec.eventID = vals[0]
		case strings.HasSuffix(name, "-Delivery-Attempt"):
			rec.attempt = vals[0]
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.verify(req.Header, body)
	switch {
	case r.failing:
		rec.status = http.StatusInternalServerError
	case err != nil:
		rec.status, rec.problem = http.StatusUnauthorized, err.Error()
	case r.authorization != "" && req.Header.Get("Authorization") != r.authorization:
		rec.status, rec.problem = http.StatusUnauthorized, "wrong Authorization header"
	default:
		rec.status = http.StatusNoContent
	}
	r.requests = append(r.requests, rec)
	w.WriteHeader(rec.status)
}

// verify checks one request with pkg/verify and with the reference receiver of the
// style; either refusing is a refusal, named after the one that refused.
func (r *receiver) verify(h http.Header, body []byte) error {
	var err error
	switch r.style {
	case heraldv1.SignatureStandardWebhooks:
		err = verify.StandardWebhooks(r.secret, h, body)
	case heraldv1.SignatureStandardWebhooksEd25519:
		// r.secret holds the endpoint's public key: all its receiver ever has.
		err = verify.StandardWebhooksEd25519(r.secret, h, body)
	case heraldv1.SignatureTimestampedPrefixedHex:
		err = verify.TimestampedPrefixedHex(r.secret, r.prefix, h, body)
	case heraldv1.SignatureBodyPrefixedHex:
		err = verify.BodyPrefixedHex(r.secret, r.prefix, h, body)
	case heraldv1.SignatureTimestampedHex:
		err = verify.TimestampedHex(r.secret, r.prefix, h, body)
	default:
		return fmt.Errorf("unknown style %q", r.style)
	}
	if err != nil {
		return fmt.Errorf("pkg/verify: %w", err)
	}
	if !r.reference(r.secret, r.prefix+"-Signature", h, body) {
		return fmt.Errorf("the %s reference receiver (internal/refreceiver) refused it", r.style)
	}
	return nil
}

// reference reports whether the receiver transcribed from the style's reference
// document accepts the request with secret, reading the signature from signatureHeader
// (the document's header, or its -Previous twin during a rotation).
func (r *receiver) reference(secret, signatureHeader string, h http.Header, body []byte) bool {
	ts := r.prefix + "-Timestamp"
	switch r.style {
	case heraldv1.SignatureStandardWebhooks:
		return refreceiver.StandardWebhooks(secret, h, body, time.Now())
	case heraldv1.SignatureStandardWebhooksEd25519:
		return refreceiver.StandardWebhooksEd25519(secret, h, body, time.Now())
	case heraldv1.SignatureTimestampedPrefixedHex:
		return refreceiver.Tork(secret, h, body, signatureHeader, ts)
	case heraldv1.SignatureBodyPrefixedHex:
		return refreceiver.Bolor(secret, h, body, signatureHeader) && refreceiver.BolorNode(secret, h, body, signatureHeader)
	case heraldv1.SignatureTimestampedHex:
		// The document's handler dispatches on X-…-Event; it must name the event's type.
		event, ok := refreceiver.Praxis(secret, h, body, signatureHeader, ts, r.prefix+"-Event", time.Now())
		return ok && event != "" && event == h.Get(r.prefix+"-Event-Type")
	}
	return false
}

// attempts returns every request carrying the event id.
func (r *receiver) attempts(eventID string) []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []request
	for _, q := range r.requests {
		if q.eventID == eventID {
			out = append(out, q)
		}
	}
	return out
}

// delivered returns the accepted (verified, 204) request of the event, if any.
func (r *receiver) delivered(eventID string) (request, bool) {
	for _, q := range r.attempts(eventID) {
		if q.status == http.StatusNoContent {
			return q, true
		}
	}
	return request{}, false
}

// refusals describes requests refused for a bad signature or header, which must not
// happen: every delivery Herald makes has to verify.
func (r *receiver) refusals() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, q := range r.requests {
		if q.problem != "" {
			out = append(out, fmt.Sprintf("%s (event %s): %s", r.endpoint, q.eventID, q.problem))
		}
	}
	return out
}

// envelope is the Envelope payload format.
type envelope struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Data        json.RawMessage `json:"data"`
	Environment string          `json:"environment"`
}
