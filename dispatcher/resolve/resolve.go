// Package resolve is the one judge of whether a WebhookEndpoint can be delivered to. It
// turns an endpoint and the Secrets it names into either a ready-to-use delivery
// configuration or a reason and message from api/v1alpha1 saying what is wrong.
//
// The manager calls it to set the Ready condition and the dispatcher calls it to build
// (or hold) the endpoint's deliveries, so the two cannot disagree: whatever the
// dispatcher would refuse, the manager has already refused with the same words.
//
// It lives with the dispatcher because what it builds is the sender's configuration
// (sender.Config, with its signer): the manager (controllers/endpoint) imports the
// dispatcher's judge, never the other way round, and internal/ stays free of dispatcher
// packages (hack/verify's TestLayers).
package resolve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/routing"
)

// SecretGetter reads a Secret of the endpoint's namespace: (nil, nil) when it does not
// exist, an error only when the answer is unknown (the API server could not be asked).
type SecretGetter func(ctx context.Context, namespace, name string) (*corev1.Secret, error)

// ServiceGetter reads a Service of the endpoint's namespace, as SecretGetter a Secret.
type ServiceGetter func(ctx context.Context, namespace, name string) (*corev1.Service, error)

// Option adds to what the resolver reads.
type Option func(*resolver)

// WithServices reads the Services that endpoints name in spec.service; without it such
// an endpoint cannot be judged (an error).
func WithServices(get ServiceGetter) Option { return func(r *resolver) { r.services = get } }

// WithEgress sends the deliveries of endpoints without a proxy of their own through the
// operator's proxy, except to the hosts its NoProxy lists (the dispatcher's
// --egress-proxy); the manager, which sends nothing, judges without it.
func WithEgress(e outbound.Egress) Option { return func(r *resolver) { r.egress = e } }

// Config is an endpoint's resolved delivery configuration.
type Config struct {
	// Sender builds the endpoint's HTTP target; every part of it has been validated.
	Sender sender.Config
	Settings
}

// Settings are how the engine treats the endpoint's deliveries.
type Settings struct {
	Schedule          []time.Duration
	JitterPercent     int
	MaxRetryAfter     time.Duration
	MaxInFlight       int
	RequestsPerSecond int
	// FailureThreshold disables the endpoint after this many failed attempts in a row
	// (0 never).
	FailureThreshold int32
	// Ordered: one delivery at a time in the order accepted, a failing one retried in
	// place while the rest wait (MaxInFlight then bounds connections only).
	Ordered bool
	// Adaptive lowers the rate and concurrency below the configured limits while the
	// receiver struggles (spec.limits.adaptive).
	Adaptive bool
	// Generation of the WebhookEndpoint this configuration was built from.
	Generation int64
}

// Result is the judgement on one endpoint.
type Result struct {
	// Reason is heraldv1.ReasonReady when deliveries can flow, otherwise the reason they
	// are held; Message says what to fix and never carries a secret value.
	Reason  string
	Message string
	// Config is set when Reason is Ready or Suspended: a suspended endpoint is fully
	// resolved, so that resuming it needs nothing more.
	Config *Config
	// SigningSecret names the Secret the signing secret was read from, when it was.
	SigningSecret string
	// PublicKey and PreviousPublicKey are the "whpk_" public keys of the current and the
	// previous secret when they are ed25519 keys and the signing secrets resolved: what a
	// receiver verifies v1a signatures with, published by the manager.
	PublicKey, PreviousPublicKey string
}

// Ready reports whether deliveries can flow.
func (r Result) Ready() bool { return r.Reason == heraldv1.ReasonReady }

// problem is a failed check: its reason and message.
type problem struct{ reason, message string }

func fail(reason, format string, args ...any) *problem {
	return &problem{reason: reason, message: fmt.Sprintf(format, args...)}
}

