package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
)

// Options configures the Authorizer returned by New.
type Options struct {
	// Client makes TokenReviews and SubjectAccessReviews; the dispatcher's RBAC needs
	// create on both (the system:auth-delegator ClusterRole). Nil disables
	// ServiceAccount tokens.
	Client kubernetes.Interface
	// Audiences, when set, are the audiences a token must be minted for (Audience, in a
	// projected ServiceAccount token or from kubectl create token --audience). Empty
	// accepts tokens for the API server's own audiences.
	Audiences []string
	// AcceptAPIServerAudience, with Audiences set, accepts tokens for the API server's
	// own audiences as well (a pod's default token, a kubeconfig's): for the time
	// producers move to tokens for Herald's audience.
	AcceptAPIServerAudience bool
	// APIKeys, when set, makes API keys valid. It must be started separately.
	APIKeys *APIKeys
	// AllowTTL is how long an allowing decision is reused (default 1m): a revoked
	// RoleBinding or deleted ServiceAccount takes up to this long to bite (plus the
	// API server's own token cache, 10s by default).
	AllowTTL time.Duration
	// DenyTTL is how long a refusal is reused (default 10s): a new RoleBinding takes
	// up to this long to work for a producer that was refused just before.
	DenyTTL time.Duration
	// CacheSize bounds the number of cached decisions (default 10000).
	CacheSize int
	// ReviewTimeout bounds one TokenReview plus SubjectAccessReview (default 10s).
	ReviewTimeout time.Duration
	// Verb and Resource (in group hooks.herald.dev) are the permission a token's user
	// needs in the namespace; default create on events, which is publishing. The
	// dispatcher's endpoint API asks for other verbs on webhookendpoints.
	Verb     string
	Resource string
	// Log receives refusals at V(1) (with the API server's reason, never a token).
	Log logr.Logger
	// Now is the clock of the cache (default time.Now).
	Now func() time.Time
}

// maxTokenLen refuses absurd tokens before they are hashed or sent anywhere.
// ServiceAccount tokens are JWTs of one or two KiB.
const maxTokenLen = 16 << 10

type authorizer struct {
	keys   *APIKeys
	tokens *tokenReviewer
}

// New returns an Authorizer for ServiceAccount tokens (when Options.Client is set)
// and API keys (when Options.APIKeys is set). A bearer token is first looked up as an
// API key, which is local and cheap; only if it is none is it reviewed by the API
// server, except that tokens starting with APIKeyPrefix never are.
func New(o Options) (Authorizer, error) {
	if o.Client == nil && o.APIKeys == nil {
		return nil, errors.New("auth: neither a Kubernetes client nor API keys configured; nobody could publish")
	}
	a := &authorizer{keys: o.APIKeys}
	if o.Client != nil {
		if o.AllowTTL <= 0 {
			o.AllowTTL = time.Minute
		}
		if o.DenyTTL <= 0 {
			o.DenyTTL = 10 * time.Second
		}
		if o.CacheSize <= 0 {
			o.CacheSize = 10000
		}
		if o.ReviewTimeout <= 0 {
			o.ReviewTimeout = 10 * time.Second
		}
		if o.Now == nil {
			o.Now = time.Now
		}
		if o.Verb == "" {
			o.Verb = Verb
		}
		if o.Resource == "" {
			o.Resource = Resource
		}
		a.tokens = &tokenReviewer{
			verb: o.Verb, resource: o.Resource,
			client: o.Client, audiences: o.Audiences, alsoAPIServer: o.AcceptAPIServerAudience,
			allowTTL: o.AllowTTL, denyTTL: o.DenyTTL, timeout: o.ReviewTimeout,
			now: o.Now, log: o.Log, cache: newDecisionCache(o.CacheSize),
		}
	}
	return a, nil
}

func (a *authorizer) Authorize(ctx context.Context, r *http.Request, namespace string) (Identity, error) {
	token, ok := BearerToken(r)
	if !ok {
		return Identity{}, ErrNoCredentials
	}
	if len(token) > maxTokenLen {
		return Identity{}, fmt.Errorf("%w: token longer than %d bytes", ErrUnauthenticated, maxTokenLen)
	}
	keysLoaded := true
	if a.keys != nil {
		keysLoaded = a.keys.HasSynced()
		if id, found, err := a.keys.authorize(token, namespace); found {
			return id, err
		}
		if strings.HasPrefix(token, APIKeyPrefix) {
			if !keysLoaded {
				return Identity{}, errKeysNotLoaded
			}
			return Identity{}, fmt.Errorf("%w: unknown API key", ErrUnauthenticated)
		}
	}
	if a.tokens == nil {
		if !keysLoaded {
			return Identity{}, errKeysNotLoaded
		}
		return Identity{}, fmt.Errorf("%w: not an API key, and ServiceAccount tokens are not enabled", ErrUnauthenticated)
	}
	id, err := a.tokens.authorize(ctx, token, namespace)
	if errors.Is(err, ErrUnauthenticated) && !keysLoaded {
		// It may be an unprefixed API key we have not read yet: ask to retry rather
		// than call a valid key invalid.
		return Identity{}, errKeysNotLoaded
	}
	return id, err
}
