package admin_test

import (
	"net/http"
	"strings"
	"testing"
)

// A target's filter is created, shown, changed and removed through the API;
// one that does not compile is a 400 with CEL's message, and tenants are
// held to a shorter one.
func TestTargetFilterThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("github")
	base := "/webhooker/webhooks/" + w.ID + "/targets"
	const pr = `body.action == "opened" && header["X-Github-Event"] == "pull_request"`

	var added struct {
		ID     string `json:"id"`
		Filter string `json:"filter"`
	}
	e.must(http.StatusCreated, "POST", base, map[string]any{"name": "prs", "type": "database", "filter": pr}, &added)
	if added.Filter != pr {
		t.Fatalf("created with filter %q, want %q", added.Filter, pr)
	}
	var read struct {
		Targets []struct {
			Filter string `json:"filter"`
		} `json:"targets"`
	}
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+w.ID, nil, &read)
	if len(read.Targets) != 1 || read.Targets[0].Filter != pr {
		t.Fatalf("read back %+v", read.Targets)
	}

	for _, c := range []struct {
		name, method, path, filter, want string
	}{
		{"create, syntax", "POST", base, `body.action ==`, "Syntax error"},
		{"create, unknown variable", "POST", base, `request.method == "POST"`, "undeclared reference to 'request'"},
		{"create, header not canonical", "POST", base, `header["x-github-event"] == "push"`, `write header["X-Github-Event"]`},
		{"update, syntax", "PATCH", base + "/" + added.ID, `body.action ==`, "Syntax error"},
		{"update, not a bool", "PATCH", base + "/" + added.ID, `method`, "not a bool"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := e.call(c.method, c.path, map[string]any{"name": "x", "type": "database", "filter": c.filter})
			if resp.status != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", resp.status, resp)
			}
			if msg := resp.errorMessage(t); !strings.Contains(msg, c.want) {
				t.Fatalf("error %q does not say %q", msg, c.want)
			}
		})
	}

	var updated struct {
		Name   string `json:"name"`
		Filter string `json:"filter"`
	}
	e.must(http.StatusOK, "PATCH", base+"/"+added.ID, map[string]any{"filter": `header["X-Github-Event"] == "push"`}, &updated)
	if updated.Filter != `header["X-Github-Event"] == "push"` || updated.Name != "prs" {
		t.Fatalf("updated %+v", updated)
	}
	e.must(http.StatusOK, "PATCH", base+"/"+added.ID, map[string]any{"filter": ""}, &updated)
	if updated.Filter != "" {
		t.Fatalf("filter not removed: %+v", updated)
	}

	// A tenant: 1024 bytes at most.
	_, k := e.createUser("frank")
	var tw webhookJSON
	expect(t, serve(t, e.tenant, req{method: "POST", path: "/webhooker/webhooks", body: map[string]any{"name": "mine"}, key: k.Key}), http.StatusCreated, &tw)
	long := `method == "` + strings.Repeat("a", 1100) + `"`
	resp := serve(t, e.tenant, req{method: "POST", path: "/webhooker/webhooks/" + tw.ID + "/targets", key: k.Key,
		body: map[string]any{"name": "long", "type": "database", "filter": long}})
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "at most 1024 (tenant limits)") {
		t.Fatalf("tenant's long filter: %d %s", resp.status, resp)
	}
	resp = serve(t, e.tenant, req{method: "POST", path: "/webhooker/webhooks/" + tw.ID + "/targets", key: k.Key,
		body: map[string]any{"name": "short", "type": "database", "filter": `method == "POST"`}})
	if resp.status != http.StatusCreated {
		t.Fatalf("tenant's filter: %d %s", resp.status, resp)
	}
}
