package charts_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/apirefs"
)

// The chart templates of what users of Herald are given: their ClusterRoles, the
// admission policy, and the manager's and dispatcher's own RBAC.
var userTemplates = []string{
	"templates/publisher-rbac.yaml", "templates/operator-rbac.yaml", "templates/editor-rbac.yaml",
	"templates/response-reader-rbac.yaml", "templates/secret-reference-policy.yaml", "templates/rbac.yaml",
}

// The people and workloads of the table, each holding exactly what the chart gives
// them (bound in policyNS), impersonated against the real API server.
const (
	policyNS = "tenant-a"
	// A producer: herald-publisher.
	publisher = "publisher"
	// A person who runs endpoints: herald-operator.
	operator = "operator"
	// A namespace editor: the built-in edit role, with what the chart aggregates into it
	// (herald-editor, herald-operator, herald-publisher, herald-response-reader).
	editor = "editor"
	// An author who may write endpoints (herald-editor) but read one Secret only
	// (team-a-token): a Role granting get on that name.
	author = "author"
	// A GitOps controller: Argo CD's application controller, cluster-admin by default.
	gitops = "system:serviceaccount:argocd:argocd-application-controller"
	// Herald's own ServiceAccounts, as the chart binds them.
	dispatcher = "system:serviceaccount:" + releaseNamespace + ":herald-dispatcher"
	manager    = "system:serviceaccount:" + releaseNamespace + ":herald-manager"
)

var (
	policyOnce sync.Once
	policyErr  error
)

// setUpPolicy applies the chart's user roles and policy as `helm install` renders them,
// the Secrets and bindings of the table, and waits until the API server enforces the
// policy.
func setUpPolicy(t *testing.T) {
	t.Helper()
	policyOnce.Do(func() { policyErr = setUpPolicyOnce(t) })
	if policyErr != nil {
		t.Fatal(policyErr)
	}
}

func setUpPolicyOnce(t *testing.T) error {
	ctx := context.Background()
	args := []string{"template", "herald", chartDir, "--namespace", releaseNamespace}
	for _, tmpl := range userTemplates {
		args = append(args, "--show-only", tmpl)
	}
	manifests, err := command(nil, helmBin, args...)
	if err != nil {
		return err
	}
	if _, err := command([]byte(manifests), kubectlBin, "apply", "--server-side", "--force-conflicts", "--field-manager=policy-test", "-f", "-"); err != nil {
		return err
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: policyNS}},
		secretNamed("team-a-token"), secretNamed("team-b-oauth"),
		binding(publisher, "ClusterRole", "herald-publisher"),
		binding(operator, "ClusterRole", "herald-operator"),
		binding(author, "ClusterRole", "herald-editor"),
		readerRole("team-a-token"), binding(author, "Role", "get-secret-team-a-token"),
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "argocd-application-controller"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: gitops}}},
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	edit, err := aggregated(ctx, "edit")
	if err != nil {
		return err
	}
	if err := k8s.Create(ctx, edit); err != nil {
		return err
	}
	if err := k8s.Create(ctx, binding(editor, "ClusterRole", edit.Name)); err != nil {
		return err
	}
	// An endpoint of team B, which the author may see but whose Secret they may not read.
	shared := endpointFor("shared", func(ep *heraldv1.WebhookEndpoint) {
		ep.Spec.SecretRef = &heraldv1.SecretKeySelector{Name: "team-b-oauth"}
		ep.Spec.Headers = []heraldv1.HeaderSpec{{Name: "X-Team-B", ValueFrom: &heraldv1.SecretKeySelector{Name: "team-b-oauth", Key: "token"}}}
	})
	if err := k8s.Create(ctx, shared); err != nil {
		return err
	}
	// The policy is loaded asynchronously: wait until it refuses what it must.
	probe := endpointFor("probe", func(ep *heraldv1.WebhookEndpoint) {
		ep.Spec.SecretRef = &heraldv1.SecretKeySelector{Name: "team-b-oauth"}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := as(t, author).Create(ctx, probe.DeepCopy(), client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), "herald-secret-references") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the policy did not refuse the author's endpoint within 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// aggregated returns the rules the built-in role would have on a cluster, as a new
// ClusterRole "<role>-aggregated": the union of the ClusterRoles its aggregationRule
// selects (the chart's by their aggregate-to labels), which kube-controller-manager's
// aggregation controller keeps up to date and envtest does not run.
func aggregated(ctx context.Context, role string) (*rbacv1.ClusterRole, error) {
	var builtin rbacv1.ClusterRole
	if err := k8s.Get(ctx, client.ObjectKey{Name: role}, &builtin); err != nil {
		return nil, err
	}
	if builtin.AggregationRule == nil {
		return nil, fmt.Errorf("ClusterRole %s aggregates nothing", role)
	}
	out := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role + "-aggregated"}}
	for _, sel := range builtin.AggregationRule.ClusterRoleSelectors {
		var roles rbacv1.ClusterRoleList
		if err := k8s.List(ctx, &roles, client.MatchingLabels(sel.MatchLabels)); err != nil {
			return nil, err
		}
		for _, r := range roles.Items {
			if r.Name != role {
				out.Rules = append(out.Rules, r.Rules...)
			}
		}
	}
	return out, nil
}

