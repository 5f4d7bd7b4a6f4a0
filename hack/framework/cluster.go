package framework

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/herald-dev/herald/internal/scheme"
	"github.com/herald-dev/herald/internal/testenv"
)

// ControlPlane is a running etcd and kube-apiserver (envtest) and the cluster admin's
// ways in: a kubeconfig file for the tools, a client straight to the API server for
// the suite's own reads.
type ControlPlane struct {
	Env *envtest.Environment
	// Assets is the folder of kube-apiserver, etcd and kubectl.
	Assets string
	// Kubeconfig is the cluster admin's (system:masters).
	Kubeconfig string
	Config     *rest.Config
	// Client reads and writes with Herald's types registered; it has no cache, so a
	// read sees what is stored.
	Client    client.Client
	Clientset kubernetes.Interface
}

// ControlPlaneInput configures StartControlPlane.
type ControlPlaneInput struct {
	// Dir receives the admin kubeconfig.
	Dir string
	// Admin names the admin user (default "admin").
	Admin string
	// APIServerFlags are set on kube-apiserver beside envtest's own (name without
	// dashes → value).
	APIServerFlags map[string]string
}

// StartControlPlane starts etcd and kube-apiserver and stops them when the test ends.
// The binaries come from KUBEBUILDER_ASSETS or hack/envtest-assets.sh.
func StartControlPlane(t testing.TB, in ControlPlaneInput) *ControlPlane {
	t.Helper()
	assets, err := testenv.Assets()
	if err != nil {
		t.Fatal(err)
	}
	// envtest logs through controller-runtime; without a logger it warns with a stack.
	ctrllog.SetLogger(logr.Discard())
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	if len(in.APIServerFlags) > 0 {
		args := env.ControlPlane.GetAPIServer().Configure()
		for k, v := range in.APIServerFlags {
			args.Set(k, v)
		}
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("starting etcd and kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stopping envtest: %v", err)
		}
	})
	name := in.Admin
	if name == "" {
		name = "admin"
	}
	admin, err := env.AddUser(envtest.User{Name: name, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	cp := &ControlPlane{Env: env, Assets: assets, Kubeconfig: filepath.Join(in.Dir, "admin.kubeconfig"), Config: rest.CopyConfig(admin.Config())}
	if err := os.WriteFile(cp.Kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	if cp.Client, err = client.New(cp.Config, client.Options{Scheme: scheme.New()}); err != nil {
		t.Fatal(err)
	}
	if cp.Clientset, err = kubernetes.NewForConfig(cp.Config); err != nil {
		t.Fatal(err)
	}
	return cp
}

// Kubectl is the path of the kubectl built with the control plane.
func (cp *ControlPlane) Kubectl() string { return filepath.Join(cp.Assets, "kubectl") }

// KubeconfigForToken writes a kubeconfig for the admin's cluster whose user is a bearer
// token, the way a Pod's ServiceAccount or a person with a token reaches the API
// server; it returns its path (dir/<name>.kubeconfig).
func (cp *ControlPlane) KubeconfigForToken(t testing.TB, dir, name, token string) string {
	t.Helper()
	admin, err := clientcmd.LoadFromFile(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cur := admin.Contexts[admin.CurrentContext]
	out := clientcmdapi.NewConfig()
	out.Clusters["envtest"] = admin.Clusters[cur.Cluster]
	out.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	out.Contexts[name] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: name}
	out.CurrentContext = name
	path := filepath.Join(dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*out, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TokenInput asks for a ServiceAccount token.
type TokenInput struct {
	Namespace, ServiceAccount string
	// Audiences the token is minted for; empty means the API server's own (what
	// `kubectl create token` gives).
	Audiences []string
	// Duration of the token (default 2h).
	Duration time.Duration
}

// Token mints a ServiceAccount token with the TokenRequest API, as `kubectl create
// token` does.
func (cp *ControlPlane) Token(t testing.TB, in TokenInput) string {
	t.Helper()
	d := in.Duration
	if d == 0 {
		d = 2 * time.Hour
	}
	secs := int64(d / time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := cp.Clientset.CoreV1().ServiceAccounts(in.Namespace).CreateToken(ctx, in.ServiceAccount, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: in.Audiences, ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount %s/%s: %v", in.Namespace, in.ServiceAccount, err)
	}
	return tr.Status.Token
}

// TokenAudiences reads the aud claim of a JWT without verifying it: which audiences a
// token was minted for, as any holder of it can see.
func TokenAudiences(token string) ([]string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT (%d parts)", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	var claims struct {
		Aud any `json:"aud"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, fmt.Errorf("JWT claims: %w", err)
	}
	switch a := claims.Aud.(type) {
	case string:
		return []string{a}, nil
	case []any:
		out := make([]string, 0, len(a))
		for _, v := range a {
			s, _ := v.(string)
			out = append(out, s)
		}
		return out, nil
	}
	return nil, nil
}

// AggregateClusterRoles does once what kube-controller-manager's clusterrole-aggregation
// controller does all the time, and envtest does not run: every ClusterRole with an
// aggregationRule (the built-in admin, edit and view among them) gets the rules of the
// ClusterRoles its selectors match. Call it after applying roles labelled
// rbac.authorization.k8s.io/aggregate-to-*, such as the chart's.
func (cp *ControlPlane) AggregateClusterRoles(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	roles := cp.Clientset.RbacV1().ClusterRoles()
	all, err := roles.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing ClusterRoles: %v", err)
	}
	for i := range all.Items {
		agg := &all.Items[i]
		if agg.AggregationRule == nil {
			continue
		}
		var rules []rbacv1.PolicyRule
		for _, sel := range agg.AggregationRule.ClusterRoleSelectors {
			s, err := metav1.LabelSelectorAsSelector(&sel)
			if err != nil {
				t.Fatalf("ClusterRole %s: %v", agg.Name, err)
			}
			for j := range all.Items {
				src := &all.Items[j]
				if src.Name != agg.Name && s.Matches(labels.Set(src.Labels)) {
					rules = append(rules, src.Rules...)
				}
			}
		}
		agg.Rules = rules
		if _, err := roles.Update(ctx, agg, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("aggregating ClusterRole %s: %v", agg.Name, err)
		}
	}
}
