package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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
	// alsoAPIServer accepts tokens for the API server's own audiences too.
	alsoAPIServer bool
	allowTTL      time.Duration
	denyTTL       time.Duration
	timeout       time.Duration
	now           func() time.Time
	log           logr.Logger
	cache         *decisionCache
	flights       flightGroup
	verb          string
	resource      string
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
	tr, err := t.tokenReview(ctx, token, t.audiences)
	if err != nil {
		return Identity{}, err
	}
	if !tr.Status.Authenticated && t.alsoAPIServer && len(t.audiences) > 0 {
		// The migration: a token for the API server's audiences (a pod's default token,
		// a kubeconfig's) still works, and says so at V(1).
		if tr, err = t.tokenReview(ctx, token, nil); err != nil {
			return Identity{}, err
		}
		if tr.Status.Authenticated {
			t.log.V(1).Info("accepted a token for the API server's audience (--accept-api-server-audience); give this producer a token for Herald's",
				"namespace", namespace, "user", tr.Status.User.Username, "audience", t.audiences)
		}
	} else if tr.Status.Authenticated && len(t.audiences) > 0 && !slices.ContainsFunc(tr.Status.Audiences, func(a string) bool { return slices.Contains(t.audiences, a) }) {
		// An API server that ignores spec.audiences answers without them; refusing
		// then keeps a token minted for another service from working here.
		t.log.V(1).Info("token not for Herald's audiences", "namespace", namespace, "user", tr.Status.User.Username)
		return Identity{}, &AudienceError{Want: t.audiences, Got: tr.Status.Audiences}
	}
	if !tr.Status.Authenticated {
		// The status error is the API server's reason ("token has expired"); it never
		// holds the token, and it helps a person find out why a producer gets 401.
		t.log.V(1).Info("token not authenticated", "namespace", namespace, "reason", tr.Status.Error)
		if got := unverifiedAudiences(token); len(t.audiences) > 0 && len(got) > 0 &&
			!slices.ContainsFunc(got, func(a string) bool { return slices.Contains(t.audiences, a) }) {
			return Identity{}, &AudienceError{Want: t.audiences, Got: got}
		}
		return Identity{}, fmt.Errorf("%w: TokenReview rejected the token", ErrUnauthenticated)
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

func (t *tokenReviewer) tokenReview(ctx context.Context, token string, audiences []string) (*authnv1.TokenReview, error) {
	tr, err := t.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating TokenReview: %w", err)
	}
	return tr, nil
}

// AudienceError is the ErrUnauthenticated of a token minted for another audience than
// Herald's: the kubeconfig's own token, or a pod's default one.
type AudienceError struct {
	// Want are the audiences the dispatcher accepts, Got the token's own (as its claims
	// say; empty when unknown).
	Want, Got []string
}

func (e *AudienceError) Error() string {
	quote := func(l []string) string {
		q := make([]string, len(l))
		for i, a := range l {
			q[i] = strconv.Quote(a)
		}
		return strings.Join(q, ", ")
	}
	got := "another audience"
	if len(e.Got) > 0 {
		got = "audience " + quote(e.Got)
	}
	return fmt.Sprintf("the bearer token was minted for %s, not for Herald's (%s): use a token for that audience, such as `kubectl create token NAME --audience %s` or a projected serviceAccountToken volume with audience %s",
		got, quote(e.Want), e.Want[0], e.Want[0])
}

// Unwrap makes an AudienceError an ErrUnauthenticated.
func (e *AudienceError) Unwrap() error { return ErrUnauthenticated }

// unverifiedAudiences reads the aud claim of a JWT without verifying it, only to tell a
// refused caller which audience its own token has: the API server answered already.
func unverifiedAudiences(token string) []string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims struct {
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(raw, &claims) != nil || len(claims.Aud) == 0 {
		return nil
	}
	var many []string
	if json.Unmarshal(claims.Aud, &many) == nil {
		return many
	}
	var one string
	if json.Unmarshal(claims.Aud, &one) == nil && one != "" {
		return []string{one}
	}
	return nil
}
