package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SignatureStyle selects how a delivery is signed. Every style but StandardWebhooksEd25519
// is HMAC-SHA256; they differ in the signed string, the header names, the encoding and
// how the secret becomes the key.
// +kubebuilder:validation:Enum=StandardWebhooks;StandardWebhooksEd25519;TimestampedPrefixedHex;BodyPrefixedHex;TimestampedHex
type SignatureStyle string

const (
	// SignatureStandardWebhooks follows the Standard Webhooks specification: signed string
	// "{id}.{timestamp}.{body}", header webhook-signature "v1,<base64>" (space separated
	// during a rotation), plus webhook-id and webhook-timestamp. The key is the base64
	// decoded part of the secret after "whsec_".
	SignatureStandardWebhooks SignatureStyle = "StandardWebhooks"
	// SignatureStandardWebhooksEd25519 is Standard Webhooks' asymmetric scheme: the same
	// signed string and headers, signed with ed25519 and sent as "v1a,<base64>". The
	// signing Secret holds "whsk_" + base64 of the 32-byte private key (seed); receivers
	// verify with the public key "whpk_" + base64, which Herald publishes in
	// status.publicKey and in the ConfigMap "<endpoint>-public-key".
	SignatureStandardWebhooksEd25519 SignatureStyle = "StandardWebhooksEd25519"
	// SignatureTimestampedPrefixedHex signs "{timestamp}.{body}" and sends
	// "<prefix>-Signature: sha256=<hex>" and "<prefix>-Timestamp". The key is the secret
	// string as written.
	SignatureTimestampedPrefixedHex SignatureStyle = "TimestampedPrefixedHex"
	// SignatureBodyPrefixedHex signs the raw body and sends "<prefix>-Signature:
	// sha256=<hex>". The key is the secret string as written.
	SignatureBodyPrefixedHex SignatureStyle = "BodyPrefixedHex"
	// SignatureTimestampedHex signs "{timestamp}.{body}" and sends "<prefix>-Signature:
	// <hex>", "<prefix>-Timestamp" and "<prefix>-Event". The key is the secret string as
	// written.
	SignatureTimestampedHex SignatureStyle = "TimestampedHex"
)

// PayloadFormat selects the shape of the request body.
// +kubebuilder:validation:Enum=Envelope;Data;CloudEventsBinary;CloudEventsStructured
type PayloadFormat string

const (
	// PayloadEnvelope sends {"id","type","created_at","data", ...extraFields}.
	PayloadEnvelope PayloadFormat = "Envelope"
	// PayloadData sends the event's data alone; the event type travels in a header.
	PayloadData PayloadFormat = "Data"
	// PayloadCloudEventsBinary sends a CloudEvent in the binary content mode of the
	// CloudEvents HTTP protocol binding 1.0: the attributes (id, source, type, time,
	// subject, the producer's extensions, traceparent) in ce-* headers, the data as the
	// body (application/json). Knative and Argo Events sinks take it as it is.
	PayloadCloudEventsBinary PayloadFormat = "CloudEventsBinary"
	// PayloadCloudEventsStructured sends a CloudEvent in the structured content mode:
	// one application/cloudevents+json document holding the attributes and the data,
	// all of it covered by the signature.
	PayloadCloudEventsStructured PayloadFormat = "CloudEventsStructured"
)

// CloudEvents reports whether the format is one of the CloudEvents modes.
func (f PayloadFormat) CloudEvents() bool {
	return f == PayloadCloudEventsBinary || f == PayloadCloudEventsStructured
}

// Ordering says whether an endpoint's deliveries may overtake one another.
// +kubebuilder:validation:Enum=Unordered;Ordered
type Ordering string

const (
	// OrderingUnordered attempts up to limits.maxInFlight deliveries at once, and a
	// failed one waits for its retry without holding up the others.
	OrderingUnordered Ordering = "Unordered"
	// OrderingOrdered sends one delivery at a time, in the order the events were
	// accepted: a failing delivery blocks the rest until it is delivered or
	// dead-lettered (status.blockedBy names it).
	OrderingOrdered Ordering = "Ordered"
)

