package v1alpha1

// This file is Herald's one vocabulary: every condition type, condition reason, Event
// reason and dead-letter reason that the manager, the dispatcher, the CLI and the Argo CD
// health checks use. They are API: people search for them, alerts and GitOps health
// checks match on them, so they are declared once, here, and only ever added to.

// Condition types.
const (
	// ConditionReady is True when the object is fully usable for delivery. On a
	// WebhookEndpoint it is False whenever deliveries are held, for any reason, and says
	// why: the manager's own judgement and the dispatcher's Delivering condition are both
	// folded in.
	ConditionReady = "Ready"
	// ConditionDisabled is True when the dispatcher auto-disabled the endpoint.
	ConditionDisabled = "Disabled"
	// ConditionDelivering is the dispatcher's view: True while it delivers to the
	// endpoint, False with the hold reason while it holds the endpoint's deliveries.
	ConditionDelivering = "Delivering"
	// ConditionFilterHealthy is the dispatcher's view of a WebhookSubscription's CEL
	// filter: False after the filter failed to evaluate on an event.
	ConditionFilterHealthy = "FilterHealthy"
	// ConditionTransformHealthy is the dispatcher's view of a WebhookEndpoint's
	// spec.payload.transform: False after it failed on an event (that event was
	// dead-lettered with reason TransformFailed).
	ConditionTransformHealthy = "TransformHealthy"
	// ConditionEventTypesDeclared is the manager's view of a WebhookSubscription's exact
	// eventTypes against its namespace's catalog of WebhookEventTypes: True when every
	// one is declared (or built in), False saying which are not, or that the namespace
	// has no catalog.
	ConditionEventTypesDeclared = "EventTypesDeclared"
)

// Reasons of a WebhookEndpoint's Ready and Delivering conditions. The dispatcher holds
// deliveries for exactly these reasons; one resolver (dispatcher/resolve) decides them for
// the manager and the dispatcher alike.
const (
	// ReasonReady: the endpoint can be delivered to.
	ReasonReady = "Ready"
	// ReasonDelivering: the dispatcher delivers to the endpoint (Delivering=True).
	ReasonDelivering = "Delivering"
	// ReasonInvalidURL: spec.url (or spec.auth.oauth2.tokenURL) is refused by the
	// outbound policy (scheme, credentials, loopback, private or metadata address, an
	// IPv4 address written in a short form).
	ReasonInvalidURL = "InvalidURL"
	// ReasonSecretNotFound: the signing Secret does not exist (yet). Herald generates it,
	// so this heals by itself unless generation is refused (the message says so).
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretKeyMissing: a referenced Secret exists but lacks the referenced key, or
	// its value is empty. Herald never writes to a Secret it did not create.
	ReasonSecretKeyMissing = "SecretKeyMissing"
	// ReasonInvalidSecret: the signing secret's value cannot be used by the signature
	// style (Standard Webhooks needs whsec_ followed by base64).
	ReasonInvalidSecret = "InvalidSecret"
	// ReasonPreviousSecretNotFound: spec.previousSecretRef names a Secret or key that does
	// not exist, or a value the style cannot use. The previous secret is never generated.
	ReasonPreviousSecretNotFound = "PreviousSecretNotFound"
	// ReasonReferencedSecretNotFound: the Secret of a header value, of the TLS client
	// certificate or of the OAuth2 client credentials does not exist. Only a person can
	// create it.
	ReasonReferencedSecretNotFound = "ReferencedSecretNotFound"
	// ReasonInvalidTLS: spec.tls.caBundle holds no PEM certificate, or the client
	// certificate's key pair does not parse.
	ReasonInvalidTLS = "InvalidTLS"
	// ReasonInvalidConfiguration: another spec field cannot be used (retry schedule,
	// timeout, header prefix, payload extra fields).
	ReasonInvalidConfiguration = "InvalidConfiguration"
	// ReasonInvalidTransform: spec.payload.transform does not compile, does not make a
	// map, or its worst-case cost is over the budget filters are held to.
	ReasonInvalidTransform = "InvalidTransform"
	// ReasonServiceNotFound: spec.service names a Service that does not exist (yet) in
	// the endpoint's namespace. Deliveries wait for it.
	ReasonServiceNotFound = "ServiceNotFound"
	// ReasonInvalidService: the Service of spec.service exists but cannot be sent to:
	// it has no cluster IP (headless, or ExternalName, which would name any host past
	// the outbound policy), or no port matches spec.service.port.
	ReasonInvalidService = "InvalidService"
	// ReasonSuspended: spec.suspend holds the deliveries on purpose.
	ReasonSuspended = "Suspended"
	// ReasonDisabled: the dispatcher auto-disabled the endpoint (see the Disabled
	// condition); a person re-enables it.
	ReasonDisabled = "Disabled"
)

