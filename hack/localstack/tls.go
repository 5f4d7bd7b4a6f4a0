package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/herald-dev/herald/internal/servingcert"
)

// dispatcherHosts are the names the local dispatcher's certificate is for.
var dispatcherHosts = []string{"localhost", "127.0.0.1", "::1"}

func (s *stack) tlsDir() string { return filepath.Join(s.cfg.state, "dispatcher-tls") }

// dispatcherTLS makes the local dispatcher's CA (kept in the state folder, so a terminal
// that exported HERALD_CA_FILE keeps working across restarts) and its serving
// certificate, renewed when due: the same package and the same rules as the manager's
// --dispatcher-tls=manager. It returns the certificate, key and CA files.
func (s *stack) dispatcherTLS() (certFile, keyFile, caFile string, err error) {
	dir := s.tlsDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", err
	}
	caFile, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	now := time.Now()
	ca := servingcert.Pair{Cert: readOrNil(caFile), Key: readOrNil(caKey)}
	if renew, err := servingcert.RenewAt(ca.Cert); err != nil || !now.Before(renew) || len(ca.Key) == 0 {
		if ca, err = servingcert.NewCA("Herald local dispatcher CA", servingcert.CAValidity, now); err != nil {
			return "", "", "", err
		}
		if err := writeFiles(map[string][]byte{caKey: ca.Key, caFile: ca.Cert}); err != nil {
			return "", "", "", err
		}
		s.con.Stackf("new CA for the dispatcher's TLS in %s (kept, so HERALD_CA_FILE survives a restart)", s.rel(caFile))
	}
	cert := servingcert.Pair{Cert: readOrNil(certFile), Key: readOrNil(keyFile)}
	if !servingcert.Serves(cert, ca.Cert, dispatcherHosts, now) {
		if cert, err = servingcert.Issue(ca, dispatcherHosts, servingcert.ServingValidity, now); err != nil {
			return "", "", "", err
		}
		if err := writeFiles(map[string][]byte{keyFile: cert.Key, certFile: cert.Cert}); err != nil {
			return "", "", "", err
		}
	}
	return certFile, keyFile, caFile, nil
}

func readOrNil(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

func writeFiles(files map[string][]byte) error {
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return nil
}
