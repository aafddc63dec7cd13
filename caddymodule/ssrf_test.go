package caddymodule_test

// The probe that turned a tenant's API key into the server's keys, replayed
// through a real Caddy: a tenant aims targets at Caddy's admin endpoint
// and at other loopback services. Each is refused when the target is
// created; targets already in the main DB (made before the policy existed)
// are blocked where the connection is made. Nothing reaches the admin
// endpoint: its config and users are unchanged and Caddy still runs.

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestTenantCannotReachTheAdminEndpointOrLoopback(t *testing.T) {
	g := startTenantSite(t)
	victim, mallory := g.newUser("victim"), g.newUser("mallory")
	var vw apiWebhook
	g.site(victim.Key, "POST", "/webhooks", map[string]any{"name": "victims"}).decode(t, http.StatusCreated, &vw)

	// Another loopback service, which the tenant would read or port-scan.
	var reached atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		_, _ = io.WriteString(w, "internal secrets")
	}))
	defer other.Close()
	otherPort := other.URL[strings.LastIndexByte(other.URL, ':')+1:]

	configBefore := adminGet(t, "/config/")
	usersBefore := adminGet(t, "/webhooker/users")

	var mw apiWebhook
	g.site(mallory.Key, "POST", "/webhooks", map[string]any{"name": "mallorys"}).decode(t, http.StatusCreated, &mw)
	admin := "localhost:2999"
	attacks := map[string]string{
		// 1. create a user, mint a key for another tenant's user
		"create a user":        "http://" + admin + "/webhooker/users",
		"mint a victim's key":  "http://[::1]:2999/webhooker/users/" + victim.ID + "/api-keys",
		"mint, 0.0.0.0":        "http://0.0.0.0:2999/webhooker/users/" + victim.ID + "/api-keys",
		"mint, decimal":        "http://2130706433:2999/webhooker/users/" + victim.ID + "/api-keys",
		"mint, v4-mapped":      "http://[::ffff:127.0.0.1]:2999/webhooker/users/" + victim.ID + "/api-keys",
		"mint, short":          "http://127.1:2999/webhooker/users/" + victim.ID + "/api-keys",
		"mint, with userinfo":  "http://user:pass@127.0.0.1:2999/webhooker/users",
		"mint, trailing dot":   "http://localhost.:2999/webhooker/users",
		"mint, uppercase name": "http://LOCALHOST:2999/webhooker/users",
		// 2. add a server that proxies the admin endpoint; read the config
		"add a server": "http://127.0.0.1:2999/config/apps/http/servers/evil",
		"load":         "http://[::1]:2999/load",
		// 3. stop Caddy
		"stop": "http://localhost:2999/stop",
		// 4. other loopback services, and the cloud metadata service
		"loopback service": "http://127.0.0.1:" + otherPort + "/",
		"metadata":         "http://169.254.169.254/latest/meta-data/",
		"private":          "http://10.0.0.1/",
	}
	for name, u := range attacks {
		a := g.site(mallory.Key, "POST", "/webhooks/"+mw.ID+"/targets", map[string]any{"name": "t", "type": "http", "url": u})
		if a.status != http.StatusBadRequest {
			t.Errorf("%s (%s): %s, want 400", name, u, a)
			continue
		}
		if msg := a.errorMessage(t); !strings.Contains(msg, "target policy") && !strings.Contains(msg, "header") {
			t.Errorf("%s (%s): the refusal %q names no rule", name, u, msg)
		}
	}
	// The operator cannot aim a target at the admin endpoint either.
	var ops apiWebhook
	g.admin("POST", "/webhooks", map[string]any{"name": "operators"}).decode(t, http.StatusCreated, &ops)
	if a := g.admin("POST", "/webhooks/"+ops.ID+"/targets", map[string]any{"name": "t", "type": "http", "url": "http://127.0.0.1:2999/stop"}); a.status != http.StatusBadRequest {
		t.Errorf("operator target on the admin endpoint: %s, want 400", a)
	}

	// Targets from before the policy, written straight into the main DB,
	// are blocked when the connection is made.
	plant := map[string]string{
		"users": "http://localhost:2999/webhooker/users",
		"keys":  "http://[::1]:2999/webhooker/users/" + victim.ID + "/api-keys",
		"evil":  "http://127.0.0.1:2999/config/apps/http/servers/evil",
		"stop":  "http://127.0.0.1:2999/stop",
		"other": "http://localhost:" + otherPort + "/",
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(g.dataDir, "webhooker.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	for name, u := range plant {
		if _, err := db.Exec(`INSERT INTO targets (id, webhook_id, name, type, url, options, active, created_at, updated_at)
			VALUES (?, ?, ?, 'http', ?, '{"max_retries":3}', 1, ?, ?)`, uuid.NewString(), mw.ID, name, u, now, now); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	// Any change through the API puts the main DB's configuration in force.
	g.site(mallory.Key, "PATCH", "/webhooks/"+mw.ID, map[string]any{"description": "planted"}).decode(t, http.StatusOK, nil)

	g.site(mallory.Key, "GET", "/webhooks/"+mw.ID, nil).decode(t, http.StatusOK, &mw)
	body := fmt.Sprintf(`{"name":"evil-user","user_id":%q}`, victim.ID)
	resp, err := http.Post(siteURL+"/hooks/"+mw.Entrypoints[0].Key, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	evBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d %s", resp.StatusCode, evBody)
	}
	evID := eventIDFrom(t, evBody)

	var ev apiEvent
	eventually(t, 20*time.Second, func() bool {
		g.site(mallory.Key, "GET", "/webhooks/"+mw.ID+"/events/"+evID, nil).decode(t, http.StatusOK, &ev)
		for _, d := range ev.Deliveries {
			if d.Status != "failed" {
				return false
			}
		}
		return len(ev.Deliveries) == len(plant)
	}, "every planted delivery to end failed")
	for _, d := range ev.Deliveries {
		if d.Attempts != 1 || len(d.Results) != 1 {
			t.Errorf("delivery to %s: %d attempts, %d results; want 1 (a policy refusal is not retried)", d.TargetName, d.Attempts, len(d.Results))
			continue
		}
		r := d.Results[0]
		if r.StatusCode != 0 || !strings.Contains(r.Error, "target policy") {
			t.Errorf("delivery to %s: status %d, error %q; want no answer and a target policy refusal", d.TargetName, r.StatusCode, r.Error)
		}
	}

	if n := reached.Load(); n != 0 {
		t.Errorf("the other loopback service got %d requests", n)
	}
	if after := adminGet(t, "/config/"); after != configBefore {
		t.Errorf("Caddy's config changed:\nbefore %s\nafter  %s", configBefore, after)
	}
	if after := adminGet(t, "/webhooker/users"); after != usersBefore {
		t.Errorf("the users changed:\nbefore %s\nafter  %s", usersBefore, after)
	}
	var keys struct {
		APIKeys []any `json:"api_keys"`
	}
	g.admin("GET", "/users/"+victim.ID+"/api-keys", nil).decode(t, http.StatusOK, &keys)
	if len(keys.APIKeys) != 1 {
		t.Errorf("the victim has %d API keys, want 1", len(keys.APIKeys))
	}
}

// adminGet reads a path of the admin endpoint; that it answers at all
// shows Caddy still runs.
func adminGet(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(adminURL + path)
	if err != nil {
		t.Fatalf("GET %s on the admin endpoint: %v (has Caddy stopped?)", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on the admin endpoint: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// eventually waits for cond, failing the test with what after timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
