package cli

import (
	"github.com/spf13/pflag"

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