func secretNamed(name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: policyNS}, StringData: map[string]string{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "token": "t0ken"}}
}

func binding(user, kind, role string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role, Namespace: policyNS},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}
}

// readerRole grants get on the named Secrets, the way the policy's message advises.
func readerRole(names ...string) *rbacv1.Role {
	return &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "get-secret-" + names[0], Namespace: policyNS},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: names}}}
}

var (
	clientsMu sync.Mutex
	clients   = map[string]client.Client{}
)

// as returns a client impersonating user, with the groups the API server gives such a
// user (a ServiceAccount's too).
func as(t *testing.T, user string) client.Client {
	t.Helper()
	clientsMu.Lock()
	defer clientsMu.Unlock()
	if c, ok := clients[user]; ok {
		return c
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groupsOf(user)}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	clients[user] = c
	return c
}

// endpointFor is a valid endpoint of policyNS referencing nothing but what mutate adds
// (and, without a secretRef, its default signing Secret).
func endpointFor(name string, mutate ...func(*heraldv1.WebhookEndpoint)) *heraldv1.WebhookEndpoint {
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: policyNS},
		Spec: heraldv1.WebhookEndpointSpec{URL: "https://receiver.example.com/hooks"}}
	for _, m := range mutate {
		m(ep)
	}
	return ep
}

// outcome is what the API server answers: allowed, refused by RBAC, or refused by the
// admission policy.
type outcome string

const (
	allowed  outcome = "allowed"
	byRBAC   outcome = "refused (RBAC)"
	byPolicy outcome = "refused (policy)"
)

func outcomeOf(err error) (outcome, string) {
	switch {
	case err == nil:
		return allowed, ""
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy"):
		return byPolicy, err.Error()
	case apierrors.IsForbidden(err):
		return byRBAC, err.Error()
	}
	return outcome("error"), err.Error()
}

// action is one thing a user tries; do answers as the API server did.
type action func(ctx context.Context, t *testing.T, user string) error

// may asks the API server's authorizer, as the dispatcher's endpoint API does with a
// SubjectAccessReview.
func may(verb, resource, subresource string) action {
	return func(ctx context.Context, t *testing.T, user string) error {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: groupsOf(user),
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: policyNS, Verb: verb, Group: heraldv1.GroupVersion.Group,
				Resource: resource, Subresource: subresource, Name: "shared"},
		}}
		if err := k8s.Create(ctx, sar); err != nil {
			return err
		}
		if !sar.Status.Allowed {
			return apierrors.NewForbidden(heraldv1.GroupVersion.WithResource(resource).GroupResource(), "shared", errors.New(user+" may not "+verb))
		}
		return nil
	}
}

func patchMerge(obj client.Object, patch string) action {
	return func(ctx context.Context, t *testing.T, user string) error {
		return as(t, user).Patch(ctx, obj.DeepCopyObject().(client.Object), client.RawPatch(types.MergePatchType, []byte(patch)), client.DryRunAll)
	}
}

func create(obj client.Object) action {
	return func(ctx context.Context, t *testing.T, user string) error {
		return as(t, user).Create(ctx, obj.DeepCopyObject().(client.Object), client.DryRunAll)
	}
}

// notAsked marks a user a row does not ask about.
const notAsked outcome = "-"

