package watch

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	"github.com/herald-dev/herald/dispatcher/delivery"
)

// SecretSource is where the endpoint watch reads the Secrets endpoints reference, and
// how it learns that they changed.
type SecretSource interface {
	// Get returns the Secret, (nil, nil) when it does not exist, an error when that is
	// unknown. The Secret is shared: callers must not modify it.
	Get(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	// Retain says which Secrets the endpoint read on its last resolution (nil once it
	// is gone): what no endpoint reads any longer can be forgotten.
	Retain(endpoint delivery.Key, read []types.NamespacedName)
	// watch adds the watch of Secrets that re-resolves their referrers.
	watch(b *builder.Builder, h handler.EventHandler) *builder.Builder
}

// ReferencedSecrets holds the content of the Secrets that endpoints reference, and of no
// other. Which Secrets exist, and their resourceVersions, come from a metadata-only
// informer (PartialObjectMetadata: one list and one watch, about a few hundred bytes per
// Secret of the namespaces served, whatever its size); a referenced Secret's content is
// read with one GET when its resourceVersion changes, and forgotten when no endpoint
// reads it any longer.
//
// A watch per referenced Secret (the kubelet's way) was the alternative: it holds
// nothing of unreferenced Secrets either, but costs one watch, and with it one HTTP/2
// stream and a watcher in the API server, per Secret: at 10,000 endpoints that is a
// hundred connections at the API server's default of 100 streams per connection. The
// metadata list and watch cost one stream whatever the count.
type ReferencedSecrets struct {
	// Meta reads PartialObjectMetadata from the informer cache.
	Meta client.Reader
	// API reads a Secret from the API server itself.
	API client.Reader
	// Referenced, when set, names the Secrets a namespace's endpoints reference (the
	// endpoint informer's answer). The first content read in a namespace where at least
	// listAtLeast are referenced lists the namespace's Secrets page by page and keeps
	// the referenced ones, instead of one GET per Secret under the client's rate limit:
	// at start-up with 1,000 endpoints that is 10 requests instead of 1,000 (50 s at
	// controller-runtime's 20 requests/s, 200 s at client-go's default 5).
	Referenced func(ctx context.Context, namespace string) ([]string, error)

	mu sync.Mutex
	// listed holds a namespace once its first content read listed it (or chose not to).
	listed map[string]*sync.Once
	// content of a Secret, with the resourceVersion the metadata informer showed when
	// it was read: another one there means read it again.
	content map[types.NamespacedName]cachedSecret
	// readers of each Secret, and what each endpoint read.
	readers map[types.NamespacedName]map[delivery.Key]struct{}
	read    map[delivery.Key][]types.NamespacedName
}

type cachedSecret struct {
	secret *corev1.Secret
	seen   string
}

// NewReferencedSecrets returns an empty ReferencedSecrets reading through meta (a cached
// client whose Secret informer is metadata-only) and api (the API server).
func NewReferencedSecrets(meta, api client.Reader) *ReferencedSecrets {
	return &ReferencedSecrets{
		Meta: meta, API: api,
		content: map[types.NamespacedName]cachedSecret{},
		listed:  map[string]*sync.Once{},
		readers: map[types.NamespacedName]map[delivery.Key]struct{}{},
		read:    map[delivery.Key][]types.NamespacedName{},
	}
}

var _ SecretSource = (*ReferencedSecrets)(nil)

// secretMeta is the metadata-only form of a Secret, which selects the metadata informer.
func secretMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// Get returns the Secret's content as of the resourceVersion the metadata informer
// holds, or a newer one. Whether it exists is the informer's answer, as it was when the
// dispatcher cached whole Secrets: a Secret created after its endpoint resolves when
// the informer sees it, which is also what re-resolves the endpoint.
func (s *ReferencedSecrets) Get(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	meta := secretMeta()
	if err := s.Meta.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			s.mu.Lock()
			delete(s.content, key)
			s.mu.Unlock()
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s metadata: %w", key, err)
	}
	s.mu.Lock()
	c, ok := s.content[key]
	s.mu.Unlock()
	if !ok {
		s.list(ctx, namespace)
		s.mu.Lock()
		c, ok = s.content[key]
		s.mu.Unlock()
	}
	if ok && c.seen == meta.ResourceVersion {
		return c.secret, nil
	}
	var sec corev1.Secret
	if err := s.API.Get(ctx, key, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			// Deleted since the informer saw it; its delete event re-resolves.
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	kept := keep(&sec)
	// Kept from now on: the read is followed by the reader's Retain, which keeps it
	// while some endpoint reads it.
	s.mu.Lock()
	s.content[key] = cachedSecret{secret: kept, seen: meta.ResourceVersion}
	s.mu.Unlock()
	return kept, nil
}

// keep is the part of a Secret the dispatcher holds.
func keep(sec *corev1.Secret) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: sec.Name, Namespace: sec.Namespace, UID: sec.UID, ResourceVersion: sec.ResourceVersion},
		Type:       sec.Type,
		Data:       sec.Data,
	}
}

