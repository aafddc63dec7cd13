package admin

import "slices"

// Routes lists the "METHOD /path" h serves, for the OpenAPI test: derived
// from the router's registrations, so a route added without documenting it
// fails that test.
func Routes(h *Handler) []string { return slices.Clone(h.routes) }

// OpenAPIDocument is admin/openapi.json, every operation of every face.
func OpenAPIDocument() []byte { return slices.Clone(openAPIDocument) }
