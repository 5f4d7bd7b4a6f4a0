package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// tokenReviewer authorizes Kubernetes bearer tokens (ServiceAccount tokens in
// practice) with a TokenReview followed by a SubjectAccessReview, as the API server's
// own delegated authentication does.
type tokenReviewer struct {
	client    kubernetes.Interface
	audiences []string
	allowTTL  time.Duration
	denyTTL   time.Duration
	timeout   time.Duration
	now       func() time.Time
	log       logr.Logger
	cache     *decisionCache
	flights   flightGroup
	verb      string
	resource  string
}

func (t *tokenReviewer) authorize(ctx context.Context, token, namespace string) (Identity, error) {
	k := cacheKey{token: sha256.Sum256([]byte(token)), namespace: namespace}
	if d, ok := t.cache.get(k, t.now()); ok {
		return d.id, d.err
	}
	return t.flights.do(ctx, k, func() (Identity, error) {
		// Detached from the first caller: the others waiting on this review should not
		// fail because that one hung up. The timeout bounds it instead.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.timeout)
		defer cancel()
		id, err := t.review(rctx, token, namespace)
		switch {
		case err == nil:
			t.cache.put(k, decision{id: id, expires: t.now().Add(t.allowTTL)})
		case errors.Is(err, ErrUnauthenticated), errors.Is(err, ErrForbidden):
			t.cache.put(k, decision{id: id, err: err, expires: t.now().Add(t.denyTTL)})
		}
		// Failures to reach the API server are not cached: the next request retries.
		return id, err
	})
}

func (t *tokenReviewer) review(ctx context.Context, token, namespace string) (Identity, error) {
	tr, err := t.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: t.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("creating TokenReview: %w", err)
	}
	if !tr.Status.Authenticated {
		// The status error is the API server's reason ("token has expired"); it never
		// holds the token, and it helps a person find out why a producer gets 401.
		t.log.V(1).Info("token not authenticated", "namespace", namespace, "reason", tr.Status.Error)
		return Identity{}, fmt.Errorf("%w: TokenReview rejected the token", ErrUnauthenticated)
	}
	if len(t.audiences) > 0 && !slices.ContainsFunc(tr.Status.Audiences, func(a string) bool { return slices.Contains(t.audiences, a) }) {
		// An API server that ignores spec.audiences answers without them; refusing
		// then keeps a token minted for another service from working here.
		t.log.V(1).Info("token not for Herald's audiences", "namespace", namespace, "user", tr.Status.User.Username)
		return Identity{}, fmt.Errorf("%w: token audiences do not include %v", ErrUnauthenticated, t.audiences)
	}
	u := tr.Status.User
	id := Identity{Name: u.Username, UID: u.UID, Groups: u.Groups, Method: MethodToken}
	var extra map[string]authzv1.ExtraValue
	if len(u.Extra) > 0 {
		extra = make(map[string]authzv1.ExtraValue, len(u.Extra))
		for k, v := range u.Extra {
			extra[k] = authzv1.ExtraValue(v)
		}
	}
	sar, err := t.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: namespace, Verb: t.verb, Group: Group, Resource: t.resource,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return id, fmt.Errorf("creating SubjectAccessReview for %s: %w", u.Username, err)
	}
	if !sar.Status.Allowed {
		t.log.V(1).Info("publishing not allowed", "namespace", namespace, "user", u.Username, "reason", sar.Status.Reason)
		return id, fmt.Errorf("%w: %s may not %s %s.%s in namespace %s", ErrForbidden, u.Username, t.verb, t.resource, Group, namespace)
	}
	return id, nil
}
