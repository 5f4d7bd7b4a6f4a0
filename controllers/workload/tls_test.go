package workload_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/herald-dev/herald/controllers/workload"
	"github.com/herald-dev/herald/internal/servingcert"
)

// tlsState reads what the manager made: the serving Secret, the CA Secret and the
// published bundle, once all three exist.
func tlsState(t *testing.T, cfg workload.Config, ok func(serving, ca *corev1.Secret, bundle string) error) (serving, ca *corev1.Secret, bundle string) {
	t.Helper()
	ctx := context.Background()
	eventually(t, "the dispatcher's TLS Secrets and published CA", func() error {
		serving, ca = &corev1.Secret{}, &corev1.Secret{}
		var cm corev1.ConfigMap
		for name, obj := range map[string]client.Object{cfg.TLSSecretName(): serving, cfg.CASecretName(): ca} {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: cfg.Namespace, Name: name}, obj); err != nil {
				return err
			}
		}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: cfg.Namespace, Name: cfg.CAConfigMapName()}, &cm); err != nil {
			return err
		}
		bundle = cm.Data[workload.CAConfigMapKey]
		return ok(serving, ca, bundle)
	})
	return serving, ca, bundle
}

// verifies reports whether the serving certificate verifies against the bundle for the
// Service's name.
func verifies(cert []byte, bundle, host string) error {
	c, err := servingcert.ParseCert(cert)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(bundle)) {
		return fmt.Errorf("the bundle holds no certificate")
	}
	_, err = c.Verify(x509.VerifyOptions{Roots: roots, DNSName: host})
	return err
}

