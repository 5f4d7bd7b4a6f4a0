package app

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/herald-dev/herald/dispatcher/admin"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
)

// AuthOptions configure who may publish and use the endpoint API.
type AuthOptions struct {
	// Auth is the dispatcher configuration's: the token audiences (empty accepts the
	// API server's), whether the API server's audiences are accepted as well, whether
	// API keys are.
	config.Auth
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
		return auth.New(auth.Options{Client: cs, Audiences: o.TokenAudiences, AcceptAPIServerAudience: o.AcceptAPIServerAudience, APIKeys: keys, Log: o.Log})
	}
}

// ClusterAdminAuthorizers builds the endpoint API's access: tokens only (API keys are
// for producers), each action with its own permission on webhookendpoints (get, the
// custom verbs replay and enable, get on webhookendpoints/responses).
func ClusterAdminAuthorizers(o AuthOptions) func(manager.Manager) (admin.Access, error) {
	return func(mgr manager.Manager) (admin.Access, error) {
		cs, err := kubernetes.NewForConfig(mgr.GetConfig())
		if err != nil {
			return admin.Access{}, fmt.Errorf("building a Kubernetes client: %w", err)
		}
		var a admin.Access
		for _, az := range []struct {
			to *auth.Authorizer
			p  auth.Permission
		}{{&a.Read, admin.PermissionRead}, {&a.Replay, admin.PermissionReplay}, {&a.Enable, admin.PermissionEnable}} {
			if *az.to, err = auth.New(auth.Options{Client: cs, Audiences: o.TokenAudiences, AcceptAPIServerAudience: o.AcceptAPIServerAudience, Verb: az.p.Verb, Resource: az.p.Resource, Log: o.Log}); err != nil {
				return admin.Access{}, err
			}
		}
		responses := auth.NewAccess(auth.Options{Client: cs, Log: o.Log})
		a.Responses = func(ctx context.Context, id auth.Identity, namespace, endpoint string) (bool, error) {
			return responses.Allowed(ctx, id, admin.PermissionResponses, namespace, endpoint)
		}
		return a, nil
	}
}