// TestSecretReferencePolicy_WhoMayDoWhat is the README's "Who can do what", asked of the
// real API server for users holding exactly the chart's roles: every write is a server
// dry run, so RBAC and the admission policy both judge it and nothing changes.
func TestSecretReferencePolicy_WhoMayDoWhat(t *testing.T) {
	setUpPolicy(t)
	shared := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "shared", Namespace: policyNS}}
	withTeamA := endpointFor("team-a", func(ep *heraldv1.WebhookEndpoint) {
		ep.Spec.SecretRef = &heraldv1.SecretKeySelector{Name: "team-a-token"}
		ep.Spec.Headers = []heraldv1.HeaderSpec{{Name: "Authorization", ValueFrom: &heraldv1.SecretKeySelector{Name: "team-a-token", Key: "token"}}}
	})
	withDefaultSigning := endpointFor("fresh")
	withTeamBOAuth := endpointFor("team-b-oauth", func(ep *heraldv1.WebhookEndpoint) {
		ep.Spec.SecretRef = &heraldv1.SecretKeySelector{Name: "team-a-token"}
		ep.Spec.Auth = &heraldv1.AuthSpec{OAuth2: &heraldv1.OAuth2ClientCredentials{TokenURL: "https://auth.example.com/token",
			ClientID: ptr.To("herald"), ClientSecretRef: heraldv1.SecretKeySelector{Name: "team-b-oauth"}}}
	})
	users := []string{publisher, operator, editor, author, gitops, dispatcher, manager}
	people := map[string]outcome{dispatcher: notAsked, manager: notAsked}
	with := func(base map[string]outcome, kv ...any) map[string]outcome {
		out := map[string]outcome{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1].(outcome)
		}
		return out
	}
	rows := []struct {
		what string
		do   action
		want map[string]outcome // users left out: byRBAC
		// policySays is what a refusal by the policy must say.
		policySays string
	}{
		{"create an endpoint whose Secrets are team A's", create(withTeamA),
			with(people, editor, allowed, author, allowed, gitops, allowed), ""},
		{"create an endpoint with the default signing Secret (fresh-signing, generated later)", create(withDefaultSigning),
			with(people, editor, allowed, author, byPolicy, gitops, allowed),
			"author may not get Secret fresh-signing in namespace tenant-a, which spec.secretRef (unset: the default signing Secret) names"},
		{"create an endpoint sending team B's OAuth2 client secret", create(withTeamBOAuth),
			with(people, editor, allowed, author, byPolicy, gitops, allowed),
			"author may not get Secret team-b-oauth in namespace tenant-a, which spec.auth.oauth2.clientSecretRef names"},
		{"point team B's endpoint (which sends team-b-oauth) at another URL", patchMerge(shared, `{"spec":{"url":"https://attacker.example.com/"}}`),
			map[string]outcome{editor: allowed, author: byPolicy, gitops: allowed},
			"author may not get Secret team-b-oauth in namespace tenant-a, which spec.secretRef, spec.headers[X-Team-B].valueFrom names"},
		{"add a header from team-b-oauth to team B's endpoint", patchMerge(shared, `{"spec":{"headers":[{"name":"X-Team-B","valueFrom":{"name":"team-b-oauth","key":"token"}},{"name":"X-Copy","valueFrom":{"name":"team-b-oauth","key":"secret"}}]}}`),
			map[string]outcome{editor: allowed, author: byPolicy, gitops: allowed}, "spec.headers[X-Copy].valueFrom"},
		{"annotate team B's endpoint to re-enable it (metadata only)", patchMerge(shared, `{"metadata":{"annotations":{"hooks.herald.dev/reenable":"1"}}}`),
			map[string]outcome{editor: allowed, author: allowed, gitops: allowed}, ""},
		{"write team B's endpoint's status", func(ctx context.Context, t *testing.T, user string) error {
			return as(t, user).Status().Patch(ctx, shared.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"status":{"consecutiveFailures":1}}`)), client.DryRunAll)
		}, map[string]outcome{dispatcher: allowed, manager: allowed, gitops: allowed}, ""},
		{"read team B's Secret", func(ctx context.Context, t *testing.T, user string) error {
			return as(t, user).Get(ctx, client.ObjectKey{Namespace: policyNS, Name: "team-b-oauth"}, &corev1.Secret{})
		}, with(people, editor, allowed, gitops, allowed), ""},
		{"read endpoints (herald endpoint status)", func(ctx context.Context, t *testing.T, user string) error {
			return as(t, user).Get(ctx, client.ObjectKeyFromObject(shared), &heraldv1.WebhookEndpoint{})
		}, map[string]outcome{operator: allowed, editor: allowed, author: allowed, gitops: allowed, dispatcher: allowed, manager: allowed}, ""},
		// The endpoint API's permissions, as its SubjectAccessReviews ask them.
		{"endpoint API: list dead letters, read the attempt log (get)", may("get", "webhookendpoints", ""),
			map[string]outcome{operator: allowed, editor: allowed, author: allowed, gitops: allowed, dispatcher: allowed, manager: allowed}, ""},
		{"endpoint API: replay (replay)", may("replay", "webhookendpoints", ""),
			map[string]outcome{operator: allowed, editor: allowed, gitops: allowed}, ""},
		{"endpoint API: re-enable (enable)", may("enable", "webhookendpoints", ""),
			map[string]outcome{operator: allowed, editor: allowed, gitops: allowed}, ""},
		{"endpoint API: read response bodies (get webhookendpoints/responses)", may("get", "webhookendpoints", "responses"),
			map[string]outcome{editor: allowed, gitops: allowed}, ""},
		{"ingest API: publish events (create events)", may("create", "events", ""),
			map[string]outcome{publisher: allowed, editor: allowed, gitops: allowed}, ""},
	}

	ctx := context.Background()
	var b strings.Builder
	fmt.Fprintf(&b, "\n| | %s |\n|---|%s\n", strings.Join(users, " | "), strings.Repeat("---|", len(users)))
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s |", r.what)
		for _, u := range users {
			want := cmpOr(r.want[u], byRBAC)
			if want == notAsked {
				b.WriteString(" - |")
				continue
			}
			got, msg := outcomeOf(r.do(ctx, t, u))
			fmt.Fprintf(&b, " %s |", got)
			if got != want {
				t.Errorf("%s: %s: %s, want %s\n%s", u, r.what, got, want, msg)
				continue
			}
			if got == byPolicy && !strings.Contains(msg, r.policySays) {
				t.Errorf("%s: %s was refused by the policy saying\n  %s\nwant it to say %q", u, r.what, msg, r.policySays)
			}
			if got == byPolicy && !strings.Contains(msg, "kubectl create role get-secret-") {
				t.Errorf("the policy's refusal gives no fix: %s", msg)
			}
		}
		b.WriteString("\n")
	}
	t.Log(b.String())
}

func groupsOf(user string) []string {
	groups := []string{"system:authenticated"}
	if rest, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
		ns, _, _ := strings.Cut(rest, ":")
		groups = append(groups, "system:serviceaccounts", "system:serviceaccounts:"+ns)
	}
	return groups
}

func cmpOr(o, def outcome) outcome {
	if o == "" {
		return def
	}
	return o
}

// TestSecretReferencePolicy_CoversEveryReferenceFieldOfTheTypes sets each Secret
// reference the Go types have (found by reflection, internal/apirefs) to a Secret the
// author may not read, the others to one they may: the API server must refuse each,
// naming the field; with every reference readable it must accept. A reference field
// added to the types but not to the policy's CEL fails here.
func TestSecretReferencePolicy_CoversEveryReferenceFieldOfTheTypes(t *testing.T) {
	setUpPolicy(t)
	ctx := context.Background()
	full := func(forbidden string) *heraldv1.WebhookEndpoint {
		ep := endpointFor("every-reference")
		for _, p := range apirefs.Paths() {
			name := "team-a-token"
			if p == forbidden {
				name = "team-b-oauth"
			}
			if err := apirefs.Set(ep, p, name); err != nil {
				t.Fatal(err)
			}
		}
		// What the schema requires beside the references.
		for i := range ep.Spec.Headers {
			ep.Spec.Headers[i].Name = "X-Probe"
		}
		if o := ep.Spec.OAuth2(); o != nil {
			o.TokenURL = "https://auth.example.com/token"
		}
		if ep.Spec.Proxy != nil {
			ep.Spec.Proxy.URL = "http://proxy.example.com:3128"
		}
		return ep
	}
	if err := as(t, author).Create(ctx, full(""), client.DryRunAll); err != nil {
		t.Fatalf("every reference names a Secret the author may get, yet: %v", err)
	}
	for _, path := range apirefs.Paths() {
		err := as(t, author).Create(ctx, full(path), client.DryRunAll)
		got, msg := outcomeOf(err)
		if got != byPolicy {
			t.Errorf("%s names a Secret the author may not get: %s (%v), want refused by the policy", path, got, err)
			continue
		}
		if !strings.Contains(apirefs.Normalize(msg), "Secret team-b-oauth in namespace tenant-a, which "+path+" names") {
			t.Errorf("%s refused saying %s; want it to name the field", path, msg)
		}
	}
}

// TestSecretReferencePolicy_ManySecretsStayWithinTheCELBudget: an authorization check
// costs 350,000 of a binding's budget of 10,000,000, so an author who may get only named
// Secrets can reference at most 16 different ones (told so when over), while an editor,
// who may get every Secret of the namespace, is checked once whatever the count; the
// largest endpoint the CRD admits is judged without the budget running out. And the
// policy's bound on references is what the CRD allows.
func TestSecretReferencePolicy_ManySecretsStayWithinTheCELBudget(t *testing.T) {
	setUpPolicy(t)
	ctx := context.Background()
	names := make([]string, 32)
	for i := range names {
		names[i] = fmt.Sprintf("many-%02d", i)
		if err := k8s.Create(ctx, secretNamed(names[i])); err != nil {
			t.Fatal(err)
		}
	}
	many := func(n int) *heraldv1.WebhookEndpoint {
		return endpointFor("many", func(ep *heraldv1.WebhookEndpoint) {
			ep.Spec.SecretRef = &heraldv1.SecretKeySelector{Name: names[0]}
			for i := range n {
				ep.Spec.Headers = append(ep.Spec.Headers, heraldv1.HeaderSpec{Name: fmt.Sprintf("X-H%02d", i), ValueFrom: &heraldv1.SecretKeySelector{Name: names[i]}})
			}
		})
	}
	const user = "author-of-16"
	role := readerRole(names[:16]...)
	if err := k8s.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{binding(user, "ClusterRole", "herald-editor"), binding(user, "Role", role.Name)} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := as(t, user).Create(ctx, many(16), client.DryRunAll); err != nil {
		t.Errorf("16 Secrets, each readable by name: %v", err)
	}
	err := as(t, user).Create(ctx, many(17), client.DryRunAll)
	if got, msg := outcomeOf(err); got != byPolicy || !strings.Contains(msg, "references 17 different Secrets") || !strings.Contains(msg, "at most 16") {
		t.Errorf("17 Secrets: %s %s, want refused saying at most 16", got, msg)
	}
	if err := as(t, editor).Create(ctx, many(32), client.DryRunAll); err != nil {
		t.Errorf("the largest endpoint, as an editor: %v", err)
	}
	if got, msg := outcomeOf(as(t, author).Create(ctx, many(32), client.DryRunAll)); got != byPolicy || !strings.Contains(msg, "references 32 different Secrets") {
		t.Errorf("the largest endpoint, as the author: %s %s, want refused for the count", got, msg)
	}

	// The policy's literal bound: one reference per single field, maxItems per list.
	crd := readObjects(t, "config/crd/bases/hooks.herald.dev_webhookendpoints.yaml")[0]
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	schema, _, _ := unstructured.NestedMap(versions[0].(map[string]any), "schema", "openAPIV3Schema")
	bound := 0
	for _, p := range apirefs.Paths() {
		list, _, isList := strings.Cut(p, "[]")
		if !isList {
			bound++
			continue
		}
		node := schema
		for _, part := range strings.Split(list, ".") {
			node, _, _ = unstructured.NestedMap(node, "properties", part)
		}
		maxItems, ok := node["maxItems"].(float64)
		if !ok {
			t.Fatalf("%s has no maxItems in the CRD (%T): the policy cannot bound its references", list, node["maxItems"])
		}
		bound += int(maxItems)
	}
	policy := mustCommand(t, nil, helmBin, "template", "herald", chartDir, "--show-only", "templates/secret-reference-policy.yaml")
	m := regexp.MustCompile(`size\(variables\.names\) <= (\d+)`).FindStringSubmatch(policy)
	if m == nil {
		t.Fatal("the policy has no bound on the number of references")
	}
	if n, _ := strconv.Atoi(m[1]); n != bound {
		t.Errorf("the policy checks up to %d references, the CRD allows %d: change $maxRefs in the template", n, bound)
	}
}

// TestSecretReferencePolicy_ConfigEqualsChart: config/policy (kustomize) is the chart's
// template as rendered for a release named herald.
func TestSecretReferencePolicy_ConfigEqualsChart(t *testing.T) {
	chart := objects(t, mustCommand(t, nil, helmBin, "template", "herald", chartDir, "--show-only", "templates/secret-reference-policy.yaml"))
	config := readObjects(t, "config/policy/secret_reference_policy.yaml")
	if len(chart) != 2 || len(config) != len(chart) {
		t.Fatalf("chart renders %d objects, config/policy holds %d; want the policy and its binding in each", len(chart), len(config))
	}
	for i := range chart {
		if chart[i].GetKind() != config[i].GetKind() || chart[i].GetName() != config[i].GetName() || !reflect.DeepEqual(chart[i].Object["spec"], config[i].Object["spec"]) {
			t.Errorf("config/policy/secret_reference_policy.yaml differs from the chart's %s %s: regenerate it as its header says", chart[i].GetKind(), chart[i].GetName())
		}
	}
}