// With --dispatcher-tls=manager the manager makes a CA and a serving certificate for the
// dispatcher's Service, publishes the CA, mounts the certificate and tells the
// dispatcher to serve it; it renews a certificate due for renewal, and replaces a CA due
// for renewal while the bundle keeps the old one and the certificate it signed serves on.
func TestTLSManager_IssuesRenewsAndPublishesTheCA(t *testing.T) {
	ctx := context.Background()
	cfg := embeddedConfig(newNamespace(t))
	cfg.TLS = workload.TLSManager
	host := cfg.Name + "." + cfg.Namespace + ".svc"
	stop := startManager(t, cfg)

	serving, _, bundle := tlsState(t, cfg, func(s, _ *corev1.Secret, b string) error {
		return verifies(s.Data[corev1.TLSCertKey], b, host)
	})
	if serving.Type != corev1.SecretTypeTLS || len(serving.Data[corev1.TLSPrivateKeyKey]) == 0 || string(serving.Data["ca.crt"]) != bundle {
		t.Errorf("serving Secret = type %s, keys %d; ca.crt equal to the published bundle: %v", serving.Type, len(serving.Data), string(serving.Data["ca.crt"]) == bundle)
	}
	sts := getStatefulSet(t, cfg)
	assertMount(t, sts.Spec.Template.Spec.Containers[0], "tls", "/etc/herald/tls", true)
	var cm corev1.ConfigMap
	if err := k8s.Get(ctx, key(cfg), &cm); err != nil {
		t.Fatal(err)
	}
	if s := dispatcherReads(t, cm.Data[workload.ConfigFileName]); s.Serving.TLS.CertFile != "/etc/herald/tls/tls.crt" || s.Serving.TLS.KeyFile != "/etc/herald/tls/tls.key" {
		t.Errorf("dispatcher.yaml = %s, want the mounted TLS files", cm.Data[workload.ConfigFileName])
	}

	// A certificate due for renewal is replaced by one of the same CA.
	stop()
	now := time.Now()
	ca := caPair(t, cfg)
	old, err := servingcert.Issue(ca, cfg.ServingHosts(), 3*time.Hour, now.Add(-2*time.Hour-30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	writeSecret(t, cfg, cfg.TLSSecretName(), map[string][]byte{corev1.TLSCertKey: old.Cert, corev1.TLSPrivateKeyKey: old.Key, "ca.crt": []byte(bundle)})
	stop = startManager(t, cfg)
	tlsState(t, cfg, func(s, _ *corev1.Secret, b string) error {
		if string(s.Data[corev1.TLSCertKey]) == string(old.Cert) {
			return fmt.Errorf("still the certificate due for renewal")
		}
		return verifies(s.Data[corev1.TLSCertKey], b, host)
	})

	// A CA due for renewal is replaced; the bundle holds both, and a certificate of the
	// old CA that is not due serves on.
	stop()
	oldCA, err := servingcert.NewCA("old", 30*time.Hour, now.Add(-21*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	oldServing, err := servingcert.Issue(oldCA, cfg.ServingHosts(), 24*time.Hour, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	writeSecret(t, cfg, cfg.CASecretName(), map[string][]byte{corev1.TLSCertKey: oldCA.Cert, corev1.TLSPrivateKeyKey: oldCA.Key})
	writeSecret(t, cfg, cfg.TLSSecretName(), map[string][]byte{corev1.TLSCertKey: oldServing.Cert, corev1.TLSPrivateKeyKey: oldServing.Key, "ca.crt": oldCA.Cert})
	startManager(t, cfg)
	_, newCA, bundle := tlsState(t, cfg, func(s, ca *corev1.Secret, b string) error {
		if string(ca.Data[corev1.TLSCertKey]) == string(oldCA.Cert) {
			return fmt.Errorf("still the old CA")
		}
		if !strings.Contains(b, strings.TrimSpace(string(oldCA.Cert))) || !strings.Contains(b, strings.TrimSpace(string(ca.Data[corev1.TLSCertKey]))) {
			return fmt.Errorf("the bundle does not hold both CAs")
		}
		if string(s.Data[corev1.TLSCertKey]) != string(oldServing.Cert) {
			return fmt.Errorf("the old CA's certificate, not due, was replaced at once")
		}
		return nil
	})
	if err := verifies(oldServing.Cert, bundle, host); err != nil {
		t.Errorf("the serving certificate against the bundle: %v", err)
	}
	if string(newCA.Data["previous.crt"]) == "" {
		t.Error("the CA Secret keeps no previous CA")
	}
}

// With --dispatcher-tls=external the manager issues nothing and publishes the CA of the
// Secret someone else (cert-manager) fills.
func TestTLSExternal_PublishesTheIssuersCA(t *testing.T) {
	ctx := context.Background()
	cfg := embeddedConfig(newNamespace(t))
	cfg.TLS = workload.TLSExternal
	startManager(t, cfg)
	getStatefulSet(t, cfg)
	ca, err := servingcert.NewCA("cert-manager's", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := servingcert.Issue(ca, cfg.ServingHosts(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	writeSecret(t, cfg, cfg.TLSSecretName(), map[string][]byte{corev1.TLSCertKey: cert.Cert, corev1.TLSPrivateKeyKey: cert.Key, "ca.crt": ca.Cert})
	// The manager looks again within a minute of finding no Secret; nudge it instead.
	var cm corev1.ConfigMap
	if err := k8s.Get(ctx, key(cfg), &cm); err != nil {
		t.Fatal(err)
	}
	cm.Data[workload.ConfigFileName] += "\n"
	if err := k8s.Update(ctx, &cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the issuer's CA published", func() error {
		var pub corev1.ConfigMap
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: cfg.Namespace, Name: cfg.CAConfigMapName()}, &pub); err != nil {
			return err
		}
		if pub.Data[workload.CAConfigMapKey] != string(ca.Cert) {
			return fmt.Errorf("published %q", pub.Data[workload.CAConfigMapKey])
		}
		return nil
	})
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: cfg.Namespace, Name: cfg.CASecretName()}, &corev1.Secret{}); err == nil {
		t.Error("the manager made a CA although cert-manager issues")
	}
}

func caPair(t *testing.T, cfg workload.Config) servingcert.Pair {
	t.Helper()
	var s corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: cfg.Namespace, Name: cfg.CASecretName()}, &s); err != nil {
		t.Fatal(err)
	}
	return servingcert.Pair{Cert: s.Data[corev1.TLSCertKey], Key: s.Data[corev1.TLSPrivateKeyKey]}
}

// writeSecret creates or replaces a Secret's data, as another writer would.
func writeSecret(t *testing.T, cfg workload.Config, name string, data map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cfg.Namespace}}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
		s.Data = data
		if err := k8s.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		return
	}
	s.Data = data
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
}