// SignatureSpec configures signing.
type SignatureSpec struct {
	// Style of signature; see the SignatureStyle constants.
	// +kubebuilder:default=StandardWebhooks
	// +optional
	Style SignatureStyle `json:"style,omitempty"`

	// HeaderPrefix names the signature headers of the non-Standard-Webhooks styles, e.g.
	// "X-Acme" gives X-Acme-Signature and X-Acme-Timestamp.
	// +kubebuilder:default=X-Herald
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$')",message="headerPrefix must be an HTTP header name such as X-Acme: letters and digits in parts joined by single '-'"
	// +optional
	HeaderPrefix string `json:"headerPrefix,omitempty"`
}

// PayloadSpec configures the request body.
// +kubebuilder:validation:XValidation:rule="!has(self.transform) || !has(self.extraFields)",message="extraFields cannot be combined with transform: add the fields in the transform's result instead"
type PayloadSpec struct {
	// Format of the body.
	// +kubebuilder:default=Envelope
	// +optional
	Format PayloadFormat `json:"format,omitempty"`

	// ExtraFields are static top-level fields added to every Envelope, such as
	// {"environment": "production"}.
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="!('id' in self || 'type' in self || 'created_at' in self || 'data' in self)",message="extraFields cannot replace the envelope's own fields id, type, created_at or data"
	// +optional
	ExtraFields map[string]string `json:"extraFields,omitempty"`

	// Transform is a CEL expression that maps the event to the body sent, for receivers
	// that expect their own shape (a Slack or Teams message, renamed or picked fields).
	// It sees the same event variable as a subscription filter (event.id, event.type,
	// event.source, event.created_at, event.data) and returns a map, which is sent as
	// JSON: as the whole body for Envelope and Data, as the CloudEvent's data for the
	// CloudEvents formats. It is judged like a filter before it is admitted (worst-case
	// cost on the largest event) and runs on every attempt, so a replay sends what the
	// current transform makes; the body it makes is what is signed. An event it fails
	// on is dead-lettered (reason TransformFailed, replayable once the transform is
	// fixed), counted in status.transformErrors and named by the TransformHealthy
	// condition.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Transform string `json:"transform,omitempty"`
}

// RetrySpec configures when a failed delivery is attempted again.
type RetrySpec struct {
	// Schedule lists the waits before each retry, counted from the previous failure.
	// After the last one fails the delivery is dead-lettered. Go durations (30s, 5m, 2h).
	// +kubebuilder:default={"1m","5m","30m","2h","8h"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.all(d, d.matches('^-?([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$'))",message="every retry.schedule entry must be a duration such as 30s, 5m or 2h; empty entries are not allowed"
	// +kubebuilder:validation:XValidation:rule="self.all(d, !d.matches('^-?([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(d) > duration('0s'))",message="every retry.schedule entry must be greater than 0"
	// +kubebuilder:validation:XValidation:rule="self.all(d, !d.matches('^-?([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(d) <= duration('168h'))",message="every retry.schedule entry must be at most 168h (7 days)"
	// +listType=atomic
	// +optional
	Schedule []string `json:"schedule,omitempty"`

	// JitterPercent spreads each wait by up to ± this share, so that a recovering receiver
	// is not hit by every retry in the same second.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	JitterPercent *int32 `json:"jitterPercent,omitempty"`

	// MaxRetryAfter caps how long a Retry-After header on 429/503 may push a retry out.
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) <= duration('168h')",message="maxRetryAfter must be a duration between 0s and 168h, such as 1h"
	// +optional
	MaxRetryAfter string `json:"maxRetryAfter,omitempty"`
}

// AutoDisableSpec configures the consecutive-failure circuit.
type AutoDisableSpec struct {
	// AfterConsecutiveFailures disables the endpoint once this many attempts in a row have
	// failed (any 2xx resets the count). 0 never disables.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	AfterConsecutiveFailures *int32 `json:"afterConsecutiveFailures,omitempty"`
}

// HeaderSpec is a static header sent with every delivery.
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="set exactly one of value or valueFrom"
type HeaderSpec struct {
	// Name of the header.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9!#$%&*+.^_`|~-]+$')",message="header name may contain only letters, digits and !#$%&*+.^_`|~-"
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['host','content-length','content-type','transfer-encoding','connection','user-agent']) && !self.lowerAscii().startsWith('webhook-')",message="this header is set by Herald and cannot be overridden"
	Name string `json:"name"`

	// Value of the header.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Value *string `json:"value,omitempty"`

	// ValueFrom reads the value from a Secret key, for credentials such as API tokens.
	// +optional
	ValueFrom *SecretKeySelector `json:"valueFrom,omitempty"`
}

