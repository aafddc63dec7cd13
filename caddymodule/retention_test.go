package caddymodule_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestRetentionPrunesOnChange gives an API-created webhook a retention of
// two days, plants old events in its event DB, then shortens the retention
// to one day: a changed retention applies at once (pruning is driven by due
// times, not by ingest or polling), so the old, finished event is pruned
// while the new event and an old one that still has a delivery to do are
// kept.
func TestRetentionPrunesOnChange(t *testing.T) {
	g := startGateway(t, "")
	var created struct {
		ID          string `json:"id"`
		Entrypoints []struct {
			Key string `json:"key"`
		} `json:"entrypoints"`
	}
	body, _ := json.Marshal(map[string]any{"name": "short-lived", "retention_days": 2})
	req, _ := http.NewRequest(http.MethodPost, adminURL+"/webhooker/webhooks", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	status, _, resp := g.do(req)
	if status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", status, resp)
	}
	if err := json.Unmarshal(resp, &created); err != nil {
		t.Fatal(err)
	}

	// Plant two events of three days ago: one delivered, one still pending.
	path := filepath.Join(g.dataDir, "events-"+created.ID+".db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old := time.Now().Add(-72 * time.Hour).UnixNano()
	oldDone, oldOpen := uuid.NewString(), uuid.NewString()
	for _, ev := range []struct{ id, status string }{{oldDone, "delivered"}, {oldOpen, "pending"}} {
		if _, err := db.Exec(`INSERT INTO events (id, entrypoint_id, entrypoint_key, method, path, headers, body, body_size, received_at)
			VALUES (?, '', '', 'POST', '/old', '{}', x'', 0, ?)`, ev.id, old); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO deliveries (id, event_id, target_id, status, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)`, uuid.NewString(), ev.id, uuid.NewString(), ev.status, old, old); err != nil {
			t.Fatal(err)
		}
	}

	fresh := g.mustIngest(created.Entrypoints[0].Key, `{"new":true}`)
	if a := g.admin("PATCH", "/webhooks/"+created.ID, map[string]any{"retention_days": 1}); a.status != http.StatusOK {
		t.Fatalf("shorten the retention: %s", a)
	}
	exists := func(id string) bool {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM events WHERE id = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	deadline := time.Now().Add(10 * time.Second)
	for exists(oldDone) {
		if time.Now().After(deadline) {
			t.Fatal("the delivered event of three days ago was not pruned once the retention became 1 day")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !exists(fresh) {
		t.Error("the new event was pruned")
	}
	if !exists(oldOpen) {
		t.Error("an old event with a pending delivery was pruned")
	}
}

// TestRetentionNeverPrunesTheEventJustTaken replays the probe's finding: a
// retention of 999999 days overflowed into a cutoff in the future, and the
// next POST pruned every acknowledged event, itself included. Out-of-range
// retentions are now refused, and the longest one allowed keeps them all.
func TestRetentionNeverPrunesTheEventJustTaken(t *testing.T) {
	g := startGateway(t, "")
	var wh apiWebhook
	g.admin("POST", "/webhooks", map[string]any{"name": "kept"}).decode(t, http.StatusCreated, &wh)
	for _, days := range []int{999999, 36501, -1} {
		if a := g.admin("PATCH", "/webhooks/"+wh.ID, map[string]any{"retention_days": days}); a.status != http.StatusBadRequest {
			t.Errorf("retention_days %d: %s, want 400", days, a)
		}
	}
	g.admin("PATCH", "/webhooks/"+wh.ID, map[string]any{"retention_days": 36500}).decode(t, http.StatusOK, nil)
	ids := []string{g.mustIngest(wh.Entrypoints[0].Key, `{"n":1}`), g.mustIngest(wh.Entrypoints[0].Key, `{"n":2}`)}
	var page apiEventPage
	g.admin("GET", "/webhooks/"+wh.ID+"/events", nil).decode(t, http.StatusOK, &page)
	if len(page.Events) != len(ids) {
		t.Fatalf("%d events listed after 2 ingests with retention_days 36500, want 2", len(page.Events))
	}
}
