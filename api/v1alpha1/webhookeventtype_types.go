package v1alpha1

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Bounds of a WebhookEventType. A schema is compiled by the manager and by the shared
// dispatcher, and every event of its type is validated against it, so a tenant's schema
// is bounded before anything runs it: its text here (the CRD refuses more), its nesting
// and the work of one validation in internal/eventschema.
const (
	// MaxEventTypeSchemaBytes bounds spec.schema.
	MaxEventTypeSchemaBytes = 65536
	// MaxEventTypeExampleBytes bounds each entry of spec.examples.
	MaxEventTypeExampleBytes = 16384
	// MaxEventTypeExamples bounds spec.examples.
	MaxEventTypeExamples = 8
)

// WebhookEventTypeSpec declares one event type of the namespace's catalog.
type WebhookEventTypeSpec struct {
	// Type is the event type this object declares, as producers send it
	// ("invoice.paid"). Types starting with "herald." are Herald's own operational
	// events, built into every catalog. At most one WebhookEventType of a namespace
	// declares a type: when several do, the oldest wins and the others say so.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9._-]+$')",message="type may contain only letters, digits, '.', '_' and '-' (for example invoice.paid)"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('herald.')",message="types starting with 'herald.' are reserved for Herald's own operational events"
	Type string `json:"type"`

	// Description says what happened when an event of this type is sent; it becomes the
	// type's description in the receivers' documentation (herald docs).
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Description string `json:"description,omitempty"`

	// Schema is a JSON Schema (draft 2020-12) of the event's data, written as JSON or
	// YAML text. Events of this type whose data does not validate are refused with 422.
	// Only references within the schema itself are followed ($ref to "#/$defs/..."),
	// never to other documents; see the README for the other bounds.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	Schema string `json:"schema"`

	// Examples of the event's data, each JSON or YAML text. Each must validate against
	// the schema; they appear in the receivers' documentation.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=16384
	// +optional
	Examples []string `json:"examples,omitempty"`

	// Deprecated marks a type producers should stop sending: its events are still
	// accepted, with a Warning header, and counted in
	// herald_ingest_deprecated_events_total.
	// +optional
	Deprecated bool `json:"deprecated,omitempty"`

	// DeprecationMessage says what to send instead; it is the Warning header's text.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	DeprecationMessage string `json:"deprecationMessage,omitempty"`
}

// WebhookEventTypeStatus is written by the manager.
type WebhookEventTypeStatus struct {
	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (the schema compiles within the bounds, the examples validate,
	// no older object declares the same type).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Argo CD applies the CRDs before the resources of the same sync (wave -1) and, like
// Helm with helm.sh/resource-policy: keep, never prunes or deletes them: a CRD's deletion
// takes every WebhookEventType with it.
// +kubebuilder:metadata:annotations="argocd.argoproj.io/sync-wave=-1"
// +kubebuilder:metadata:annotations="argocd.argoproj.io/sync-options=Prune=false,Delete=false"

// WebhookEventType declares one event type of its namespace's catalog: its name, what it
// means, the JSON Schema of its data and examples. Once a namespace declares any, the
// dispatcher accepts only declared types there, with data that validates.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whet,categories=herald
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Deprecated",type=boolean,JSONPath=`.spec.deprecated`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Description",type=string,JSONPath=`.spec.description`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WebhookEventType struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WebhookEventTypeSpec   `json:"spec"`
	Status WebhookEventTypeStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// WebhookEventTypeList is a list of WebhookEventTypes.
type WebhookEventTypeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebhookEventType `json:"items"`
}

// DeclaredBefore reports whether e owns its type against other, a WebhookEventType of
// the same namespace declaring the same type: the older object wins (then the smaller
// name), so adding a duplicate never takes a type away from the object that had it.
// The manager's Ready condition and the dispatcher's catalog both decide by it.
func (e *WebhookEventType) DeclaredBefore(other *WebhookEventType) bool {
	a, b := e.CreationTimestamp, other.CreationTimestamp
	if !a.Equal(&b) {
		return a.Before(&b)
	}
	return e.Name < other.Name
}

// Herald's own operational events: the dispatcher publishes them into the namespace of
// the endpoint they are about, where a WebhookSubscription naming them (eventTypes
// "herald.*" or one of these) delivers them like any event. Their payloads are
// documented built-in types of every namespace's catalog (internal/eventschema).
const (
	// OperationalEventTypePrefix starts every operational event type. Producers cannot
	// send types with it, and only patterns that start with it match them: a
	// subscription to "*" does not receive Herald's own events.
	OperationalEventTypePrefix = "herald."

	EventTypeEndpointDisabled     = "herald.endpoint.disabled"
	EventTypeEndpointEnabled      = "herald.endpoint.enabled"
	EventTypeEndpointRecovered    = "herald.endpoint.recovered"
	EventTypeDeliveryDeadLettered = "herald.delivery.dead_lettered"
	EventTypeReplayCompleted      = "herald.replay.completed"
)

// IsOperationalEventType reports whether t is reserved for Herald's operational events.
func IsOperationalEventType(t string) bool {
	return strings.HasPrefix(t, OperationalEventTypePrefix)
}

func init() {
	SchemeBuilder.Register(&WebhookEventType{}, &WebhookEventTypeList{})
}
