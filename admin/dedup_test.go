package admin_test

import (
	"net/http"
	"strings"
	"testing"
)

type dedupJSON struct {
	Kind   string `json:"kind"`
	Source string `json:"source"`
	Window string `json:"window"`
}

// A webhook's dedup is created, shown, changed and removed through the
// API; a bad one is a 400 (an expression's with CEL's message), and
// tenants are held to a 7-day window and 1024-byte expressions.
func TestWebhookDedupThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	var w struct {
		ID    string     `json:"id"`
		Dedup *dedupJSON `json:"dedup"`
	}
	e.must(http.StatusCreated, "POST", "/webhooker/webhooks", map[string]any{"name": "stripe",
		"dedup": map[string]any{"kind": "expression", "source": "body.id", "window": "48h"}}, &w)
	if w.Dedup == nil || *w.Dedup != (dedupJSON{"expression", "body.id", "48h0m0s"}) {
		t.Fatalf("created with dedup %+v", w.Dedup)
	}
	path := "/webhooker/webhooks/" + w.ID
	e.must(http.StatusOK, "GET", path, nil, &w)
	if w.Dedup == nil || w.Dedup.Source != "body.id" {
		t.Fatalf("read back %+v", w.Dedup)
	}
	// A PATCH without dedup keeps it.
	e.must(http.StatusOK, "PATCH", path, map[string]any{"description": "payments"}, &w)
	if w.Dedup == nil || w.Dedup.Source != "body.id" {
		t.Fatalf("a PATCH without dedup changed it to %+v", w.Dedup)
	}
	e.must(http.StatusOK, "PATCH", path, map[string]any{"dedup": map[string]any{"kind": "header", "source": "Idempotency-Key"}}, &w)
	if w.Dedup == nil || *w.Dedup != (dedupJSON{Kind: "header", Source: "Idempotency-Key"}) {
		t.Fatalf("updated to %+v", w.Dedup)
	}

	for _, c := range []struct {
		name, method, path string
		dedup              any
		want               string
	}{
		{"create, syntax", "POST", "/webhooker/webhooks", map[string]any{"kind": "expression", "source": "body.id =="}, "Syntax error"},
		{"create, not a key", "POST", "/webhooker/webhooks", map[string]any{"kind": "expression", "source": "body.n > 1"}, "not a string or an int"},
		{"create, header name", "POST", "/webhooker/webhooks", map[string]any{"kind": "header", "source": "X Id"}, "not a header name"},
		{"create, kind", "POST", "/webhooker/webhooks", map[string]any{"kind": "cookie", "source": "id"}, `unknown kind "cookie"`},
		{"update, window", "PATCH", path, map[string]any{"kind": "header", "source": "X-Id", "window": "1ms"}, "between 1s"},
		{"update, window over 30d", "PATCH", path, map[string]any{"kind": "header", "source": "X-Id", "window": "800h"}, "operator limits"},
		{"update, unknown field", "PATCH", path, map[string]any{"kind": "header", "source": "X-Id", "windw": "1h"}, "unknown field"},
		{"update, syntax", "PATCH", path, map[string]any{"kind": "expression", "source": "body.id +"}, "Syntax error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := e.call(c.method, c.path, map[string]any{"name": "x", "dedup": c.dedup})
			if resp.status != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", resp.status, resp)
			}
			if msg := resp.errorMessage(t); !strings.Contains(msg, c.want) {
				t.Fatalf("error %q does not say %q", msg, c.want)
			}
		})
	}

	e.must(http.StatusOK, "PATCH", path, map[string]any{"dedup": nil}, &w)
	if w.Dedup != nil {
		t.Fatalf("dedup not removed: %+v", w.Dedup)
	}

	// A tenant: a window of 7 days at most, an expression of 1024 bytes.
	_, k := e.createUser("frank")
	var tw webhookJSON
	expect(t, serve(t, e.tenant, req{method: "POST", path: "/webhooker/webhooks", key: k.Key, body: map[string]any{"name": "mine",
		"dedup": map[string]any{"kind": "header", "source": "X-Id", "window": "168h"}}}), http.StatusCreated, &tw)
	for _, c := range []struct {
		dedup map[string]any
		want  string
	}{
		{map[string]any{"kind": "header", "source": "X-Id", "window": "169h"}, "between 1s and 168h0m0s (tenant limits)"},
		{map[string]any{"kind": "expression", "source": `body.id + "` + strings.Repeat("a", 1100) + `"`}, "at most 1024 (tenant limits)"},
	} {
		resp := serve(t, e.tenant, req{method: "PATCH", path: "/webhooker/webhooks/" + tw.ID, key: k.Key, body: map[string]any{"dedup": c.dedup}})
		if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), c.want) {
			t.Errorf("tenant's %v: %d %s, want 400 saying %q", c.dedup, resp.status, resp, c.want)
		}
	}
}
