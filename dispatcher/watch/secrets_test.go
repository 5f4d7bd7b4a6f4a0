package watch_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/herald-dev/herald/dispatcher/watch"
	"github.com/herald-dev/herald/internal/testenv"
)

// countingReader counts the requests that reach the API server.
type countingReader struct {
	client.Reader
	gets, lists atomic.Int64
}

func (r *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.gets.Add(1)
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.lists.Add(1)
	return r.Reader.List(ctx, list, opts...)
}

// At start-up every endpoint's Secrets are read at once: in a namespace with many of
// them the reads are a list in pages (here 250 Secrets, 230 referenced: 3 pages of 100),
// not a GET each under the client's rate limit; with few, a GET each, so that a few
// endpoints do not pull a namespace's unrelated Secrets through the dispatcher.
func TestReferencedSecrets_ManyReferencedAreListedInPages(t *testing.T) {
	ctx := context.Background()
	many, few := testenv.NewNamespace(t, k, "secrets-many-"), testenv.NewNamespace(t, k, "secrets-few-")
	create := func(ns, name string) {
		t.Helper()
		if err := k.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			StringData: map[string]string{"secret": "value of " + name}}); err != nil {
			t.Fatal(err)
		}
	}
	var referenced []string
	for i := range 250 {
		name := fmt.Sprintf("s-%03d", i)
		create(many, name)
		if i%12 != 0 {
			referenced = append(referenced, name)
		}
	}
	for _, n := range []string{"a", "b", "c"} {
		create(few, n)
	}
	// The metadata informer sees them all before the reads begin, as it does at start-up.
	deadline := time.Now().Add(15 * time.Second)
	for _, key := range []client.ObjectKey{{Namespace: many, Name: "s-249"}, {Namespace: few, Name: "c"}} {
		for cached.Get(ctx, key, &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}}) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("the metadata informer did not see %s", key)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	api := &countingReader{Reader: direct}
	s := watch.NewReferencedSecrets(cached, api)
	s.Referenced = func(_ context.Context, ns string) ([]string, error) {
		if ns == few {
			return []string{"a", "b", "c"}, nil
		}
		return referenced, nil
	}
	for _, name := range referenced {
		sec, err := s.Get(ctx, many, name)
		if err != nil || sec == nil || string(sec.Data["secret"]) != "value of "+name {
			t.Fatalf("%s: got %v, %v", name, sec, err)
		}
	}
	if g, l := api.gets.Load(), api.lists.Load(); g != 0 || l != 3 {
		t.Errorf("230 referenced Secrets read with %d GETs and %d list pages, want 0 and 3", g, l)
	}
	if s.Holds(many, "s-000") || s.Holds(many, "s-012") {
		t.Error("an unreferenced Secret listed with the others is held")
	}

	for _, name := range []string{"a", "b", "c"} {
		if sec, err := s.Get(ctx, few, name); err != nil || sec == nil {
			t.Fatalf("%s: got %v, %v", name, sec, err)
		}
	}
	if g, l := api.gets.Load(), api.lists.Load(); g != 3 || l != 3 {
		t.Errorf("3 referenced Secrets read with %d GETs and %d more list pages, want 3 and 0", g, l-3)
	}

	// What was listed is read again once it changes.
	sec := &corev1.Secret{}
	if err := k.Get(ctx, client.ObjectKey{Namespace: many, Name: "s-001"}, sec); err != nil {
		t.Fatal(err)
	}
	sec.Data = map[string][]byte{"secret": []byte("rotated")}
	if err := k.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		got, err := s.Get(ctx, many, "s-001")
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Data["secret"]) == "rotated" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated Secret still reads %q", got.Data["secret"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
