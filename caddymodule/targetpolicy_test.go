package caddymodule_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tenantSiteWith is tenantSite with lines added to the webhooker option.
func tenantSiteWith(dataDir, lines string) string {
	return strings.Replace(tenantSite(dataDir), "\t\tdata_dir "+dataDir+"\n",
		"\t\tdata_dir "+dataDir+"\n"+lines+"\n", 1)
}

// countingReceiver is an http target that answers 200 and counts requests.
func countingReceiver(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestTargetPolicyAllowFollowsReloads: an operator's `allow` lets a
// tenant's target reach a private address; a reload without it blocks the
// next delivery where the connection is made, with no restart.
func TestTargetPolicyAllowFollowsReloads(t *testing.T) {
	g := startGateway(t, "")
	load := func(lines string) {
		t.Helper()
		if status, body := loadConfig(t, tenantSiteWith(g.dataDir, lines), "text/caddyfile"); status != http.StatusOK {
			t.Fatalf("load: %d %s", status, body)
		}
	}
	load("\t\ttarget_policy {\n\t\t\tallow 127.0.0.1/32\n\t\t}")
	alice := g.newUser("alice")
	recv, hits := countingReceiver(t)
	var wh apiWebhook
	g.site(alice.Key, "POST", "/webhooks", map[string]any{"name": "internal"}).decode(t, http.StatusCreated, &wh)
	g.site(alice.Key, "POST", "/webhooks/"+wh.ID+"/targets", map[string]any{
		"name": "app", "type": "http", "url": recv.URL + "/hook", "options": map[string]any{"max_retries": 0},
	}).decode(t, http.StatusCreated, nil)
	if a := g.site(alice.Key, "POST", "/webhooks/"+wh.ID+"/targets", map[string]any{
		"name": "other", "type": "http", "url": "http://127.0.0.2:1/",
	}); a.status != http.StatusBadRequest {
		t.Errorf("a loopback address outside the allowed prefix: %s, want 400", a)
	}
	key := wh.Entrypoints[0].Key

	first := g.mustIngest(key, `{"n":1}`)
	waitSiteDelivery(t, g, alice.Key, wh.ID, first, "delivered")
	if n := hits.Load(); n != 1 {
		t.Fatalf("the allowed target got %d requests, want 1", n)
	}

	load("") // no allow: tenants reach public addresses only
	second := g.mustIngest(key, `{"n":2}`)
	d := waitSiteDelivery(t, g, alice.Key, wh.ID, second, "failed")
	if len(d.Results) != 1 || !strings.Contains(d.Results[0].Error, "target policy") {
		t.Errorf("after the reload: %+v, want one attempt refused by the target policy", d)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the target got %d requests, want still 1", n)
	}
}

// waitSiteDelivery waits until the one delivery of event evID is status, and
// returns it.
func waitSiteDelivery(t *testing.T, g *gatewayTest, key, webhookID, evID, status string) apiDelivery {
	t.Helper()
	var ev apiEvent
	eventually(t, 20*time.Second, func() bool {
		g.site(key, "GET", "/webhooks/"+webhookID+"/events/"+evID, nil).decode(t, http.StatusOK, &ev)
		return len(ev.Deliveries) == 1 && ev.Deliveries[0].Status == status
	}, fmt.Sprintf("event %s's delivery to be %s", evID, status))
	return ev.Deliveries[0]
}

// TestTargetPolicyAdminEndpointFromConfig: the admin endpoint the config
// itself sets (localhost:2999 in these tests, not Caddy's default 2019) is
// refused to a declared target, by the operator too, and the load fails
// with the target named.
func TestTargetPolicyAdminEndpointFromConfig(t *testing.T) {
	g := startGateway(t, "")
	for _, u := range []string{"http://127.0.0.1:2999/load", "http://localhost:2999/stop", "http://[::1]:2999/config/"} {
		cfg := caddyfile(g.dataDir, "\t\twebhook evil {\n\t\t\tentrypoint evil-key\n\t\t\ttarget admin http "+u+"\n\t\t}")
		status, body := loadConfig(t, cfg, "text/caddyfile")
		if status != http.StatusBadRequest || !strings.Contains(body, "admin endpoint") || !strings.Contains(body, "target admin") {
			t.Errorf("declared target %s: %d %s, want 400 naming the admin endpoint and the target", u, status, body)
		}
	}
	// The same Caddyfile with the admin endpoint elsewhere loads.
	g.reload("\t\twebhook fine {\n\t\t\tentrypoint fine-key\n\t\t\ttarget app http http://127.0.0.1:2019/hook\n\t\t}")
}

// TestTargetPolicyDenyRefusesTheOperator: deny narrows the operator's
// targets too, in the Caddyfile (the address or a loopback name on the
// face of the URL) and through the admin endpoint.
func TestTargetPolicyDenyRefusesTheOperator(t *testing.T) {
	g := startGateway(t, "")
	recv, _ := countingReceiver(t)
	port := recv.URL[strings.LastIndexByte(recv.URL, ':')+1:]
	deny := "\t\ttarget_policy {\n\t\t\tdeny 127.0.0.0/8 ::1\n\t\t}\n"
	for _, u := range []string{recv.URL + "/", "http://localhost:" + port + "/"} {
		status, body := loadConfig(t, caddyfile(g.dataDir, deny+"\t\twebhook w {\n\t\t\tentrypoint w-key\n\t\t\ttarget app http "+u+"\n\t\t}"), "text/caddyfile")
		if status != http.StatusBadRequest || !strings.Contains(body, "target policy") || !strings.Contains(body, "denied") {
			t.Errorf("declared target %s on a denied address: %d %s, want 400", u, status, body)
		}
	}
	g.reload(deny)
	var wh apiWebhook
	g.admin("POST", "/webhooks", map[string]any{"name": "ops"}).decode(t, http.StatusCreated, &wh)
	if a := g.admin("POST", "/webhooks/"+wh.ID+"/targets", map[string]any{"name": "app", "type": "http", "url": recv.URL}); a.status != http.StatusBadRequest {
		t.Errorf("operator target on a denied address through the admin endpoint: %s, want 400", a)
	}
}

// TestWebhookCannotFeedItself: a target on the webhook's own entrypoint.
// The probe got 8,699 events (19 MB) in 4 s from one; now the entrypoint
// answers the gateway's own delivery with 508, the delivery fails at once
// and the event DB holds the one event.
func TestWebhookCannotFeedItself(t *testing.T) {
	g := startGateway(t, "\t\twebhook loop {\n\t\t\tentrypoint loop-key\n\t\t\ttarget self http http://localhost:9080/hooks/loop-key {\n\t\t\t\tmax_retries 5\n\t\t\t\tbackoff 10ms\n\t\t\t}\n\t\t}")
	id := g.mustIngest("loop-key", `{"ping":1}`)
	db := g.eventDB("loop")
	var ds []storedDelivery
	eventually(t, 20*time.Second, func() bool {
		ds = queryDeliveries(t, db, id)
		return len(ds) == 1 && ds[0].Status == "failed"
	}, "the self-delivery to end failed")
	var lastError string
	if err := db.QueryRow("SELECT last_error FROM deliveries WHERE id = ?", ds[0].ID).Scan(&lastError); err != nil {
		t.Fatal(err)
	}
	if ds[0].Attempts != 1 || !strings.Contains(lastError, "508") {
		t.Errorf("self-delivery: %+v (%q), want failed after 1 attempt answered 508", ds[0], lastError)
	}
	if n := countRows(t, db, "events"); n != 1 {
		t.Errorf("the event DB holds %d events, want the 1 ingested", n)
	}
}
