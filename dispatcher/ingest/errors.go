package ingest

import (
	"fmt"
	"net/http"

	"github.com/herald-dev/herald/pkg/wire"
)

// apiError is the error envelope's Error (package wire) with the HTTP status it is sent with.
type apiError struct {
	status int
	body   wire.Error
}

func (e *apiError) Error() string { return e.body.Message }

func badEvent(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, body: wire.Error{
		Code: wire.CodeInvalidEvent, Field: field, Message: fmt.Sprintf(format, args...),
	}}
}

func unsupported(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusUnsupportedMediaType, body: wire.Error{
		Code: wire.CodeUnsupportedMediaType, Field: field, Message: fmt.Sprintf(format, args...),
	}}
}

func invalidJSON(offset int64, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, body: wire.Error{
		Code: wire.CodeInvalidJSON, Offset: &offset, Message: fmt.Sprintf(format, args...),
	}}
}

// inBatch marks e as being about the event at index i of a batch.
func (e *apiError) inBatch(i int) *apiError {
	e.body.Index = &i
	e.body.Message = fmt.Sprintf("event %d: %s", i, e.body.Message)
	return e
}
