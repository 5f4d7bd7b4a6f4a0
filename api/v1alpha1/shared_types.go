package v1alpha1

// Annotations a person (or the herald CLI) sets on a WebhookEndpoint to act on it without
// touching spec, so GitOps tools never see a diff.
const (
	// AnnotationReenable: any new value re-enables an auto-disabled endpoint once.
	AnnotationReenable = "hooks.herald.dev/reenable"
	// AnnotationReplayDeadLetters: any new value replays the endpoint's dead letters once.
	// A value holding a selection (space-separated key=value: since, until, type, ids,
	// from) replays what it selects instead, e.g.
	// "since=2026-11-30T10:00:00Z until=2026-11-30T12:00:00Z from=dead-letters,delivered";
	// the value is the replay's id on status.replay.
	AnnotationReplayDeadLetters = "hooks.herald.dev/replay-dead-letters"
)

// Labels Herald puts on objects it creates.
const (
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	LabelManagedByValue = "herald"
	// LabelEndpoint names the WebhookEndpoint a generated signing Secret belongs to.
	LabelEndpoint = "hooks.herald.dev/endpoint"
)

// SecretKeySelector points at one key of a Secret in the object's own namespace.
// Cross-namespace references are deliberately impossible: a WebhookEndpoint can only use
// secrets its author could read anyway.
type SecretKeySelector struct {
	// Name of the Secret, in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="must be a valid Secret name (lowercase letters, digits, '-' and '.')"
	Name string `json:"name"`

	// Key within the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]+$')",message="must be a valid Secret key (letters, digits, '-', '_' and '.')"
	// +kubebuilder:default=secret
	// +optional
	Key string `json:"key,omitempty"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}
