package ingest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/eventschema"
	"github.com/herald-dev/herald/pkg/wire"
)

// Catalog is the namespaces' catalogs of event types (package dispatcher/catalog),
// consulted for every event before it is accepted.
type Catalog interface {
	// Check returns nil when the event is accepted as it is, or what to say about it.
	Check(namespace, eventType string, data []byte) *CatalogVerdict
}

// CatalogVerdict is what a catalog says about one event.
type CatalogVerdict struct {
	// Unknown: the namespace declares Declared types, and not this one (422).
	Unknown  bool
	Declared int
	// Violation: the data does not validate against the type's schema (422).
	Violation *eventschema.Violation
	// Deprecated is the type's deprecation message: the event is accepted with a
	// Warning header.
	Deprecated string
	// Unchecked says why the data was not validated (the type's schema does not
	// compile): the event is accepted with a Warning header.
	Unchecked string
}

// checkCatalog refuses events of types reserved for Herald (400) and asks the catalog
// about the others, all before any is accepted: one refused event refuses its batch,
// naming its index, as a malformed one does. It returns the Warning header values for
// the events it lets through (each text once) and the types accepted as deprecated.
func (h *Handler) checkCatalog(ns string, events []Event, batch bool) (warnings, deprecated []string, aerr *apiError) {
	for i := range events {
		e := &events[i]
		field := "type"
		if heraldv1.IsOperationalEventType(e.Type) {
			aerr = badEvent(field, "event types starting with %q are reserved for Herald's own operational events", heraldv1.OperationalEventTypePrefix)
		} else if h.opts.Catalog != nil {
			v := h.opts.Catalog.Check(ns, e.Type, e.Data)
			switch {
			case v == nil:
			case v.Unknown:
				aerr = &apiError{status: http.StatusUnprocessableEntity, body: wire.Error{
					Code: wire.CodeUnknownEventType, Field: field,
					Message: fmt.Sprintf("event type %q is not declared in namespace %q, which declares %d event types (WebhookEventTypes); declare it, or send a declared type",
						truncate(e.Type), ns, v.Declared),
				}}
			case v.Violation != nil:
				at := "data" + v.Violation.Pointer
				aerr = &apiError{status: http.StatusUnprocessableEntity, body: wire.Error{
					Code: wire.CodeSchemaViolation, Field: "data",
					Pointer: v.Violation.Pointer, Rule: v.Violation.Keyword, SchemaPath: v.Violation.SchemaPath,
					Message: fmt.Sprintf("%s does not match the schema of event type %q: %s (rule %s at %s)",
						at, truncate(e.Type), v.Violation.Message, v.Violation.Keyword, v.Violation.SchemaPath),
				}}
			default:
				if v.Deprecated != "" {
					warnings = appendOnce(warnings, fmt.Sprintf("event type %s is deprecated: %s", e.Type, v.Deprecated))
					deprecated = append(deprecated, e.Type)
				}
				if v.Unchecked != "" {
					warnings = appendOnce(warnings, fmt.Sprintf("event type %s was not validated: its schema does not compile (%s)", e.Type, v.Unchecked))
				}
			}
		}
		if aerr != nil {
			if aerr.status == http.StatusUnprocessableEntity && h.opts.CatalogRefused != nil {
				h.opts.CatalogRefused(ns, aerr.body.Code)
			}
			if batch {
				aerr = aerr.inBatch(i)
			}
			return nil, nil, aerr
		}
	}
	return warnings, deprecated, nil
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// setWarnings adds one Warning header (RFC 9110 §5.6 syntax as Kubernetes sends it:
// code 299, agent "herald", a quoted text) per warning.
func setWarnings(h http.Header, warnings []string) {
	for _, w := range warnings {
		w = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, w)
		h.Add("Warning", "299 herald "+strconv.Quote(w))
	}
}
