package admin_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/webhooker/caddy-webhooker/admin"
)

// TestConfigReadOnlyRefusesEveryConfigWrite: with ConfigReadOnly set (cluster
// mode), every write to the configuration answers 409 with the reason and
// writes nothing; reads, and the operations on events, are served.
func TestConfigReadOnlyRefusesEveryConfigWrite(t *testing.T) {
	var b *admin.Backend
	e := newEnvWith(t, func(bk *admin.Backend) { b = bk })
	wh := e.createWebhook("before")
	tg := e.addTarget(wh.ID, map[string]any{"name": "db", "type": "database"})
	user, key := e.createUser("alice")
	const why = "cluster mode: refused for the test"
	b.ConfigReadOnly = why

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/webhooker/webhooks", map[string]any{"name": "after"}},
		{"PATCH", "/webhooker/webhooks/" + wh.ID, map[string]any{"description": "x"}},
		{"DELETE", "/webhooker/webhooks/" + wh.ID, nil},
		{"POST", "/webhooker/webhooks/" + wh.ID + "/entrypoints", map[string]any{"key": "k-after"}},
		{"POST", "/webhooker/webhooks/" + wh.ID + "/targets", map[string]any{"name": "t2", "type": "log"}},
		{"PATCH", "/webhooker/webhooks/" + wh.ID + "/targets/" + tg.ID, map[string]any{"name": "renamed"}},
		{"DELETE", "/webhooker/webhooks/" + wh.ID + "/targets/" + tg.ID, nil},
		{"POST", "/webhooker/webhooks/" + wh.ID + "/targets/" + tg.ID + "/pause", nil},
		{"POST", "/webhooker/webhooks/" + wh.ID + "/targets/" + tg.ID + "/resume", nil},
		{"POST", "/webhooker/users", map[string]any{"name": "bob"}},
		{"DELETE", "/webhooker/users/" + user.ID, nil},
		{"POST", "/webhooker/users/" + user.ID + "/api-keys", map[string]any{"name": "k2"}},
		{"DELETE", "/webhooker/users/" + user.ID + "/api-keys/" + key.ID, nil},
	} {
		resp := e.call(c.method, c.path, c.body)
		if resp.status != http.StatusConflict || !strings.Contains(resp.String(), why) {
			t.Errorf("%s %s: %d %s, want 409 saying why", c.method, c.path, resp.status, resp)
		}
	}
	// Nothing was written.
	var list struct {
		Webhooks []webhookJSON `json:"webhooks"`
	}
	e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].Name != "before" {
		t.Fatalf("webhooks after the refused writes: %+v", list.Webhooks)
	}
	var got webhookJSON
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+wh.ID, nil, &got)
	if len(got.Targets) != 1 || got.Targets[0].Name != "db" || got.Targets[0].Paused {
		t.Fatalf("the webhook after the refused writes: %+v", got)
	}
	e.must(http.StatusOK, "GET", "/webhooker/users/"+user.ID, nil, nil)
}

// TestSettingsTellTheClusterNode: in cluster mode GET /settings carries the
// node's state for the event-log page, on the admin faces only.
func TestSettingsTellTheClusterNode(t *testing.T) {
	e := newEnvWith(t, func(b *admin.Backend) {
		b.Cluster = func() admin.ClusterState {
			return admin.ClusterState{Node: "n2", Ready: true, Routes: 2, Partitions: 16, PartitionsOwned: 5, HeldMessages: 3, ConfigReadOnly: "why"}
		}
	})
	var got struct {
		Cluster *admin.ClusterState `json:"cluster"`
	}
	e.must(http.StatusOK, "GET", "/webhooker/settings", nil, &got)
	if c := got.Cluster; c == nil || c.Node != "n2" || !c.Ready || c.Routes != 2 || c.PartitionsOwned != 5 || c.HeldMessages != 3 || c.ConfigReadOnly != "why" {
		t.Fatalf("settings' cluster: %+v", got.Cluster)
	}
	_, key := e.createUser("tenant")
	resp := serve(t, e.tenant, req{method: "GET", path: "/webhooker/settings", key: key.Key})
	if resp.status != http.StatusOK || strings.Contains(resp.String(), "cluster") {
		t.Fatalf("tenant settings: %d %s", resp.status, resp)
	}
}

// TestEventsBeforeAtIsChecked: before_at, the cursor's time for pages
// merged from several nodes, is an RFC 3339 time in range, else 400.
func TestEventsBeforeAtIsChecked(t *testing.T) {
	e := newEnv(t)
	wh := e.createWebhook("w")
	for _, bad := range []string{"yesterday", "3000-01-01T00:00:00Z", "2026-13-01T00:00:00Z"} {
		resp := e.call("GET", "/webhooker/webhooks/"+wh.ID+"/events?before=01a2359e-e8b7-7ed6-8c47-03a2c0832d56&before_at="+bad, nil)
		if resp.status != http.StatusBadRequest || !strings.Contains(resp.String(), "before_at") {
			t.Errorf("before_at=%s: %d %s, want 400 naming before_at", bad, resp.status, resp)
		}
	}
	// A cursor of another node's event, with its time: an empty page here.
	resp := e.call("GET", "/webhooker/webhooks/"+wh.ID+"/events?before=01a2359e-e8b7-7ed6-8c47-03a2c0832d56&before_at=2026-01-01T00:00:00Z", nil)
	if resp.status != http.StatusOK {
		t.Fatalf("a foreign cursor with its time: %d %s", resp.status, resp)
	}
}
