package app

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/herald-dev/herald/dispatcher/config"
)

// TLSFiles are the PEM files the ingest and endpoint API are served with
// (config.Serving.TLS).
type TLSFiles = config.TLSFiles

// certReloader serves the key pair of TLSFiles, looking at the files at most every
// checkEvery: a renewed Secret reaches a pod's volume within a minute or two anyway.
type certReloader struct {
	files      TLSFiles
	checkEvery time.Duration
	log        logr.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	checked   time.Time
	certStamp stamp
	keyStamp  stamp
}

type stamp struct {
	mod  time.Time
	size int64
}

func newCertReloader(files TLSFiles, log logr.Logger) (*certReloader, error) {
	r := &certReloader{files: files, checkEvery: 10 * time.Second, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func fileStamp(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

func (r *certReloader) load() error {
	cs, err := fileStamp(r.files.CertFile)
	if err != nil {
		return fmt.Errorf("reading the TLS certificate: %w", err)
	}
	ks, err := fileStamp(r.files.KeyFile)
	if err != nil {
		return fmt.Errorf("reading the TLS key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return fmt.Errorf("loading the TLS key pair %s, %s: %w", r.files.CertFile, r.files.KeyFile, err)
	}
	r.cert, r.certStamp, r.keyStamp = &cert, cs, ks
	return nil
}

// GetCertificate is tls.Config's: the current pair, reloaded when the files changed.
// A pair that does not load (the certificate written, the key not yet) keeps the last
// one serving and is tried again at the next check.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= r.checkEvery {
		r.checked = now
		cs, cerr := fileStamp(r.files.CertFile)
		ks, kerr := fileStamp(r.files.KeyFile)
		if cerr == nil && kerr == nil && (cs != r.certStamp || ks != r.keyStamp) {
			if err := r.load(); err != nil {
				r.log.Error(err, "keeping the TLS certificate served so far")
			} else {
				r.log.Info("serving a renewed TLS certificate", "certFile", r.files.CertFile)
			}
		}
	}
	return r.cert, nil
}

// serverTLS is the ingest API's TLS configuration.
func (r *certReloader) serverTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}
