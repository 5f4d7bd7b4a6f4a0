package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebhookSubscriptionSpec routes events of some types to one endpoint.
type WebhookSubscriptionSpec struct {
	// EndpointRef names the WebhookEndpoint in the same namespace.
	EndpointRef LocalObjectReference `json:"endpointRef"`

	// EventTypes are exact event types ("invoice.paid") or globs where '*' matches any run
	// of characters ("approval.*", "*").
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.all(t, t.matches('^[A-Za-z0-9._*-]+$'))",message="eventTypes entries may contain only letters, digits, '.', '_', '-' and '*' (for example invoice.paid or approval.*)"
	// +kubebuilder:validation:XValidation:rule="self.all(t, !t.startsWith('.') && !t.endsWith('.') && !t.contains('..') && !t.contains('**'))",message="eventTypes entries must not start or end with '.', contain an empty segment ('..') or '**' (write approval.* or *)"
	// +listType=set
	EventTypes []string `json:"eventTypes"`

	// Filter is an optional CEL expression over the event that must be true for it to be
	// delivered, e.g. "event.data.amount > 1000". Variables: event.id, event.type,
	// event.source, event.created_at and event.data.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Filter string `json:"filter,omitempty"`
}

// WebhookSubscriptionStatus is written by the manager (observedGeneration, Ready) and
// the dispatcher (FilterHealthy, filterErrors), each under its own field manager.
type WebhookSubscriptionStatus struct {
	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (endpoint found, patterns and filter valid) and, once the
	// filter has failed on an event, FilterHealthy (the dispatcher's).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// FilterErrors counts the events on which spec.filter failed to evaluate (a field
	// missing from the event's data, a type mismatch); those events were not routed
	// through this subscription. It restarts at 0 when the spec changes.
	// +optional
	FilterErrors int64 `json:"filterErrors,omitempty"`
}

// Argo CD applies the CRDs before the resources of the same sync (wave -1) and, like
// Helm with helm.sh/resource-policy: keep, never prunes or deletes them: a CRD's deletion
// takes every WebhookSubscription with it.
// +kubebuilder:metadata:annotations="argocd.argoproj.io/sync-wave=-1"
// +kubebuilder:metadata:annotations="argocd.argoproj.io/sync-options=Prune=false,Delete=false"

// WebhookSubscription routes events to a WebhookEndpoint by type and an optional filter.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whs,categories=herald
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpointRef.name`
// +kubebuilder:printcolumn:name="Types",type=string,JSONPath=`.spec.eventTypes`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Filter-Errors",type=integer,JSONPath=`.status.filterErrors`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WebhookSubscription struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WebhookSubscriptionSpec   `json:"spec"`
	Status WebhookSubscriptionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// WebhookSubscriptionList is a list of WebhookSubscriptions.
type WebhookSubscriptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebhookSubscription `json:"items"`
}

func init() {
	SchemeBuilder.Register(&WebhookSubscription{}, &WebhookSubscriptionList{})
}
