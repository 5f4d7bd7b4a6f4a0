package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/herald-dev/herald/pkg/wire"
)

// heraldTokenLifetime is how long a token the CLI mints for the dispatcher lives: the
// shortest TokenRequest allows, and far longer than one command takes.
const heraldTokenLifetime = 600

// credential is the bearer token the CLI sends to the dispatcher and where it came from.
type credential struct {
	token string
	// minted is set when the CLI minted the token from the kubeconfig's ServiceAccount.
	minted bool
}

// heraldCredential chooses what the CLI sends to the dispatcher: --token (flag), else
// $HERALD_TOKEN, as given; else a short-lived token bound to Herald's audience that the
// kubeconfig's ServiceAccount mints for itself (TokenRequest). The kubeconfig's own
// credential is never sent: it is good against the API server itself, and the
// dispatcher would refuse it anyway (it requires Herald's audience). noKubeconfig is
// the error for "no kubeconfig at all"; the other failures say what to do.
func heraldCredential(ctx context.Context, kube *kubeOptions, flag string) (credential, error) {
	token := flag
	if token == "" {
		token = os.Getenv(envHeraldToken)
	}
	if token = strings.TrimSpace(token); token != "" {
		return credential{token: token}, nil
	}
	cfg, err := kube.RESTConfig()
	if err != nil {
		return credential{}, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return credential{}, fmt.Errorf("using the kubeconfig: %w", err)
	}
	// Who the kubeconfig's user is, as the API server sees it: a static token, a token
	// file, an exec plugin and a client certificate all answer the same way.
	ssr, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return credential{}, fmt.Errorf("asking the API server at %s who the kubeconfig's user is (SelfSubjectReview): %w", cfg.Host, err)
	}
	user := ssr.Status.UserInfo.Username
	ns, name, ok := serviceAccountOf(user)
	if !ok {
		return credential{}, &notServiceAccountError{user: user}
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{wire.Audience}, ExpirationSeconds: ptr.To[int64](heraldTokenLifetime)},
	}, metav1.CreateOptions{})
	if err != nil {
		if apierrors.IsForbidden(err) {
			return credential{}, &selfTokenForbiddenError{namespace: ns, name: name}
		}
		return credential{}, fmt.Errorf("minting a token for Herald's audience for ServiceAccount %s/%s (TokenRequest): %w", ns, name, err)
	}
	return credential{token: tr.Status.Token, minted: true}, nil
}

// serviceAccountOf parses "system:serviceaccount:NS:NAME".
func serviceAccountOf(user string) (ns, name string, ok bool) {
	rest, found := strings.CutPrefix(user, "system:serviceaccount:")
	if !found {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	return ns, name, ok && ns != "" && name != ""
}

// notServiceAccountError: Kubernetes mints audience-bound tokens for ServiceAccounts
// only, so a person (OIDC, a client certificate) passes a ServiceAccount's token.
type notServiceAccountError struct{ user string }

func (e *notServiceAccountError) Error() string {
	return fmt.Sprintf("the kubeconfig's user %q is not a ServiceAccount: the CLI sends the dispatcher only short-lived tokens bound to Herald's audience (%s), which Kubernetes mints for ServiceAccounts, never the kubeconfig's own credential", e.user, wire.Audience)
}

// selfTokenForbiddenError: the ServiceAccount may not mint its own tokens.
type selfTokenForbiddenError struct{ namespace, name string }

func (e *selfTokenForbiddenError) Error() string {
	return fmt.Sprintf("ServiceAccount %s/%s may not mint a token of its own for Herald's audience (create on serviceaccounts/token, resourceNames [%s]); grant it, as a user who may create Roles in %s:\n%s",
		e.namespace, e.name, e.name, e.namespace, selfTokenGrantHint(e.namespace, e.name))
}

// selfTokenGrantHint is the Role and RoleBinding that let a ServiceAccount mint tokens
// of itself and of nobody else: what the CLI needs of the kubeconfig's ServiceAccount.
func selfTokenGrantHint(ns, name string) string {
	role := name + "-herald-token"
	return fmt.Sprintf("  kubectl create role %s -n %s --verb=create --resource=serviceaccounts/token --resource-name=%s\n  kubectl create rolebinding %s -n %s --role=%s --serviceaccount=%s:%s",
		role, ns, name, role, ns, role, ns, name)
}

// credentialError turns heraldCredential's failure into what a command prints: fix is
// what to pass instead, account the commands that make a ServiceAccount fit for it.
func credentialError(err error, fix, account string) error {
	var notSA *notServiceAccountError
	var forbidden *selfTokenForbiddenError
	switch {
	case errors.Is(err, errNoKubeconfig):
		return fmt.Errorf("no credentials for the dispatcher: %s; a ServiceAccount with that, as the cluster admin:\n%s", fix, account)
	case errors.As(err, &notSA):
		return fmt.Errorf("no credentials for the dispatcher: %w; instead %s, e.g. a ServiceAccount with that, as a user who may create RoleBindings:\n%s", err, fix, account)
	case errors.As(err, &forbidden):
		return fmt.Errorf("no credentials for the dispatcher: %w\nor %s", err, fix)
	default:
		return fmt.Errorf("no credentials for the dispatcher: %s, or fix the kubeconfig: %w", fix, err)
	}
}
