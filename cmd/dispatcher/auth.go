package dispatcher

import (
	"github.com/spf13/pflag"

	"github.com/herald-dev/herald/dispatcher/auth"
)

// authOptions configure who may publish events.
type authOptions struct {
	audiences               []string
	acceptAPIServerAudience bool
	apiKeys                 bool
}

func (a *authOptions) bind(fs *pflag.FlagSet) {
	fs.StringSliceVar(&a.audiences, "token-audiences", []string{auth.Audience}, "audiences a ServiceAccount token must carry; empty accepts the API server's own (a token that could be used against the API server itself)")
	fs.BoolVar(&a.acceptAPIServerAudience, "accept-api-server-audience", false, "also accept tokens for the API server's own audiences (pods' default tokens, kubeconfig tokens) while producers move to tokens for --token-audiences")
	fs.BoolVar(&a.apiKeys, "api-keys", true, "accept API keys from Secrets labelled "+auth.APIKeyLabel+"=true (each grants its own namespace)")
}
