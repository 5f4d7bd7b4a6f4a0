package app

import (
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/herald-dev/herald/dispatcher/auth"
)

// AuthOptions configure who may publish.
type AuthOptions struct {
	// Audiences a ServiceAccount token must carry; empty accepts the API server's.
	// herald dispatcher requires auth.Audience unless told otherwise.
	Audiences []string
	// AcceptAPIServerAudience accepts tokens for the API server's audiences as well
	// (see auth.Options).
	AcceptAPIServerAudience bool
	// APIKeys accepts keys from Secrets labelled hooks.herald.dev/api-key=true.
	APIKeys bool
	// Namespaces to read API keys from; empty is all.
	Namespaces []string
	Log        logr.Logger
}

// ClusterAuthorizer builds the ingest authorizer: ServiceAccount tokens checked with
// TokenReview and SubjectAccessReview, and API keys watched in the namespaces served.
func ClusterAuthorizer(o AuthOptions) func(manager.Manager) (auth.Authorizer, error) {
	return func(mgr manager.Manager) (auth.Authorizer, error) {
		cs, err := kubernetes.NewForConfig(mgr.GetConfig())
		if err != nil {
			return nil, fmt.Errorf("building a Kubernetes client: %w", err)
		}
		var keys *auth.APIKeys
		if o.APIKeys {
			if keys, err = auth.NewAPIKeys(cs, auth.APIKeyOptions{Namespaces: o.Namespaces, Log: o.Log}); err != nil {
				return nil, err
			}
			if err := mgr.Add(keys); err != nil {
				return nil, fmt.Errorf("watching API keys: %w", err)
			}
		}
		return auth.New(auth.Options{Client: cs, Audiences: o.Audiences, AcceptAPIServerAudience: o.AcceptAPIServerAudience, APIKeys: keys, Log: o.Log})
	}
}

// ClusterAdminAuthorizers builds the endpoint API's authorizers: tokens only (API keys
// are for producers), with get (read) or update (write) on webhookendpoints.
func ClusterAdminAuthorizers(o AuthOptions) func(manager.Manager) (read, write auth.Authorizer, err error) {
	return func(mgr manager.Manager) (auth.Authorizer, auth.Authorizer, error) {
		cs, err := kubernetes.NewForConfig(mgr.GetConfig())
		if err != nil {
			return nil, nil, fmt.Errorf("building a Kubernetes client: %w", err)
		}
		read, err := auth.New(auth.Options{Client: cs, Audiences: o.Audiences, AcceptAPIServerAudience: o.AcceptAPIServerAudience, Verb: "get", Resource: "webhookendpoints", Log: o.Log})
		if err != nil {
			return nil, nil, err
		}
		write, err := auth.New(auth.Options{Client: cs, Audiences: o.Audiences, AcceptAPIServerAudience: o.AcceptAPIServerAudience, Verb: "update", Resource: "webhookendpoints", Log: o.Log})
		return read, write, err
	}
}
