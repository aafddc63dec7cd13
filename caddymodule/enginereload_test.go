package caddymodule_test

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// TestEngineAcrossReloads checks that config reloads keep the one engine: a
// delivery waiting on its retry timer through two reloads is delivered
// exactly once when the timer fires, with the target settings of the newest
// config (a header changed by the reload); and a target removed by a reload
// fails its open deliveries with a clear error.
func TestEngineAcrossReloads(t *testing.T) {
	var (
		mu      sync.Mutex
		hits    = make(map[string]int) // webhook-id -> requests
		headers []string
		failing = true
	)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		defer mu.Unlock()
		hits[r.Header.Get("Webhook-Id")]++
		headers = append(headers, r.Header.Get("X-Config"))
		if failing {
			http.Error(w, "not yet", http.StatusInternalServerError)
		}
	}))
	defer target.Close()

	config := func(version string, withGone bool) string {
		gone := ""
		if withGone {
			gone = `
			target soon-gone http ` + target.URL + `/gone {
				backoff 2s
			}`
		}
		return fmt.Sprintf(`
		webhook steady {
			entrypoint steady-in
			target crm http %s/in {
				backoff 1500ms
				header X-Config %s
			}
		}
		webhook filler-%s {
			entrypoint filler-%s
		}
		webhook doomed {
			entrypoint doomed-in%s
		}`, target.URL, version, version, version, gone)
	}
	g := startGateway(t, config("v1", true))
	steady := g.mustIngest("steady-in", `{"n":1}`)
	doomed := g.mustIngest("doomed-in", `{"n":2}`)

	// Both first attempts fail (500); their retries wait on timers.
	db := g.eventDB("steady")
	waitDelivery(t, db, steady, storage.DeliveryRetrying)
	waitDelivery(t, g.eventDB("doomed"), doomed, storage.DeliveryRetrying)

	// Two reloads while the timers run; the second removes the doomed webhook's target.
	g.reload(config("v2", true))
	g.reload(config("v3", false))
	mu.Lock()
	failing = false
	mu.Unlock()

	waitDelivery(t, db, steady, storage.DeliveryDelivered)
	time.Sleep(500 * time.Millisecond) // a second engine, if any, would deliver again by now
	mu.Lock()
	for id, n := range hits {
		if n > 2 {
			t.Errorf("delivery %s reached the target %d times: a reload duplicated its attempts", id, n)
		}
	}
	if last := headers[len(headers)-1]; last != "v3" {
		t.Errorf("the retry after the reloads sent X-Config %q, want the newest config's v3", last)
	}
	mu.Unlock()
	rows := queryDeliveries(t, db, steady)
	if len(rows) != 1 || rows[0].Attempts != 2 {
		t.Errorf("steady's delivery = %+v, want delivered after 2 attempts", rows)
	}

	// The doomed webhook's target was removed by the last reload: its
	// retry ends the delivery as failed, saying why.
	doomedDB := g.eventDB("doomed")
	waitDelivery(t, doomedDB, doomed, storage.DeliveryFailed)
	var lastError string
	if err := doomedDB.QueryRow("SELECT last_error FROM deliveries WHERE event_id = ?", doomed).Scan(&lastError); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lastError, "removed from the configuration") {
		t.Errorf("the removed target's delivery failed with %q, want it to say the target was removed", lastError)
	}
}

// waitDelivery waits until the only delivery of an event has status.
func waitDelivery(t *testing.T, db interface {
	QueryRow(string, ...any) *sql.Row
}, eventID string, status storage.DeliveryStatus) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got string
		err := db.QueryRow("SELECT status FROM deliveries WHERE event_id = ?", eventID).Scan(&got)
		if err == nil && got == string(status) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery of event %s: status %q (%v), want %s", eventID, got, err, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
