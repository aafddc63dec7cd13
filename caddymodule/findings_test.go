package caddymodule_test

// Findings of the security probe of issue 9, replayed through a real Caddy
// where the finding was about what Caddy does.

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/webhooker/caddy-webhooker/caddymodule"
)

// TestAPIEntrypointCannotSquatADeclaredKey (finding 7): an API entrypoint
// held the key `future-key`; the operator then declared it and the reload
// failed with 400 (`caddy run` exited 1) while the API webhook took the
// traffic. Now the Caddyfile's key wins: the reload succeeds, the declared
// webhook gets the events, the API entrypoint reads back disabled.
func TestAPIEntrypointCannotSquatADeclaredKey(t *testing.T) {
	g := startGateway(t, "")
	var squatter apiWebhook
	g.admin("POST", "/webhooks", map[string]any{"name": "squatter"}).decode(t, http.StatusCreated, &squatter)
	var ep struct {
		ID string `json:"id"`
	}
	g.admin("POST", "/webhooks/"+squatter.ID+"/entrypoints", map[string]any{"key": "future-key"}).decode(t, http.StatusCreated, &ep)
	squatted := g.mustIngest("future-key", `{"to":"squatter"}`)

	g.reload("\t\twebhook owner {\n\t\t\tentrypoint future-key\n\t\t\ttarget keep database\n\t\t}")
	id := g.mustIngest("future-key", `{"to":"owner"}`)
	if !eventIDs(t, g.eventDB("owner"))[id] {
		t.Errorf("the event sent to future-key after the reload is not in the declared webhook's event DB")
	}
	var after apiWebhook
	g.admin("GET", "/webhooks/"+squatter.ID, nil).decode(t, http.StatusOK, &after)
	for _, e := range after.Entrypoints {
		if e.ID == ep.ID && e.Active {
			t.Errorf("the API entrypoint holding the declared key is still active: %+v", e)
		}
	}
	var page apiEventPage
	g.admin("GET", "/webhooks/"+squatter.ID+"/events", nil).decode(t, http.StatusOK, &page)
	if len(page.Events) != 1 || page.Events[0].ID != squatted {
		t.Errorf("the squatter's event log: %+v, want only the event from before the reload", page.Events)
	}
}

// TestEventDBRemovedWhileRunning (finding 12): the event DB files were
// removed while Caddy ran; three POSTs got 200 into the unlinked file and
// were gone after a restart. Now an event is acknowledged once it is in
// the intake, and the applier, finding the file gone, writes it into a
// fresh file at the path: every event acknowledged after the removal is
// in the file on disk.
func TestEventDBRemovedWhileRunning(t *testing.T) {
	g := startGateway(t, "\t\twebhook w {\n\t\t\tentrypoint w-key\n\t\t\ttarget keep database\n\t\t}")
	g.mustIngest("w-key", `{"n":0}`)
	path := g.eventDBPath("w")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	var acked []string
	for range 3 {
		status, body := g.post("w-key", `{"n":1}`)
		switch status {
		case http.StatusOK:
			acked = append(acked, eventIDFrom(t, body))
		case http.StatusServiceUnavailable: // the webhook's file is being replaced
		default:
			t.Fatalf("POST after the removal: %d %s", status, body)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no POST after the removal was acknowledged")
	}
	// The applier's first write noticed the removal; its retry, or this,
	// writes into the fresh file.
	if err := caddymodule.ApplyIntake(g.dataDir); err != nil {
		t.Fatalf("apply the intake: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no fresh event DB file: %v", err)
	}
	// What was acknowledged is in the file on disk, read by another connection.
	stored := eventIDs(t, g.eventDB("w"))
	for _, id := range acked {
		if !stored[id] {
			t.Errorf("event %s was acknowledged but is not in %s", id, filepath.Base(path))
		}
	}
}

// TestTenantQuotasFromTheCaddyfile (finding 17): one key created 300
// webhooks in 8.6 s. tenant_quotas bounds each user.
func TestTenantQuotasFromTheCaddyfile(t *testing.T) {
	g := startGateway(t, "")
	if status, body := loadConfig(t, tenantSiteWith(g.dataDir, "\t\ttenant_quotas {\n\t\t\twebhooks 2\n\t\t\ttargets 3\n\t\t}"), "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("load: %d %s", status, body)
	}
	alice := g.newUser("alice")
	var wh apiWebhook
	for i, name := range []string{"one", "two", "three"} {
		a := g.site(alice.Key, "POST", "/webhooks", map[string]any{"name": name})
		switch {
		case i < 2 && a.status != http.StatusCreated:
			t.Fatalf("webhook %s: %s, want 201", name, a)
		case i == 0:
			a.decode(t, http.StatusCreated, &wh)
		case i == 2 && a.status != http.StatusForbidden:
			t.Errorf("third webhook: %s, want 403", a)
		}
	}
	for i := range 4 {
		a := g.site(alice.Key, "POST", "/webhooks/"+wh.ID+"/targets", map[string]any{"name": "t" + string(rune('a'+i)), "type": "database"})
		if want := map[bool]int{true: http.StatusCreated, false: http.StatusForbidden}[i < 3]; a.status != want {
			t.Errorf("target %d: %s, want %d", i+1, a, want)
		}
	}
	// The operator is not held to a user's quota.
	g.admin("POST", "/webhooks", map[string]any{"name": "ops"}).decode(t, http.StatusCreated, nil)
}
