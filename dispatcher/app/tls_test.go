package app

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/herald-dev/herald/internal/servingcert"
)

// A renewed certificate written over the files is served from the next check on; a pair
// caught half-written keeps the last good one serving.
func TestCertReloader_ServesRenewedFilesAndKeepsTheLastGoodPair(t *testing.T) {
	dir := t.TempDir()
	files := TLSFiles{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	ca, err := servingcert.NewCA("test", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	write := func(p servingcert.Pair) *x509.Certificate {
		t.Helper()
		if err := os.WriteFile(files.CertFile, p.Cert, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(files.KeyFile, p.Key, 0o600); err != nil {
			t.Fatal(err)
		}
		c, _ := servingcert.ParseCert(p.Cert)
		return c
	}
	issue := func() servingcert.Pair {
		p, err := servingcert.Issue(ca, []string{"localhost"}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := write(issue())
	r, err := newCertReloader(files, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	r.checkEvery = 0
	served := func() string {
		c, err := r.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := x509.ParseCertificate(c.Certificate[0])
		return x.SerialNumber.String()
	}
	if got := served(); got != first.SerialNumber.String() {
		t.Fatalf("served %s, want the first certificate", got)
	}
	renewed := write(issue())
	if got := served(); got != renewed.SerialNumber.String() {
		t.Fatalf("after renewal served %s, want the renewed certificate %s", got, renewed.SerialNumber)
	}
	// The certificate of a third pair with the key of nothing: not loadable.
	if err := os.WriteFile(files.CertFile, issue().Cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != renewed.SerialNumber.String() {
		t.Fatalf("with a half-written pair served %s, want the last good one", got)
	}
	if _, err := newCertReloader(TLSFiles{CertFile: files.CertFile, KeyFile: filepath.Join(dir, "missing")}, logr.Discard()); err == nil {
		t.Error("a missing key must stop the start")
	}
}