const (
	// listAtLeast referenced Secrets make a namespace's first read a list: below it, a
	// GET each costs fewer bytes than a page holding the unreferenced ones too.
	listAtLeast = 10
	// listPage bounds what one page of the list holds in memory at once: 100 Secrets of
	// a few KiB each typically, at most 100 of the API server's 1 MiB objects.
	listPage = 100
)

// list reads the content of the namespace's referenced Secrets in pages, once per
// namespace, when enough of them are referenced. What it holds is checked against the metadata informer's resourceVersion on
// each read like any content, so a Secret changed since is read again.
func (s *ReferencedSecrets) list(ctx context.Context, namespace string) {
	if s.Referenced == nil {
		return
	}
	s.mu.Lock()
	once := s.listed[namespace]
	if once == nil {
		once = new(sync.Once)
		s.listed[namespace] = once
	}
	s.mu.Unlock()
	once.Do(func() {
		names, err := s.Referenced(ctx, namespace)
		if err != nil || len(names) < listAtLeast {
			// A GET each, as for any Secret referenced later.
			return
		}
		want := make(map[string]bool, len(names))
		for _, n := range names {
			want[n] = true
		}
		var page corev1.SecretList
		opts := []client.ListOption{client.InNamespace(namespace), client.Limit(listPage)}
		for {
			if err := s.API.List(ctx, &page, opts...); err != nil {
				// What was not listed is read by GET.
				ctrl.LoggerFrom(ctx).Info("listing referenced Secrets failed; reading them one by one", "namespace", namespace, "error", err.Error())
				return
			}
			s.mu.Lock()
			for i := range page.Items {
				sec := &page.Items[i]
				if want[sec.Name] {
					s.content[types.NamespacedName{Namespace: namespace, Name: sec.Name}] = cachedSecret{secret: keep(sec), seen: sec.ResourceVersion}
				}
			}
			s.mu.Unlock()
			if page.Continue == "" {
				return
			}
			opts = []client.ListOption{client.InNamespace(namespace), client.Limit(listPage), client.Continue(page.Continue)}
			page = corev1.SecretList{}
		}
	})
}

// Retain records what endpoint read and forgets the content of Secrets no endpoint
// reads any longer.
func (s *ReferencedSecrets) Retain(endpoint delivery.Key, read []types.NamespacedName) {
	// By name: the object that holds the name now replaces what an earlier one read,
	// and a deletion (known only by name) releases it.
	endpoint.UID = ""
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, key := range s.read[endpoint] {
		if r := s.readers[key]; r != nil {
			delete(r, endpoint)
			if len(r) == 0 {
				delete(s.readers, key)
			}
		}
	}
	for _, key := range read {
		r := s.readers[key]
		if r == nil {
			r = map[delivery.Key]struct{}{}
			s.readers[key] = r
		}
		r[endpoint] = struct{}{}
	}
	for _, key := range s.read[endpoint] {
		if _, held := s.readers[key]; !held {
			delete(s.content, key)
		}
	}
	if len(read) == 0 {
		delete(s.read, endpoint)
	} else {
		s.read[endpoint] = read
	}
}

// Len is how many Secrets' content is held.
func (s *ReferencedSecrets) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.content)
}

func (s *ReferencedSecrets) watch(b *builder.Builder, h handler.EventHandler) *builder.Builder {
	return b.WatchesMetadata(&corev1.Secret{}, h)
}

// InformerSecrets reads whole Secrets from the informer cache, holding the content of
// every Secret of the namespaces served: how the dispatcher read Secrets until it held
// only the referenced ones. It is kept as the baseline of the memory benchmark
// (dispatcher/app BenchmarkDispatcher_UnrelatedSecrets).
type InformerSecrets struct {
	Client client.Reader
}

var _ SecretSource = InformerSecrets{}

// Get reads the Secret from the cache.
func (s InformerSecrets) Get(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	var sec corev1.Secret
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return &sec, nil
}

// Retain does nothing: the informer holds everything.
func (InformerSecrets) Retain(delivery.Key, []types.NamespacedName) {}

func (InformerSecrets) watch(b *builder.Builder, h handler.EventHandler) *builder.Builder {
	return b.Watches(&corev1.Secret{}, h)
}
