package firsthour

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/hack/framework"
)

var repoRoot = framework.RepoRoot

// Headings of the terminals the stack's closing hints open, in hack/localstack/hints.go.
const (
	adminTerminal    = "As the cluster admin"
	producerTerminal = "As a producer"
	operatorTerminal = "As an operator"
)

// expectation is what a pasted command must print (stdout and stderr together) besides
// exiting 0. Commands are matched by prefix, first match wins; a printed command with no
// expectation fails the test, so a new hint cannot go unchecked.
type expectation struct {
	prefix string
	want   []string
}

var expectations = []expectation{
	{"kubectl get whe,whs", []string{"webhookendpoint.hooks.herald.dev/billing", "webhooksubscription.hooks.herald.dev/"}},
	// A command that serves until interrupted: openConsole starts it, reads the page of
	// the terminal's namespace through the address it printed, and stops it.
	{"herald console", []string{"Webhooks in herald-demo", "billing", "Delivering"}},
	{"kubectl describe whe billing", []string{"billing", "Conditions:", "Ready"}},
	{"kubectl get events --field-selector involvedObject.kind=WebhookEndpoint", nil},
	{"herald verify ", []string{"signature valid"}},
	{"herald publish ", []string{"MATCHED", "evt_"}},
	{"herald endpoint status billing", []string{"Name:", "billing", "Ready:"}},
	{"herald endpoint status", []string{"NAME", "billing"}},
	{"herald endpoint enable billing --via-annotation", []string{"WebhookEndpoint herald-demo/billing", "(annotation hooks.herald.dev/reenable="}},
	{"herald endpoint enable billing", []string{"WebhookEndpoint herald-demo/billing", "through the dispatcher's API"}},
	{"herald dlq list billing", []string{"dead letters", "herald-demo/billing"}},
	{"herald dlq replay billing --all --via-annotation", []string{"Annotated WebhookEndpoint herald-demo/billing", "the dispatcher replayed"}},
	{"herald dlq replay billing --event-id", []string{"No dead letter of WebhookEndpoint herald-demo/billing matched"}},
	{"herald dlq replay billing --since", []string{"Replay rpl-", "of WebhookEndpoint herald-demo/billing", "selected (since="}},
	{"herald events resend billing", []string{"Replay rpl-", "of WebhookEndpoint herald-demo/billing", "selected (since="}},
	{"herald events get evt_", []string{"WebhookEndpoint herald-demo/billing: Delivered", "HTTP 2"}},
	// The demo's billing endpoint answers every attempt with 2xx.
	{"herald attempts list billing --failed", []string{"No attempts of WebhookEndpoint herald-demo/billing match"}},
	// billing subscribes to Herald's own events in the demo (config/samples/catalog).
	{"herald docs billing", []string{`"openapi": "3.1.0"`, `"invoice.paid"`, `"herald.endpoint.disabled"`, `"webhook-signature"`}},
	{`ln -s "$(command -v herald)" ~/.local/bin/kubectl-herald`, nil},
	{"kubectl plugin list", []string{"/.local/bin/kubectl-herald"}},
	{"kubectl herald endpoint status", []string{"NAME", "billing"}},
	{"kubectl herald dlq list billing", []string{"dead letters", "herald-demo/billing"}},
	// The grants the CLI advises on a 403.
	{"kubectl create rolebinding ", []string{"rolebinding.rbac.authorization.k8s.io/", " created"}},
}

