package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeOptions are the kubectl-style connection flags of the user-facing commands, read
// the way kubectl reads them: --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else
// the in-cluster ServiceAccount, so a command behaves the same on a laptop and in a Pod.
type kubeOptions struct {
	kubeconfig string
	context    string
	namespace  string
}

func (o *kubeOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config, then the in-cluster ServiceAccount)")
	fs.StringVar(&o.context, "context", "", "kubeconfig context to use (default the current context)")
	fs.StringVarP(&o.namespace, "namespace", "n", "", `namespace (default the kubeconfig context's, else "default")`)
}

// explicit reports whether the user pointed at a kubeconfig or context, in which case a
// broken one is an error rather than something to fall back from.
func (o *kubeOptions) explicit() bool { return o.kubeconfig != "" || o.context != "" }

func (o *kubeOptions) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.context}
	overrides.Context.Namespace = o.namespace
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// Namespace returns -n, else the namespace of the kubeconfig context, else "default".
// Without any kubeconfig it is "default", as with kubectl.
func (o *kubeOptions) Namespace() (string, error) {
	if o.namespace != "" {
		return o.namespace, nil
	}
	ns, _, err := o.clientConfig().Namespace()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) && !o.explicit() {
			return "default", nil
		}
		return "", o.describe(err)
	}
	if ns == "" {
		ns = "default"
	}
	return ns, nil
}

// RESTConfig returns the configuration of the selected cluster and user.
func (o *kubeOptions) RESTConfig() (*rest.Config, error) {
	cfg, err := o.clientConfig().ClientConfig()
	if err != nil {
		return nil, o.describe(err)
	}
	return cfg, nil
}

// errNoKubeconfig means no kubeconfig was found and the command is not in a Pod.
var errNoKubeconfig = errors.New("no kubeconfig found")

func (o *kubeOptions) describe(err error) error {
	if clientcmd.IsEmptyConfig(err) {
		return fmt.Errorf("%w: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config", errNoKubeconfig)
	}
	return fmt.Errorf("loading kubeconfig: %w", err)
}