// SelfResolvingReasons are the Ready=False reasons that Herald resolves without a person
// (the Argo CD health check shows them Progressing; every other reason is Degraded).
// charts/argocd_test.go checks that the Lua script lists exactly these.
var SelfResolvingReasons = []string{ReasonSecretNotFound}

// Reasons of the Disabled condition.
const (
	// ReasonConsecutiveFailures: auto-disabled after autoDisable.afterConsecutiveFailures
	// failed attempts in a row.
	ReasonConsecutiveFailures = "ConsecutiveFailures"
	// ReasonGone: the receiver answered 410 Gone, which Standard Webhooks defines as "stop
	// sending": disabled at once, whatever the failure count.
	ReasonGone = "Gone"
	// ReasonEnabled: not disabled.
	ReasonEnabled = "Enabled"
)

// Reasons of a WebhookEndpoint's TransformHealthy condition.
const (
	// ReasonTransformEvaluated: the transform made a body of every event so far.
	ReasonTransformEvaluated = "TransformEvaluated"
	// ReasonTransformFailed: the transform failed on an event (a field the event lacks,
	// a value that is no JSON); that delivery was dead-lettered. Warning Event
	// TransformFailed names it.
	ReasonTransformFailed = "TransformFailed"
)

// Delivery states (status.state): the dispatcher's one-word view of an endpoint, also
// the state label of herald_endpoint_state and what the Argo CD health check reads.
const (
	// DeliveryHealthy: deliveries flow within the configured limits.
	DeliveryHealthy = "Healthy"
	// DeliveryThrottled: the receiver answered 429 or 503 or timed out, and Herald sends
	// below the configured limits until answers recover (status.throttle).
	DeliveryThrottled = "Throttled"
	// DeliveryFailing: the last attempt failed for another reason (status.lastAttempt);
	// its retry follows the schedule and auto-disable counts it.
	DeliveryFailing = "Failing"
	// DeliveryDisabled: auto-disabled; deliveries are held until a person re-enables it.
	DeliveryDisabled = "Disabled"
)

// Reasons of a WebhookSubscription's conditions.
const (
	// ReasonEndpointNotFound: spec.endpointRef names no WebhookEndpoint (yet); heals by
	// itself once the endpoint exists.
	ReasonEndpointNotFound = "EndpointNotFound"
	// ReasonInvalidEventType: an entry of spec.eventTypes is not a valid pattern.
	ReasonInvalidEventType = "InvalidEventType"
	// ReasonInvalidFilter: spec.filter does not compile.
	ReasonInvalidFilter = "InvalidFilter"
	// ReasonFilterEvaluated: the filter evaluated on every event so far
	// (FilterHealthy=True).
	ReasonFilterEvaluated = "FilterEvaluated"
	// ReasonFilterFailed: the filter failed to evaluate on an event; that event was not
	// routed through this subscription (FilterHealthy=False, Warning Event FilterFailed).
	ReasonFilterFailed = "FilterFailed"
	// ReasonUnknownEventType: the namespace declares WebhookEventTypes and an exact entry
	// of spec.eventTypes is not one of them, so the dispatcher refuses its events at the
	// door and the subscription can never carry them (Ready=False too). Heals by itself
	// once the type is declared.
	ReasonUnknownEventType = "UnknownEventType"
	// ReasonEventTypesDeclared: every exact entry of spec.eventTypes is declared in the
	// namespace's catalog or built in (EventTypesDeclared=True).
	ReasonEventTypesDeclared = "EventTypesDeclared"
	// ReasonNoCatalog: the namespace declares no WebhookEventTypes, so every event type is
	// accepted unchecked (EventTypesDeclared=False; Ready is not affected).
	ReasonNoCatalog = "NoCatalog"
)