// TestFirstHour_EveryPrintedCommandAndREADMEExampleWorks is issue 15's "first hour":
// nothing a new user is told to paste may fail.
func TestFirstHour_EveryPrintedCommandAndREADMEExampleWorks(t *testing.T) {
	start := time.Now()
	state := filepath.Join(t.TempDir(), "state")
	home := newHome(t)
	sup := framework.NewSupervisor(t, filepath.Join(t.TempDir(), "logs"), nil)

	stack := startStack(t, sup, state)
	terminals := stack.hints(t, sup)
	t.Logf("== make run printed its hints after %s", time.Since(start).Round(100*time.Millisecond))
	// Start-up is quiet: no failed readiness checks, no broken demo sentence, and no
	// hold for the signing Secrets the manager generates a moment later (a hold of
	// that kind at start is no news; the status says so if it lasts).
	for _, noise := range []string{"healthz check failed", "resuming it as", `"reason": "SecretNotFound"`} {
		if stack.printed(noise) {
			t.Errorf("make run printed %q while starting:\n%s", noise, stack.output())
		}
	}

	// The demo shows the event catalog: a type with its schema, a publish refused with
	// 422, and an operational event arriving at the demo receiver.
	for _, shown := range []string{"declares 6 event types", "is refused with 422 by the catalog", "schema_violation",
		"herald.endpoint.disabled about flaky-", "arrived at billing, signed"} {
		if !stack.printed(shown) {
			t.Errorf("make run did not print %q:\n%s", shown, stack.output())
		}
	}

	for _, heading := range []string{adminTerminal, producerTerminal, operatorTerminal} {
		term := terminals.find(t, heading)
		for _, c := range term.commands {
			paste(t, home, term, c)
		}
	}

	// The README's examples, each in the terminal of the identity it is for: publishing is
	// the producer's; setting an annotation (--via-annotation) needs patch on the
	// endpoint, which herald-operator does not grant, so it is the admin's; the rest the
	// operator's.
	readme := readmeExamples(t)
	if len(readme) < 8 {
		t.Fatalf("found %d examples in the README's CLI section, want the herald commands and the kubectl plugin ones", len(readme))
	}
	for _, c := range readme {
		term := terminals.find(t, operatorTerminal)
		switch {
		case strings.HasPrefix(c, "herald publish"):
			term = terminals.find(t, producerTerminal)
		case strings.Contains(c, "--via-annotation"):
			term = terminals.find(t, adminTerminal)
		}
		paste(t, home, term, c)
	}
	// The operator's role grants no patch: the annotation is refused, the API is not.
	if out, err := run(home, terminals.find(t, operatorTerminal), "herald endpoint enable billing --via-annotation"); err == nil ||
		!strings.Contains(out, "--clusterrole=herald-editor") || !strings.Contains(out, "Or drop --via-annotation") {
		t.Errorf("operator terminal: herald endpoint enable billing --via-annotation should be refused for want of patch, advising herald-editor or the API (%v):\n%s", err, indent(out))
	}
	t.Logf("== every printed command and README example pasted, %s after make run started", time.Since(start).Round(100*time.Millisecond))

	// The CLI's advice on an error must fix it here: the admin runs the printed commands,
	// and the refused command then works (once the dispatcher's refusal cache lets go).
	admin, producer, operator := terminals.find(t, adminTerminal), terminals.find(t, producerTerminal), terminals.find(t, operatorTerminal)
	followGrant(t, home, admin, producer, "herald dlq list billing")
	followGrant(t, home, admin, producer, "herald publish -n default --type invoice.paid --data '{\"amount\": 2500}'")
	followGrant(t, home, admin, operator, "herald publish -n herald-demo --type invoice.paid --data '{\"amount\": 2500}'")
	followRecipe(t, home, admin, "herald dlq list billing")
	badToken := admin
	badToken.exports = append(append([]string(nil), admin.exports...), "export HERALD_TOKEN=not-a-token")
	followRecipe(t, home, badToken, "herald publish --type invoice.paid --data '{\"amount\": 2500}'")
	t.Logf("== the CLI's advice followed, %s after make run started", time.Since(start).Round(100*time.Millisecond))

	// A terminal keeps the token it exported; after a restart of make run it must still
	// be accepted (the signing key and issuer are kept in the state folder).
	producerToken := readFile(t, filepath.Join(state, "producer-token"))
	operatorToken := readFile(t, filepath.Join(state, "operator-token"))
	stack.stop(t)
	restarted := startStack(t, sup, state, "--demo=false")
	after := restarted.hints(t, sup)
	withOldToken := func(heading, token string) terminal {
		term := after.find(t, heading)
		term.exports = append(append([]string(nil), term.exports...), "export HERALD_TOKEN="+token)
		return term
	}
	paste(t, home, withOldToken(producerTerminal, producerToken), `herald publish --type invoice.paid --data '{"amount": 2500}'`)
	paste(t, home, withOldToken(operatorTerminal, operatorToken), "herald dlq list billing")
	restarted.stop(t)
	t.Logf("== tokens from before the restart still work; %s in all", time.Since(start).Round(100*time.Millisecond))
}

// hintLines are the commands an error message advises, indented by two spaces.
func hintLines(out string) []string {
	var cmds []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "  kubectl ") || strings.HasPrefix(l, "  export ") {
			cmds = append(cmds, strings.TrimSpace(l))
		}
	}
	return cmds
}

