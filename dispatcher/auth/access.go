package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Permission is a permission on a resource of Herald's group, as RBAC writes it: verb
// get on resource webhookendpoints, subresource responses.
type Permission struct {
	Verb, Resource, Subresource string
}

func (p Permission) String() string {
	r := p.Resource
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	return p.Verb + " " + r + "." + Group
}

// Access answers a second question about a caller an Authorizer has already
// authenticated: does the identity hold this permission on this object? It asks the API
// server with a SubjectAccessReview of the identity's user, UID and groups (the user's
// extra attributes are not carried by Identity; RBAC does not read them), and keeps each
// answer briefly, as the Authorizer does.
type Access struct {
	client   kubernetes.Interface
	allowTTL time.Duration
	denyTTL  time.Duration
	timeout  time.Duration
	now      func() time.Time
	log      logr.Logger
	cache    *decisionCache
}

// NewAccess returns an Access asking through o.Client, with o's cache lifetimes,
// bound and timeout (the defaults of New).
func NewAccess(o Options) *Access {
	a := &Access{client: o.Client, allowTTL: o.AllowTTL, denyTTL: o.DenyTTL, timeout: o.ReviewTimeout, now: o.Now, log: o.Log}
	if a.allowTTL <= 0 {
		a.allowTTL = time.Minute
	}
	if a.denyTTL <= 0 {
		a.denyTTL = 10 * time.Second
	}
	if a.timeout <= 0 {
		a.timeout = 10 * time.Second
	}
	if a.now == nil {
		a.now = time.Now
	}
	size := o.CacheSize
	if size <= 0 {
		size = 10000
	}
	a.cache = newDecisionCache(size)
	return a
}

// Allowed reports whether id holds p on the object name (every object when empty) in
// namespace. A refusal is (false, nil); the error is set only when the API server could
// not be asked.
func (a *Access) Allowed(ctx context.Context, id Identity, p Permission, namespace, name string) (bool, error) {
	k := cacheKey{token: sha256.Sum256([]byte(strings.Join(append([]string{id.Name, id.UID, p.Verb, p.Resource, p.Subresource, name}, id.Groups...), "\x00"))), namespace: namespace}
	if d, ok := a.cache.get(k, a.now()); ok {
		return d.err == nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	sar, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User: id.Name, UID: id.UID, Groups: id.Groups,
			ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: namespace, Verb: p.Verb, Group: Group, Resource: p.Resource, Subresource: p.Subresource, Name: name,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("creating SubjectAccessReview for %s (%s): %w", id.Name, p, err)
	}
	if !sar.Status.Allowed {
		a.log.V(1).Info("permission not held", "namespace", namespace, "name", name, "user", id.Name, "permission", p.String(), "reason", sar.Status.Reason)
		a.cache.put(k, decision{err: ErrForbidden, expires: a.now().Add(a.denyTTL)})
		return false, nil
	}
	a.cache.put(k, decision{expires: a.now().Add(a.allowTTL)})
	return true, nil
}
