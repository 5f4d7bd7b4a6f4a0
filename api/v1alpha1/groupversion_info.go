// Package v1alpha1 holds the hooks.herald.dev/v1alpha1 API: WebhookEndpoint (where
// events go) and WebhookSubscription (which events go there).
//
// +kubebuilder:object:generate=true
// +groupName=hooks.herald.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every Herald resource.
	GroupVersion = schema.GroupVersion{Group: "hooks.herald.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Herald types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Herald types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