// Endpoint judges one endpoint. The checks run in the order a person would fix things:
// the URL, the rest of the spec, the signing secret before the one being retired, the
// other Secrets, and suspension last, so that a suspended endpoint's real problems show.
// The error is non-nil only when a Secret could not be read; the judgement is then
// unknown and the caller retries.
func Endpoint(ctx context.Context, ep *heraldv1.WebhookEndpoint, get SecretGetter, policy outbound.Policy, opts ...Option) (Result, error) {
	r := resolver{ctx: ctx, ep: ep, get: get, read: map[string]*corev1.Secret{}}
	for _, o := range opts {
		o(&r)
	}
	cfg, p := r.resolve(policy)
	if r.err != nil {
		return Result{}, r.err
	}
	res := Result{SigningSecret: r.signingSecret, PublicKey: r.publicKey, PreviousPublicKey: r.previousPublicKey}
	switch {
	case p != nil:
		res.Reason, res.Message = p.reason, p.message
	case ep.Spec.Suspend:
		res.Reason, res.Message, res.Config = heraldv1.ReasonSuspended,
			"spec.suspend is true: deliveries are held until it is set back to false", cfg
	default:
		res.Reason, res.Message, res.Config = heraldv1.ReasonReady,
			fmt.Sprintf("signing secret %s resolved; deliveries can flow", r.signingSecret), cfg
	}
	return res, nil
}

type resolver struct {
	ctx      context.Context
	ep       *heraldv1.WebhookEndpoint
	get      SecretGetter
	services ServiceGetter
	egress   outbound.Egress
	read     map[string]*corev1.Secret // each Secret read once per judgement
	err      error
	// secrets are the values read that the endpoint sends or signs with, for the
	// sender to redact from the response bodies it keeps.
	secrets       []sender.Secret
	signingSecret string
	// The public keys of the signer, once built.
	publicKey, previousPublicKey string
}

func (r *resolver) resolve(policy outbound.Policy) (*Config, *problem) {
	spec := &r.ep.Spec
	target, policy, p := r.destination(policy)
	if p != nil {
		return nil, p
	}
	cfg := &Config{Settings: Settings{
		JitterPercent:    int(spec.JitterPercent()),
		MaxInFlight:      int(spec.MaxInFlight()),
		FailureThreshold: spec.FailureThreshold(),
		Ordered:          spec.Ordered(),
		Adaptive:         spec.AdaptiveLimits(),
		Generation:       r.ep.Generation,
	}}
	if spec.Limits.RequestsPerSecond != nil {
		cfg.RequestsPerSecond = int(*spec.Limits.RequestsPerSecond)
	}
	var err error
	if cfg.Schedule, err = spec.RetrySchedule(); err != nil {
		return nil, fail(heraldv1.ReasonInvalidConfiguration, "spec.retry.schedule: %v", err)
	}
	if cfg.MaxRetryAfter, err = spec.MaxRetryAfter(); err != nil {
		return nil, fail(heraldv1.ReasonInvalidConfiguration, "spec.retry.maxRetryAfter: %v", err)
	}
	timeout, err := spec.TimeoutDuration()
	if err != nil {
		return nil, fail(heraldv1.ReasonInvalidConfiguration, "spec.timeout: %v", err)
	}
	var transform *routing.Transform
	if spec.Payload.Transform != "" {
		// Judged by the filters' judge: a transform runs in the shared dispatcher on
		// every attempt, so its worst case is bounded before it is admitted.
		if transform, err = routing.CompileTransform(spec.Payload.Transform); err != nil {
			return nil, fail(heraldv1.ReasonInvalidTransform, "spec.payload.transform: %v", err)
		}
	}

	sg, p := r.signer()
	if p != nil {
		return nil, p
	}
	headers, p := r.headers()
	if p != nil {
		return nil, p
	}
	tlsCfg, p := r.tls()
	if p != nil {
		return nil, p
	}
	oauth, p := r.oauth2(policy)
	if p != nil {
		return nil, p
	}
	proxy, p := r.proxy(policy, target)
	if p != nil {
		return nil, p
	}
	cfg.Sender = sender.Config{
		URL:          target,
		Proxy:        proxy,
		Signer:       sg,
		HeaderPrefix: spec.HeaderPrefix(),
		Format:       spec.PayloadFormat(),
		ExtraFields:  spec.Payload.ExtraFields,
		Transform:    transform,
		Headers:      headers,
		Timeout:      timeout,
		MaxInFlight:  cfg.MaxInFlight,
		TLS:          tlsCfg,
		Policy:       policy,
		OAuth2:       oauth,
		ResponseBody: spec.ResponseBodyPolicy(),
		Secrets:      r.secrets,
	}
	return cfg, nil
}

