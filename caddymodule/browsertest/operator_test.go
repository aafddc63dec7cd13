package browsertest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/webhooker/caddy-webhooker/storage"
)

// The operator's page on a site (issue 12): webhooker_admin behind
// basic_auth. The password is "correct horse", hashed with bcrypt at cost 4
// so that the page's many requests stay cheap to check.
const (
	operatorUser     = "ops"
	operatorPassword = "correct horse"
	operatorHash     = "$2a$04$bjUeClqLBNRshSk5T3PJYOWiygjxUcvSOAIcrcC/SX4V7316rCgd."
)

// operatorSiteConfig serves entrypoints under /hooks/ and the operator's
// page (every admin route and the UI) under /webhooker/ behind basic_auth.
func operatorSiteConfig(dataDir, ordersURL string) string {
	return fmt.Sprintf(`{
%s
	webhooker {
		data_dir %s
		public_url https://hooks.example.com/hooks/
		webhook shop {
			entrypoint shop-orders
			target orders http %s {
				max_retries 0
				breaker 0
			}
			target archive database
		}
	}
}

%s {
	webhooker /hooks/*
	basic_auth /webhooker/* {
		%s %s
	}
	webhooker_admin
}
`, globalOptions(), dataDir, ordersURL, siteURL, operatorUser, operatorHash)
}

// operatorCall sends a request to the operator's site with the operator's
// credentials and decodes the JSON answer into out.
func operatorCall(t *testing.T, method, path string, out any) {
	t.Helper()
	req, err := http.NewRequest(method, siteURL+"/webhooker"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(operatorUser, operatorPassword)
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("%s %s: %v in %s", method, path, err, body)
	}
}

// webhookStats reads a webhook's deliveries by status from the list of
// webhooks.
func webhookStats(t *testing.T, id string) map[string]float64 {
	t.Helper()
	var list struct {
		Webhooks []struct {
			ID    string `json:"id"`
			Stats struct {
				Deliveries map[string]float64 `json:"deliveries"`
			} `json:"stats"`
		} `json:"webhooks"`
	}
	operatorCall(t, "GET", "/webhooks?stats=true", &list)
	for _, w := range list.Webhooks {
		if w.ID == id {
			return w.Stats.Deliveries
		}
	}
	t.Fatalf("webhook %s not in the list", id)
	return nil
}

