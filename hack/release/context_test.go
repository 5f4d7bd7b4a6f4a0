package release

import (
	"bufio"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

// dockerfile is the little of a Dockerfile these tests read: instructions by stage.
type dockerfile struct {
	stages []*stage
}

type stage struct {
	name, from string
	// instructions in order, as {keyword, arguments}, continuation lines joined.
	instructions [][2]string
}

func parseDockerfile(t *testing.T, file string) *dockerfile {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	df := &dockerfile{}
	var logical string
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if logical == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			logical += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		logical += trimmed
		keyword, args, _ := strings.Cut(logical, " ")
		keyword, args = strings.ToUpper(keyword), strings.Join(strings.Fields(args), " ")
		logical = ""
		if keyword == "FROM" {
			fields := strings.Fields(args)
			s := &stage{}
			for i := 0; i < len(fields); i++ {
				switch {
				case strings.HasPrefix(fields[i], "--"):
				case strings.EqualFold(fields[i], "AS") && i+1 < len(fields):
					s.name = fields[i+1]
					i++
				default:
					s.from = fields[i]
				}
			}
			df.stages = append(df.stages, s)
			continue
		}
		if len(df.stages) == 0 {
			t.Fatalf("%s: %s before the first FROM", file, keyword)
		}
		cur := df.stages[len(df.stages)-1]
		cur.instructions = append(cur.instructions, [2]string{keyword, args})
	}
	if len(df.stages) == 0 {
		t.Fatalf("%s has no FROM", file)
	}
	return df
}

func (df *dockerfile) stage(t *testing.T, name string) *stage {
	t.Helper()
	for _, s := range df.stages {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("Dockerfile has no stage %q", name)
	return nil
}

func (s *stage) all(keyword string) []string {
	var out []string
	for _, in := range s.instructions {
		if in[0] == keyword {
			out = append(out, in[1])
		}
	}
	return out
}

func (s *stage) last(t *testing.T, keyword string) string {
	t.Helper()
	all := s.all(keyword)
	if len(all) == 0 {
		t.Fatalf("stage %q (FROM %s) has no %s", s.name, s.from, keyword)
	}
	return all[len(all)-1]
}

// stripRunFlags drops RUN's own options (--mount=type=cache,...), leaving the shell command.
func stripRunFlags(run string) string {
	for strings.HasPrefix(run, "--") {
		_, run, _ = strings.Cut(run, " ")
	}
	return run
}

// ignorePattern is one .dockerignore line, compiled with Docker's rules for the
// constructs it allows: '*' within a path segment, a leading '**/' for any depth, '!'
// to re-include. A pattern matches a path or any of its parent directories.
type ignorePattern struct {
	raw    string
	negate bool
	re     *regexp.Regexp
}

func parseDockerignore(t *testing.T, file string) []ignorePattern {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []ignorePattern
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := ignorePattern{}
		if strings.HasPrefix(line, "!") {
			p.negate, line = true, strings.TrimSpace(line[1:])
		}
		p.raw = strings.TrimPrefix(path.Clean(line), "/")
		if strings.ContainsAny(p.raw, `[]\?`) || strings.Contains(strings.TrimPrefix(p.raw, "**/"), "**") {
			t.Fatalf(".dockerignore pattern %q uses syntax this test does not model; extend parseDockerignore", line)
		}
		expr := regexp.QuoteMeta(strings.TrimPrefix(p.raw, "**/"))
		expr = strings.ReplaceAll(expr, `\*`, `[^/]*`)
		if strings.HasPrefix(p.raw, "**/") {
			expr = `(.*/)?` + expr
		}
		p.re = regexp.MustCompile(`^` + expr + `$`)
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// excluded applies the patterns in order; the last one matching decides.
func excluded(patterns []ignorePattern, rel string) bool {
	out := false
	for _, p := range patterns {
		if matchesOrParent(p.re, rel) {
			out = !p.negate
		}
	}
	return out
}

func matchesOrParent(re *regexp.Regexp, rel string) bool {
	for p := rel; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if re.MatchString(p) {
			return true
		}
	}
	return false
}

// copyContext copies into dst what Docker would send as the build context, and returns
// its size in bytes.
func copyContext(t *testing.T, root, dst string, patterns []ignorePattern) int64 {
	t.Helper()
	var size int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			// An excluded folder is skipped unless a later '!' could bring back something
			// inside it; bin/ is far too big to walk.
			if excluded(patterns, rel) && !reincludesUnder(patterns, rel) {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() || excluded(patterns, rel) {
			return nil
		}
		n, err := copyFile(p, filepath.Join(dst, rel))
		size += n
		return err
	})
	if err != nil {
		t.Fatalf("copying the build context: %v", err)
	}
	return size
}

func reincludesUnder(patterns []ignorePattern, dir string) bool {
	for _, p := range patterns {
		if p.negate && (strings.HasPrefix(p.raw, "**/") || strings.HasPrefix(p.raw, dir+"/") || p.re.MatchString(dir)) {
			return true
		}
	}
	return false
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// The model of Docker's rules the build test relies on, on the cases that matter.
func TestDockerignore_KeepsBinariesAndTestsOutAndSourcesIn(t *testing.T) {
	patterns := parseDockerignore(t, filepath.Join(testenv.RepoRoot(), ".dockerignore"))
	for rel, want := range map[string]bool{
		"bin/k8s/1.37.2/kube-apiserver":      true,
		".git/HEAD":                          true,
		"dist/install.yaml":                  true,
		"charts/herald/values.yaml":          true,
		"controllers/endpoint/checks.go":     false,
		"controllers/endpoint/suite_test.go": true,
		"main.go":                            false,
		"go.sum":                             false,
		"pkg/verify/verify.go":               false,
	} {
		if got := excluded(patterns, rel); got != want {
			t.Errorf("%s excluded = %v, want %v", rel, got, want)
		}
	}
}
