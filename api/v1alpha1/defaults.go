package v1alpha1

import (
	"fmt"
	"time"
)

// Defaults, mirrored in the CRD schema's default markers. Go code reads specs through the
// accessors below so that an object that skipped API-server defaulting (a test fixture,
// a file given to the benchmark) behaves the same.
const (
	DefaultSecretKey                = "secret"
	DefaultHeaderPrefix             = "X-Herald"
	DefaultTimeout                  = 30 * time.Second
	DefaultJitterPercent            = 10
	DefaultMaxRetryAfter            = time.Hour
	DefaultAfterConsecutiveFailures = 5
	DefaultMaxInFlight              = 8
)

// DefaultRetrySchedule is used when spec.retry.schedule is empty.
var DefaultRetrySchedule = []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 8 * time.Hour}

// SigningSecretRef returns the Secret and key holding the signing secret.
func (e *WebhookEndpoint) SigningSecretRef() SecretKeySelector {
	ref := SecretKeySelector{Name: e.Name + "-signing", Key: DefaultSecretKey}
	if e.Spec.SecretRef != nil {
		ref.Name = e.Spec.SecretRef.Name
		if e.Spec.SecretRef.Key != "" {
			ref.Key = e.Spec.SecretRef.Key
		}
	}
	return ref
}

// PublicKeyConfigMapName names the ConfigMap where Herald publishes the ed25519 public
// key of a StandardWebhooksEd25519 endpoint.
func (e *WebhookEndpoint) PublicKeyConfigMapName() string { return e.Name + "-public-key" }

// Keys of the public-key ConfigMap.
const (
	PublicKeyConfigMapKey         = "publicKey"
	PreviousPublicKeyConfigMapKey = "previousPublicKey"
)

// PreviousSigningSecretRef returns the Secret being rotated out, if any.
func (e *WebhookEndpoint) PreviousSigningSecretRef() (SecretKeySelector, bool) {
	if e.Spec.PreviousSecretRef == nil {
		return SecretKeySelector{}, false
	}
	ref := *e.Spec.PreviousSecretRef
	if ref.Key == "" {
		ref.Key = DefaultSecretKey
	}
	return ref, true
}

// SignatureStyle returns the effective signature style.
func (s *WebhookEndpointSpec) SignatureStyle() SignatureStyle {
	if s.Signature.Style == "" {
		return SignatureStandardWebhooks
	}
	return s.Signature.Style
}

// HeaderPrefix returns the effective signature header prefix.
func (s *WebhookEndpointSpec) HeaderPrefix() string {
	if s.Signature.HeaderPrefix == "" {
		return DefaultHeaderPrefix
	}
	return s.Signature.HeaderPrefix
}

// PayloadFormat returns the effective payload format.
func (s *WebhookEndpointSpec) PayloadFormat() PayloadFormat {
	if s.Payload.Format == "" {
		return PayloadEnvelope
	}
	return s.Payload.Format
}

// TimeoutDuration returns the effective per-attempt timeout.
func (s *WebhookEndpointSpec) TimeoutDuration() (time.Duration, error) {
	if s.Timeout == "" {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(s.Timeout)
	if err != nil {
		return 0, fmt.Errorf("spec.timeout: %w", err)
	}
	return d, nil
}

// RetrySchedule returns the effective retry waits.
func (s *WebhookEndpointSpec) RetrySchedule() ([]time.Duration, error) {
	if len(s.Retry.Schedule) == 0 {
		return append([]time.Duration(nil), DefaultRetrySchedule...), nil
	}
	out := make([]time.Duration, 0, len(s.Retry.Schedule))
	for i, v := range s.Retry.Schedule {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("spec.retry.schedule[%d]: %w", i, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// JitterPercent returns the effective jitter.
func (s *WebhookEndpointSpec) JitterPercent() int32 {
	if s.Retry.JitterPercent == nil {
		return DefaultJitterPercent
	}
	return *s.Retry.JitterPercent
}

// MaxRetryAfter returns the effective cap on Retry-After.
func (s *WebhookEndpointSpec) MaxRetryAfter() (time.Duration, error) {
	if s.Retry.MaxRetryAfter == "" {
		return DefaultMaxRetryAfter, nil
	}
	d, err := time.ParseDuration(s.Retry.MaxRetryAfter)
	if err != nil {
		return 0, fmt.Errorf("spec.retry.maxRetryAfter: %w", err)
	}
	return d, nil
}

// FailureThreshold returns the consecutive failures that disable the endpoint; 0 never.
func (s *WebhookEndpointSpec) FailureThreshold() int32 {
	if s.AutoDisable.AfterConsecutiveFailures == nil {
		return DefaultAfterConsecutiveFailures
	}
	return *s.AutoDisable.AfterConsecutiveFailures
}

// MaxInFlight returns the effective per-endpoint concurrency.
func (s *WebhookEndpointSpec) MaxInFlight() int32 {
	if s.Limits.MaxInFlight == nil || *s.Limits.MaxInFlight < 1 {
		return DefaultMaxInFlight
	}
	return *s.Limits.MaxInFlight
}

// ResponseBodyPolicy returns which response bodies the attempt log keeps.
func (s *WebhookEndpointSpec) ResponseBodyPolicy() ResponseBodyPolicy {
	if s.AttemptLog.ResponseBody == "" {
		return ResponseBodyNone
	}
	return s.AttemptLog.ResponseBody
}

// Ordered reports whether the endpoint's deliveries go out one at a time in order.
func (s *WebhookEndpointSpec) Ordered() bool { return s.Ordering == OrderingOrdered }

// OAuth2 returns the OAuth2 client credentials configuration, nil when there is none.
func (s *WebhookEndpointSpec) OAuth2() *OAuth2ClientCredentials {
	if s.Auth == nil {
		return nil
	}
	return s.Auth.OAuth2
}

// EffectiveAuthStyle returns the effective token endpoint authentication.
func (o *OAuth2ClientCredentials) EffectiveAuthStyle() OAuth2AuthStyle {
	if o.AuthStyle == "" {
		return OAuth2AuthHeader
	}
	return o.AuthStyle
}

// AdaptiveLimits reports whether the endpoint's limits adapt to a struggling receiver
// (spec.limits.adaptive, default true).
func (s *WebhookEndpointSpec) AdaptiveLimits() bool {
	return s.Limits.Adaptive == nil || *s.Limits.Adaptive
}

// EffectiveScheme returns the scheme of a Service reference (default https).
func (r *ServiceReference) EffectiveScheme() ServiceScheme {
	if r.Scheme == "" {
		return "https"
	}
	return r.Scheme
}

// EffectivePath returns the request path of a Service reference (default /).
func (r *ServiceReference) EffectivePath() string {
	if r.Path == "" {
		return "/"
	}
	return r.Path
}

// Destination is where the endpoint sends, as a person reads it: the URL, or the
// Service reference written service/<name>:<port><path>.
func (s *WebhookEndpointSpec) Destination() string {
	if s.Service == nil {
		return s.URL
	}
	d := "service/" + s.Service.Name
	if s.Service.Port != 0 {
		d += fmt.Sprintf(":%d", s.Service.Port)
	}
	return d + s.Service.EffectivePath()
}
