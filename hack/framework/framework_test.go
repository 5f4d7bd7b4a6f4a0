package framework

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/testenv"
)

func TestWait_ReportsTheLastReasonAndADeadChild(t *testing.T) {
	n := 0
	err := Wait{Within: 300 * time.Millisecond, Interval: 50 * time.Millisecond}.Poll("the answer", func() error {
		n++
		return errors.New("still 41")
	})
	var timeout *TimeoutError
	if !errors.As(err, &timeout) || !strings.Contains(err.Error(), "waiting for the answer (last seen: still 41)") || n < 3 {
		t.Fatalf("Poll after %d tries: %v", n, err)
	}
	if err := (Wait{Within: time.Second}).Poll("a yes", Bool(func() bool { return true })); err != nil {
		t.Fatalf("a condition that holds: %v", err)
	}

	sup := NewSupervisor(t, filepath.Join(t.TempDir(), "logs"), nil)
	p := sup.Start(StartInput{Name: "short-lived", Binary: "sh", Args: []string{"-c", "echo going; exit 3"}})
	start := time.Now()
	err = Wait{Within: time.Minute, Watch: sup}.Poll("something that never comes", Bool(func() bool { return false }))
	if err == nil || !strings.Contains(err.Error(), "short-lived exited (exit status 3)") || !strings.Contains(err.Error(), "going") || time.Since(start) > 10*time.Second {
		t.Fatalf("a wait while a child died: %v after %s", err, time.Since(start))
	}
	if !p.Exited() || p.Err() == nil {
		t.Fatalf("the child: exited %v, err %v", p.Exited(), p.Err())
	}
}

func TestSupervisor_StopIsExpectedAndReachesTheGroup(t *testing.T) {
	sup := NewSupervisor(t, filepath.Join(t.TempDir(), "logs"), nil)
	// The shell starts a child of its own; stopping the shell's group must end both.
	p := sup.Start(StartInput{Name: "sleeper", Binary: "sh", Args: []string{"-c", "sleep 60 & echo started; wait"}})
	Eventually(t, 10*time.Second, "the sleeper to start", Bool(func() bool { return strings.Contains(p.Output(), "started") }))
	p.Stop(5 * time.Second)
	if !p.Exited() {
		t.Fatal("still running after Stop")
	}
	if err := sup.Failure(); err != nil {
		t.Fatalf("a child stopped on purpose reported as a failure: %v", err)
	}
	// The shell's child is orphaned by the same signal; it is gone once reaped.
	Eventually(t, 5*time.Second, "the stopped group's processes to be gone", func() error {
		if out, _ := exec.Command("pgrep", "-g", strconv.Itoa(p.Pid())).Output(); len(out) > 0 {
			return errors.New("left: " + strings.TrimSpace(string(out)))
		}
		return nil
	})
}

func TestMemoryContains_FindsWhatAChildHoldsAndNothingElse(t *testing.T) {
	if runtime.GOOS != "linux" {
		testenv.Unavailable(t, "the process memory search", "it reads /proc/<pid>/mem, which only Linux has")
	}
	held, never := "held-"+randomHex(t), "never-"+randomHex(t)
	sup := NewSupervisor(t, filepath.Join(t.TempDir(), "logs"), nil)
	p := sup.Start(StartInput{Name: "holder", Binary: "sh", Args: []string{"-c", "X=" + held + "; echo ready; sleep 60"}})
	Eventually(t, 10*time.Second, "the holder to start", Bool(func() bool { return strings.Contains(p.Output(), "ready") }))
	found, searched, err := MemoryContains(p.Pid(), []byte(held), []byte(never))
	if err != nil {
		t.Fatal(err)
	}
	if !found[0] || found[1] || searched == 0 {
		t.Fatalf("found %v in %d bytes; want the held value and not the other", found, searched)
	}
	m, err := ReadMemory(p.Pid())
	if err != nil || m.RSS <= 0 || m.Peak < m.RSS {
		t.Fatalf("ReadMemory: %+v %v", m, err)
	}
}

func TestTokenAudiences_ReadsTheClaim(t *testing.T) {
	jwt := func(claims string) string {
		return "e30." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".sig"
	}
	for _, c := range []struct {
		token string
		want  string
	}{
		{jwt(`{"aud":["https://kubernetes.default.svc","herald"]}`), "https://kubernetes.default.svc,herald"},
		{jwt(`{"aud":"herald"}`), "herald"},
		{jwt(`{}`), ""},
	} {
		got, err := TokenAudiences(c.token)
		if err != nil || strings.Join(got, ",") != c.want {
			t.Errorf("TokenAudiences(%s) = %v, %v; want %s", c.token, got, err, c.want)
		}
	}
	if _, err := TokenAudiences("not-a-jwt"); err == nil {
		t.Error("TokenAudiences accepted a string that is no JWT")
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestSupervisor_RacesNamesTheChildThatReportedOne(t *testing.T) {
	sup := NewSupervisor(t, filepath.Join(t.TempDir(), "logs"), nil)
	raced := sup.Start(StartInput{Name: "raced", Binary: "sh", Args: []string{"-c", "echo '" + testenv.RaceReport + "'; echo 'Write at 0x00c000123456 by goroutine 7'"}})
	clean := sup.Start(StartInput{Name: "clean", Binary: "sh", Args: []string{"-c", "echo 'all well'"}})
	if !raced.Wait(10*time.Second) || !clean.Wait(10*time.Second) {
		t.Fatal("the children did not end")
	}
	races := sup.Races()
	if len(races) != 1 || !strings.HasPrefix(races[0], "raced reported a data race") || !strings.Contains(races[0], "by goroutine 7") {
		t.Fatalf("Races() = %q; want the raced child alone, with its log", races)
	}
}

// recordingTB is a test whose failures and cleanups are recorded, to see what a
// Supervisor does to the test it belongs to.
type recordingTB struct {
	testing.TB
	errors   []string
	cleanups []func()
}

func (r *recordingTB) Helper()           {}
func (r *recordingTB) Error(args ...any) { r.errors = append(r.errors, fmt.Sprint(args...)) }
func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Logf(string, ...any) {}
func (r *recordingTB) Failed() bool        { return len(r.errors) > 0 }
func (r *recordingTB) Cleanup(f func())    { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) end() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestSupervisor_RaceReportsFailTheTestWhenAsked(t *testing.T) {
	for _, asked := range []bool{true, false} {
		rec := &recordingTB{TB: t}
		sup := NewSupervisor(rec, filepath.Join(t.TempDir(), "logs"), nil)
		sup.RaceReports = asked
		// Stopped on purpose, as the end of a test stops every child: its report counts.
		p := sup.Start(StartInput{Name: "raced", Binary: "sh", Args: []string{"-c", "echo '" + testenv.RaceReport + "'; sleep 60"}})
		Eventually(t, 10*time.Second, "the report written", Bool(func() bool { return strings.Contains(p.Output(), testenv.RaceReport) }))
		rec.end()
		if failed := len(rec.errors) == 1 && strings.HasPrefix(rec.errors[0], "raced reported a data race"); failed != asked {
			t.Errorf("RaceReports %v: the test's errors %q", asked, rec.errors)
		}
		if !asked && len(rec.errors) > 0 {
			t.Errorf("RaceReports off, yet errors %q", rec.errors)
		}
	}
}