// signer resolves the signing secret and the one being rotated out into a Signer.
func (r *resolver) signer() (*signer.Signer, *problem) {
	spec := &r.ep.Spec
	ref := r.ep.SigningSecretRef()
	s, found := r.secret(ref.Name)
	switch {
	case r.err != nil:
		return nil, &problem{}
	case !found:
		return nil, fail(heraldv1.ReasonSecretNotFound, "signing Secret %s does not exist yet; Herald generates it", ref.Name)
	case !s.DeletionTimestamp.IsZero():
		// Its deletion brings the manager back to generate a new one.
		return nil, fail(heraldv1.ReasonSecretNotFound, "signing Secret %s is being deleted", ref.Name)
	}
	current, msg := keyValue(s, ref, "signing")
	if msg != "" {
		return nil, fail(heraldv1.ReasonSecretKeyMissing, "%s", msg)
	}
	r.signingSecret = ref.Name
	r.secrets = append(r.secrets, sender.Secret{What: "signing secret", Value: current})
	// The current secret alone first, so that a bad value is blamed on the right Secret.
	if _, err := signer.New(spec.SignatureStyle(), spec.HeaderPrefix(), current, nil); err != nil {
		if errors.Is(err, signer.ErrInvalidSecret) {
			return nil, fail(heraldv1.ReasonInvalidSecret, "signing Secret %s key %q: %v", ref.Name, ref.Key, err)
		}
		return nil, fail(heraldv1.ReasonInvalidConfiguration, "spec.signature: %v", err)
	}
	var previous []byte
	if prev, ok := r.ep.PreviousSigningSecretRef(); ok {
		ps, found := r.secret(prev.Name)
		switch {
		case r.err != nil:
			return nil, &problem{}
		case !found:
			return nil, fail(heraldv1.ReasonPreviousSecretNotFound, "previous signing Secret %s does not exist", prev.Name)
		}
		if previous, msg = keyValue(ps, prev, "previous signing"); msg != "" {
			return nil, fail(heraldv1.ReasonPreviousSecretNotFound, "%s", msg)
		}
		r.secrets = append(r.secrets, sender.Secret{What: "previous signing secret", Value: previous})
	}
	sg, err := signer.New(spec.SignatureStyle(), spec.HeaderPrefix(), current, previous)
	if err != nil {
		prev, _ := r.ep.PreviousSigningSecretRef()
		return nil, fail(heraldv1.ReasonInvalidSecret, "previous signing Secret %s key %q: %v", prev.Name, prev.Key, err)
	}
	r.publicKey, r.previousPublicKey = sg.PublicKey(), sg.PreviousPublicKey()
	return sg, nil
}

// headers resolves static header values, reading those that come from Secrets.
func (r *resolver) headers() (map[string]string, *problem) {
	out := make(map[string]string, len(r.ep.Spec.Headers))
	for _, h := range r.ep.Spec.Headers {
		switch {
		case h.Value != nil:
			out[h.Name] = *h.Value
		case h.ValueFrom != nil:
			v, p := r.referenced(*h.ValueFrom, "header "+h.Name)
			if p != nil {
				return nil, p
			}
			out[h.Name] = string(v)
			r.secrets = append(r.secrets, sender.Secret{What: "header " + h.Name, Value: v})
		}
	}
	return out, nil
}

