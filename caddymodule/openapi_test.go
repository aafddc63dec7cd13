package caddymodule_test

import (
	"net/http"
	"testing"
)

// The OpenAPI document through a real Caddy: every operation on the admin
// endpoint; on a webhooker_api site, without a key, the tenant API's only,
// with its bearer scheme. (admin/openapi_test.go checks the document
// against the handlers.)
func TestOpenAPIDocumentServedThroughCaddy(t *testing.T) {
	g := startTenantSite(t)
	type document struct {
		OpenAPI  string                    `json:"openapi"`
		Paths    map[string]map[string]any `json:"paths"`
		Security []map[string][]string     `json:"security"`
	}
	for _, tc := range []struct {
		name       string
		base       string
		users      bool
		wantSecure bool
	}{{"admin endpoint", adminURL, true, false}, {"webhooker_api site, no key", siteURL, false, true}} {
		answer := g.call(tc.base, "", "GET", "/openapi.json", nil)
		var doc document
		answer.decode(t, http.StatusOK, &doc)
		if ct := answer.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", tc.name, ct)
		}
		if doc.OpenAPI != "3.0.3" || doc.Paths["/webhooker/webhooks"]["post"] == nil {
			t.Errorf("%s: openapi %q, POST /webhooker/webhooks %v: not the document", tc.name, doc.OpenAPI, doc.Paths["/webhooker/webhooks"]["post"])
		}
		if _, ok := doc.Paths["/webhooker/users"]; ok != tc.users {
			t.Errorf("%s: /webhooker/users documented %v, want %v", tc.name, ok, tc.users)
		}
		if secure := len(doc.Security) == 1 && doc.Security[0]["apiKey"] != nil; secure != tc.wantSecure {
			t.Errorf("%s: security %v", tc.name, doc.Security)
		}
	}
	// The rest of the site's API still needs a key.
	if answer := g.site("", "GET", "/webhooks", nil); answer.status != http.StatusUnauthorized {
		t.Errorf("GET /webhooker/webhooks on the site without a key: %s, want 401", answer)
	}
}