// TLSSpec configures the TLS client of the deliveries.
type TLSSpec struct {
	// CABundle is a PEM bundle trusted in addition to the system roots.
	// +kubebuilder:validation:MaxLength=262144
	// +optional
	CABundle string `json:"caBundle,omitempty"`

	// ClientCertificateSecretRef names a kubernetes.io/tls Secret (tls.crt, tls.key) in the
	// same namespace, presented for mutual TLS.
	// +optional
	ClientCertificateSecretRef *LocalObjectReference `json:"clientCertificateSecretRef,omitempty"`
}

// DeliveryLimits bound how hard Herald pushes one endpoint.
type DeliveryLimits struct {
	// MaxInFlight is the most concurrent requests to this endpoint.
	// +kubebuilder:default=8
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=512
	// +optional
	MaxInFlight *int32 `json:"maxInFlight,omitempty"`

	// RequestsPerSecond caps the request rate; 0 means unlimited.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	RequestsPerSecond *int32 `json:"requestsPerSecond,omitempty"`

	// Adaptive lowers the endpoint's rate and concurrency when its receiver struggles
	// (answers 429 or 503, or does not answer within the timeout), honours its
	// Retry-After for every delivery of the endpoint, and raises them again as answers
	// recover, never above maxInFlight and requestsPerSecond (status.throttle shows
	// the current limits). false keeps the configured limits fixed: each struggling
	// answer then only delays its own delivery's retry.
	// +kubebuilder:default=true
	// +optional
	Adaptive *bool `json:"adaptive,omitempty"`
}

// ServiceScheme is how an in-cluster Service is spoken to.
// +kubebuilder:validation:Enum=https;http
type ServiceScheme string

// ServiceReference names a Service in the endpoint's own namespace as the destination.
// Herald reads the Service (no cluster DNS needed) and sends to its cluster IP and port,
// which is then the one private address the outbound policy lets this endpoint reach;
// its Host header and TLS server name are <name>.<namespace>.svc.
type ServiceReference struct {
	// Name of the Service, in the endpoint's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="must be a Service name (lowercase letters, digits and '-', starting with a letter)"
	Name string `json:"name"`

	// Port is the Service's port number. It may be left out when the Service has
	// exactly one port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// Path of the request, e.g. /webhooks (default /).
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/') && !self.contains('#')",message="path must start with / and carry no fragment"
	// +optional
	Path string `json:"path,omitempty"`

	// Scheme: https (the default, verified against <name>.<namespace>.svc) or http,
	// which the outbound policy must allow as it must for a URL.
	// +kubebuilder:default=https
	// +optional
	Scheme ServiceScheme `json:"scheme,omitempty"`
}

// ProxySpec sends an endpoint's deliveries through an HTTP forward proxy.
type ProxySpec struct {
	// URL of the proxy, http://host:port. Every delivery goes through a CONNECT tunnel
	// to the destination address Herald resolved and judged itself, so the proxy can
	// reach nothing the outbound policy refuses; the proxy's own address is judged by
	// the outbound policy as spec.url is.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'http' && url(self).getHostname() != ''",message="proxy url must be http://host:port (the tunnel to the receiver is TLS where spec.url is https)"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || (url(self).getEscapedPath() in ['', '/'] && url(self).getQuery().size() == 0)",message="proxy url must have no path or query"
	URL string `json:"url"`

	// CredentialsSecretRef names a kubernetes.io/basic-auth Secret (keys username and
	// password) in the same namespace, sent to the proxy as Proxy-Authorization: Basic.
	// +optional
	CredentialsSecretRef *LocalObjectReference `json:"credentialsSecretRef,omitempty"`
}

// OAuth2AuthStyle says how the client authenticates to the token endpoint.
// +kubebuilder:validation:Enum=Header;Body
type OAuth2AuthStyle string