// tls builds the TLS client configuration: extra roots and a client certificate.
func (r *resolver) tls() (*tls.Config, *problem) {
	t := r.ep.Spec.TLS
	if t == nil {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CABundle != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(t.CABundle)) {
			return nil, fail(heraldv1.ReasonInvalidTLS, "spec.tls.caBundle holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if ref := t.ClientCertificateSecretRef; ref != nil {
		what := "TLS client certificate"
		crt, p := r.referenced(heraldv1.SecretKeySelector{Name: ref.Name, Key: corev1.TLSCertKey}, what)
		if p != nil {
			return nil, p
		}
		key, p := r.referenced(heraldv1.SecretKeySelector{Name: ref.Name, Key: corev1.TLSPrivateKeyKey}, what)
		if p != nil {
			return nil, p
		}
		pair, err := tls.X509KeyPair(crt, key)
		if err != nil {
			// The parser's error may quote key material; say which Secret, not why.
			return nil, fail(heraldv1.ReasonInvalidTLS, "%s in Secret %s: %s and %s do not hold a matching PEM certificate and key",
				what, ref.Name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// oauth2 resolves the client credentials. The token URL is judged by the same policy
// as spec.url: a token request is an outbound request like a delivery.
func (r *resolver) oauth2(policy outbound.Policy) (*sender.OAuth2, *problem) {
	o := r.ep.Spec.OAuth2()
	if o == nil {
		return nil, nil
	}
	if err := policy.CheckURL(o.TokenURL); err != nil {
		return nil, fail(heraldv1.ReasonInvalidURL, "spec.auth.oauth2.tokenURL: %v", err)
	}
	out := &sender.OAuth2{TokenURL: o.TokenURL, Scopes: o.Scopes, Audience: o.Audience, AuthStyle: o.EffectiveAuthStyle()}
	if o.ClientID != nil {
		out.ClientID = *o.ClientID
	} else if o.ClientIDRef != nil {
		id, p := r.referenced(withDefaultKey(*o.ClientIDRef), "OAuth2 client id")
		if p != nil {
			return nil, p
		}
		out.ClientID = string(id)
		r.secrets = append(r.secrets, sender.Secret{What: "OAuth2 client id", Value: id})
	}
	secret, p := r.referenced(withDefaultKey(o.ClientSecretRef), "OAuth2 client secret")
	if p != nil {
		return nil, p
	}
	out.ClientSecret = secret
	r.secrets = append(r.secrets, sender.Secret{What: "OAuth2 client secret", Value: secret})
	return out, nil
}

func withDefaultKey(ref heraldv1.SecretKeySelector) heraldv1.SecretKeySelector {
	if ref.Key == "" {
		ref.Key = heraldv1.DefaultSecretKey
	}
	return ref
}

// referenced reads a key of a Secret that only a person can create.
func (r *resolver) referenced(ref heraldv1.SecretKeySelector, what string) ([]byte, *problem) {
	s, found := r.secret(ref.Name)
	switch {
	case r.err != nil:
		return nil, &problem{}
	case !found:
		return nil, fail(heraldv1.ReasonReferencedSecretNotFound, "Secret %s for the %s does not exist", ref.Name, what)
	}
	v, msg := keyValue(s, ref, what)
	if msg != "" {
		return nil, fail(heraldv1.ReasonSecretKeyMissing, "%s", msg)
	}
	return v, nil
}

// secret reads a Secret once per judgement; a read error is kept in r.err.
func (r *resolver) secret(name string) (*corev1.Secret, bool) {
	if s, done := r.read[name]; done {
		return s, s != nil
	}
	s, err := r.get(r.ctx, r.ep.Namespace, name)
	if err != nil {
		r.err = fmt.Errorf("reading Secret %s/%s: %w", r.ep.Namespace, name, err)
		return nil, false
	}
	r.read[name] = s
	return s, s != nil
}

// keyValue returns ref's value in s, or a message saying what is missing.
func keyValue(s *corev1.Secret, ref heraldv1.SecretKeySelector, what string) ([]byte, string) {
	v, found := s.Data[ref.Key]
	switch {
	case !found:
		return nil, fmt.Sprintf("%s Secret %s has no key %q", what, ref.Name, ref.Key)
	case len(v) == 0:
		return nil, fmt.Sprintf("%s Secret %s has an empty value under key %q", what, ref.Name, ref.Key)
	}
	return v, ""
}
