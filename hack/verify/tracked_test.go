package verify

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

// maxTrackedBytes is the size above which a tracked file must be on largeFilesAllowed.
const maxTrackedBytes = 1 << 20

// largeFilesAllowed are tracked files that may be larger than maxTrackedBytes, each with
// why it has to live in the repository.
var largeFilesAllowed = map[string]string{}

// executableMagic are the first bytes of the executable formats Go (or anyone) builds.
var executableMagic = []struct {
	magic []byte
	what  string
}{
	{[]byte("\x7fELF"), "an ELF executable"},
	{[]byte{0xcf, 0xfa, 0xed, 0xfe}, "a Mach-O executable"},
	{[]byte{0xce, 0xfa, 0xed, 0xfe}, "a Mach-O executable"},
	{[]byte{0xca, 0xfe, 0xba, 0xbe}, "a Mach-O universal binary"},
	{[]byte("MZ"), "a Windows executable"},
	{[]byte("\x00asm"), "a WebAssembly module"},
}

// TestTrackedFiles_NoBinariesNoLargeFiles keeps build outputs out of the repository: a
// committed binary (a 70 MB `localstack` once was) is carried by every clone forever.
// No tracked file may be an executable binary, a file with the executable bit must be a
// script (#!), and none may be larger than 1 MiB unless largeFilesAllowed says why.
func TestTrackedFiles_NoBinariesNoLargeFiles(t *testing.T) {
	root := testenv.RepoRoot()
	cmd := exec.Command("git", "ls-files", "-s", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v (this check reads what is tracked, so it needs the Git checkout)", err)
	}
	checked := 0
	for _, entry := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		// <mode> <object> <stage>\t<path>
		meta, path, ok := strings.Cut(entry, "\t")
		if !ok {
			t.Fatalf("git ls-files -s printed %q", entry)
		}
		mode := strings.Fields(meta)[0]
		if mode == "120000" || mode == "160000" { // a symbolic link, a submodule
			continue
		}
		if problem := trackedFileProblem(root, path, mode == "100755"); problem != "" {
			t.Errorf("%s: %s", path, problem)
		}
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d tracked files found; is this the repository?", checked)
	}
}

// trackedFileProblem says what is wrong with the tracked file rel (a slash path under
// root), or "".
func trackedFileProblem(root, rel string, executableBit bool) string {
	f, err := os.Open(filepath.Join(root, filepath.FromSlash(rel)))
	if os.IsNotExist(err) {
		return "" // deleted in the working tree; the commit that deletes it is fine
	}
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	for _, m := range executableMagic {
		if bytes.HasPrefix(head, m.magic) {
			return fmt.Sprintf("%s is tracked (%d bytes): build outputs belong in bin/ or dist/, which are ignored; `git rm --cached` it", m.what, info.Size())
		}
	}
	if executableBit && !bytes.HasPrefix(head, []byte("#!")) {
		return "has the executable bit but is no script (#!): a binary, or a mode set by mistake (git update-index --chmod=-x)"
	}
	if info.Size() > maxTrackedBytes {
		if why := largeFilesAllowed[rel]; why != "" {
			return ""
		}
		return fmt.Sprintf("%d KiB, over the 1 MiB every clone would carry forever; keep it out of the repository, or add it to largeFilesAllowed with the reason", info.Size()>>10)
	}
	return ""
}

// TestTrackedFiles_TheCheckCatchesWhatItIsFor runs the check on the kinds of file it
// exists to refuse, and on the ones it must let through.
func TestTrackedFiles_TheCheckCatchesWhatItIsFor(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable() // this test binary: an ELF (or Mach-O) executable
	if err != nil {
		t.Fatal(err)
	}
	selfBytes, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		content    []byte
		executable bool
		refused    bool
	}{
		{"a Go binary, as `go build` leaves it", selfBytes, true, true},
		{"a Go binary without the executable bit", selfBytes, false, true},
		{"a script", []byte("#!/usr/bin/env bash\necho hi\n"), true, false},
		{"text with the executable bit", []byte("package main\n"), true, true},
		{"a large data file", bytes.Repeat([]byte("x"), maxTrackedBytes+1), false, true},
		{"a small data file", []byte(`{"a":1}`), false, false},
	} {
		if err := os.WriteFile(filepath.Join(dir, "f"), c.content, 0o644); err != nil {
			t.Fatal(err)
		}
		problem := trackedFileProblem(dir, "f", c.executable)
		if (problem != "") != c.refused {
			t.Errorf("%s: refused=%v (%q), want refused=%v", c.name, problem != "", problem, c.refused)
		}
	}
}
