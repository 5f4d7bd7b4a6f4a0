package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/herald-dev/herald/pkg/wire"
)

// The hints below are commands a person pastes to fix what went wrong. Each must work on
// a cluster installed with the chart (release herald in herald-system, so the
// ClusterRoles are herald-publisher and herald-operator and the dispatcher's Service is
// herald-dispatcher) and on `make run`'s local stack, which applies the same ClusterRoles
// from the chart. hack/firsthour runs the local stack and checks them.

// The chart's ClusterRoles for Herald's users (charts/herald/templates/*-rbac.yaml, named
// <release>-publisher, -operator, -editor and -response-reader).
const (
	publisherClusterRole      = "herald-publisher"
	operatorClusterRole       = "herald-operator"
	editorClusterRole         = "herald-editor"
	responseReaderClusterRole = "herald-response-reader"
)

// refusalCacheDelay is how long the dispatcher answers a token it refused with the same
// refusal (dispatcher/auth Options.DenyTTL, 10s by default; TestRefusalCacheDelay_IsTheDispatchers
// checks the figure against dispatcher/auth): a RoleBinding made right after a 403 takes
// that long to be seen.
const refusalCacheDelay = 10 * time.Second

// portForwardHint is how a person outside the cluster reaches the dispatcher the
// manager deploys (controllers/workload: Service herald-dispatcher, port 8080).
const portForwardHint = "kubectl port-forward -n herald-system svc/herald-dispatcher 8080"

// unreachableHint says how to point the CLI at a dispatcher, in a cluster and locally.
func unreachableHint() string {
	return fmt.Sprintf("on a cluster, run %s in another terminal and export %s=http://127.0.0.1:8080; with make run, export the %s it printed",
		portForwardHint, envHeraldURL, envHeraldURL)
}

// refusedSubject finds who was refused in a dispatcher's 403 message:
// `"system:serviceaccount:shop:orders" may not create events.hooks.herald.dev in namespace "shop"`
// (ingest) or `forbidden: system:serviceaccount:shop:ops may not get webhookendpoints... `
// (endpoint API).
// An identity without a name ("this identity may not ...") matches nothing.
var refusedSubject = regexp.MustCompile(`(?:^|forbidden: |")([^"\s]+)"? may not \S+ \S+ in namespace`)

// kubeForbiddenUser finds the user in an API server's Forbidden message:
// `... is forbidden: User "alice" cannot patch resource ...`.
var kubeForbiddenUser = regexp.MustCompile(`User "([^"]+)" cannot`)

// grant describes who to bind: the subject flag of kubectl create rolebinding and a
// binding name unique to the subject, so the command does not collide with a binding
// made for someone else. apiKey is set for an API key, which RBAC does not govern.
type grant struct {
	flag, bindingPrefix string
	apiKey              string // the key's namespace/secret
	known               bool
}

func grantFor(user string) grant {
	switch {
	case user == "":
		return grant{flag: "--serviceaccount=<namespace>:<name>", bindingPrefix: "<name>-"}
	case strings.HasPrefix(user, "apikey:"):
		return grant{apiKey: strings.TrimPrefix(user, "apikey:"), known: true}
	case strings.HasPrefix(user, "system:serviceaccount:"):
		parts := strings.Split(strings.TrimPrefix(user, "system:serviceaccount:"), ":")
		if len(parts) == 2 {
			return grant{flag: "--serviceaccount=" + parts[0] + ":" + parts[1], bindingPrefix: parts[1] + "-", known: true}
		}
	}
	return grant{flag: "--user=" + user, bindingPrefix: bindingName(user) + "-", known: true}
}

// bindingName turns a user name into something valid in an object name.
func bindingName(user string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(user) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	return strings.Trim(b.String(), "-.")
}

// bindHint is the command that grants user the chart's clusterRole in ns, as someone who
// may create RoleBindings there (a namespace admin, the cluster admin; on make run's
// stack the admin kubeconfig).
func bindHint(user, clusterRole, ns string) string {
	g := grantFor(user)
	return fmt.Sprintf("kubectl create rolebinding %s%s -n %s --clusterrole=%s %s", g.bindingPrefix, clusterRole, ns, clusterRole, g.flag)
}

// newAccountHint creates a ServiceAccount bound to clusterRole in ns and exports its
// token: the fix when there is no usable credential at all.
func newAccountHint(clusterRole, ns string) string {
	return fmt.Sprintf("  kubectl create serviceaccount %s -n %s\n  kubectl create rolebinding %s -n %s --clusterrole=%s --serviceaccount=%s:%s\n  export %s=$(kubectl create token %s -n %s --audience %s)",
		clusterRole, ns, clusterRole, ns, clusterRole, ns, clusterRole, envHeraldToken, clusterRole, ns, wire.Audience)
}

// cacheNote is said after a grant for a refused token.
func cacheNote(again string) string {
	return fmt.Sprintf("The dispatcher keeps a refusal for %s: %s %s after the binding is made.", refusalCacheDelay, again, refusalCacheDelay)
}

// tokenAccount reads the ServiceAccount a token was minted for from its claims, without
// verifying it (the dispatcher did that): a refused token's owner is what a fresh token
// is minted for. ok is false for anything but a ServiceAccount JWT.
func tokenAccount(token string) (ns, name string, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", "", false
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(raw, &claims) != nil {
		return "", "", false
	}
	rest, found := strings.CutPrefix(claims.Sub, "system:serviceaccount:")
	if !found {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	return ns, name, ok && ns != "" && name != ""
}

// newTokenHint mints a fresh token for the refused token's ServiceAccount, or says how
// to get one when the token is not a ServiceAccount's.
func newTokenHint(token, clusterRole, ns string) string {
	if saNS, name, ok := tokenAccount(token); ok {
		return fmt.Sprintf("mint a new one for Herald's audience (tokens expire, and are refused once their ServiceAccount is deleted):\n  export %s=$(kubectl create token %s -n %s --audience %s)", envHeraldToken, name, saNS, wire.Audience)
	}
	return "use a ServiceAccount token instead, e.g.\n" + newAccountHint(clusterRole, ns)
}
