// Package catalog is the dispatcher's view of every namespace's WebhookEventTypes: the
// compiled schema of each declared type, kept current by the watch (dispatcher/watch),
// which ingest consults for every event before it is accepted.
//
// A namespace that declares no WebhookEventType has no catalog and every type is
// accepted, as before catalogs existed. Once it declares one, only declared types are
// accepted there, and their data must validate against the type's schema. A type whose
// schema does not compile (the WebhookEventType is Ready=False, InvalidSchema) is
// accepted unchecked, with a Warning: a mistake in the catalog must not lose events.
//
// Schemas are compiled once per change of their text, outside the lock, and replaced
// whole: a validation in progress finishes on the schema it started with.
package catalog

import (
	"slices"
	"sync"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/internal/eventschema"
)

// Catalog holds the compiled event types of every namespace. It is safe for concurrent
// use; Check (once per ingested event) takes a read lock only.
type Catalog struct {
	mu   sync.RWMutex
	byNS map[string]*namespace
}

var _ ingest.Catalog = (*Catalog)(nil)

type namespace struct {
	objects map[string]*entry // by WebhookEventType name
	owners  map[string]*entry // by event type: the object that owns it
}

// entry is one WebhookEventType as compiled.
type entry struct {
	object     *heraldv1.WebhookEventType // metadata and spec only
	schema     *eventschema.Schema
	compileErr error
}

// New returns an empty catalog.
func New() *Catalog { return &Catalog{byNS: map[string]*namespace{}} }

// Set adds or replaces a WebhookEventType. Its schema is compiled unless its text is the
// one already compiled.
func (c *Catalog) Set(et *heraldv1.WebhookEventType) {
	obj := &heraldv1.WebhookEventType{ObjectMeta: *et.ObjectMeta.DeepCopy(), Spec: *et.Spec.DeepCopy()}
	e := &entry{object: obj}
	c.mu.RLock()
	if ns := c.byNS[et.Namespace]; ns != nil {
		if old := ns.objects[et.Name]; old != nil && old.object.Spec.Schema == et.Spec.Schema {
			e.schema, e.compileErr = old.schema, old.compileErr
		}
	}
	c.mu.RUnlock()
	if e.schema == nil && e.compileErr == nil {
		e.schema, e.compileErr = eventschema.Compile(et.Spec.Schema)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	ns := c.byNS[et.Namespace]
	if ns == nil {
		ns = &namespace{objects: map[string]*entry{}}
		c.byNS[et.Namespace] = ns
	}
	ns.objects[et.Name] = e
	ns.reindex()
}

// Delete removes a WebhookEventType.
func (c *Catalog) Delete(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns := c.byNS[namespace]
	if ns == nil {
		return
	}
	delete(ns.objects, name)
	if len(ns.objects) == 0 {
		delete(c.byNS, namespace)
		return
	}
	ns.reindex()
}

// reindex decides which object owns each type: the one declared first, as the manager
// decides (WebhookEventType.DeclaredBefore).
func (ns *namespace) reindex() {
	ns.owners = make(map[string]*entry, len(ns.objects))
	for _, e := range ns.objects {
		if cur := ns.owners[e.object.Spec.Type]; cur == nil || e.object.DeclaredBefore(cur.object) {
			ns.owners[e.object.Spec.Type] = e
		}
	}
}

// Check implements ingest.Catalog.
func (c *Catalog) Check(namespace, eventType string, data []byte) *ingest.CatalogVerdict {
	c.mu.RLock()
	ns := c.byNS[namespace]
	if ns == nil {
		c.mu.RUnlock()
		return nil
	}
	e := ns.owners[eventType]
	declared := len(ns.owners)
	c.mu.RUnlock()
	if e == nil {
		return &ingest.CatalogVerdict{Unknown: true, Declared: declared}
	}
	v := &ingest.CatalogVerdict{}
	if e.object.Spec.Deprecated {
		v.Deprecated = e.object.Spec.DeprecationMessage
		if v.Deprecated == "" {
			v.Deprecated = "no replacement named"
		}
	}
	if e.schema == nil {
		v.Unchecked = e.compileErr.Error()
		return v
	}
	v.Violation = e.schema.Validate(data)
	if v.Violation == nil && v.Deprecated == "" {
		return nil
	}
	return v
}

// Definitions returns a namespace's catalog: its declared types (the owners), sorted by
// type, then Herald's built-in operational types.
func (c *Catalog) Definitions(namespace string) []eventschema.Definition {
	c.mu.RLock()
	var out []eventschema.Definition
	if ns := c.byNS[namespace]; ns != nil {
		for _, e := range ns.owners {
			out = append(out, eventschema.DefinitionOf(e.object, e.schema))
		}
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b eventschema.Definition) int {
		if a.Type < b.Type {
			return -1
		}
		if a.Type > b.Type {
			return 1
		}
		return 0
	})
	return append(out, eventschema.Builtins()...)
}