const (
	// OAuth2AuthHeader sends the client id and secret as HTTP Basic credentials
	// (RFC 6749 §2.3.1, the method every authorization server must support).
	OAuth2AuthHeader OAuth2AuthStyle = "Header"
	// OAuth2AuthBody sends them as client_id and client_secret form parameters.
	OAuth2AuthBody OAuth2AuthStyle = "Body"
)

// OAuth2ClientCredentials obtains bearer tokens with the OAuth 2.0 client credentials
// grant (RFC 6749 §4.4) and sends them as "Authorization: Bearer <token>".
// +kubebuilder:validation:XValidation:rule="has(self.clientID) != has(self.clientIDRef)",message="set exactly one of clientID or clientIDRef"
type OAuth2ClientCredentials struct {
	// TokenURL is the authorization server's token endpoint. It goes through the same
	// outbound policy as spec.url.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getHostname() != ''",message="tokenURL must be an absolute URL such as https://auth.example.com/oauth/token"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() in ['https', 'http']",message="tokenURL scheme must be https (or http where the outbound policy allows it)"
	TokenURL string `json:"tokenURL"`

	// ClientID, written in the resource.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +optional
	ClientID *string `json:"clientID,omitempty"`

	// ClientIDRef reads the client id from a Secret key instead.
	// +optional
	ClientIDRef *SecretKeySelector `json:"clientIDRef,omitempty"`

	// ClientSecretRef is the Secret key holding the client secret.
	ClientSecretRef SecretKeySelector `json:"clientSecretRef"`

	// Scopes requested (the scope parameter, space separated).
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.all(s, s.matches('^[!#-\\\\[\\\\]-~]+$'))",message="a scope is printable ASCII without spaces, double quotes or backslashes (RFC 6749 §3.3)"
	// +listType=atomic
	// +optional
	Scopes []string `json:"scopes,omitempty"`

	// Audience, sent as the audience parameter, which Auth0, Okta and others use to
	// pick the API the token is for.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Audience string `json:"audience,omitempty"`

	// AuthStyle: Header (HTTP Basic, the default) or Body (form parameters).
	// +kubebuilder:default=Header
	// +optional
	AuthStyle OAuth2AuthStyle `json:"authStyle,omitempty"`
}

// AuthSpec authenticates Herald to the receiver, beside the signature.
type AuthSpec struct {
	// OAuth2 client credentials: a bearer token on every delivery.
	// +optional
	OAuth2 *OAuth2ClientCredentials `json:"oauth2,omitempty"`
}

// ResponseBodyPolicy says which receivers' response bodies the attempt log keeps.
// +kubebuilder:validation:Enum=None;OnFailure;Always
type ResponseBodyPolicy string

const (
	// ResponseBodyNone keeps no response body (status code, duration and the allow-listed
	// response headers are still logged).
	ResponseBodyNone ResponseBodyPolicy = "None"
	// ResponseBodyOnFailure keeps the body of answers that are not 2xx: why the receiver
	// refused.
	ResponseBodyOnFailure ResponseBodyPolicy = "OnFailure"
	// ResponseBodyAlways keeps the body of every answer.
	ResponseBodyAlways ResponseBodyPolicy = "Always"
)

// AttemptLogSpec says what the dispatcher's attempt log keeps of this endpoint's answers.
type AttemptLogSpec struct {
	// ResponseBody: None (the default), OnFailure or Always. A kept body is the first
	// 4 KiB of the answer with this endpoint's own secret values (signing secrets, header
	// values from Secrets, the OAuth2 client secret and bearer token) replaced by
	// "[redacted: ...]" before it is stored; reading it through the dispatcher's endpoint
	// API needs get on webhookendpoints/responses, beyond get on the endpoint.
	// +kubebuilder:default=None
	// +optional
	ResponseBody ResponseBodyPolicy `json:"responseBody,omitempty"`
}

