package cli

import (
	"fmt"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/herald-dev/herald/dispatcher/auth"
)

// authOptions configure who may publish events.
type authOptions struct {
	audiences []string
	apiKeys   bool
}

func (a *authOptions) bind(fs *pflag.FlagSet) {
	fs.StringSliceVar(&a.audiences, "token-audiences", nil, "audiences a ServiceAccount token must carry (default: the API server's)")
	fs.BoolVar(&a.apiKeys, "api-keys", true, "accept API keys from Secrets labelled "+auth.APIKeyLabel+"=true (each grants its own namespace)")
}

// authorizer builds the ingest authorizer: ServiceAccount tokens checked with
// TokenReview and SubjectAccessReview, and API keys read from the namespaces served.
func (a *authOptions) authorizer(namespaces []string, log logr.Logger) func(manager.Manager) (auth.Authorizer, error) {
	return func(mgr manager.Manager) (auth.Authorizer, error) {
		cs, err := kubernetes.NewForConfig(mgr.GetConfig())
		if err != nil {
			return nil, fmt.Errorf("building a Kubernetes client: %w", err)
		}
		var keys *auth.APIKeys
		if a.apiKeys {
			if keys, err = auth.NewAPIKeys(cs, auth.APIKeyOptions{Namespaces: namespaces, Log: log}); err != nil {
				return nil, err
			}
			if err := mgr.Add(keys); err != nil {
				return nil, fmt.Errorf("watching API keys: %w", err)
			}
		}
		return auth.New(auth.Options{Client: cs, Audiences: a.audiences, APIKeys: keys, Log: log})
	}
}