// waitStats waits until cond holds for the webhook's stats.
func waitStats(t *testing.T, id, what string, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := webhookStats(t, id)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: stats %v", what, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUIOperatorReplaysAnOutage replays an outage through the operator's
// page on a site behind basic_auth: the target is down while 1,000 events
// arrive (each delivery fails: no retries, no breaker), the target comes
// back, and one bulk redelivery of the failed ones from the page's dialog
// delivers every event once more, counted at the receiver. Screenshots: the
// webhook list, the event log filtered by target and time, the dialog.
func TestUIOperatorReplaysAnOutage(t *testing.T) {
	chromium := chromiumPath(t)
	g := startGateway(t, "")

	// The target's address: free now (connections refused), listened on
	// once the outage is over.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if status, body := loadConfig(t, operatorSiteConfig(g.dataDir, "http://"+addr+"/orders"), "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("load the operator's site config: %d %s", status, body)
	}
	whID := storage.DeclaredWebhookID("shop")

	// Without credentials the operator's page is closed.
	resp, err := newClient().Get(siteURL + "/webhooker/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the operator's page without credentials: %d, want 401", resp.StatusCode)
	}

	const events = 1000
	outageStart := time.Now().UTC().Add(-time.Second).Truncate(time.Second)
	for i := range events {
		g.mustIngest("shop-orders", fmt.Sprintf(`{"order":%d}`, i))
	}
	outageEnd := time.Now().UTC().Add(2 * time.Second).Truncate(time.Second)
	// Every order is archived (database) and failed at the target.
	s := waitStats(t, whID, "1,000 failed deliveries", func(s map[string]float64) bool {
		return s["failed"] == events && s["delivered"] == events
	})
	t.Logf("after the outage: %v", s)

	// The target comes back: it counts every order it receives.
	var mu sync.Mutex
	received := map[string]int{}
	requests := 0
	back, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("listening on the target's address %s again: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		received[string(body)]++
		requests++
		mu.Unlock()
	})}
	go srv.Serve(back)
	defer srv.Close()

	b := newBrowser(t, chromium)
	auth := base64.StdEncoding.EncodeToString([]byte(operatorUser + ":" + operatorPassword))
	b.do("send the operator's credentials", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders,
			network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": "Basic " + auth}})
		return chromedp.Void{}, err
	})
	b.open(siteURL+"/webhooker/ui/", "")
	b.waitFor("the webhook list with shop", `[...document.querySelectorAll('#webhook-list a')].some(a => a.innerText.includes('shop'))`)
	b.waitFor("live updates", `(document.querySelector('#live')||{}).innerText === '● Live'`)
	b.screenshot("operator-webhooks")

	// The event log of shop, filtered to the target and the outage.
	var targetID string
	var wh struct {
		Targets []storage.Target `json:"targets"`
	}
	operatorCall(t, "GET", "/webhooks/"+whID, &wh)
	for _, tg := range wh.Targets {
		if tg.Name == "orders" {
			targetID = tg.ID
		}
	}
	if targetID == "" {
		t.Fatalf("no target orders in %+v", wh.Targets)
	}
	uiEval[string](b, fmt.Sprintf(`location.hash = %q`, fmt.Sprintf("#/webhooks/%s?status=failed&target=%s&from=%s&to=%s", whID, targetID,
		outageStart.Format(time.RFC3339), outageEnd.Format(time.RFC3339))))
	b.waitFor("the filtered event log", `document.querySelector('#event-target') && document.querySelector('#event-target').value === `+fmt.Sprintf("%q", targetID)+
		` && document.querySelectorAll('#events tr[data-event-id]').length > 0`)
	b.screenshot("operator-events-filtered")

	// One bulk redelivery of the failed ones, from the dialog.
	b.click("Bulk redeliver", "#bulk-redeliver")
	b.waitFor("the dialog", `document.querySelector('#bulk-dialog').open`)
	if got := uiEval[string](b, `document.querySelector('#bulk-status').value`); got != "failed" {
		t.Errorf("the dialog's status is %q, want failed (from the filter)", got)
	}
	if got := uiEval[string](b, `document.querySelector('#bulk-target').value`); got != targetID {
		t.Errorf("the dialog's target is %q, want orders (%s, from the filter)", got, targetID)
	}
	b.set("#bulk-rate", "500")
	b.click("Count", "#bulk-count")
	b.waitFor("the count", `/\b1,?000\b/.test(document.querySelector('#bulk-result').innerText)`)
	t.Logf("dry run: %q", b.text("#bulk-result"))
	b.screenshot("operator-bulk-dialog")
	b.waitFor("Redeliver enabled", `!document.querySelector('#bulk-start').disabled`)
	b.click("Redeliver", "#bulk-start")
	// 1,000 redeliveries at 500/s: the server's pace, not the page's.
	b.waitWithin(3*time.Minute, "the job done", `document.querySelector('#bulk-job').dataset.state === 'done'`)
	t.Logf("job: %q", b.text("#bulk-job-text"))
	b.screenshot("operator-bulk-done")

	// Every order arrived once more: one delivery each, recorded.
	s = waitStats(t, whID, "the redeliveries recorded", func(s map[string]float64) bool {
		return s["delivered"] == 2*events
	})
	t.Logf("after the bulk redelivery: %v", s)
	mu.Lock()
	defer mu.Unlock()
	if requests != events || len(received) != events {
		t.Errorf("the target received %d requests for %d distinct orders, want %d each", requests, len(received), events)
	}
	for body, n := range received {
		if n != 1 || !strings.HasPrefix(body, `{"order":`) {
			t.Errorf("order %s received %d times", body, n)
		}
	}
	// Nothing failed meanwhile that a second bulk redelivery would find.
	var dry struct {
		Matched int `json:"matched"`
	}
	dryRun(t, whID, targetID, &dry)
	if dry.Matched != 0 {
		t.Errorf("a dry run after the replay matches %d failed deliveries, want 0", dry.Matched)
	}
	b.checkNoProblems()
}

// dryRun counts, through the operator's site, the events whose latest
// delivery to the target failed.
func dryRun(t *testing.T, whID, targetID string, out any) {
	t.Helper()
	body := fmt.Sprintf(`{"target_id":%q,"status":"failed","dry_run":true}`, targetID)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost,
		siteURL+"/webhooker/webhooks/"+whID+"/redeliver", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(operatorUser, operatorPassword)
	req.Header.Set("Content-Type", "application/json")
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dry run: %d %s", resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("dry run: %v in %s", err, data)
	}
}