// WebhookEndpointSpec is where events go and how they are delivered there.
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.auth.oauth2) || !has(self.headers) || !self.headers.exists(h, h.name.lowerAscii() == 'authorization')",message="spec.headers cannot set Authorization when spec.auth.oauth2 is set: the bearer token goes there"
// +kubebuilder:validation:XValidation:rule="has(self.url) != has(self.service)",message="set exactly one of url (a receiver anywhere) or service (a Service in this namespace)"
// +kubebuilder:validation:XValidation:rule="!has(self.service) || !has(self.proxy)",message="a Service in the cluster is reached directly, never through spec.proxy"
type WebhookEndpointSpec struct {
	// URL receiving the POSTs. https, or plain http where the outbound policy allows it.
	// Exactly one of url and service is set.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getHostname() != ''",message="url must be an absolute URL such as https://example.com/webhooks"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() in ['https', 'http']",message="url scheme must be https (or http where the outbound policy allows it)"
	// +optional
	URL string `json:"url,omitempty"`

	// Service names a Service in this namespace instead of a URL, for receivers inside
	// the cluster. A Service that does not exist (yet) holds the deliveries, Ready=False
	// with reason ServiceNotFound; nothing is lost.
	// +optional
	Service *ServiceReference `json:"service,omitempty"`

	// Proxy sends the deliveries through an HTTP CONNECT proxy, so that receivers can
	// allow-list the proxy's addresses. It replaces the dispatcher's chart-wide proxy
	// for this endpoint.
	// +optional
	Proxy *ProxySpec `json:"proxy,omitempty"`

	// SecretRef holds the signing secret. When the Secret does not exist Herald generates
	// it ("whsec_" + 32 random bytes, base64; for StandardWebhooksEd25519 an ed25519 key
	// pair, "whsk_" + base64 of the private key's seed) and owns it. Defaults to the
	// Secret "<endpoint name>-signing", key "secret".
	// +optional
	SecretRef *SecretKeySelector `json:"secretRef,omitempty"`

	// PreviousSecretRef holds the secret being rotated out. While it is set every delivery
	// carries a signature with each secret, so receivers can switch at their own pace. For
	// the two Standard Webhooks styles it may be of either kind, "whsec_" (v1) or "whsk_"
	// (v1a), so moving between HMAC and ed25519 is a rotation like any other.
	// +optional
	PreviousSecretRef *SecretKeySelector `json:"previousSecretRef,omitempty"`

	// Signature scheme and headers.
	// +kubebuilder:default={}
	// +optional
	Signature SignatureSpec `json:"signature,omitempty"`

	// Payload shape.
	// +kubebuilder:default={}
	// +optional
	Payload PayloadSpec `json:"payload,omitempty"`

	// Timeout of one attempt; success is any 2xx within it.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^-?([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$')",message="timeout must be a duration such as 10s"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^-?([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) > duration('0s') && duration(self) <= duration('60s'))",message="timeout must be greater than 0s and at most 60s"
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// Retry schedule.
	// +kubebuilder:default={}
	// +optional
	Retry RetrySpec `json:"retry,omitempty"`

	// AutoDisable configures when a failing endpoint is disabled.
	// +kubebuilder:default={}
	// +optional
	AutoDisable AutoDisableSpec `json:"autoDisable,omitempty"`

	// Headers sent with every delivery.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +optional
	Headers []HeaderSpec `json:"headers,omitempty"`

	// TLS client options.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`

	// Auth authenticates the deliveries to the receiver (OAuth2 client credentials).
	// +optional
	Auth *AuthSpec `json:"auth,omitempty"`

	// Limits on concurrency and rate towards this endpoint.
	// +kubebuilder:default={}
	// +optional
	Limits DeliveryLimits `json:"limits,omitempty"`

	// Suspend holds deliveries without losing them until it is set back to false.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// Ordering: Ordered delivers one event at a time in the order accepted, a failing
	// one blocking the rest through its retry schedule (limits.maxInFlight does not
	// apply); Unordered (the default) delivers concurrently.
	// +kubebuilder:default=Unordered
	// +optional
	Ordering Ordering `json:"ordering,omitempty"`

	// AttemptLog: whether receivers' response bodies are kept in the attempt log
	// (default: not kept).
	// +kubebuilder:default={}
	// +optional
	AttemptLog AttemptLogSpec `json:"attemptLog,omitempty"`
}

