package v1alpha1

import "slices"

// SecretReference is one Secret a WebhookEndpoint reads, and the field that names it.
type SecretReference struct {
	// Field is where the reference is, written as the admission policy's messages write
	// it: "spec.secretRef", "spec.headers[Authorization].valueFrom" (a header by name).
	Field string
	// Name of the Secret, in the endpoint's namespace.
	Name string
	// Defaulted is set when the field is unset and Name is its default (the signing
	// Secret "<endpoint>-signing").
	Defaulted bool
}

// SecretReferences lists every Secret reference of the endpoint, in the order of the
// spec: the signing and previous signing secrets, header values, the TLS client
// certificate, the OAuth2 client credentials and the proxy's credentials. It is the one list of what an endpoint
// reads; the admission policy that lets an author reference only Secrets they may read
// (charts/herald/templates/secret-reference-policy.yaml) writes the same list in CEL,
// and internal/apirefs's tests hold both to the fields of the Go types.
func (e *WebhookEndpoint) SecretReferences() []SecretReference {
	signing := e.SigningSecretRef()
	refs := []SecretReference{{Field: "spec.secretRef", Name: signing.Name, Defaulted: e.Spec.SecretRef == nil}}
	if prev, ok := e.PreviousSigningSecretRef(); ok {
		refs = append(refs, SecretReference{Field: "spec.previousSecretRef", Name: prev.Name})
	}
	for _, h := range e.Spec.Headers {
		if h.ValueFrom != nil {
			refs = append(refs, SecretReference{Field: "spec.headers[" + h.Name + "].valueFrom", Name: h.ValueFrom.Name})
		}
	}
	if e.Spec.TLS != nil && e.Spec.TLS.ClientCertificateSecretRef != nil {
		refs = append(refs, SecretReference{Field: "spec.tls.clientCertificateSecretRef", Name: e.Spec.TLS.ClientCertificateSecretRef.Name})
	}
	if o := e.Spec.OAuth2(); o != nil {
		if o.ClientIDRef != nil {
			refs = append(refs, SecretReference{Field: "spec.auth.oauth2.clientIDRef", Name: o.ClientIDRef.Name})
		}
		refs = append(refs, SecretReference{Field: "spec.auth.oauth2.clientSecretRef", Name: o.ClientSecretRef.Name})
	}
	if p := e.Spec.Proxy; p != nil && p.CredentialsSecretRef != nil {
		refs = append(refs, SecretReference{Field: "spec.proxy.credentialsSecretRef", Name: p.CredentialsSecretRef.Name})
	}
	return refs
}

// ReferencedSecretNames lists every Secret in the endpoint's namespace that delivering to
// it needs (SecretReferences, each name once). Both the manager (readiness) and the
// dispatcher (delivery) index endpoints by these, so a Secret created or fixed later
// takes effect at once.
func (e *WebhookEndpoint) ReferencedSecretNames() []string {
	var names []string
	for _, r := range e.SecretReferences() {
		if !slices.Contains(names, r.Name) {
			names = append(names, r.Name)
		}
	}
	return names
}

// ReferencedServiceName is the Service the endpoint sends to (spec.service), "" when it
// sends to a URL. The dispatcher indexes endpoints by it, so that a Service created or
// changed later takes effect at once.
func (e *WebhookEndpoint) ReferencedServiceName() string {
	if e.Spec.Service == nil {
		return ""
	}
	return e.Spec.Service.Name
}
