package framework

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"
)

// RepoRoot is the root of the Herald checkout.
var RepoRoot = testenv.RepoRoot()

// The version stamped into the binary the suites run. One value for every suite, so that
// they share one build.
const binaryVersion = "test"

// keepBinaries is how many builds of different content stay in the cache; older ones
// go (each is some 70 MB).
const keepBinaries = 3

// Herald returns the path of the herald binary built from the working tree. It is built
// once per content: the key is a hash of the Go and embedded files of every package of
// this module the binary is made of (from `go list -deps`), go.mod, go.sum, the
// toolchain and the target, so suites running at the same time in one `go test ./...`
// build it once, and a second run with nothing changed builds nothing. A build that fails
// fails the test (never a skip: a suite that cannot build what it tests must not pass).
func Herald(t testing.TB) string {
	t.Helper()
	return BuildHerald(t, BuildInput{})
}

// BuildInput configures BuildHerald.
type BuildInput struct {
	// Race builds with the race detector (and cgo, which it needs), for a suite whose
	// processes should stop at their first data race (testenv.RaceBuild: `make test`).
	Race bool
}

// BuildHerald is Herald with a choice of build; each kind is cached apart.
func BuildHerald(t testing.TB, in BuildInput) string {
	t.Helper()
	start := time.Now()
	key, err := heraldKey(in.Race)
	if err != nil {
		t.Fatalf("hashing the herald binary's sources: %v", err)
	}
	dir := filepath.Join(os.TempDir(), "herald-test-binaries")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := "herald-"
	if in.Race {
		name = "herald-race-"
	}
	bin := filepath.Join(dir, name+key[:16])
	// One lock per content: suites building the same sources wait for one build; other
	// checkouts build theirs meanwhile.
	unlock, err := lockFile(bin + ".lock")
	if err != nil {
		t.Fatalf("locking %s: %v", dir, err)
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		now := time.Now()
		_ = os.Chtimes(bin, now, now) // most recently used: kept longest
		t.Logf("herald binary %s (sources unchanged; no build)", bin)
		return bin
	}
	tmp := bin + ".tmp"
	args := []string{"build", "-o", tmp, "-ldflags", "-X github.com/herald-dev/herald/internal/version.Version=" + binaryVersion}
	if in.Race {
		args = append(args, "-race")
	}
	build := GoCommand(append(args, ".")...)
	build.Env = append(os.Environ(), cgoEnv(in.Race))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the suite drives the herald binary, and `go %s .` failed (%v):\n%s", strings.Join(args, " "), err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	pruneBinaries(dir)
	t.Logf("built herald (race detector: %v) in %s: %s", in.Race, time.Since(start).Round(100*time.Millisecond), bin)
	return bin
}

// GoCommand is the go tool of this toolchain, run in the repository root.
func GoCommand(args ...string) *exec.Cmd {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goTool, args...)
	cmd.Dir = RepoRoot
	return cmd
}

// cgoEnv is the cgo setting of a build: off, as the release builds, but for the race
// detector, which needs it.
func cgoEnv(race bool) string {
	if race {
		return "CGO_ENABLED=1"
	}
	return "CGO_ENABLED=0"
}

// heraldKey hashes everything the binary is built from.
func heraldKey(race bool) (string, error) {
	list := GoCommand("list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`, ".")
	list.Env = append(os.Environ(), cgoEnv(race))
	var stderr bytes.Buffer
	list.Stderr = &stderr
	out, err := list.Output()
	if err != nil {
		return "", fmt.Errorf("go list -deps: %w: %s", err, stderr.String())
	}
	var files []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		for _, name := range f[1:] {
			files = append(files, filepath.Join(f[0], name))
		}
	}
	files = append(files, filepath.Join(RepoRoot, "go.mod"), filepath.Join(RepoRoot, "go.sum"))
	sort.Strings(files)
	h := sha256.New()
	fmt.Fprintf(h, "%s %s/%s %s race=%v version=%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, cgoEnv(race), race, binaryVersion)
	for _, f := range files {
		rel, _ := filepath.Rel(RepoRoot, f)
		fmt.Fprintf(h, "%s\n", rel)
		r, err := os.Open(f)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lockFile takes an exclusive advisory lock, held until the returned function is called.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// pruneBinaries keeps the most recently used builds.
func pruneBinaries(dir string) {
	entries, err := filepath.Glob(filepath.Join(dir, "herald-*"))
	if err != nil {
		return
	}
	type built struct {
		path string
		used time.Time
	}
	var all []built
	for _, p := range entries {
		if strings.HasSuffix(p, ".tmp") || strings.HasSuffix(p, ".lock") {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			all = append(all, built{p, fi.ModTime()})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used.After(all[j].used) })
	for i := keepBinaries; i < len(all); i++ {
		_ = os.Remove(all[i].path)
		_ = os.Remove(all[i].path + ".lock")
	}
}