// run pastes a script into a fresh bash in term and returns its output and error.
func run(home string, term terminal, script string) (string, error) {
	cmd := exec.Command("bash", "-c", strings.Join(append(append([]string(nil), term.exports...), script), "\n"))
	cmd.Dir = os.TempDir()
	cmd.Env = userEnv(home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// followGrant runs command in term, where it must be refused with advice to grant
// something, has the admin paste that advice, and waits for command to work: the
// dispatcher keeps a refusal for a while (the message says how long), so the command
// is repeated until it works or twice that time has passed.
func followGrant(t *testing.T, home string, admin, term terminal, command string) {
	t.Helper()
	out, err := run(home, term, command)
	if err == nil {
		t.Errorf("%s terminal: %q worked; it should have been refused:\n%s", shortHeading(term.heading), command, indent(out))
		return
	}
	grants := hintLines(out)
	t.Logf("%s $ %s   (refused, as it should be)\n%s", shortHeading(term.heading), command, indent(out))
	if len(grants) == 0 || !strings.Contains(out, "keeps a refusal for") {
		t.Errorf("%s terminal: %q was refused without a command that grants it and the refusal cache's delay:\n%s", shortHeading(term.heading), command, indent(out))
		return
	}
	for _, g := range grants {
		paste(t, home, admin, g)
	}
	granted := time.Now()
	for {
		out, err = run(home, term, command)
		if err == nil {
			t.Logf("%s $ %s   (works %s after the grant)\n%s", shortHeading(term.heading), command, time.Since(granted).Round(100*time.Millisecond), indent(out))
			return
		}
		if time.Since(granted) > 30*time.Second {
			t.Errorf("%s terminal: %q still fails 30s after the admin ran the advice %q:\n%s", shortHeading(term.heading), command, grants, indent(out))
			return
		}
		time.Sleep(time.Second) // the poll interval of a condition with a deadline, not a wait for it
	}
}

// followRecipe runs command in term, where it must fail with a recipe of commands that
// end in an export, and then pastes the recipe followed by command in the same shell,
// which must work at once: the recipe makes a new identity, so no refusal is cached.
func followRecipe(t *testing.T, home string, term terminal, command string) {
	t.Helper()
	out, err := run(home, term, command)
	recipe := hintLines(out)
	t.Logf("%s $ %s   (fails, as it should)\n%s", shortHeading(term.heading), command, indent(out))
	if err == nil || len(recipe) == 0 || !strings.HasPrefix(recipe[len(recipe)-1], "export ") {
		t.Errorf("%s terminal: %q should fail with commands that end in an export; it printed (%v):\n%s", shortHeading(term.heading), command, err, indent(out))
		return
	}
	script := strings.Join(append(recipe, command), "\n")
	out, err = run(home, term, script)
	t.Logf("%s $ %s\n%s", shortHeading(term.heading), strings.ReplaceAll(script, "\n", "\n  $ "), indent(out))
	if err != nil {
		t.Errorf("%s terminal: the advice followed by the command failed (%v):\n%s\n%s", shortHeading(term.heading), err, indent(script), indent(out))
	}
}

// terminal is one block of the closing hints: the exports that open it and the commands
// to paste after them.
type terminal struct {
	heading  string
	exports  []string
	commands []string
}

type terminals []terminal

func (ts terminals) find(t *testing.T, heading string) terminal {
	t.Helper()
	for _, term := range ts {
		if strings.HasPrefix(term.heading, heading) {
			return term
		}
	}
	t.Fatalf("make run's hints have no terminal %q", heading)
	return terminal{}
}

// paste runs the terminal's exports and then command in a new bash, in a folder of its
// own with a HOME of its own, as in a freshly opened terminal, and checks the outcome.
func paste(t *testing.T, home string, term terminal, command string) {
	t.Helper()
	var want []string
	found := false
	for _, e := range expectations {
		if strings.HasPrefix(command, e.prefix) {
			want, found = e.want, true
			break
		}
	}
	if !found {
		t.Errorf("%s terminal: no expectation for the command %q: add one to expectations", shortHeading(term.heading), command)
		return
	}
	script := strings.Join(append(append([]string(nil), term.exports...), command), "\n")
	if strings.HasPrefix(command, "herald console") || strings.HasPrefix(command, "kubectl herald console") {
		openConsole(t, home, term, script, want)
		return
	}
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.Env = userEnv(home)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Round(10 * time.Millisecond)
	t.Logf("%s $ %s   (%s)\n%s", shortHeading(term.heading), command, took, indent(string(out)))
	if err != nil {
		t.Errorf("%s terminal: pasting\n%s\nfailed (%v):\n%s", shortHeading(term.heading), indent(script), err, indent(string(out)))
		return
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("%s terminal: %q printed\n%s\nwhich lacks %q", shortHeading(term.heading), command, indent(string(out)), w)
		}
	}
}

var consoleAddress = regexp.MustCompile(`http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]+`)

// openConsole runs a console command, which serves until interrupted, as a person
// would: it waits for the address the command prints, opens it (the secret it carries
// becomes a cookie), reads the page of the terminal's namespace, checks it holds want,
// and stops the command with Ctrl-C's signal, after which it must exit.
func openConsole(t *testing.T, home string, term terminal, script string, want []string) {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.Env = userEnv(home)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() error {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			return fmt.Errorf("it did not exit within 15s of SIGINT")
		}
	}
	who := shortHeading(term.heading)
	var address string
	wait := framework.Wait{Within: 60 * time.Second}
	if err := wait.Poll("the console's address", framework.Bool(func() bool {
		address = consoleAddress.FindString(out.String())
		return address != ""
	})); err != nil {
		_ = stop()
		t.Errorf("%s terminal: the console printed no address:\n%s", who, indent(out.String()))
		return
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	page := ""
	resp, err := hc.Get(address)
	if err == nil {
		resp.Body.Close()
		resp, err = hc.Get(strings.Split(address, "?")[0] + "ns/herald-demo")
	}
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page = string(b)
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s", resp.Status)
		}
	}
	stopErr := stop()
	t.Logf("%s $ %s   (opened %s, read its page of herald-demo, stopped it)\n%s", who, strings.TrimPrefix(script, strings.Join(term.exports, "\n")+"\n"), address, indent(out.String()))
	if err != nil {
		t.Errorf("%s terminal: reading the console's page: %v", who, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("%s terminal: the console's page of herald-demo lacks %q:\n%s", who, w, indent(page))
		}
	}
	if stopErr != nil && !strings.Contains(stopErr.Error(), "signal: interrupt") && !strings.Contains(stopErr.Error(), "exit status 130") {
		t.Errorf("%s terminal: the console did not stop cleanly on Ctrl-C: %v\n%s", who, stopErr, indent(out.String()))
	}
}

