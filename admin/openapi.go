package admin

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// The OpenAPI 3 document of the API, served at GET /webhooker/openapi.json
// so that clients can be generated from a running gateway. openapi.json has
// every operation of every face of the API; each Handler serves the
// operations it routes (servedOpenAPI). The admin tests check the document
// against the handlers (openapi_test.go): every route is documented, every
// documented operation is routed by some face, every answer matches a
// documented status and schema.

//go:embed openapi.json
var openAPIDocument []byte

// openAPIServed caches the documents served, by servedKey: a reload makes
// new Handlers with the same routes.
var openAPIServed sync.Map

// routeOpenAPI serves the document. Call it after every other route is
// registered. On the tenant API it needs no key (ServeHTTP, isPublic): it
// is the same for everyone and says nothing of anyone's webhooks.
func (h *Handler) routeOpenAPI() {
	var doc []byte
	h.handle("/openapi.json", methods{"GET": func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(doc) // the client went away: nothing to do
		return nil
	}})
	key := fmt.Sprint(h.tenant, h.routes)
	if cached, ok := openAPIServed.Load(key); ok {
		doc = cached.([]byte)
		return
	}
	doc, err := servedOpenAPI(openAPIDocument, h.routes, h.tenant)
	if err != nil {
		panic("admin: embedded openapi.json: " + err.Error()) // caught by any test
	}
	openAPIServed.Store(key, doc)
}

// servedOpenAPI is the document of a Handler that routes routes ("METHOD
// /path"): the operations of full it does not route go (users and keys on
// the tenant API, backups but on Caddy's admin endpoint). On the tenant API
// the server is the site serving it, and every operation but the public
// ones (security: [], the document and the UI) needs the bearer API key and
// may answer its 401. A route full does not document stays undocumented:
// the tests catch it.
func servedOpenAPI(full []byte, routes []string, tenant bool) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(full, &doc); err != nil {
		return nil, err
	}
	routed := make(map[string]bool, len(routes))
	for _, r := range routes {
		routed[r] = true
	}
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("no paths")
	}
	for path, item := range paths {
		ops, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("path %s is not an object", path)
		}
		for method, o := range ops {
			op, ok := o.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s %s is not an object", method, path)
			}
			if !routed[strings.ToUpper(method)+" "+path] {
				delete(ops, method)
				continue
			}
			if !tenant {
				continue
			}
			if sec, ok := op["security"].([]any); ok && len(sec) == 0 {
				continue // public
			}
			responses, ok := op["responses"].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s %s has no responses", method, path)
			}
			responses["401"] = map[string]any{"$ref": "#/components/responses/Unauthorized"}
		}
		if len(ops) == 0 {
			delete(paths, path)
		}
	}
	if tenant {
		doc["servers"] = []any{map[string]any{"url": "/", "description": "The site serving the tenant API (webhooker_api)"}}
		doc["security"] = []any{map[string]any{"apiKey": []any{}}}
		if info, ok := doc["info"].(map[string]any); ok {
			info["title"] = fmt.Sprint(info["title"]) + " (tenant)"
		}
	}
	return json.MarshalIndent(doc, "", "  ")
}

// isPublic reports whether r is for a route the tenant API serves without
// an API key: the UI and the OpenAPI document, static both. It asks the
// mux, so that a path such as /webhooker/ui/../webhooks, which the mux
// redirects, is not.
func (h *Handler) isPublic(r *http.Request) bool {
	_, pattern := h.mux.Handler(r)
	return pattern == uiPattern || pattern == openAPIPattern
}

// openAPIPattern is the route of the document on a Handler's mux.
const openAPIPattern = Prefix + "/openapi.json"
