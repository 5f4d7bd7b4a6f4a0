package admin

import (
	"context"
	"net/http"

	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/pkg/wire"
)

// Docs writes the OpenAPI 3.1 document of what an endpoint receives
// (dispatcher/receiverdocs), from the dispatcher's view of the cluster.
type Docs func(ctx context.Context, k delivery.Key) ([]byte, error)

// docs serves GET .../endpoints/{name}/openapi: who may list the endpoint's dead letters
// may read what it is sent.
func (h *Handler) docs(w http.ResponseWriter, r *http.Request) {
	k, _, ok := h.target(w, r, h.opts.Read, "reading an endpoint's receiver documentation")
	if !ok {
		return
	}
	doc, err := h.opts.Docs(r.Context(), k)
	if err != nil {
		h.opts.Log.Error(err, "writing receiver documentation", "endpoint", k.String())
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "", "the documentation cannot be written right now; retry")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(doc, '\n'))
}
