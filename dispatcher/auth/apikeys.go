package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// API key Secrets: labelled APIKeyLabel=true, the token under data key APIKeyDataKey.
const (
	APIKeyLabel   = "hooks.herald.dev/api-key"
	APIKeyDataKey = "key"
	// APIKeyPrefix starts keys made by NewAPIKey. A bearer token with this prefix is
	// never sent to the API server in a TokenReview: it is an API key or nothing.
	APIKeyPrefix = "hak_"
	// MinAPIKeyLength is the shortest key accepted; Secrets holding shorter keys are
	// ignored (and logged) so a placeholder like "changeme" never opens a namespace.
	MinAPIKeyLength = 16
)

// The cached copy of a key Secret keeps only this hash of the key under this data key,
// so neither the informer's memory nor a heap dump holds usable keys.
const (
	hashDataKey = "sha256"
	hashIndex   = "apikey-sha256"
)

// NewAPIKey returns a new API key: APIKeyPrefix and 256 random bits in lowercase
// base32, which survives shells, URLs and YAML without quoting.
func NewAPIKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails; crypto/rand panics instead
	return APIKeyPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// APIKeyOptions configures APIKeys.
type APIKeyOptions struct {
	// Namespaces to read key Secrets from; empty means all namespaces. With a list,
	// the dispatcher needs to list and watch Secrets only there.
	Namespaces []string
	// Log receives ignored Secrets (by name, never their content).
	Log logr.Logger
}

// APIKeys knows the API keys of the cluster. It watches the labelled Secrets, so a
// new key works and a deleted (or unlabelled) one stops working within moments of
// the change reaching the API server; lookups are local and never cached beyond the
// watch. Run it with Start (it is a controller-runtime manager.Runnable).
type APIKeys struct {
	log       logr.Logger
	factories []informers.SharedInformerFactory
	informers []cache.SharedIndexInformer
}

// NewAPIKeys returns APIKeys reading through client. Nothing is read until Start.
func NewAPIKeys(client kubernetes.Interface, o APIKeyOptions) (*APIKeys, error) {
	namespaces := o.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	k := &APIKeys{log: o.Log}
	for _, ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
				lo.LabelSelector = APIKeyLabel + "=true"
			}))
		inf := f.Core().V1().Secrets().Informer()
		if err := inf.SetTransform(k.keepHashOnly); err != nil {
			return nil, fmt.Errorf("configuring the API key informer: %w", err)
		}
		if err := inf.AddIndexers(cache.Indexers{hashIndex: byHash}); err != nil {
			return nil, fmt.Errorf("indexing API keys: %w", err)
		}
		k.factories = append(k.factories, f)
		k.informers = append(k.informers, inf)
	}
	return k, nil
}

// Start watches the key Secrets until ctx is done.
func (k *APIKeys) Start(ctx context.Context) error {
	for _, f := range k.factories {
		f.StartWithContext(ctx)
	}
	if err := k.WaitForSync(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	<-ctx.Done()
	for _, f := range k.factories {
		f.Shutdown()
	}
	return nil
}

// NeedLeaderElection is false: every dispatcher replica serves ingest.
func (k *APIKeys) NeedLeaderElection() bool { return false }

// HasSynced reports whether the first list of key Secrets has been read.
func (k *APIKeys) HasSynced() bool {
	for _, inf := range k.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// WaitForSync blocks until HasSynced or ctx is done. It may be called before Start.
func (k *APIKeys) WaitForSync(ctx context.Context) error {
	synced := make([]cache.InformerSynced, len(k.informers))
	for i, inf := range k.informers {
		synced[i] = inf.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("reading API key Secrets: %w", context.Cause(ctx))
	}
	return nil
}

// errKeysNotLoaded is neither ErrUnauthenticated nor ErrForbidden, so the producer is
// told to retry (503) instead of that its valid key is wrong.
var errKeysNotLoaded = errors.New("API keys are not loaded yet")

// authorize checks token as an API key for namespace. found is false when token is
// not a known key, so that it may be tried as a ServiceAccount token.
func (k *APIKeys) authorize(token, namespace string) (id Identity, found bool, err error) {
	sum := sha256.Sum256([]byte(token))
	for _, inf := range k.informers {
		objs, ierr := inf.GetIndexer().ByIndex(hashIndex, string(sum[:]))
		if ierr != nil {
			return Identity{}, true, fmt.Errorf("looking up API key: %w", ierr)
		}
		for _, obj := range objs {
			s, ok := obj.(*corev1.Secret)
			// The index lookup already matched on the hash; a map lookup's timing can at
			// most reveal hashes, never keys. The constant-time comparison keeps the
			// final decision free of early exits all the same.
			if !ok || subtle.ConstantTimeCompare(s.Data[hashDataKey], sum[:]) != 1 {
				continue
			}
			// The same key may sit in several namespaces' Secrets; each grants its own.
			if !found || s.Namespace == namespace {
				id = Identity{Name: "apikey:" + s.Namespace + "/" + s.Name, UID: string(s.UID), Method: MethodAPIKey}
			}
			found = true
			if s.Namespace == namespace {
				return id, true, nil
			}
		}
	}
	if !found {
		return Identity{}, false, nil
	}
	return id, true, fmt.Errorf("%w: an API key from another namespace", ErrForbidden)
}

// keepHashOnly replaces a key Secret by a copy holding its identity and the hash of
// its key, before it is stored.
func (k *APIKeys) keepHashOnly(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil // tombstones carry an already transformed object
	}
	if _, labelled := s.Labels[APIKeyLabel]; !labelled {
		// Only Secrets with the label are listed, and the copy below drops labels, so
		// this one has been transformed already.
		return s, nil
	}
	out := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
	}}
	key := s.Data[APIKeyDataKey]
	switch {
	case len(key) == 0:
		k.log.Info("ignoring API key Secret without data key "+APIKeyDataKey, "namespace", s.Namespace, "name", s.Name)
	case len(key) < MinAPIKeyLength:
		k.log.Info("ignoring API key Secret whose key is too short", "namespace", s.Namespace, "name", s.Name, "minLength", MinAPIKeyLength)
	default:
		sum := sha256.Sum256(key)
		out.Data = map[string][]byte{hashDataKey: sum[:]}
	}
	return out, nil
}

func byHash(obj any) ([]string, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok || len(s.Data[hashDataKey]) == 0 {
		return nil, nil
	}
	return []string{string(s.Data[hashDataKey])}, nil
}
