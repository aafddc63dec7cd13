package browsertest_test

import (
	"database/sql"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestUIOrderedTargetHeld checks that an ordered target's row says it sends
// in order, and, while a failing head holds its line, that it is held, how
// many wait behind which event, and why; the event's link opens that event.
func TestUIOrderedTargetHeld(t *testing.T) {
	chromium := chromiumPath(t)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	g := startGateway(t, `
		webhook billing {
			entrypoint billing-in
			target ledger http `+failing.URL+` {
				ordered
				backoff 1h
				breaker 0
			}
		}`)
	first := g.mustIngest("billing-in", `{"n":1}`)
	g.mustIngest("billing-in", `{"n":2}`)
	g.mustIngest("billing-in", `{"n":3}`)
	db, err := sql.Open("sqlite3", "file:"+g.eventDBPath("billing")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var attempts int
		if err := db.QueryRow(`SELECT attempts FROM deliveries WHERE event_id = ?`, first).Scan(&attempts); err == nil && attempts > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the head was not attempted within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	b := newBrowser(t, chromium)
	b.openAdminUI()
	b.waitFor("the declared webhook in the list", `document.querySelector('#webhooks tr[data-webhook-id] .webhook-link')?.textContent === 'billing'`)
	b.click("the declared webhook", "#webhooks tr[data-webhook-id] .webhook-link")
	b.waitFor("the held line", `document.querySelector('#targets tr[data-name="ledger"] .target-line')`)
	row := b.text(`#targets tr[data-name="ledger"]`)
	for _, want := range []string{"in order, one at a time", "held", "2 waiting behind event " + first[:8], "attempt 1 failed", "503", "next try in"} {
		if !strings.Contains(row, want) {
			b.fail("the target's row %q does not say %q", row, want)
		}
	}
	b.screenshot("ordered-held")
	b.click("the head's event", `#targets tr[data-name="ledger"] .line-head`)
	b.waitFor("the head's event page", `location.hash.endsWith('/events/`+first+`')`)
}