// BlockingDelivery is the failing head of an ordered endpoint's deliveries: those
// accepted after it wait until it is delivered or dead-lettered.
type BlockingDelivery struct {
	// EventID of the blocking event.
	EventID string `json:"eventID"`
	// DeliveryID of its delivery to this endpoint.
	DeliveryID string `json:"deliveryID,omitempty"`
	// Since is when its first attempt failed.
	Since metav1.Time `json:"since"`
	// FailedAttempts so far.
	FailedAttempts int32 `json:"failedAttempts"`
	// NextAttemptTime is when its retry schedule attempts it again.
	// +optional
	NextAttemptTime *metav1.Time `json:"nextAttemptTime,omitempty"`
}

// DeliveryAttempt describes one HTTP attempt.
type DeliveryAttempt struct {
	// Time the attempt started.
	Time metav1.Time `json:"time"`
	// EventID of the event delivered.
	EventID string `json:"eventID,omitempty"`
	// DeliveryID of the delivery (one per event and endpoint).
	DeliveryID string `json:"deliveryID,omitempty"`
	// StatusCode returned by the receiver; 0 when no response arrived.
	StatusCode int32 `json:"statusCode,omitempty"`
	// LatencyMilliseconds from sending the request to the response (or the failure).
	LatencyMilliseconds int64 `json:"latencyMilliseconds,omitempty"`
	// Error describes a failed attempt. It never contains secrets or payload.
	Error string `json:"error,omitempty"`
}

// DeliveryCounters are running totals kept by the dispatcher.
type DeliveryCounters struct {
	// Delivered deliveries (2xx).
	Delivered int64 `json:"delivered"`
	// FailedAttempts, counting every failed try.
	FailedAttempts int64 `json:"failedAttempts"`
	// DeadLettered deliveries that exhausted their schedule or their hold limits.
	DeadLettered int64 `json:"deadLettered"`
	// Pending deliveries waiting to be attempted (including held ones).
	Pending int64 `json:"pending"`
}

// WebhookEndpointStatus is split between two writers: the manager owns observedGeneration,
// secretName and the Ready condition; the dispatcher owns the rest through server-side
// apply with its own field manager.
type WebhookEndpointStatus struct {
	// ObservedGeneration is the generation the manager last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready and Disabled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// SecretName is the Secret the signing secret is read from.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// PublicKey is the ed25519 public key ("whpk_" + base64) receivers verify v1a
	// signatures with; set for StandardWebhooksEd25519. The ConfigMap
	// "<endpoint>-public-key" holds it too, for readers who may not read the endpoint.
	// +optional
	PublicKey string `json:"publicKey,omitempty"`

	// PreviousPublicKey is the public key of an ed25519 previousSecretRef while a
	// rotation is under way: deliveries carry a signature verifiable with each.
	// +optional
	PreviousPublicKey string `json:"previousPublicKey,omitempty"`

	// ConsecutiveFailures since the last successful attempt.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// LastAttempt is the most recent delivery attempt.
	// +optional
	LastAttempt *DeliveryAttempt `json:"lastAttempt,omitempty"`

	// LastSuccessTime is when a delivery last succeeded.
	// +optional
	LastSuccessTime *metav1.Time `json:"lastSuccessTime,omitempty"`

	// DisabledAt is when the endpoint was auto-disabled.
	// +optional
	DisabledAt *metav1.Time `json:"disabledAt,omitempty"`

	// DisabledReason says why the endpoint was auto-disabled.
	// +optional
	DisabledReason string `json:"disabledReason,omitempty"`

	// Counters of the endpoint's deliveries.
	// +optional
	Counters *DeliveryCounters `json:"counters,omitempty"`

	// LastHandledReenable is the last value of the re-enable annotation acted on.
	// +optional
	LastHandledReenable string `json:"lastHandledReenable,omitempty"`

	// LastHandledReplay is the last value of the replay annotation acted on.
	// +optional
	LastHandledReplay string `json:"lastHandledReplay,omitempty"`

	// BlockedBy names the delivery an Ordered endpoint is retrying while the ones
	// accepted after it wait; absent when nothing blocks.
	// +optional
	BlockedBy *BlockingDelivery `json:"blockedBy,omitempty"`
	// Replay is the progress of the latest replay (dead letters and retained delivered
	// events re-sent by selection), started through the endpoint API, the CLI or the
	// replay annotation.
	// +optional
	Replay *ReplayStatus `json:"replay,omitempty"`

	// State is the dispatcher's one-word view of the deliveries: Healthy, Throttled
	// (the receiver asked Herald to slow down; see throttle), Failing (the last
	// attempts failed; a retry follows) or Disabled.
	// +kubebuilder:validation:Enum=Healthy;Throttled;Failing;Disabled
	// +optional
	State string `json:"state,omitempty"`

	// Throttle is the adaptive pacing of a receiver that answered 429 or 503 or timed
	// out: the limits Herald keeps to now, and why. Absent while the configured limits
	// apply.
	// +optional
	Throttle *ThrottleStatus `json:"throttle,omitempty"`

	// TransformErrors counts the events spec.payload.transform failed on since the
	// transform last changed; each was dead-lettered with reason TransformFailed.
	// +optional
	TransformErrors int64 `json:"transformErrors,omitempty"`
}

