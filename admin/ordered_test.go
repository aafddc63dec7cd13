package admin_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// ordered through the API: set and read back, refused with a
// max_in_flight other than 1 (for tenants too); while a failing head holds
// the line, the webhook's view says which delivery holds it, and how many
// wait; cancelling that head lets the rest go, and the line is gone from
// the view once empty.
func TestOrderedTargetThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	key, tw := e.tenantWebhook("tenant-line")
	resp := e.as(key, "POST", "/webhooker/webhooks/"+tw.ID+"/targets", map[string]any{
		"name": "t", "type": "http", "url": "https://receiver.example/hook",
		"options": map[string]any{"ordered": true, "max_in_flight": 4}})
	if want := "max_in_flight 4 with ordered"; resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), want) {
		t.Errorf("tenant ordered target with max_in_flight 4: %d %s, want 400 saying %q", resp.status, resp, want)
	}
	// Not a boolean: refused, naming the field, and nothing stored.
	for _, bad := range []any{"yes", 1, map[string]any{}, []any{true}} {
		resp := e.as(key, "POST", "/webhooker/webhooks/"+tw.ID+"/targets", map[string]any{
			"name": "t", "type": "http", "url": "https://receiver.example/hook",
			"options": map[string]any{"ordered": bad}})
		if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "ordered") {
			t.Errorf("ordered %#v: %d %s, want 400 naming ordered", bad, resp.status, resp)
		}
	}
	var listed webhookJSON
	expect(t, e.as(key, "GET", "/webhooker/webhooks/"+tw.ID, nil), http.StatusOK, &listed)
	if len(listed.Targets) != 0 {
		t.Fatalf("refused targets were stored: %+v", listed.Targets)
	}
	var tt targetJSON
	expect(t, e.as(key, "POST", "/webhooker/webhooks/"+tw.ID+"/targets", map[string]any{
		"name": "t", "type": "http", "url": "https://receiver.example/hook",
		"options": map[string]any{"ordered": true}}), http.StatusCreated, &tt)
	if !tt.Options.Ordered {
		t.Errorf("tenant target read back with ordered %v", tt.Options.Ordered)
	}

	var (
		mu    sync.Mutex
		order []string
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64)
		n, _ := r.Body.Read(buf)
		mu.Lock()
		order = append(order, string(buf[:n]))
		mu.Unlock()
		if string(buf[:n]) == "0" {
			http.Error(w, "the head fails", http.StatusInternalServerError)
		}
	}))
	defer receiver.Close()
	w := e.createWebhook("line")
	tg := e.addTarget(w.ID, map[string]any{"name": "in-order", "type": "http", "url": receiver.URL,
		"options": map[string]any{"ordered": true, "backoff_initial": "1h", "backoff_max": "1h"}})
	var ep entrypointJSON
	e.must(http.StatusCreated, "POST", "/webhooker/webhooks/"+w.ID+"/entrypoints", map[string]any{}, &ep)
	var events []string
	for _, body := range []string{"0", "1", "2", "3"} {
		events = append(events, e.ingest(ep.Key, incoming{body: []byte(body), contentType: "text/plain"}))
	}
	type lineJSON struct {
		Head struct {
			DeliveryID    string     `json:"delivery_id"`
			EventID       string     `json:"event_id"`
			Status        string     `json:"status"`
			Attempts      int        `json:"attempts"`
			NextAttemptAt *time.Time `json:"next_attempt_at"`
			LastError     string     `json:"last_error"`
		} `json:"head"`
		Open int `json:"open"`
	}
	var view struct {
		Targets []struct {
			ID   string    `json:"id"`
			Line *lineJSON `json:"line"`
		} `json:"targets"`
	}
	readLine := func() *lineJSON {
		t.Helper()
		e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+w.ID, nil, &view)
		if len(view.Targets) != 1 || view.Targets[0].ID != tg.ID {
			t.Fatalf("webhook read back with targets %+v", view.Targets)
		}
		return view.Targets[0].Line
	}
	var l *lineJSON
	deadline := time.Now().Add(10 * time.Second)
	for l = readLine(); l == nil || l.Head.Attempts == 0; l = readLine() {
		if time.Now().After(deadline) {
			t.Fatalf("the line after 10 s: %+v, want its head attempted once", l)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l.Head.EventID != events[0] || l.Head.Status != "retrying" || l.Open != 4 || l.Head.NextAttemptAt == nil ||
		!strings.Contains(l.Head.LastError, "500") {
		t.Errorf("line = %+v, want the first event's delivery retrying after a 500, 4 open", l)
	}
	// The list of webhooks, which the UI polls, reads no event DB: no line.
	var list struct {
		Webhooks []struct {
			ID      string `json:"id"`
			Targets []struct {
				Line *lineJSON `json:"line"`
			} `json:"targets"`
		} `json:"webhooks"`
	}
	e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, &list)
	for _, lw := range list.Webhooks {
		if lw.ID == w.ID && (len(lw.Targets) != 1 || lw.Targets[0].Line != nil) {
			t.Errorf("the list shows the webhook's targets as %+v, want one with no line", lw.Targets)
		}
	}
	e.must(http.StatusOK, "POST", "/webhooker/webhooks/"+w.ID+"/deliveries/"+l.Head.DeliveryID+"/cancel", nil, nil)
	deadline = time.Now().Add(10 * time.Second)
	for l = readLine(); l != nil; l = readLine() {
		if time.Now().After(deadline) {
			t.Fatalf("the line 10 s after its head was cancelled: %+v, want it empty", l)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(order, " "); got != "0 1 2 3" {
		t.Errorf("the receiver got %q, want the head once, then the rest in order", got)
	}
}
