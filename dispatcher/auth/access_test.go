package auth_test

import (
	"context"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/herald-dev/herald/dispatcher/auth"
)

// TestAccess_AsksForTheSubresourceOfTheNamedObject: the second question about an
// authenticated caller reaches RBAC with its subresource and object name, so a grant of
// get on webhookendpoints does not read responses, a grant for one endpoint does not
// read another's, and an answer is asked once while it is cached.
func TestAccess_AsksForTheSubresourceOfTheNamedObject(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "access")
	for _, who := range []struct {
		name string
		rule rbacv1.PolicyRule
	}{
		{"auditor", rbacv1.PolicyRule{APIGroups: []string{auth.Group}, Resources: []string{"webhookendpoints/responses"}, Verbs: []string{"get"}, ResourceNames: []string{"billing"}}},
		{"viewer", rbacv1.PolicyRule{APIGroups: []string{auth.Group}, Resources: []string{"webhookendpoints"}, Verbs: []string{"get"}}},
	} {
		if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: who.name}, Rules: []rbacv1.PolicyRule{who.rule}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: who.name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: who.name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: who.name, Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cs, counted := countingClient(t, env.Config, 0)
	a := auth.NewAccess(auth.Options{Client: cs})
	responses := auth.Permission{Verb: "get", Resource: "webhookendpoints", Subresource: "responses"}
	identity := func(sa string) auth.Identity {
		return auth.Identity{Name: "system:serviceaccount:" + ns + ":" + sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	}
	for _, c := range []struct {
		who, endpoint string
		want          bool
	}{
		{"auditor", "billing", true},
		{"auditor", "payroll", false},
		{"viewer", "billing", false},
		{"auditor", "billing", true}, // cached
	} {
		got, err := a.Allowed(ctx, identity(c.who), responses, ns, c.endpoint)
		if err != nil || got != c.want {
			t.Errorf("%s may %s of %s: %v (%v), want %v", c.who, responses, c.endpoint, got, err, c.want)
		}
	}
	if n := counted.accessReviews.Load(); n != 3 {
		t.Errorf("%d SubjectAccessReviews for 4 questions, 3 of them different: want the repeat answered from the cache", n)
	}

	// An API server that cannot be asked is an error, not a refusal.
	down := rest.CopyConfig(env.Config)
	down.Host = "https://127.0.0.1:1"
	cs, _ = countingClient(t, down, 0)
	if _, err := auth.NewAccess(auth.Options{Client: cs}).Allowed(ctx, identity("auditor"), responses, ns, "billing"); err == nil {
		t.Error("no error from an unreachable API server")
	}
}