// Reasons of a WebhookEventType's Ready condition.
const (
	// ReasonInvalidSchema: spec.schema is not JSON or YAML, is not a JSON Schema draft
	// 2020-12 the compiler accepts, or exceeds Herald's bounds (depth, branches, a
	// reference to another document). Events of the type are then accepted unchecked.
	ReasonInvalidSchema = "InvalidSchema"
	// ReasonInvalidExample: an entry of spec.examples does not validate against the
	// schema.
	ReasonInvalidExample = "InvalidExample"
	// ReasonDuplicateEventType: an older WebhookEventType of the namespace declares the
	// same spec.type; this one is ignored until that one goes.
	ReasonDuplicateEventType = "DuplicateEventType"
)

// Event reasons (events.k8s.io), beside the condition reasons above, which are recorded
// as Events when a condition changes.
const (
	EventSecretGenerated = "SecretGenerated"
	// EventPublicKeyPublished: the ed25519 public key was written to the endpoint's
	// ConfigMap <endpoint>-public-key (public keys are not secret; the Event names it).
	EventPublicKeyPublished  = "PublicKeyPublished"
	EventEndpointDisabled    = "EndpointDisabled"
	EventEndpointEnabled     = "EndpointEnabled"
	EventDeliveryFailed      = "DeliveryFailed"
	EventDeadLettersReplayed = "DeadLettersReplayed"
	// EventReplayCompleted (Normal) ends a replay by selection; EventReplayFailed
	// (Warning) says why one stopped.
	EventReplayCompleted = "ReplayCompleted"
	EventReplayFailed    = "ReplayFailed"
	EventFilterFailed    = ReasonFilterFailed
	EventTransformFailed = ReasonTransformFailed
	// EventThrottled (Normal): the receiver answered 429 or 503 or timed out and Herald
	// lowered the endpoint's limits; EventThrottleLifted when they are back.
	EventThrottled      = "Throttled"
	EventThrottleLifted = "ThrottleLifted"
)

// Replay states (status.replay.state).
const (
	ReplayRunning  = "Running"
	ReplayComplete = "Complete"
	ReplayFailed   = "Failed"
)

// Dead-letter reasons: why a delivery was given up.
const (
	// DeadLetterRetriesExhausted: the retry schedule ran out.
	DeadLetterRetriesExhausted = "RetriesExhausted"
	// DeadLetterHeldLimitExceeded: a held endpoint had more deliveries waiting than the
	// limit; the oldest went.
	DeadLetterHeldLimitExceeded = "HeldLimitExceeded"
	// DeadLetterHeldTooLong: the delivery waited in a held endpoint longer than the limit.
	DeadLetterHeldTooLong = "HeldTooLong"
	// DeadLetterTransformFailed: spec.payload.transform failed on the event; replay it
	// once the transform is fixed.
	DeadLetterTransformFailed = "TransformFailed"
	// DeadLetterRejected: a CloudEvents receiver answered a 4xx that its contract says
	// is never retried (400, 413, ...; not 404, 408, 409 or 429).
	DeadLetterRejected = "Rejected"
)
