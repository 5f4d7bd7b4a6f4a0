package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// serviceAccountIssuer is the issuer of the local API server's ServiceAccount tokens.
// envtest's default is the API server's own URL, whose port changes with every start;
// a token names its issuer, so with that default every token minted before a restart
// would be refused after it.
const serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

func (s *stack) serviceAccountKeyDir() string { return filepath.Join(s.cfg.state, "serviceaccount") }

// keepServiceAccountIssuer makes ServiceAccount tokens outlive a restart of the stack, as
// they outlive an API server restart in a cluster: the signing key is kept in the state
// folder (envtest would generate a new one with the certificates of every run) and the
// issuer is fixed. A terminal that exported a token before `make run` was restarted goes
// on working until the token expires.
func (s *stack) keepServiceAccountIssuer(apiServer *envtest.APIServer) error {
	keyFile, pubFile, err := s.ensureServiceAccountKey()
	if err != nil {
		return err
	}
	args := apiServer.Configure()
	args.Set("service-account-signing-key-file", keyFile)
	args.Set("service-account-key-file", pubFile)
	args.Set("service-account-issuer", serviceAccountIssuer)
	return nil
}

// ensureServiceAccountKey returns the signing key and its public key, generating both
// on the first run.
func (s *stack) ensureServiceAccountKey() (keyFile, pubFile string, err error) {
	dir := s.serviceAccountKeyDir()
	keyFile, pubFile = filepath.Join(dir, "sa-signer.key"), filepath.Join(dir, "sa-signer.pub")
	_, kerr := os.Stat(keyFile)
	_, perr := os.Stat(pubFile)
	if kerr == nil && perr == nil {
		return keyFile, pubFile, nil
	}
	if (kerr != nil && !errors.Is(kerr, fs.ErrNotExist)) || (perr != nil && !errors.Is(perr, fs.ErrNotExist)) {
		return "", "", fmt.Errorf("reading the ServiceAccount signing key in %s: %w", s.rel(dir), errors.Join(kerr, perr))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("creating %s: %w", s.rel(dir), err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generating the ServiceAccount signing key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("encoding the ServiceAccount signing key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", fmt.Errorf("encoding the ServiceAccount public key: %w", err)
	}
	// The public key first: a folder with a key and no public key is repaired by the
	// next run generating both again, never left half-written with a fresh key.
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", s.rel(pubFile), err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", s.rel(keyFile), err)
	}
	s.con.Stackf("new ServiceAccount signing key in %s (kept, so tokens survive a restart)", s.rel(dir))
	return keyFile, pubFile, nil
}
