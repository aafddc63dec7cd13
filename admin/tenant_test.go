package admin_test

import (
	"net/http"
	"strings"
	"testing"
)

func (e *env) as(key, method, path string, body any) response {
	e.t.Helper()
	return serve(e.t, e.tenant, req{method: method, path: path, body: body, key: key})
}

func TestTenantAuthentication(t *testing.T) {
	e := newEnv(t)
	u, k := e.createUser("frank")
	_, revoked := e.createUser("gina")
	var gina struct{ Users []userJSON }
	e.must(http.StatusOK, "GET", "/webhooker/users", nil, &gina)
	for _, x := range gina.Users {
		if x.Name == "gina" {
			e.must(http.StatusNoContent, "DELETE", "/webhooker/users/"+x.ID+"/api-keys/"+revoked.ID, nil, nil)
		}
	}

	for name, header := range map[string]string{
		"no Authorization":       "",
		"empty bearer":           "Bearer ",
		"Basic":                  "Basic Zm9vOmJhcg==",
		"no scheme":              k.Key,
		"unknown key":            "Bearer whk_" + strings.Repeat("A", 43),
		"not an API key":         "Bearer hello",
		"key with a suffix":      "Bearer " + k.Key + "x",
		"revoked key":            "Bearer " + revoked.Key,
		"very long":              "Bearer whk_" + strings.Repeat("A", 5000),
		"key of the wrong shape": "Bearer " + strings.ToUpper(k.Key),
	} {
		for _, path := range []string{"/webhooker/webhooks", "/webhooker/users", "/webhooker/anything"} {
			q := req{method: "GET", path: path}
			if header != "" {
				q.header = http.Header{"Authorization": {header}}
			}
			resp := serve(t, e.tenant, q)
			if resp.status != http.StatusUnauthorized {
				t.Errorf("%s, GET %s: %d %s, want 401", name, path, resp.status, resp)
				continue
			}
			if wa := resp.header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer") {
				t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge", name, wa)
			}
			resp.errorMessage(t)
		}
	}
	// The scheme is case-insensitive.
	resp := serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks", header: http.Header{"Authorization": {"bearer " + k.Key}}})
	if resp.status != http.StatusOK {
		t.Errorf("lower-case bearer: %d %s, want 200", resp.status, resp)
	}
	// Users and keys are not served to tenants, even with a good key.
	for _, q := range []struct{ method, path string }{
		{"GET", "/webhooker/users"},
		{"POST", "/webhooker/users"},
		{"GET", "/webhooker/users/" + u.ID},
		{"DELETE", "/webhooker/users/" + u.ID},
		{"POST", "/webhooker/users/" + u.ID + "/api-keys"},
		{"GET", "/webhooker/users/" + u.ID + "/api-keys"},
		{"DELETE", "/webhooker/users/" + u.ID + "/api-keys/" + k.ID},
	} {
		resp := e.as(k.Key, q.method, q.path, nil)
		if resp.status != http.StatusNotFound {
			t.Errorf("tenant %s %s: %d %s, want 404", q.method, q.path, resp.status, resp)
		}
	}
	// The key's user still exists and the failed attempts broke nothing.
	e.must(http.StatusOK, "GET", "/webhooker/users/"+u.ID, nil, nil)
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	alice, ka := e.createUser("alice")
	bob, kb := e.createUser("bob")
	operator := e.createWebhook("operators")

	// Alice creates a webhook: it is hers, whatever she says.
	var aw webhookJSON
	expect(t, e.as(ka.Key, "POST", "/webhooker/webhooks", map[string]any{"name": "alices"}), http.StatusCreated, &aw)
	if aw.UserID != alice.ID || len(aw.Entrypoints) != 1 {
		t.Fatalf("alice's webhook = %+v", aw)
	}
	expect(t, e.as(ka.Key, "POST", "/webhooker/webhooks", map[string]any{"name": "alices-2", "user_id": alice.ID}), http.StatusCreated, nil)
	resp := e.as(ka.Key, "POST", "/webhooker/webhooks", map[string]any{"name": "stolen", "user_id": bob.ID})
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "user_id") {
		t.Errorf("alice creating for bob: %d %s, want 400 naming user_id", resp.status, resp)
	}
	var bw webhookJSON
	expect(t, e.as(kb.Key, "POST", "/webhooker/webhooks", map[string]any{"name": "bobs"}), http.StatusCreated, &bw)
	if bw.UserID != bob.ID {
		t.Errorf("bob's webhook belongs to %q", bw.UserID)
	}
	// The owner is what the operator sees too.
	var got webhookJSON
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+aw.ID, nil, &got)
	if got.UserID != alice.ID {
		t.Errorf("operator sees alice's webhook owned by %q", got.UserID)
	}

	// Lists show only one's own.
	names := func(key string) []string {
		var list struct{ Webhooks []webhookJSON }
		expect(t, e.as(key, "GET", "/webhooker/webhooks", nil), http.StatusOK, &list)
		var out []string
		for _, w := range list.Webhooks {
			out = append(out, w.Name)
		}
		return out
	}
	if got := names(ka.Key); strings.Join(got, ",") != "alices,alices-2" {
		t.Errorf("alice lists %v", got)
	}
	if got := names(kb.Key); strings.Join(got, ",") != "bobs" {
		t.Errorf("bob lists %v", got)
	}
	var all struct{ Webhooks []webhookJSON }
	e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, &all)
	if len(all.Webhooks) != 4 {
		t.Errorf("the operator lists %d webhooks, want 4", len(all.Webhooks))
	}

	// Alice works on hers.
	base := "/webhooker/webhooks/" + aw.ID
	var tgt targetJSON
	expect(t, e.as(ka.Key, "POST", base+"/targets", map[string]any{"name": "keep", "type": "database"}), http.StatusCreated, &tgt)
	var ep entrypointJSON
	expect(t, e.as(ka.Key, "POST", base+"/entrypoints", nil), http.StatusCreated, &ep)
	expect(t, e.as(ka.Key, "PATCH", base, map[string]any{"description": "mine"}), http.StatusOK, nil)
	id := e.ingest(ep.Key, incoming{body: []byte(`{"x":1}`), contentType: "application/json"})
	var page eventPage
	eventually(t, "alice's event delivered", func() (bool, string) {
		expect(t, e.as(ka.Key, "GET", base+"/events", nil), http.StatusOK, &page)
		ok := len(page.Events) == 1 && len(page.Events[0].Deliveries) == 1 && page.Events[0].Deliveries[0].Status == "delivered"
		return ok, string(e.as(ka.Key, "GET", base+"/events", nil).body)
	})
	expect(t, e.as(ka.Key, "GET", base+"/events/"+id, nil), http.StatusOK, nil)
	expect(t, e.as(ka.Key, "POST", base+"/events/"+id+"/redeliver", nil), http.StatusAccepted, nil)

	// To bob, alice's webhook (and the operator's) does not exist: 404 for
	// every route, exactly as for an id that exists nowhere.
	for _, wid := range []string{aw.ID, operator.ID} {
		b := "/webhooker/webhooks/" + wid
		for _, q := range []struct {
			method, path string
			body         any
		}{
			{"GET", b, nil},
			{"PATCH", b, map[string]any{"name": "mine-now"}},
			{"DELETE", b, nil},
			{"POST", b + "/entrypoints", map[string]any{"key": "bob-steals"}},
			{"PATCH", b + "/entrypoints/" + ep.ID, map[string]any{"active": false}},
			{"DELETE", b + "/entrypoints/" + ep.ID, nil},
			{"POST", b + "/targets", map[string]any{"name": "leak", "type": "http", "url": "https://bob.example/"}},
			{"PATCH", b + "/targets/" + tgt.ID, map[string]any{"url": "https://bob.example/"}},
			{"DELETE", b + "/targets/" + tgt.ID, nil},
			{"GET", b + "/events", nil},
			{"GET", b + "/events/" + id, nil},
			{"POST", b + "/events/" + id + "/redeliver", nil},
		} {
			resp := e.as(kb.Key, q.method, q.path, q.body)
			if resp.status != http.StatusNotFound {
				t.Errorf("bob %s %s: %d %s, want 404", q.method, q.path, resp.status, resp)
				continue
			}
			if msg := resp.errorMessage(t); strings.Contains(msg, "alice") || strings.Contains(msg, "operators") ||
				strings.Contains(msg, "forbidden") {
				t.Errorf("bob %s %s: error %q tells about the webhook", q.method, q.path, msg)
			}
		}
	}
	// Nothing of bob's attempts changed alice's webhook.
	e.must(http.StatusOK, "GET", base, nil, &got)
	if got.Name != "alices" || got.Description != "mine" || len(got.Targets) != 1 || len(got.Entrypoints) != 2 {
		t.Errorf("alice's webhook after bob's attempts: %+v", got)
	}
	var ev eventJSON
	eventually(t, "the redelivery", func() (bool, string) {
		e.must(http.StatusOK, "GET", base+"/events/"+id, nil, &ev)
		return len(ev.Deliveries) == 2 && ev.Deliveries[1].Status == "delivered", ev.Deliveries[len(ev.Deliveries)-1].Status
	})

	// Alice deletes hers; bob's stays.
	expect(t, e.as(ka.Key, "DELETE", base, nil), http.StatusNoContent, nil)
	if got := names(kb.Key); len(got) != 1 {
		t.Errorf("bob lists %v after alice's delete", got)
	}
	expect(t, e.as(kb.Key, "GET", "/webhooker/webhooks/"+bw.ID, nil), http.StatusOK, nil)
}
