package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// TestDedupCaughtAfterSIGKILL: a provider's delivery acknowledged just
// before Caddy is killed (SIGKILL: no close, nothing applied or synced
// but what had happened) is still caught when the provider sends it again
// to the restarted process: the same event_id, one event, one delivery per
// target.
func TestDedupCaughtAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary")
	}
	dir := t.TempDir()
	bin := buildCaddy(t)
	var (
		mu       sync.Mutex
		received = map[string]int{} // X-Github-Delivery -> requests
	)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		received[r.Header.Get("X-Github-Delivery")]++
		mu.Unlock()
	}))
	defer target.Close()

	g := newBinaryGateway(t, bin, dir, fmt.Sprintf(`		webhook github {
			dedup header X-GitHub-Delivery
			entrypoint github-in
			target ci http %s
			target archive database
		}
`, target.URL))
	dataDir, entrypoint := g.dataDir, g.hooks+"github-in"
	send := func(delivery string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, entrypoint, strings.NewReader(`{"ref":"refs/heads/main"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Delivery", delivery)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		var ack struct {
			EventID string `json:"event_id"`
		}
		body, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(body, &ack)
		return resp.StatusCode, ack.EventID
	}
	start := func() *exec.Cmd {
		cmd, logs := g.start(t)
		// The readiness probe is a delivery of its own, deduplicated too.
		waitUntil(t, 30*time.Second, func() bool {
			status, _ := send("probe")
			return status == http.StatusOK
		}, func() string { return "caddy did not start:\n" + logs.String() })
		return cmd
	}

	first := start()
	status, original := send("d-1")
	if status != http.StatusOK || original == "" {
		t.Fatalf("first copy: %d %q", status, original)
	}
	if status, id := send("d-1"); status != http.StatusOK || id != original {
		t.Fatalf("second copy: %d %s, want 200 %s", status, id, original)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	second := start()
	defer func() {
		_ = second.Process.Signal(syscall.SIGKILL)
		_ = second.Wait()
	}()
	if status, id := send("d-1"); status != http.StatusOK || id != original {
		t.Fatalf("the copy after SIGKILL and restart: %d %s, want 200 %s", status, id, original)
	}
	waitUntil(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received["d-1"] > 0
	}, func() string { return "d-1 never delivered" })

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dataDir, "events-"+storage.DeclaredWebhookID("github")+".db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var events, deliveries int
	if err := db.QueryRow(`SELECT count(*) FROM events WHERE id = ?`, original).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM deliveries WHERE event_id = ?`, original).Scan(&deliveries); err != nil {
		t.Fatal(err)
	}
	var all int
	if err := db.QueryRow(`SELECT count(*) FROM events`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if events != 1 || deliveries != 2 || all != 2 {
		t.Errorf("event DB: d-1 stored %d times with %d deliveries, %d events in all; want once, one delivery per target (2), 2 events (d-1 and the probe)",
			events, deliveries, all)
	}
}
