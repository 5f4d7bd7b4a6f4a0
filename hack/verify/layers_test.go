package verify

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

const module = "github.com/herald-dev/herald/"

// The layers of the repository, each allowed to depend on the ones below it (README,
// "Layout"). A rule names the packages it governs (a prefix of their import path) and
// the Herald packages they may reach at all, directly or through others (go list -deps):
// a rule broken anywhere down the chain fails, not only a direct import.
var layerRules = []struct {
	name string
	// from is a prefix of the governed packages' import paths (relative to the module).
	from string
	// allowed reports whether a package the governed ones depend on may be reached.
	allowed func(dep string) bool
	why     string
}{
	{
		name: "pkg/ is public and stands alone",
		from: "pkg/",
		allowed: func(dep string) bool {
			return strings.HasPrefix(dep, "pkg/")
		},
		why: "what receivers and producers import must not drag Herald's servers (or their dependencies) into their programs",
	},
	{
		name: "api/ is the vocabulary",
		from: "api/",
		allowed: func(dep string) bool {
			return strings.HasPrefix(dep, "api/") || strings.HasPrefix(dep, "pkg/")
		},
		why: "the types and reasons everyone shares depend on nothing of Herald's",
	},
	{
		name: "internal/ holds leaf helpers",
		from: "internal/",
		allowed: func(dep string) bool {
			return strings.HasPrefix(dep, "internal/") || strings.HasPrefix(dep, "api/") || strings.HasPrefix(dep, "pkg/")
		},
		why: "internal/ is what the manager, the dispatcher and the suites share; a helper that needs the delivery engine belongs under dispatcher/",
	},
	{
		name: "the dispatcher never runs the manager's code",
		from: "dispatcher/",
		allowed: func(dep string) bool {
			return !strings.HasPrefix(dep, "controllers") && !strings.HasPrefix(dep, "cli") && !strings.HasPrefix(dep, "cmd/")
		},
		why: "the delivery engine knows nothing of the reconcilers or the command line",
	},
	{
		name: "the manager shares only the dispatcher's judge and configuration",
		from: "controllers",
		allowed: func(dep string) bool {
			if !strings.HasPrefix(dep, "dispatcher/") {
				return !strings.HasPrefix(dep, "cli") && !strings.HasPrefix(dep, "cmd/")
			}
			// resolve is the one judge of an endpoint (it builds the sender's configuration
			// with its signer); config is the file the manager renders for the dispatcher.
			return slices.Contains([]string{"dispatcher/resolve", "dispatcher/sender", "dispatcher/signer", "dispatcher/config"}, dep)
		},
		why: "the manager judges endpoints with the dispatcher's judge and renders its configuration; the engine (ingest, queue, delivery, outcome, ...) never runs in it",
	},
	{
		name: "the user commands are a client",
		from: "cli",
		allowed: func(dep string) bool {
			// The commands reach the dispatcher through pkg/client, and read what the
			// manager and the dispatcher write through the API server; the one dispatcher
			// package they run is the receiver documentation, written the same way from
			// the API server's objects (herald docs without --via-api).
			return !strings.HasPrefix(dep, "controllers") && !strings.HasPrefix(dep, "cmd/") &&
				(!strings.HasPrefix(dep, "dispatcher/") || slices.Contains([]string{"dispatcher/receiverdocs", "dispatcher/signer"}, dep))
		},
		why: "Cluster API's clusterctl cmd/client cut: commands over a client package, never over the servers",
	},
}

// TestLayers fails when a package reaches, directly or through another, a Herald
// package its layer may not depend on. One go list answers for every package: .Deps is
// the transitive closure `go list -deps` prints (test files aside).
func TestLayers(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}", "./...")
	cmd.Dir = testenv.RepoRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.String())
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok {
			continue
		}
		for _, d := range f[1:] {
			if d, ok := strings.CutPrefix(d, module); ok {
				deps[pkg] = append(deps[pkg], d)
			}
		}
		if _, ok := deps[pkg]; !ok {
			deps[pkg] = nil
		}
	}
	for _, rule := range layerRules {
		t.Run(rule.name, func(t *testing.T) {
			checked := 0
			for pkg, ds := range deps {
				if !strings.HasPrefix(pkg, rule.from) {
					continue
				}
				checked++
				for _, d := range ds {
					if !rule.allowed(d) {
						t.Errorf("%s depends on %s (go list -deps ./%s): %s", pkg, d, pkg, rule.why)
					}
				}
			}
			if checked == 0 {
				t.Fatalf("no package under %s: the rule governs nothing", rule.from)
			}
		})
	}
}
