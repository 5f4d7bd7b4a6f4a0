package resolve

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/internal/outbound"
)

// destination judges where the endpoint sends: spec.url under the policy, or the
// Service spec.service names, read from the API and reached at its cluster IP. It
// returns the URL to send to and the policy to send under: for a Service, the policy
// with exactly its cluster IP and port allowed (outbound.Policy.ForService).
func (r *resolver) destination(policy outbound.Policy) (string, outbound.Policy, *problem) {
	spec := &r.ep.Spec
	ref := spec.Service
	if ref == nil {
		if err := policy.CheckURL(spec.URL); err != nil {
			return "", policy, fail(heraldv1.ReasonInvalidURL, "spec.url: %v", err)
		}
		return spec.URL, policy, nil
	}
	if r.services == nil {
		r.err = fmt.Errorf("endpoint %s/%s names a Service, and this resolver reads none", r.ep.Namespace, r.ep.Name)
		return "", policy, &problem{}
	}
	svc, err := r.services(r.ctx, r.ep.Namespace, ref.Name)
	switch {
	case err != nil:
		r.err = fmt.Errorf("reading Service %s/%s: %w", r.ep.Namespace, ref.Name, err)
		return "", policy, &problem{}
	case svc == nil || !svc.DeletionTimestamp.IsZero():
		return "", policy, fail(heraldv1.ReasonServiceNotFound,
			"Service %s does not exist in namespace %s; deliveries wait for it", ref.Name, r.ep.Namespace)
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		// An ExternalName Service is a DNS alias for any host, metadata addresses
		// included: following it would be a way around the outbound policy.
		return "", policy, fail(heraldv1.ReasonInvalidService,
			"Service %s is of type ExternalName, an alias for a host outside the cluster; name that host in spec.url instead", ref.Name)
	}
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		return "", policy, fail(heraldv1.ReasonInvalidService,
			"Service %s has no cluster IP (a headless Service); Herald sends to a Service's cluster IP, so give it one", ref.Name)
	}
	port, p := servicePort(svc, ref)
	if p != nil {
		return "", policy, p
	}
	host := ref.Name + "." + r.ep.Namespace + ".svc"
	target := string(ref.EffectiveScheme()) + "://" + host + ":" + strconv.Itoa(int(port)) + ref.EffectivePath()
	if err := policy.CheckURL(target); err != nil {
		return "", policy, fail(heraldv1.ReasonInvalidURL, "spec.service: %v", err)
	}
	// The cluster IP is judged like any address, except that it may be private (it
	// is, in every cluster): a Service whose IP is loopback, link-local or a metadata
	// address is no way around the policy either.
	svcPolicy := policy.ForService(host, netip.AddrPortFrom(ip, port))
	if err := svcPolicy.CheckAddrPort(host, ip, port); err != nil {
		return "", policy, fail(heraldv1.ReasonInvalidService, "Service %s: %v", ref.Name, err)
	}
	return target, svcPolicy, nil
}

// servicePort is the Service port the reference names, or its only one.
func servicePort(svc *corev1.Service, ref *heraldv1.ServiceReference) (uint16, *problem) {
	var ports []string
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
			continue
		}
		if ref.Port != 0 && sp.Port == ref.Port {
			return uint16(sp.Port), nil
		}
		ports = append(ports, strconv.Itoa(int(sp.Port)))
	}
	switch {
	case ref.Port == 0 && len(ports) == 1:
		n, _ := strconv.Atoi(ports[0])
		return uint16(n), nil
	case len(ports) == 0:
		return 0, fail(heraldv1.ReasonInvalidService, "Service %s has no TCP port", ref.Name)
	case ref.Port == 0:
		return 0, fail(heraldv1.ReasonInvalidService, "Service %s has %d ports (%s); set spec.service.port to one of them",
			ref.Name, len(ports), strings.Join(ports, ", "))
	}
	slices.Sort(ports)
	return 0, fail(heraldv1.ReasonInvalidService, "Service %s has no port %d (its ports: %s)", ref.Name, ref.Port, strings.Join(ports, ", "))
}

// proxy resolves the proxy the endpoint's deliveries go through: its own (spec.proxy,
// judged by the policy, credentials from a basic-auth Secret), or the operator's
// unless its no-proxy rules name the destination; never one for an in-cluster Service.
func (r *resolver) proxy(policy outbound.Policy, target string) (*outbound.Proxy, *problem) {
	spec := &r.ep.Spec
	if spec.Service != nil {
		return nil, nil
	}
	if spec.Proxy == nil {
		return r.egress.ProxyFor(target), nil
	}
	x, err := outbound.ParseProxy(spec.Proxy.URL)
	if err != nil {
		return nil, fail(heraldv1.ReasonInvalidURL, "spec.proxy.url: %v", err)
	}
	if x.Username != "" || x.Password != "" {
		return nil, fail(heraldv1.ReasonInvalidURL, "spec.proxy.url must not carry credentials; use spec.proxy.credentialsSecretRef")
	}
	if err := policy.CheckProxy(x); err != nil {
		return nil, fail(heraldv1.ReasonInvalidURL, "spec.proxy.url: %v", err)
	}
	if ref := spec.Proxy.CredentialsSecretRef; ref != nil {
		const what = "proxy credentials"
		user, p := r.referenced(heraldv1.SecretKeySelector{Name: ref.Name, Key: corev1.BasicAuthUsernameKey}, what)
		if p != nil {
			return nil, p
		}
		pass, p := r.referenced(heraldv1.SecretKeySelector{Name: ref.Name, Key: corev1.BasicAuthPasswordKey}, what)
		if p != nil {
			return nil, p
		}
		x.Username, x.Password = string(user), string(pass)
		r.secrets = append(r.secrets, sender.Secret{What: "proxy password", Value: pass})
	}
	return x, nil
}