// syncBuffer is a bytes.Buffer safe for a child's output and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// userEnv is a person's environment: the machine's PATH with ~/.local/bin (Debian's
// ~/.profile adds it when it exists), a HOME of their own, and none of the variables the
// hints set, so only the pasted exports can make a command work.
func userEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "HOME", name == "PATH", name == "KUBECONFIG", strings.HasPrefix(name, "HERALD_"),
			strings.HasPrefix(name, "MAKE"), name == "MFLAGS", name == "KUBEBUILDER_ASSETS":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "PATH="+filepath.Join(home, ".local", "bin")+":"+os.Getenv("PATH"))
}

// goCaches are the go command's cache settings of this process, as variables.
func goCaches(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "-json", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	var vars map[string]string
	if err := json.Unmarshal(out, &vars); err != nil {
		t.Fatalf("go env -json printed %q: %v", out, err)
	}
	var env []string
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

func newHome(t *testing.T) string {
	home := filepath.Join(t.TempDir(), "home")
	if err := os.MkdirAll(filepath.Join(home, ".local", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	return home
}

// stack is `make run` running in the checkout, a child of the run's supervisor whose
// log is what make run printed.
type stack struct {
	proc *framework.Process
}

// startStack runs `make run` with its state in state and ports chosen free, so that it
// neither meets a developer's own `make run` nor another test.
func startStack(t *testing.T, sup *framework.Supervisor, state string, flags ...string) *stack {
	t.Helper()
	runFlags := append([]string{"--state=" + state, "--ingest-port=0", "--receiver-port=0"}, flags...)
	// The developer's kubeconfig and HERALD_* must not reach the stack, and a make
	// jobserver of `make test` is not this make's. Go's caches stay the developer's: they
	// live under HOME by default, and a new HOME would build everything cold.
	env := append(userEnv(t.TempDir()), goCaches(t)...)
	p := sup.Start(framework.StartInput{
		Name:   fmt.Sprintf("make-run-%d", len(sup.Processes())+1),
		Binary: "make", Args: []string{"--no-print-directory", "run", "RUN_FLAGS=" + strings.Join(runFlags, " ")},
		Env: env, Dir: repoRoot,
		// Should the test end early, nothing is left running: the whole group goes.
		Grace: 10 * time.Second,
	})
	return &stack{proc: p}
}

const hintsEnd = "Ctrl-C stops everything"

// hints waits for the closing hints and parses them into terminals.
func (s *stack) hints(t *testing.T, sup *framework.Supervisor) terminals {
	t.Helper()
	// Cold, make run builds herald and the stack (and, the very first time on a machine,
	// the control-plane binaries and helm, which `make test` has already built).
	wait := framework.Wait{Within: 10 * time.Minute, Watch: sup}
	if err := wait.Poll("make run's hints", framework.Bool(func() bool { return containsPrefix(s.lines(), hintsEnd) })); err != nil {
		t.Fatalf("make run printed no hints: %v\nIt printed:\n%s", err, s.output())
	}
	lines := s.lines()
	t.Logf("make run printed:\n%s", indent(strings.Join(lines, "\n")))
	return parseHints(t, lines)
}

func (s *stack) lines() []string {
	return strings.Split(strings.TrimRight(s.proc.Output(), "\n"), "\n")
}

func (s *stack) printed(substr string) bool {
	return strings.Contains(s.proc.Output(), substr)
}

func (s *stack) output() string {
	return indent(s.proc.Output())
}

// stop is Ctrl-C's equivalent for make: SIGTERM to make alone, which passes it on to
// the stack; the stack stops its processes in order and must say so.
func (s *stack) stop(t *testing.T) {
	t.Helper()
	s.proc.Signal(syscall.SIGTERM)
	if !s.proc.Wait(90 * time.Second) {
		t.Fatalf("make run did not stop within 90s of SIGTERM:\n%s", s.output())
	}
	if !s.printed("stopped kube-apiserver and etcd") {
		t.Errorf("make run did not report an orderly stop:\n%s", s.output())
	}
}

func containsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// parseHints reads the terminals of the closing hints: a heading line ending in ":",
// then its indented lines (exports first, then commands; "\" continues a line; "#"
// starts a comment).
func parseHints(t *testing.T, lines []string) terminals {
	t.Helper()
	var out terminals
	in := false
	var cur *terminal
	pending := ""
	for _, l := range lines {
		if strings.HasPrefix(l, "Herald is running locally") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if strings.HasPrefix(l, hintsEnd) {
			break
		}
		switch {
		case strings.HasPrefix(l, "As ") && strings.HasSuffix(l, ":"):
			out = append(out, terminal{heading: l})
			cur = &out[len(out)-1]
		case strings.HasPrefix(l, "    ") && cur != nil:
			line := pending + strings.TrimSpace(l)
			if strings.HasSuffix(line, `\`) {
				pending = strings.TrimSuffix(line, `\`)
				continue
			}
			pending = ""
			switch {
			case strings.HasPrefix(line, "#"):
			case strings.HasPrefix(line, "export "):
				cur.exports = append(cur.exports, line)
			default:
				cur.commands = append(cur.commands, line)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("found no terminals in make run's hints:\n%s", indent(strings.Join(lines, "\n")))
	}
	for _, term := range out {
		if len(term.exports) == 0 || len(term.commands) == 0 {
			t.Errorf("the terminal %q has %d exports and %d commands; each needs both", term.heading, len(term.exports), len(term.commands))
		}
	}
	return out
}

// readmeExamples returns the commands of the README's "Command line and kubectl plugin"
// section, from its sh blocks, comments and blank lines left out.
func readmeExamples(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := regexp.MustCompile(`(?ms)^## Command line and kubectl plugin\n(.*?)^## `).FindSubmatch(raw)
	if section == nil {
		t.Fatal(`README.md has no section "## Command line and kubectl plugin"`)
	}
	var out []string
	for _, block := range regexp.MustCompile("(?ms)^```sh\n(.*?)^```").FindAllSubmatch(section[1], -1) {
		for _, l := range strings.Split(string(block[1]), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			out = append(out, l)
		}
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSpace(b))
}

func shortHeading(h string) string {
	h, _, _ = strings.Cut(h, ":")
	return strings.TrimPrefix(h, "As ")
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
