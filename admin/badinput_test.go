package admin_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestBadJSON(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("target-of-abuse")
	paths := map[string]string{
		"create webhook": "/webhooker/webhooks",
		"add target":     "/webhooker/webhooks/" + w.ID + "/targets",
	}
	for what, path := range paths {
		for _, c := range []struct {
			name, body string
			want       []string // in the error message
		}{
			{"malformed", `{"name": "x",}`, []string{"malformed JSON", "byte"}},
			{"truncated", `{"name": "x"`, []string{"JSON"}},
			{"not JSON", `name=x`, []string{"malformed JSON"}},
			{"unknown field", `{"name": "x", "colour": "red"}`, []string{"unknown field", "colour"}},
			{"wrong type", `{"name": 42}`, []string{"name", "number"}},
			{"array", `[{"name": "x"}]`, []string{"array"}},
			{"empty", ``, []string{"empty"}},
			{"two values", `{"name": "x"} {"name": "y"}`, []string{"more than one"}},
		} {
			resp := serve(t, e.admin, req{method: "POST", path: path, body: c.body})
			if resp.status != http.StatusBadRequest {
				t.Errorf("%s, %s: %d %s, want 400", what, c.name, resp.status, resp)
				continue
			}
			msg := resp.errorMessage(t)
			for _, want := range c.want {
				if !strings.Contains(msg, want) {
					t.Errorf("%s, %s: error %q does not say %q", what, c.name, msg, want)
				}
			}
		}
	}
	// Nested wrong types name the field too.
	resp := e.call("POST", paths["add target"], `{"name":"x","type":"http","url":"https://x.example/","options":{"max_retries":"many"}}`)
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "max_retries") {
		t.Errorf("options.max_retries \"many\": %d %s, want 400 naming it", resp.status, resp)
	}
	resp = e.call("PATCH", "/webhooker/webhooks/"+w.ID, `{"active": "yes"}`)
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "active") {
		t.Errorf("active \"yes\": %d %s, want 400 naming it", resp.status, resp)
	}
	// PATCH needs a body; nothing was changed by any of this.
	if resp := e.call("PATCH", "/webhooker/webhooks/"+w.ID, nil); resp.status != http.StatusBadRequest {
		t.Errorf("PATCH without a body: %d %s, want 400", resp.status, resp)
	}
	var list struct{ Webhooks []webhookJSON }
	e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, &list)
	if len(list.Webhooks) != 1 || len(list.Webhooks[0].Targets) != 0 || !list.Webhooks[0].Active {
		t.Errorf("after bad requests: %+v", list.Webhooks)
	}
}

func TestWrongContentType(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("ct")
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		for _, path := range []string{"/webhooker/webhooks", "/webhooker/users", "/webhooker/webhooks/" + w.ID + "/targets"} {
			resp := serve(t, e.admin, req{method: "POST", path: path, body: `{"name":"x"}`, contentType: ct})
			if resp.status != http.StatusUnsupportedMediaType {
				t.Errorf("POST %s as %s: %d %s, want 415", path, ct, resp.status, resp)
				continue
			}
			if msg := resp.errorMessage(t); !strings.Contains(msg, "application/json") {
				t.Errorf("415 message %q does not say what to send", msg)
			}
		}
	}
	// With a charset, or no Content-Type at all, JSON is accepted.
	expect(t, serve(t, e.admin, req{method: "POST", path: "/webhooker/users", body: `{"name":"a"}`,
		contentType: "application/json; charset=utf-8"}), http.StatusCreated, nil)
	expect(t, serve(t, e.admin, req{method: "POST", path: "/webhooker/users", body: `{"name":"b"}`, contentType: "-"}),
		http.StatusCreated, nil)
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("big")
	big := `{"name":"x","description":"` + strings.Repeat("a", 1<<20) + `"}`
	for _, path := range []string{"/webhooker/webhooks", "/webhooker/webhooks/" + w.ID + "/targets", "/webhooker/users"} {
		resp := e.call("POST", path, big)
		if resp.status != http.StatusRequestEntityTooLarge {
			t.Errorf("POST %s with %d bytes: %d %.200s, want 413", path, len(big), resp.status, resp)
			continue
		}
		resp.errorMessage(t)
	}
	if resp := e.call("PATCH", "/webhooker/webhooks/"+w.ID, big); resp.status != http.StatusRequestEntityTooLarge {
		t.Errorf("PATCH with %d bytes: %d, want 413", len(big), resp.status)
	}
	// Just under the bound is read (and refused for what it says).
	under := `{"name":"x","description":"` + strings.Repeat("a", 1<<20-40) + `"}`
	if resp := e.call("POST", "/webhooker/webhooks", under); resp.status != http.StatusBadRequest ||
		!strings.Contains(resp.errorMessage(t), "description") {
		t.Errorf("POST with %d bytes: %d %.200s, want 400 about the description", len(under), resp.status, resp)
	}
}

