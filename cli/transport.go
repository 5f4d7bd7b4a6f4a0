package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	heraldclient "github.com/herald-dev/herald/pkg/client"
)

// envHeraldCAFile names a PEM file of the CA the dispatcher's certificate is checked
// against, like --certificate-authority.
const envHeraldCAFile = "HERALD_CA_FILE"

// Where the manager publishes the dispatcher's CA on a cluster installed with the chart
// (release herald in herald-system; controllers/workload CAConfigMapName and
// CAConfigMapKey), readable by every authenticated user.
const (
	publishedCANamespace = "herald-system"
	publishedCAName      = "herald-dispatcher-ca"
	publishedCAKey       = "ca.crt"
)

// caHint is how a person gets the published CA into a file.
const caHint = "kubectl get configmap " + publishedCAName + " -n " + publishedCANamespace + ` -o jsonpath='{.data.ca\.crt}' > herald-ca.crt; export ` + envHeraldCAFile + "=$PWD/herald-ca.crt"

// dispatcherTransport is the HTTP transport to the dispatcher at server. For https it
// trusts the system's roots and the dispatcher's CA: --certificate-authority (caFile),
// else $HERALD_CA_FILE, else the CA the manager publishes, when the kubeconfig's user may
// read it. The certificate is always verified.
func dispatcherTransport(ctx context.Context, server *url.URL, kube *kubeOptions, caFile string) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if server.Scheme != "https" {
		return t, nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if caFile == "" {
		caFile = os.Getenv(envHeraldCAFile)
	}
	switch {
	case caFile != "":
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading the dispatcher's CA (--certificate-authority or %s): %w", envHeraldCAFile, err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate (--certificate-authority or %s)", caFile, envHeraldCAFile)
		}
	default:
		if pem := publishedCA(ctx, kube); pem != "" {
			roots.AppendCertsFromPEM([]byte(pem))
		}
	}
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return t, nil
}

// publishedCA reads the CA the manager publishes; "" when there is no kubeconfig, no
// such ConfigMap or no right to read it: the system's roots may still do.
func publishedCA(ctx context.Context, kube *kubeOptions) string {
	cfg, err := kube.RESTConfig()
	if err != nil {
		return ""
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return ""
	}
	cm, err := cs.CoreV1().ConfigMaps(publishedCANamespace).Get(ctx, publishedCAName, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return cm.Data[publishedCAKey]
}

// tlsAdvice says what to do about a TLS failure talking to the dispatcher at where.
func tlsAdvice(err error, where string) (string, bool) {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var record tls.RecordHeaderError
	switch {
	case errors.As(err, &unknown):
		return fmt.Sprintf("the dispatcher at %s presented a certificate the CLI does not trust: pass --certificate-authority or set %s to the dispatcher's CA, e.g.\n  %s",
			where, envHeraldCAFile, caHint), true
	case errors.As(err, &host):
		return fmt.Sprintf("the dispatcher's certificate is not for %s (it is for %s): point --server or %s at one of those names",
			where, strings.Join(append(host.Certificate.DNSNames, ipStrings(host.Certificate)...), ", "), envHeraldURL), true
	case errors.As(err, &record):
		return fmt.Sprintf("%s does not speak TLS: is it an http:// address? Point --server or %s at it with http://", where, envHeraldURL), true
	}
	return "", false
}

func ipStrings(c *x509.Certificate) []string {
	out := make([]string, len(c.IPAddresses))
	for i, ip := range c.IPAddresses {
		out[i] = ip.String()
	}
	return out
}

// plainToTLS reports Go's answer to plain HTTP on a TLS port.
func plainToTLS(e *heraldclient.APIError) bool {
	return e.StatusCode == http.StatusBadRequest && strings.Contains(string(e.Body), "HTTP request to an HTTPS server")
}
