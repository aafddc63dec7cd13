package caddymodule_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/caddymodule"
	"github.com/webhooker/caddy-webhooker/engine"
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
	engineBefore := caddymodule.EngineOf(g.dataDir)
	if engineBefore == nil {
		t.Fatal("no engine open for the data directory")
	}
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

	// A second attempt of either delivery could only come from a second
	// engine, or from something the engine still holds. The reloads kept
	// the engine that held both timers, no other engine runs in the
	// process (its workers would be there), and the one engine holds
	// nothing now (the timer that would repeat an attempt, a queued or
	// parked delivery): the target's count is final.
	e := caddymodule.EngineOf(g.dataDir)
	if e != engineBefore {
		t.Fatalf("the engine after the reloads is %p, not the one before (%p): a reload started another", e, engineBefore)
	}
	waitOneIdleEngine(t, e)
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
}

// waitOneIdleEngine waits until e is the only engine running in the
// process and holds no delivery: no retry timer, nothing queued, nothing
// parked for a slot of its target. Engines of earlier tests may still be
// stopping when this test begins; an engine that is never stopped keeps
// its workers, and the wait fails.
func waitOneIdleEngine(t *testing.T, e *engine.Engine) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		workers := engineWorkers()
		fresh, retry := e.QueueLengths()
		timers, parked := e.PendingTimers(), e.ParkedDeliveries()
		if workers == engine.DefaultWorkers && fresh == 0 && retry == 0 && timers == 0 && parked == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d engine workers run in the process, want the %d of one engine; the engine holds %d timers, %d+%d queued and %d parked deliveries",
				workers, engine.DefaultWorkers, timers, fresh, retry, parked)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// engineWorkers counts the goroutines of the process that are workers of
// a delivery engine (in engine.(*Engine).work): each running engine has
// its Options.Workers of them until it is stopped.
func engineWorkers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	workers := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("/engine.(*Engine).work(")) {
			workers++
		}
	}
	return workers
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
