package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/herald-dev/herald/pkg/wire"
)

// identity is a ServiceAccount of the demo namespace bound to one of the chart's
// ClusterRoles, with a kubeconfig of its own: what a producer or an operator has on a
// cluster. The kubeconfig's token is for the API server; for the dispatcher the CLI
// mints a short-lived token for Herald's audience from it, which the ServiceAccount may
// do for itself and nobody else (a Role on serviceaccounts/token with resourceNames).
type identity struct {
	role        string // "producer" or "operator", in file names and hints
	account     string // the ServiceAccount
	clusterRole string // the chart's ClusterRole it is bound to
	tokenFile   string // a token for Herald's audience, for HERALD_TOKEN and curl
	kubeconfig  string
}

const (
	producerName = "herald-demo-producer"
	operatorName = "herald-demo-operator"
	// The ClusterRoles as the chart names them for a release called herald
	// (charts/herald/templates/publisher-rbac.yaml and operator-rbac.yaml).
	publisherRole = "herald-publisher"
	operatorRole  = "herald-operator"
)

// identities creates the demo namespace, a producer allowed to publish there and an
// operator allowed to look after its endpoints, each bound the way the CLI's hints and
// the chart's comments say (kubectl create rolebinding ... --clusterrole=...).
func (s *stack) identities(ctx context.Context) error {
	ns := s.cfg.namespace
	if err := s.apply(ctx, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	s.producer = &identity{role: "producer", account: producerName, clusterRole: publisherRole}
	s.operator = &identity{role: "operator", account: operatorName, clusterRole: operatorRole}
	for _, id := range []*identity{s.producer, s.operator} {
		if err := s.createIdentity(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func (s *stack) createIdentity(ctx context.Context, id *identity) error {
	ns := s.cfg.namespace
	// What the CLI's advice grants (cli: selfTokenGrantHint), under the same names.
	selfToken := id.account + "-herald-token"
	objs := []client.Object{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: metav1.ObjectMeta{Name: id.account, Namespace: ns}},
		&rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: id.account + "-" + id.clusterRole, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: id.clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: id.account, Namespace: ns}}},
		&rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: metav1.ObjectMeta{Name: selfToken, Namespace: ns},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"},
				Verbs: []string{"create"}, ResourceNames: []string{id.account}}}},
		&rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: selfToken, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: selfToken},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: id.account, Namespace: ns}}},
	}
	for _, o := range objs {
		if err := s.apply(ctx, o); err != nil {
			return fmt.Errorf("creating the %s's %T: %w", id.role, o, err)
		}
	}
	// Fresh tokens on every run, as `kubectl create token` would mint; tokens of earlier
	// runs stay valid until they expire (keepServiceAccountIssuer). The kubeconfig's is
	// for the API server, the file's for Herald (--audience hooks.herald.dev).
	mint := func(audiences ...string) (string, error) {
		tr, err := s.clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, id.account, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: ptr.To[int64](24 * 3600)},
		}, metav1.CreateOptions{})
		if err != nil {
			return "", fmt.Errorf("minting a token for ServiceAccount %s (TokenRequest): %w", id.account, err)
		}
		return tr.Status.Token, nil
	}
	kubeToken, err := mint()
	if err != nil {
		return err
	}
	heraldToken, err := mint(wire.Audience)
	if err != nil {
		return err
	}
	id.tokenFile = filepath.Join(s.cfg.state, id.role+"-token")
	if err := os.WriteFile(id.tokenFile, []byte(heraldToken), 0o600); err != nil {
		return fmt.Errorf("writing the %s's token: %w", id.role, err)
	}
	id.kubeconfig = filepath.Join(s.cfg.state, "kubeconfig-"+id.role)
	if err := s.writeTokenKubeconfig(id.kubeconfig, id.account, kubeToken); err != nil {
		return err
	}
	s.con.Stackf("ServiceAccount %s bound to ClusterRole %s in %s, and to Role %s (mint its own tokens for Herald); kubeconfig %s, a token for Herald (24h) in %s",
		id.account, id.clusterRole, ns, selfToken, s.rel(id.kubeconfig), s.rel(id.tokenFile))
	return nil
}

// writeTokenKubeconfig writes a kubeconfig for the local API server whose user is the
// given token, with the demo namespace as the context's namespace.
func (s *stack) writeTokenKubeconfig(path, user, token string) error {
	admin, err := clientcmd.LoadFromFile(s.kubeconfig)
	if err != nil {
		return fmt.Errorf("reading %s: %w", s.kubeconfig, err)
	}
	const name = "herald-local"
	out := clientcmdapi.NewConfig()
	out.Clusters[name] = admin.Clusters[name]
	out.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user, Namespace: s.cfg.namespace}
	out.CurrentContext = name
	if err := clientcmd.WriteToFile(*out, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}
