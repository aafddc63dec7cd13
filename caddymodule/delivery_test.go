package caddymodule_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// TestDeliveryThroughCaddy follows an event from the entrypoint to its
// targets through a real Caddy: the http target receives the body and the
// headers, the log and database targets are delivered, and the event DB
// records each delivery and its attempts.
func TestDeliveryThroughCaddy(t *testing.T) {
	type hit struct {
		body   string
		header http.Header
	}
	var (
		mu   sync.Mutex
		hits []hit
	)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		hits = append(hits, hit{string(body), r.Header.Clone()})
		first := len(hits) == 1
		mu.Unlock()
		if first {
			http.Error(w, "try again", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "thanks")
	}))
	defer target.Close()

	g := startGateway(t, `
		webhook shop {
			entrypoint shop-orders
			target crm http `+target.URL+`/in {
				max_retries 3
				backoff 50ms 200ms
				header X-Gateway caddy-webhooker
			}
			target archive database
			target audit log
		}
`)
	req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/shop-orders", strings.NewReader(`{"order":42}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Shop-Topic", "orders/create")
	status, _, resp := g.do(req)
	if status != http.StatusOK {
		t.Fatalf("ingest: %d %s", status, resp)
	}
	id := eventIDFrom(t, resp)

	db := g.eventDB("shop")
	webhookID := storage.DeclaredWebhookID("shop")
	var deliveries []storedDelivery
	deadline := time.Now().Add(20 * time.Second)
	for {
		deliveries = queryDeliveries(t, db, id)
		done := len(deliveries) == 3
		for _, d := range deliveries {
			done = done && d.Status == string(storage.DeliveryDelivered)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries not all delivered: %+v", deliveries)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantAttempts := map[string]int{
		storage.DeclaredTargetID(webhookID, "crm"):     2, // a 500, then a 200
		storage.DeclaredTargetID(webhookID, "archive"): 1,
		storage.DeclaredTargetID(webhookID, "audit"):   1,
	}
	for _, d := range deliveries {
		if d.Attempts != wantAttempts[d.TargetID] {
			t.Errorf("delivery to %s: %d attempts, want %d", d.TargetID, d.Attempts, wantAttempts[d.TargetID])
		}
		var n int
		if err := db.QueryRow("SELECT count(*) FROM delivery_results WHERE delivery_id = ?", d.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != d.Attempts {
			t.Errorf("delivery to %s: %d results recorded for %d attempts", d.TargetID, n, d.Attempts)
		}
	}
	var codes []int
	rows, err := db.Query(`SELECT r.status_code FROM delivery_results r JOIN deliveries d ON d.id = r.delivery_id
		WHERE d.target_id = ? ORDER BY r.attempt`, storage.DeclaredTargetID(webhookID, "crm"))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c int
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		codes = append(codes, c)
	}
	rows.Close()
	if len(codes) != 2 || codes[0] != 500 || codes[1] != 200 {
		t.Errorf("crm attempts answered %v, want [500 200]", codes)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(hits) != 2 {
		t.Fatalf("the http target got %d requests, want 2", len(hits))
	}
	for _, h := range hits {
		if h.body != `{"order":42}` {
			t.Errorf("target got body %q", h.body)
		}
		for name, want := range map[string]string{
			"Content-Type": "application/json", "X-Shop-Topic": "orders/create",
			"X-Gateway": "caddy-webhooker", "Webhook-Id": hits[0].header.Get("Webhook-Id"),
			"Webhooker-Event-Id": id,
		} {
			if got := h.header.Get(name); got != want || got == "" {
				t.Errorf("target got %s %q, want %q", name, got, want)
			}
		}
		if h.header.Get("Webhook-Timestamp") == "" {
			t.Error("target got no webhook-timestamp")
		}
	}
}
