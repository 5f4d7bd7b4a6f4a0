// Package auth decides whether an ingest request may publish events into a namespace.
//
// Two kinds of credential are accepted, both as "Authorization: Bearer <token>":
//
//   - A Kubernetes ServiceAccount token (any ServiceAccount, any namespace), minted for
//     Herald's audience (Audience) unless configured otherwise. The token
//     is checked with a TokenReview, then the identity it names is checked with a
//     SubjectAccessReview for verb "create" on resource "events" in group
//     hooks.herald.dev in the target namespace, so access is granted with ordinary
//     RBAC (a Role or ClusterRole bound in the namespace). Decisions are cached
//     briefly, keyed by a SHA-256 of the token, never the token itself.
//   - An API key: a Secret labelled hooks.herald.dev/api-key=true whose data key "key"
//     holds the token (conventionally "hak_" + random, see NewAPIKey). It grants
//     publishing into the Secret's own namespace only. Keys are read through a watch,
//     so deleting the Secret revokes the key within seconds.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/pkg/wire"
)

// The permission a producer needs in a namespace, as RBAC names it.
const (
	Verb     = "create"
	Resource = "events"
)

// Group is the API group of the events resource, Herald's own group.
var Group = heraldv1.GroupVersion.Group

// Audience is the audience of tokens meant for Herald, which the dispatcher requires by
// default: a token the API server would take (a kubeconfig's, a pod's default one) is
// refused, so a token sent to Herald cannot be used elsewhere, nor one meant for
// elsewhere here. Projected serviceAccountToken volumes and TokenRequest (kubectl
// create token --audience) mint them. It is the wire's (package wire), which producers'
// clients mint tokens for.
const Audience = wire.Audience

// Authorizer decides whether a request may publish into namespace. It reads only the
// request's headers, never the body, so it runs before the body is read.
//
// The error is nil when allowed. Otherwise it wraps ErrUnauthenticated (no or bad
// credentials), ErrForbidden (valid credentials without the permission; the Identity
// is then filled in) or anything else (the decision could not be made, e.g. the API
// server is unreachable: the producer should retry).
type Authorizer interface {
	Authorize(ctx context.Context, r *http.Request, namespace string) (Identity, error)
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(ctx context.Context, r *http.Request, namespace string) (Identity, error)

// Authorize calls f.
func (f AuthorizerFunc) Authorize(ctx context.Context, r *http.Request, namespace string) (Identity, error) {
	return f(ctx, r, namespace)
}

// Method is how a producer authenticated.
type Method string

// The credential kinds.
const (
	MethodToken  Method = "token"
	MethodAPIKey Method = "api-key"
)

// Identity is who a request was authenticated as. It never holds the credential.
type Identity struct {
	// Name is the Kubernetes username for tokens ("system:serviceaccount:ns:name") and
	// "apikey:<namespace>/<secret>" for API keys.
	Name   string
	UID    string
	Groups []string
	Method Method
}

var (
	// ErrUnauthenticated means the request carried no usable credentials.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrNoCredentials is the ErrUnauthenticated for a request without a bearer token,
	// so the answer can say what is missing rather than what is wrong.
	ErrNoCredentials = fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	// ErrForbidden means the credentials are valid but do not grant the permission.
	ErrForbidden = errors.New("forbidden")
)

// BearerToken returns the token of an "Authorization: Bearer" header; the scheme is
// matched case-insensitively as RFC 9110 asks.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

type identityKey struct{}

// NewContext returns ctx carrying the identity that published, for the engine's logs.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity stored by NewContext.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
