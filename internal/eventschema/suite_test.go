package eventschema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/herald-dev/herald/internal/eventschema"
)

// The official JSON-Schema-Test-Suite is a git submodule of the library's repository and
// not in its Go module. This Go module vendors a copy of it (tests and remotes) as plain
// files, so the module proxy serves it; the test downloads it by itself, once, into the
// module cache.
const (
	suiteModule  = "github.com/kaptinlin/jsonschema"
	suiteVersion = "v0.9.5"
	suiteDir     = "testdata/JSON-Schema-Test-Suite"
)

func suiteRoot(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", suiteModule+"@"+suiteVersion)
	cmd.Dir = t.TempDir() // outside Herald's module: nothing is added to its go.mod
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("downloading the JSON-Schema-Test-Suite (%s@%s): %v\n%s%s", suiteModule, suiteVersion, err, out, ee.Stderr)
		}
		t.Fatalf("downloading the JSON-Schema-Test-Suite: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download answered %s", out)
	}
	root := filepath.Join(mod.Dir, suiteDir)
	if _, err := os.Stat(filepath.Join(root, "tests", "draft2020-12")); err != nil {
		t.Fatalf("the module holds no draft 2020-12 suite: %v", err)
	}
	return root
}

type group struct {
	Description string
	Schema      any
	Tests       []struct {
		Description string
		Data        any
		Valid       bool
	}
}

func readGroups(t *testing.T, path string) []group {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var gs []group
	if err := dec.Decode(&gs); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return gs
}

// remotes serves the suite's remote documents (http://localhost:1234/...) from its
// remotes folder, as the suite's README asks of a runner; nothing goes to the network.
type remotes string

func (r remotes) Load(url string) (any, error) {
	rest, ok := strings.CutPrefix(url, "http://localhost:1234/")
	if !ok {
		return nil, errors.New("not a suite remote: " + url)
	}
	f, err := os.Open(filepath.Join(string(r), "remotes", rest))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return jsonschema.UnmarshalJSON(f)
}

// TestJSONSchemaTestSuite_Draft2020_12 runs every required test of the official suite
// for draft 2020-12 (tests/draft2020-12/*.json; optional/ holds what the specification
// leaves optional, such as asserting formats) twice: against the library as its own
// README configures it, where every test must pass, and through Compile and Validate,
// where every schema Herald accepts must give the suite's answers and the ones it
// refuses must be refused for one of its documented bounds.
func TestJSONSchemaTestSuite_Draft2020_12(t *testing.T) {
	root := suiteRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "tests", "draft2020-12", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	var libPass, libFail, heraldPass, heraldFail, refusedTests int
	refused := map[string]int{} // bound -> tests whose schema it refused
	for _, file := range files {
		name := filepath.Base(file)
		for _, g := range readGroups(t, file) {
			// The library alone.
			c := jsonschema.NewCompiler()
			c.DefaultDraft(jsonschema.Draft2020)
			c.UseLoader(remotes(root))
			const url = "http://testsuite.local/schema.json"
			var sch *jsonschema.Schema
			err := c.AddResource(url, g.Schema)
			if err == nil {
				sch, err = c.Compile(url)
			}
			for _, tc := range g.Tests {
				if err != nil {
					libFail++
					t.Errorf("library: %s / %s: schema does not compile: %v", name, g.Description, err)
					continue
				}
				if got := sch.Validate(tc.Data) == nil; got != tc.Valid {
					libFail++
					t.Errorf("library: %s / %s / %s: valid = %v, want %v", name, g.Description, tc.Description, got, tc.Valid)
				} else {
					libPass++
				}
			}

			// Herald's judge.
			text, _ := json.Marshal(g.Schema)
			hs, herr := eventschema.Compile(string(text))
			if herr != nil {
				bound := boundOf(herr)
				if bound == "" {
					heraldFail += len(g.Tests)
					t.Errorf("herald: %s / %s: refused for no documented bound: %v", name, g.Description, herr)
					continue
				}
				refused[bound] += len(g.Tests)
				refusedTests += len(g.Tests)
				continue
			}
			for _, tc := range g.Tests {
				data, _ := json.Marshal(tc.Data)
				v := hs.ValidateValue(tc.Data, eventschema.Budget(len(data)))
				if got := v == nil; got != tc.Valid {
					heraldFail++
					t.Errorf("herald: %s / %s / %s: valid = %v (%v), want %v", name, g.Description, tc.Description, got, v, tc.Valid)
				} else {
					heraldPass++
				}
			}
		}
	}
	total := libPass + libFail
	t.Logf("JSON-Schema-Test-Suite draft2020-12 (required, %d files, %d tests; from %s@%s)", len(files), total, suiteModule, suiteVersion)
	t.Logf("  santhosh-tekuri/jsonschema/v6: %d passed, %d failed", libPass, libFail)
	t.Logf("  eventschema (Herald's bounds): %d passed, %d failed, %d not run because Herald refuses their schema:", heraldPass, heraldFail, refusedTests)
	for _, b := range slices.Sorted(mapKeys(refused)) {
		t.Logf("    %-40s %d tests", b, refused[b])
	}
	if total < 1000 {
		t.Errorf("only %d tests ran; the suite has over 1,000 for draft 2020-12", total)
	}
}

// boundOf names the documented bound an error of Compile is about, or "".
func boundOf(err error) string {
	msg := err.Error()
	for _, b := range []string{
		"references to other documents",
		"$dynamicRef and $recursiveRef",
		"$anchor and $dynamicAnchor",
		"$id is not allowed",
		"event schemas are JSON Schema draft 2020-12",
		"the schema refers to",
	} {
		if strings.Contains(msg, b) {
			return b
		}
	}
	return ""
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
