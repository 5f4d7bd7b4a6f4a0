// Package servingcert makes a private certificate authority and the serving
// certificates it signs, in PEM, and says when one is due for renewal: the dispatcher's
// TLS where no cert-manager issues it (the manager's, and make run's). Keys are ECDSA
// P-256; a certificate is renewed once two thirds of its lifetime have passed, so a
// renewal that fails has a third of the lifetime to succeed.
package servingcert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Validity of what New and Issue make unless told otherwise.
const (
	CAValidity      = 5 * 365 * 24 * time.Hour
	ServingValidity = 90 * 24 * time.Hour
)

// Pair is a certificate and its private key, in PEM.
type Pair struct {
	Cert, Key []byte
}

// NewCA makes a self-signed CA certificate named commonName, valid from now (less a
// minute, for clocks a little behind) for validity.
func NewCA(commonName string, validity time.Duration, now time.Time) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("generating the CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Pair{}, fmt.Errorf("signing the CA certificate: %w", err)
	}
	return encode(der, key)
}

// Issue makes a serving certificate for hosts (DNS names and IP addresses) signed by ca.
func Issue(ca Pair, hosts []string, validity time.Duration, now time.Time) (Pair, error) {
	caCert, caKey, err := parse(ca)
	if err != nil {
		return Pair{}, fmt.Errorf("reading the CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("generating the serving key: %w", err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return Pair{}, fmt.Errorf("signing the serving certificate: %w", err)
	}
	return encode(der, key)
}

// RenewAt is when a certificate (PEM) is due for renewal: two thirds into its lifetime.
func RenewAt(certPEM []byte) (time.Time, error) {
	c, err := ParseCert(certPEM)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3), nil
}

// Serves reports whether cert (PEM) is signed by ca (PEM), names exactly hosts, fits key
// and is not due for renewal at now: whether it may go on serving.
func Serves(cert Pair, ca []byte, hosts []string, now time.Time) bool {
	c, err := ParseCert(cert.Cert)
	if err != nil {
		return false
	}
	if _, err := tlsPair(cert); err != nil {
		return false
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return false
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return false
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	want := append([]string(nil), hosts...)
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		return false
	}
	renew, _ := RenewAt(cert.Cert)
	return now.Before(renew)
}

// ParseCert reads the first certificate of a PEM block.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// Bundle joins CA certificates (PEM) into one bundle, leaving out expired ones and
// repeats: what clients trust while a CA is replaced.
func Bundle(now time.Time, certs ...[]byte) []byte {
	var out bytes.Buffer
	seen := map[string]bool{}
	for _, c := range certs {
		for rest := c; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			x, err := x509.ParseCertificate(block.Bytes)
			if err != nil || now.After(x.NotAfter) || seen[string(block.Bytes)] {
				continue
			}
			seen[string(block.Bytes)] = true
			_ = pem.Encode(&out, block)
		}
	}
	return out.Bytes()
}

func parse(p Pair) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	c, err := ParseCert(p.Cert)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(p.Key)
	if block == nil {
		return nil, nil, errors.New("no PEM key")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return c, key, nil
}

func tlsPair(p Pair) (*ecdsa.PrivateKey, error) {
	c, key, err := parse(p)
	if err != nil {
		return nil, err
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("the key does not fit the certificate")
	}
	return key, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) (Pair, error) {
	k, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: k}),
	}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