func TestWrongMethod(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("methods")
	wid := "/webhooker/webhooks/" + w.ID
	ev, u := uuid.NewString(), uuid.NewString()
	for _, c := range []struct{ method, path, allow string }{
		{"PUT", "/webhooker/webhooks", "GET, POST"},
		{"DELETE", "/webhooker/webhooks", "GET, POST"},
		{"POST", wid, "DELETE, GET, PATCH"},
		{"PUT", wid, "DELETE, GET, PATCH"},
		{"GET", wid + "/entrypoints", "POST"},
		{"GET", wid + "/entrypoints/" + uuid.NewString(), "DELETE, PATCH"},
		{"GET", wid + "/targets", "POST"},
		{"POST", wid + "/targets/" + uuid.NewString(), "DELETE, PATCH"},
		{"POST", wid + "/events", "GET"},
		{"DELETE", wid + "/events/" + ev, "GET"},
		{"GET", wid + "/events/" + ev + "/redeliver", "POST"},
		{"PATCH", "/webhooker/users", "GET, POST"},
		{"PATCH", "/webhooker/users/" + u, "DELETE, GET"},
		{"PUT", "/webhooker/users/" + u + "/api-keys", "GET, POST"},
		{"GET", "/webhooker/users/" + u + "/api-keys/" + uuid.NewString(), "DELETE"},
	} {
		resp := e.call(c.method, c.path, nil)
		if resp.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d %s, want 405", c.method, c.path, resp.status, resp)
			continue
		}
		if got := resp.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
		resp.errorMessage(t)
	}
	// The tenant handler answers 405 the same way, once authenticated.
	_, k := e.createUser("m")
	resp := serve(t, e.tenant, req{method: "PUT", path: "/webhooker/webhooks", key: k.Key})
	if resp.status != http.StatusMethodNotAllowed || resp.header.Get("Allow") != "GET, POST" {
		t.Errorf("tenant PUT /webhooks: %d Allow %q", resp.status, resp.header.Get("Allow"))
	}
}

// TestIDsThatAreNotUUIDs: every id in a path must be a canonical UUID or it
// is 404, before storage or a file name sees it.
func TestIDsThatAreNotUUIDs(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("ids")
	u, k := e.createUser("ids")
	wid := "/webhooker/webhooks/" + w.ID
	for _, bad := range []string{
		"x", "..", "...", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "webhooker.db", "%00",
		strings.ToUpper(w.ID), "{" + w.ID + "}", "urn:uuid:" + w.ID, strings.ReplaceAll(w.ID, "-", ""),
		w.ID + "%20", uuid.NewString(),
	} {
		for _, q := range []struct{ method, path string }{
			{"GET", "/webhooker/webhooks/" + bad},
			{"GET", "/webhooker/webhooks/" + bad + "/events"},
			{"GET", wid + "/events/" + bad},
			{"POST", wid + "/events/" + bad + "/redeliver"},
			{"PATCH", wid + "/entrypoints/" + bad},
			{"DELETE", wid + "/targets/" + bad},
			{"GET", "/webhooker/users/" + bad},
			{"DELETE", "/webhooker/users/" + u.ID + "/api-keys/" + bad},
		} {
			var body any
			if q.method == "PATCH" {
				body = map[string]any{"active": true}
			}
			resp := e.call(q.method, q.path, body)
			// A path Go's mux must clean is redirected, never served.
			redirected := resp.status/100 == 3 && strings.Contains(bad, "..")
			if resp.status != http.StatusNotFound && !redirected {
				t.Errorf("%s %s: %d %s, want 404", q.method, q.path, resp.status, resp)
			}
		}
	}
	for _, path := range []string{"/webhooker/nothing", "/webhooker/", "/webhooker", "/webhooker/webhooks/" + w.ID + "/stats", "/other"} {
		if resp := e.call("GET", path, nil); resp.status != http.StatusNotFound {
			t.Errorf("GET %s: %d %s, want 404", path, resp.status, resp)
		}
	}
	if resp := serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks/..", key: k.Key}); resp.status != http.StatusNotFound &&
		resp.status/100 != 3 {
		t.Errorf("tenant GET /webhooker/webhooks/..: %d", resp.status)
	}
	// Only the webhook's own event DB exists: nothing was created by a bad id.
	files, _ := filepath.Glob(filepath.Join(e.dir, "*"))
	var names []string
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && !st.IsDir() && strings.HasPrefix(filepath.Base(f), "events-") &&
			!strings.HasPrefix(filepath.Base(f), "events-"+w.ID) {
			names = append(names, filepath.Base(f))
		}
	}
	if len(names) != 0 {
		t.Errorf("files made by bad ids: %v", names)
	}
}
