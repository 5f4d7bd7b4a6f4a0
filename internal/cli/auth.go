package cli

import (
	"errors"

	"github.com/spf13/pflag"
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
	fs.BoolVar(&a.apiKeys, "api-keys", true, "accept API keys from Secrets labelled hooks.herald.dev/api-key=true (each grants its own namespace)")
}

func (a *authOptions) build(mgr manager.Manager) (auth.Authorizer, error) {
	return nil, errors.New("ingest authentication is not built yet")
}
