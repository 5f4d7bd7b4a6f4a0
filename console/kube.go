package console

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/scheme"
)

// namespacesTTL is how long the list of readable namespaces is kept: it costs a list of
// namespaces and an access review per namespace.
const namespacesTTL = 30 * time.Second

// maxReviewedNamespaces bounds the access reviews of one listing; a cluster with more
// namespaces than that shows the first ones (by name) and the user's own.
const maxReviewedNamespaces = 500

// KubeCluster is Cluster over a kubeconfig's identity.
type KubeCluster struct {
	c  client.WithWatch
	cs kubernetes.Interface
	// rc reads the lists of WebhookEndpoints as a stream (Page.Each).
	rc rest.Interface
	// own are always listed: the kubeconfig context's namespace, which a user who may
	// not list namespaces still works in.
	own []string

	mu      sync.Mutex
	cached  []string
	expires time.Time
}

var _ Cluster = (*KubeCluster)(nil)

// NewKubeCluster returns a Cluster acting with cfg's credentials; own are the
// namespaces listed whatever the user may list (the kubeconfig context's).
func NewKubeCluster(cfg *rest.Config, own ...string) (*KubeCluster, error) {
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server at %s: %w", cfg.Host, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server at %s: %w", cfg.Host, err)
	}
	rcfg := rest.CopyConfig(cfg)
	rcfg.GroupVersion, rcfg.APIPath = &heraldv1.GroupVersion, "/apis"
	rcfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme.New()).WithoutConversion()
	rc, err := rest.RESTClientFor(rcfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server at %s: %w", cfg.Host, err)
	}
	return &KubeCluster{c: c, cs: cs, rc: rc, own: own}, nil
}

// Namespaces returns the user's own namespaces and, when the user may list namespaces,
// those of them where it may list WebhookEndpoints (asked with SelfSubjectAccessReviews,
// 8 at a time, once for all when it may list them everywhere).
func (k *KubeCluster) Namespaces(ctx context.Context) ([]string, error) {
	k.mu.Lock()
	if time.Now().Before(k.expires) {
		out := k.cached
		k.mu.Unlock()
		return out, nil
	}
	k.mu.Unlock()
	set := map[string]bool{}
	for _, ns := range k.own {
		set[ns] = true
	}
	list, err := k.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: maxReviewedNamespaces})
	if err == nil {
		everywhere, err := k.mayList(ctx, "")
		if err != nil {
			return nil, err
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, n := range list.Items {
			if everywhere {
				set[n.Name] = true
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func(ns string) {
				defer func() { <-sem; wg.Done() }()
				if ok, _ := k.mayList(ctx, ns); ok {
					mu.Lock()
					set[ns] = true
					mu.Unlock()
				}
			}(n.Name)
		}
		wg.Wait()
	}
	out := make([]string, 0, len(set))
	for ns := range set {
		out = append(out, ns)
	}
	sort.Strings(out)
	k.mu.Lock()
	k.cached, k.expires = out, time.Now().Add(namespacesTTL)
	k.mu.Unlock()
	return out, nil
}

func (k *KubeCluster) mayList(ctx context.Context, ns string) (bool, error) {
	r, err := k.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: "list", Group: heraldv1.GroupVersion.Group, Resource: "webhookendpoints",
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("asking the API server what the kubeconfig's user may list (SelfSubjectAccessReview): %w", err)
	}
	return r.Status.Allowed, nil
}

// Endpoints lists a page of a namespace's endpoints; with p.Each, it hands them over
// one at a time as the API server's answer arrives.
func (k *KubeCluster) Endpoints(ctx context.Context, ns string, p Page) (*heraldv1.WebhookEndpointList, error) {
	if p.Each != nil {
		return k.eachEndpoint(ctx, ns, p)
	}
	var l heraldv1.WebhookEndpointList
	if err := k.c.List(ctx, &l, client.InNamespace(ns), client.Limit(p.Limit), client.Continue(p.Continue)); err != nil {
		return nil, err
	}
	return &l, nil
}

// eachEndpoint reads a page of endpoints as a stream: the API server writes a list
// item by item, so the first rows can be on their way to the browser while the last
// are still being encoded, and the whole list (some 3 KB an endpoint, most of it
// managedFields) is never held at once. The list it returns has the list's metadata
// and no items.
func (k *KubeCluster) eachEndpoint(ctx context.Context, ns string, p Page) (*heraldv1.WebhookEndpointList, error) {
	body, err := k.rc.Get().Namespace(ns).Resource("webhookendpoints").
		VersionedParams(&metav1.ListOptions{Limit: p.Limit, Continue: p.Continue}, metav1.ParameterCodec).Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = body.Close() }()
	out := &heraldv1.WebhookEndpointList{}
	if err := decodeList(json.NewDecoder(body), &out.ListMeta, p.Each); err != nil {
		return nil, fmt.Errorf("reading the WebhookEndpoints of namespace %s: %w", ns, err)
	}
	return out, nil
}

// decodeList decodes a list's metadata into meta and hands each of its items to each.
func decodeList(dec *json.Decoder, meta *metav1.ListMeta, each func(*heraldv1.WebhookEndpoint) error) error {
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		switch key {
		case "metadata":
			err = dec.Decode(meta)
		case "items":
			if err := expectDelim(dec, '['); err != nil {
				return err
			}
			for dec.More() {
				var item listedEndpoint
				if err := dec.Decode(&item); err != nil {
					return err
				}
				item.WebhookEndpoint.ObjectMeta = item.Metadata.ObjectMeta
				if err := each(&item.WebhookEndpoint); err != nil {
					return err
				}
			}
			err = expectDelim(dec, ']')
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return err
		}
	}
	return expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("unexpected %v in the list, want %v", t, want)
	}
	return nil
}

// listedEndpoint decodes an endpoint without its managedFields, which the console does
// not show and which are most of an endpoint's bytes.
type listedEndpoint struct {
	heraldv1.WebhookEndpoint
	Metadata struct {
		metav1.ObjectMeta
		ManagedFields skipped `json:"managedFields"`
	} `json:"metadata"`
}

// skipped decodes a JSON value into nothing.
type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }

// Endpoint reads one endpoint.
func (k *KubeCluster) Endpoint(ctx context.Context, ns, name string) (*heraldv1.WebhookEndpoint, error) {
	var ep heraldv1.WebhookEndpoint
	if err := k.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ep); err != nil {
		return nil, err
	}
	return &ep, nil
}

// Subscriptions lists a page of a namespace's subscriptions.
func (k *KubeCluster) Subscriptions(ctx context.Context, ns string, p Page) (*heraldv1.WebhookSubscriptionList, error) {
	var l heraldv1.WebhookSubscriptionList
	if err := k.c.List(ctx, &l, client.InNamespace(ns), client.Limit(p.Limit), client.Continue(p.Continue)); err != nil {
		return nil, err
	}
	return &l, nil
}

// WatchEndpoints watches a namespace's endpoints. Without a resourceVersion it starts
// from the current one, read with a list of one item, so that a namespace of 10,000
// endpoints does not send them all first.
func (k *KubeCluster) WatchEndpoints(ctx context.Context, ns, rv string) (watch.Interface, error) {
	if rv == "" {
		var l heraldv1.WebhookEndpointList
		if err := k.c.List(ctx, &l, client.InNamespace(ns), client.Limit(1)); err != nil {
			return nil, err
		}
		rv = l.ResourceVersion
	}
	var l heraldv1.WebhookEndpointList
	return k.c.Watch(ctx, &l, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
}