// ThrottleStatus is the pacing of a struggling receiver, as one dispatcher replica keeps
// it (each replica paces its own share of the deliveries).
type ThrottleStatus struct {
	// RequestsPerSecond is the current rate limit, as a decimal ("12.5").
	RequestsPerSecond string `json:"requestsPerSecond"`
	// MaxInFlight is the current concurrency limit.
	MaxInFlight int32 `json:"maxInFlight"`
	// Reason is the last answer that lowered the limits: 429, 503 or Timeout.
	Reason string `json:"reason"`
	// Since is when the endpoint was first throttled in this episode.
	Since metav1.Time `json:"since"`
	// PausedUntil is the end of the receiver's Retry-After, when it asked for a pause.
	// +optional
	PausedUntil *metav1.Time `json:"pausedUntil,omitempty"`
}

// ReplayStatus is the progress of one replay. Selected counts the deliveries the
// selection matched when the replay started; Resent and Remaining move as it runs.
type ReplayStatus struct {
	// ID names the replay (the API's answer, or the annotation's value).
	ID string `json:"id"`
	// Selection is the selection as a person wrote it, e.g.
	// "since=2026-11-30T10:00:00Z until=2026-11-30T12:00:00Z from=dead-letters,delivered".
	// +optional
	Selection string `json:"selection,omitempty"`
	// State is Running, Complete or Failed.
	// +kubebuilder:validation:Enum=Running;Complete;Failed
	State     string `json:"state"`
	Selected  int64  `json:"selected"`
	Resent    int64  `json:"resent"`
	Remaining int64  `json:"remaining"`
	// Message says why a replay failed.
	// +optional
	Message   string      `json:"message,omitempty"`
	StartTime metav1.Time `json:"startTime"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// Argo CD applies the CRDs before the resources of the same sync (wave -1) and, like
// Helm with helm.sh/resource-policy: keep, never prunes or deletes them: a CRD's deletion
// takes every WebhookEndpoint with it.
// +kubebuilder:metadata:annotations="argocd.argoproj.io/sync-wave=-1"
// +kubebuilder:metadata:annotations="argocd.argoproj.io/sync-options=Prune=false,Delete=false"

// WebhookEndpoint is a destination for webhooks: a URL, a signing secret and the delivery
// policy (signature style, payload shape, timeout, retries, auto-disable).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whe,categories=herald
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.service.name`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Delivering",type=string,JSONPath=`.status.conditions[?(@.type=="Delivering")].status`
// +kubebuilder:printcolumn:name="Disabled",type=string,JSONPath=`.status.conditions[?(@.type=="Disabled")].status`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Failures",type=integer,JSONPath=`.status.consecutiveFailures`
// +kubebuilder:printcolumn:name="Delivered",type=integer,JSONPath=`.status.counters.delivered`
// +kubebuilder:printcolumn:name="DeadLettered",type=integer,JSONPath=`.status.counters.deadLettered`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="BlockedBy",type=string,JSONPath=`.status.blockedBy.eventID`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WebhookEndpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WebhookEndpointSpec   `json:"spec"`
	Status WebhookEndpointStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// WebhookEndpointList is a list of WebhookEndpoints.
type WebhookEndpointList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebhookEndpoint `json:"items"`
}

func init() {
	SchemeBuilder.Register(&WebhookEndpoint{}, &WebhookEndpointList{})
}
