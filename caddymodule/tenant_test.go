package caddymodule_test

// The tenant API (webhooker_api) on an ordinary site, through a real
// in-process Caddy: users and keys are made on the admin endpoint, then two
// users work over the site with their keys.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// tenantSite serves entrypoints and the tenant API on the test site.
func tenantSite(dataDir string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443

	webhooker {
		data_dir %s
	}
}

http://localhost:9080 {
	webhooker /hooks/*
	webhooker_api
	respond /elsewhere "the rest of the site" 200
}
`, dataDir)
}

// startTenantSite starts the gateway with the tenant API on the site.
func startTenantSite(t *testing.T) *gatewayTest {
	t.Helper()
	g := startGateway(t, "")
	if status, body := loadConfig(t, tenantSite(g.dataDir), "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("load the tenant site config: %d %s", status, body)
	}
	return g
}

// site sends a request to the API on the site with an API key.
func (g *gatewayTest) site(key, method, path string, body any) apiAnswer {
	g.t.Helper()
	return g.call(siteURL, key, method, path, body)
}

type apiUser struct {
	ID, Key, KeyID string
}

// newUser creates a user and an API key over the admin endpoint.
func (g *gatewayTest) newUser(name string) apiUser {
	g.t.Helper()
	var u struct{ ID string }
	g.admin("POST", "/users", map[string]any{"name": name}).decode(g.t, http.StatusCreated, &u)
	var k struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	g.admin("POST", "/users/"+u.ID+"/api-keys", map[string]any{"name": "site"}).decode(g.t, http.StatusCreated, &k)
	if !strings.HasPrefix(k.Key, "whk_") {
		g.t.Fatalf("API key %q does not start with whk_", k.Key)
	}
	return apiUser{ID: u.ID, Key: k.Key, KeyID: k.ID}
}

func TestTenantAPIOnSite(t *testing.T) {
	g := startTenantSite(t)
	alice, bob := g.newUser("alice"), g.newUser("bob")
	// The admin's own webhook, owned by no user.
	var operators apiWebhook
	g.admin("POST", "/webhooks", map[string]any{"name": "operators"}).decode(t, http.StatusCreated, &operators)

	// 401 without a good key, with a Bearer challenge.
	for name, auth := range map[string]string{
		"no key":      "",
		"unknown key": "Bearer whk_" + strings.Repeat("x", 43),
		"not Bearer":  "Basic YWxpY2U6c2VjcmV0",
		"bare key":    alice.Key,
	} {
		req, _ := http.NewRequest("GET", siteURL+"/webhooker/webhooks", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		status, header, body := g.do(req)
		if status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, status, body)
			continue
		}
		if !strings.HasPrefix(header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", name, header.Get("WWW-Authenticate"))
		}
		if strings.Contains(string(body), alice.Key) {
			t.Errorf("%s: the answer holds the key", name)
		}
	}

	// Alice creates a webhook: hers.
	var aw apiWebhook
	g.site(alice.Key, "POST", "/webhooks", map[string]any{"name": "alices"}).decode(t, http.StatusCreated, &aw)
	if aw.UserID != alice.ID {
		t.Fatalf("alice's webhook belongs to %q, want %q", aw.UserID, alice.ID)
	}
	if a := g.site(alice.Key, "POST", "/webhooks", map[string]any{"name": "for-bob", "user_id": bob.ID}); a.status != http.StatusBadRequest {
		t.Errorf("alice creating for bob: %s, want 400", a)
	}
	var bw apiWebhook
	g.site(bob.Key, "POST", "/webhooks", map[string]any{"name": "bobs"}).decode(t, http.StatusCreated, &bw)
	var seen apiWebhook
	g.admin("GET", "/webhooks/"+aw.ID, nil).decode(t, http.StatusOK, &seen)
	if seen.UserID != alice.ID {
		t.Errorf("the admin sees alice's webhook owned by %q", seen.UserID)
	}

	// Each lists only their own.
	for _, c := range []struct {
		user apiUser
		want string
	}{{alice, "alices"}, {bob, "bobs"}} {
		var list struct{ Webhooks []apiWebhook }
		g.site(c.user.Key, "GET", "/webhooks", nil).decode(t, http.StatusOK, &list)
		if len(list.Webhooks) != 1 || list.Webhooks[0].Name != c.want {
			t.Errorf("%s lists %+v", c.want, list.Webhooks)
		}
	}

	// Alice gives hers a target; its entrypoint ingests on the site.
	base := "/webhooks/" + aw.ID
	g.site(alice.Key, "POST", base+"/targets", map[string]any{"name": "keep", "type": "database"}).decode(t, http.StatusCreated, nil)
	key := aw.Entrypoints[0].Key
	id := g.mustIngest(key, `{"from":"alice's provider"}`)
	var page apiEventPage
	poll(t, "alice's event delivered", func() (bool, string) {
		g.site(alice.Key, "GET", base+"/events", nil).decode(t, http.StatusOK, &page)
		return len(page.Events) == 1 && allSettled(page.Events[0].Deliveries, 1), fmt.Sprintf("%+v", page)
	})
	if page.Events[0].ID != id || page.Events[0].Deliveries[0].Status != "delivered" {
		t.Errorf("alice's events = %+v", page)
	}
	var ev apiEvent
	g.site(alice.Key, "GET", base+"/events/"+id, nil).decode(t, http.StatusOK, &ev)
	if ev.Body != `{"from":"alice's provider"}` {
		t.Errorf("alice's event = %+v", ev)
	}

	// To bob, alice's webhook and the operator's do not exist.
	for _, wid := range []string{aw.ID, operators.ID} {
		b := "/webhooks/" + wid
		for _, q := range []struct {
			method, path string
			body         any
		}{
			{"GET", b, nil},
			{"PATCH", b, map[string]any{"name": "taken"}},
			{"DELETE", b, nil},
			{"POST", b + "/targets", map[string]any{"name": "spy", "type": "http", "url": "http://127.0.0.1:1/"}},
			{"POST", b + "/entrypoints", nil},
			{"GET", b + "/events", nil},
			{"GET", b + "/events/" + id, nil},
			{"POST", b + "/events/" + id + "/redeliver", nil},
		} {
			if a := g.site(bob.Key, q.method, q.path, q.body); a.status != http.StatusNotFound {
				t.Errorf("bob %s %s: %s, want 404", q.method, q.path, a)
			}
		}
	}
	g.admin("GET", base, nil).decode(t, http.StatusOK, &seen)
	if seen.Name != "alices" || len(seen.Targets) != 1 || len(seen.Entrypoints) != 1 {
		t.Errorf("alice's webhook after bob's attempts: %+v", seen)
	}

	// Users and keys are not served on the site: 404 from the API (not
	// passed on to the rest of the site), 401 without a key.
	for _, q := range []struct{ method, path string }{
		{"GET", "/users"},
		{"POST", "/users"},
		{"GET", "/users/" + bob.ID},
		{"DELETE", "/users/" + bob.ID},
		{"POST", "/users/" + bob.ID + "/api-keys"},
		{"GET", "/no-such-route"},
	} {
		a := g.site(bob.Key, q.method, q.path, nil)
		if a.status != http.StatusNotFound {
			t.Errorf("site %s %s: %s, want 404", q.method, q.path, a)
			continue
		}
		a.errorMessage(t)
		if a := g.site("", q.method, q.path, nil); a.status != http.StatusUnauthorized {
			t.Errorf("site %s %s without a key: %s, want 401", q.method, q.path, a)
		}
	}
	var bobUser struct{ ID string }
	g.admin("GET", "/users/"+bob.ID, nil).decode(t, http.StatusOK, &bobUser)
	// The rest of the site is served as before.
	req, _ := http.NewRequest("GET", siteURL+"/elsewhere", nil)
	if status, _, body := g.do(req); status != http.StatusOK || string(body) != "the rest of the site" {
		t.Errorf("GET /elsewhere: %d %q", status, body)
	}

	// Bob deletes his own; a revoked key is 401 at once.
	if a := g.site(bob.Key, "DELETE", "/webhooks/"+bw.ID, nil); a.status != http.StatusNoContent {
		t.Errorf("bob deleting his webhook: %s", a)
	}
	if a := g.admin("DELETE", "/users/"+alice.ID+"/api-keys/"+alice.KeyID, nil); a.status != http.StatusNoContent {
		t.Fatalf("revoke alice's key: %s", a)
	}
	if a := g.site(alice.Key, "GET", "/webhooks", nil); a.status != http.StatusUnauthorized {
		t.Errorf("alice's revoked key: %s, want 401", a)
	}
	// Her webhook still ingests: the key is for the API, not for providers.
	g.mustIngest(key, `{"after":"revocation"}`)
	// And a user with webhooks cannot be deleted.
	if a := g.admin("DELETE", "/users/"+alice.ID, nil); a.status != http.StatusConflict {
		t.Errorf("delete alice while she owns a webhook: %s, want 409", a)
	}
}
