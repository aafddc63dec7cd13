package admin_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// FuzzAPIBodies sends arbitrary JSON bodies to every write route of the
// API, as the operator and as a tenant, against one real backend (SQLite
// files, running engine, the real target policy). Whatever the body: no
// panic, no 5xx, a JSON answer; a target a tenant creates obeys the tenant
// limits; and no answer shows a target header's value.
func FuzzAPIBodies(f *testing.F) {
	for _, seed := range []struct {
		route  uint8
		tenant bool
		body   string
	}{
		{0, true, `{"name":"a","description":"d","retention_days":999999}`},
		{1, false, `{"name":"b","active":false,"retention_days":36500}`},
		{2, true, `{"key":"future-key","active":true}`},
		{3, false, `{"key":"..","active":null}`},
		{4, true, `{"name":"t","type":"http","url":"http://2130706433:2019/stop","options":{"timeout":"1000000h","backoff_initial":1,"max_retries":99999}}`},
		{4, true, `{"name":"t","type":"http","url":"https://8.8.8.8/x","options":{"headers":{"Authorization":"Bearer s3cret-value","X":"a\r\nB: c"}}}`},
		{5, false, `{"url":"http://u:p@[::ffff:127.0.0.1]/","options":{"headers":{}}}`},
		{6, false, `{"name":"u"}`},
		{7, false, `{"name":"k","expires_at":"soon"}`},
		{8, true, `{"target_id":"00000000-0000-0000-0000-000000000000"}`},
		{1, true, `[]`},
		{0, false, `{"name":"\u0000"}` + strings.Repeat(" ", 10)},
	} {
		f.Add(seed.route, seed.tenant, []byte(seed.body))
	}

	e := newEnvWith(f, func(b *admin.Backend) {
		policy, err := engine.NewTargetPolicy(engine.PolicyConfig{AdminEndpoints: []string{"localhost:2019"}})
		if err != nil {
			f.Fatal(err)
		}
		b.CheckTargetURL = policy.CheckURL
	})
	user, key := e.createUser("fuzzer")
	var wh webhookJSON
	expect(f, serve(f, e.tenant, req{method: "POST", path: "/webhooker/webhooks", body: map[string]any{"name": "fuzzed"}, key: key.Key}),
		http.StatusCreated, &wh)
	var tg targetJSON
	expect(f, serve(f, e.tenant, req{method: "POST", path: "/webhooker/webhooks/" + wh.ID + "/targets", key: key.Key,
		body: map[string]any{"name": "t0", "type": "database"}}), http.StatusCreated, &tg)
	evID := e.ingest(wh.Entrypoints[0].Key, incoming{body: []byte(`{}`)})
	base := "/webhooker/webhooks/" + wh.ID
	routes := []struct{ method, path string }{
		{"POST", "/webhooker/webhooks"},
		{"PATCH", base},
		{"POST", base + "/entrypoints"},
		{"PATCH", base + "/entrypoints/" + wh.Entrypoints[0].ID},
		{"POST", base + "/targets"},
		{"PATCH", base + "/targets/" + tg.ID},
		{"POST", "/webhooker/users"},
		{"POST", "/webhooker/users/" + user.ID + "/api-keys"},
		{"POST", base + "/events/" + evID + "/redeliver"},
	}

	f.Fuzz(func(t *testing.T, route uint8, tenant bool, body []byte) {
		r := routes[int(route)%len(routes)]
		h, k := e.admin, ""
		if tenant {
			h, k = e.tenant, key.Key
		}
		resp := serve(t, h, req{method: r.method, path: r.path, body: body, key: k})
		if resp.status >= 500 {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, resp.status, resp.body)
		}
		if resp.status != http.StatusNoContent && !json.Valid(resp.body) {
			t.Fatalf("%s %s: answer is not JSON: %q", r.method, r.path, resp.body)
		}
		if resp.status/100 != 2 || !strings.HasSuffix(r.path, "/targets") && !strings.Contains(r.path, "/targets/") {
			return
		}
		var got targetJSON
		if err := json.Unmarshal(resp.body, &got); err != nil {
			t.Fatalf("a target answer that does not decode: %v: %s", err, resp.body)
		}
		for name, v := range got.Options.Headers {
			if v != storage.RedactedValue {
				t.Fatalf("the answer shows header %s's value %q", name, v)
			}
		}
		if !tenant || r.method != "POST" {
			return // an operator's change may widen a tenant's target
		}
		stored, err := e.main.Webhook(t.Context(), wh.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range stored.Targets {
			if st.ID == got.ID {
				if err := st.ValidateWithin(storage.TenantLimits()); err != nil {
					t.Fatalf("a tenant's target was stored outside the tenant limits: %v", err)
				}
			}
		}
	})
}
