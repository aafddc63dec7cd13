package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/webhooker/caddy-webhooker/storage"
)

// apiError is an error with the status it answers.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// writeError answers err as {"error": "…"} with the status it calls for:
// storage's sentinel errors map to 400, 401, 403, 404 and 409 (a conflict,
// a Caddyfile-owned webhook, a delivery no longer open).
func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		status = ae.status
	case errors.Is(err, storage.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, storage.ErrUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, storage.ErrConfigConflict):
		status = http.StatusServiceUnavailable
	case errors.Is(err, storage.ErrQuota):
		status = http.StatusForbidden
	case errors.Is(err, storage.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, storage.ErrConflict), errors.Is(err, storage.ErrReadOnly), errors.Is(err, storage.ErrNotOpen):
		status = http.StatusConflict
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// decode reads a JSON request body into v: one object, known fields only,
// at most maxRequestBody bytes. An empty body is allowed when optional.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, "send JSON (Content-Type: application/json), not %s", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		if optional {
			return nil
		}
		return errorf(http.StatusBadRequest, "the request body is empty: send a JSON object")
	case errors.As(err, &maxErr):
		return errorf(http.StatusRequestEntityTooLarge, "the request body is over %d bytes", maxRequestBody)
	case errors.As(err, &syntaxErr):
		return errorf(http.StatusBadRequest, "malformed JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.As(err, &typeErr):
		return errorf(http.StatusBadRequest, "field %q: want %s, not JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return errorf(http.StatusBadRequest, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return errorf(http.StatusBadRequest, "malformed JSON: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "the request body holds more than one JSON value")
	}
	return nil
}

// pathID reads a path segment that must be a UUID: anything else is a 404
// before it comes near storage or a file name.
func pathID(r *http.Request, name, kind string) (string, error) {
	id := r.PathValue(name)
	if storage.ValidateID(id) != nil {
		return "", errorf(http.StatusNotFound, "no %s with id %q", kind, id)
	}
	return id, nil
}
