package caddymodule_test

// The webhooker API on Caddy's admin endpoint, through a real in-process
// Caddy: the lifecycle of a webhook created over the API, the Caddyfile's
// webhooks read-only, and API changes surviving a restart of the config.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// apiAnswer is an answer of the webhooker API.
type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (a apiAnswer) String() string { return fmt.Sprintf("%d %s", a.status, a.body) }

// decode decodes the answer into out, failing the test unless the status is want.
func (a apiAnswer) decode(t testing.TB, want int, out any) {
	t.Helper()
	if a.status != want {
		t.Fatalf("status %d (%s), want %d", a.status, a.body, want)
	}
	if out != nil {
		if err := json.Unmarshal(a.body, out); err != nil {
			t.Fatalf("decode %s: %v", a.body, err)
		}
	}
}

// errorMessage is the "error" of a JSON error answer.
func (a apiAnswer) errorMessage(t testing.TB) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" {
		t.Fatalf("answer %s is not {\"error\": …}", a)
	}
	return e.Error
}

// call sends a JSON request to base+"/webhooker"+path (base is adminURL or
// siteURL), with key as a Bearer API key unless empty. It uses no Origin
// header (Caddy's admin endpoint checks it) and is sent again if it failed
// before any answer, as g.do does.
func (g *gatewayTest) call(base, key, method, path string, body any) apiAnswer {
	g.t.Helper()
	var data []byte
	if body != nil {
		var err error
		if s, ok := body.(string); ok {
			data = []byte(s)
		} else if data, err = json.Marshal(body); err != nil {
			g.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, base+"/webhooker"+path, bytes.NewReader(data))
	if err != nil {
		g.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	status, header, respBody := g.do(req)
	return apiAnswer{status, header, respBody}
}

// admin sends a request to the API on the admin endpoint.
func (g *gatewayTest) admin(method, path string, body any) apiAnswer {
	g.t.Helper()
	return g.call(adminURL, "", method, path, body)
}

type apiWebhook struct {
	ID          string `json:"id"`
	UserID      string `json:"user_id"`
	Name        string `json:"name"`
	Source      string `json:"source"`
	Active      bool   `json:"active"`
	ReadOnly    bool   `json:"read_only"`
	Entrypoints []struct {
		ID     string `json:"id"`
		Key    string `json:"key"`
		Active bool   `json:"active"`
	} `json:"entrypoints"`
	Targets []apiTarget `json:"targets"`
}

type apiTarget struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Type    string `json:"type"`
	URL     string `json:"url"`
	Active  bool   `json:"active"`
	Circuit string `json:"circuit"`
}

type apiDelivery struct {
	ID         string `json:"id"`
	TargetID   string `json:"target_id"`
	TargetName string `json:"target_name"`
	TargetType string `json:"target_type"`
	Status     string `json:"status"`
	Attempts   int    `json:"attempts"`
	Results    []struct {
		Attempt      int    `json:"attempt"`
		StatusCode   int    `json:"status_code"`
		Error        string `json:"error"`
		ResponseBody string `json:"response_body"`
	} `json:"results"`
}

type apiEventPage struct {
	Events []struct {
		ID         string        `json:"id"`
		Path       string        `json:"path"`
		BodySize   int           `json:"body_size"`
		Deliveries []apiDelivery `json:"deliveries"`
	} `json:"events"`
	NextBefore string `json:"next_before"`
}

type apiEvent struct {
	ID           string        `json:"id"`
	WebhookID    string        `json:"webhook_id"`
	Method       string        `json:"method"`
	Path         string        `json:"path"`
	Query        string        `json:"query"`
	Headers      http.Header   `json:"headers"`
	Body         string        `json:"body"`
	BodyEncoding string        `json:"body_encoding"`
	RemoteAddr   string        `json:"remote_addr"`
	Deliveries   []apiDelivery `json:"deliveries"`
}

// allSettled reports whether there are n deliveries and none is pending or retrying.
func allSettled(ds []apiDelivery, n int) bool {
	if len(ds) != n {
		return false
	}
	for _, d := range ds {
		if d.Status == "pending" || d.Status == "retrying" {
			return false
		}
	}
	return true
}

// poll calls cond every 20 ms until it holds, or fails after 20 s with
// what it last said.
func poll(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recorder is an http target that records the requests it gets.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	got  []recorded
	fail bool // answer 500 while set
}

type recorded struct {
	body   string
	header http.Header
}

func newRecorder(t testing.TB) *recorder {
	rc := &recorder{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, recorded{string(body), r.Header.Clone()})
		fail := rc.fail
		rc.mu.Unlock()
		if fail {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *recorder) requests() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.got...)
}

// TestAdminAPILifecycle: create a webhook over the admin endpoint, give it
// targets, ingest on the site, read the event log, redeliver, delete; every
// change in force without a reload.
func TestAdminAPILifecycle(t *testing.T) {
	rc := newRecorder(t)
	g := startGateway(t, "")

	var w apiWebhook
	g.admin("POST", "/webhooks", map[string]any{"name": "orders", "description": "shop orders"}).decode(t, http.StatusCreated, &w)
	if len(w.Entrypoints) != 1 || w.Source != "api" || w.ReadOnly {
		t.Fatalf("created webhook = %+v", w)
	}
	key := w.Entrypoints[0].Key
	file := filepath.Join(g.dataDir, "events-"+w.ID+".db")
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("event DB of the new webhook: %v", err)
	}
	base := "/webhooks/" + w.ID

	var crm, archive apiTarget
	g.admin("POST", base+"/targets", map[string]any{
		"name": "crm", "type": "http", "url": rc.URL + "/in",
		"options": map[string]any{"max_retries": 2, "timeout": "5s", "backoff_initial": "50ms",
			"headers": map[string]string{"X-Gateway": "webhooker"}},
	}).decode(t, http.StatusCreated, &crm)
	g.admin("POST", base+"/targets", map[string]any{"name": "archive", "type": "database"}).decode(t, http.StatusCreated, &archive)
	if crm.Circuit != "closed" {
		t.Errorf("crm circuit %q, want closed", crm.Circuit)
	}

	// Ingest on the site, at once: no reload happened.
	body := `{"order":42}`
	req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/"+key+"?topic=create", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Shop-Topic", "orders/create")
	status, _, resp := g.do(req)
	if status != http.StatusOK {
		t.Fatalf("ingest to the new webhook: %d %s", status, resp)
	}
	id := eventIDFrom(t, resp)

	// The event log lists it with its delivery statuses.
	var page apiEventPage
	poll(t, "the event delivered to both targets", func() (bool, string) {
		g.admin("GET", base+"/events", nil).decode(t, http.StatusOK, &page)
		return len(page.Events) == 1 && allSettled(page.Events[0].Deliveries, 2), fmt.Sprintf("%+v", page)
	})
	if page.Events[0].ID != id || page.Events[0].Path != "/hooks/"+key || page.Events[0].BodySize != len(body) {
		t.Errorf("event row = %+v", page.Events[0])
	}
	for _, d := range page.Events[0].Deliveries {
		if d.Status != "delivered" || (d.TargetName != "crm" && d.TargetName != "archive") {
			t.Errorf("delivery %+v", d)
		}
	}

	// The event in detail, with its attempts.
	var ev apiEvent
	g.admin("GET", base+"/events/"+id, nil).decode(t, http.StatusOK, &ev)
	if ev.ID != id || ev.WebhookID != w.ID || ev.Method != "POST" || ev.Query != "topic=create" ||
		ev.Body != body || ev.BodyEncoding != "text" || ev.Headers.Get("X-Shop-Topic") != "orders/create" ||
		!strings.HasPrefix(ev.RemoteAddr, "127.0.0.1:") {
		t.Errorf("event = %+v", ev)
	}
	for _, d := range ev.Deliveries {
		if d.TargetName == "crm" {
			if d.TargetType != "http" || d.Attempts != 1 || len(d.Results) != 1 || d.Results[0].StatusCode != 200 ||
				d.Results[0].ResponseBody != "ok" {
				t.Errorf("crm delivery = %+v", d)
			}
		} else if d.TargetType != "database" || d.Status != "delivered" {
			t.Errorf("archive delivery = %+v", d)
		}
	}
	got := rc.requests()
	if len(got) != 1 || got[0].body != body || got[0].header.Get("X-Gateway") != "webhooker" ||
		got[0].header.Get("Webhooker-Event-Id") != id {
		t.Fatalf("the target received %+v", got)
	}

	// Redeliver: new deliveries that the engine runs, with the webhook-id
	// of the first (one message per event and target).
	var redelivered struct {
		Deliveries []apiDelivery `json:"deliveries"`
	}
	g.admin("POST", base+"/events/"+id+"/redeliver", nil).decode(t, http.StatusAccepted, &redelivered)
	if len(redelivered.Deliveries) != 2 {
		t.Fatalf("redelivery = %+v", redelivered)
	}
	poll(t, "the target receives the event again", func() (bool, string) {
		n := len(rc.requests())
		return n == 2, fmt.Sprintf("%d requests", n)
	})
	if got := rc.requests(); got[1].body != body || got[1].header.Get("Webhook-Id") != got[0].header.Get("Webhook-Id") {
		t.Errorf("redelivered request = %+v", got[1])
	}
	poll(t, "the redeliveries recorded", func() (bool, string) {
		g.admin("GET", base+"/events/"+id, nil).decode(t, http.StatusOK, &ev)
		return allSettled(ev.Deliveries, 4), fmt.Sprintf("%+v", ev.Deliveries)
	})
	g.admin("POST", base+"/events/"+id+"/redeliver", map[string]any{"target_id": crm.ID}).decode(t, http.StatusAccepted, &redelivered)
	if len(redelivered.Deliveries) != 1 || redelivered.Deliveries[0].TargetName != "crm" {
		t.Errorf("redelivery to crm = %+v", redelivered)
	}
	poll(t, "the third request", func() (bool, string) {
		n := len(rc.requests())
		return n == 3, fmt.Sprintf("%d requests", n)
	})

	// Delete: the file goes, the entrypoint answers 404 at once.
	if a := g.admin("DELETE", base, nil); a.status != http.StatusNoContent {
		t.Fatalf("DELETE: %s", a)
	}
	for _, p := range []string{file, file + "-wal", file + "-shm"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after delete: %v, want it gone", filepath.Base(p), err)
		}
	}
	if status, body := g.post(key, `{"late":true}`); status != http.StatusNotFound {
		t.Errorf("ingest after delete: %d %s, want 404", status, body)
	}
	if a := g.admin("GET", base, nil); a.status != http.StatusNotFound {
		t.Errorf("GET after delete: %s, want 404", a)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("event DB after the refused ingest: %v, want none", err)
	}
}

// TestAdminAPIChangesApplyAtOnce: disabling, re-keying and deleting
// entrypoints and webhooks over the API changes what the site answers with
// no reload.
func TestAdminAPIChangesApplyAtOnce(t *testing.T) {
	g := startGateway(t, "")
	var w apiWebhook
	g.admin("POST", "/webhooks", map[string]any{"name": "toggles"}).decode(t, http.StatusCreated, &w)
	base := "/webhooks/" + w.ID
	key := w.Entrypoints[0].Key
	g.mustIngest(key, `{}`) // no target: stored, nothing to deliver

	expectIngest := func(key string, want int) {
		t.Helper()
		if status, body := g.post(key, `{}`); status != want {
			t.Errorf("ingest to %s: %d %s, want %d", key, status, body, want)
		}
	}
	g.admin("PATCH", base, map[string]any{"active": false}).decode(t, http.StatusOK, nil)
	expectIngest(key, http.StatusGone)
	g.admin("PATCH", base, map[string]any{"active": true}).decode(t, http.StatusOK, nil)
	expectIngest(key, http.StatusOK)

	epBase := base + "/entrypoints/" + w.Entrypoints[0].ID
	g.admin("PATCH", epBase, map[string]any{"active": false}).decode(t, http.StatusOK, nil)
	expectIngest(key, http.StatusGone)
	g.admin("PATCH", epBase, map[string]any{"active": true, "key": "toggles-in"}).decode(t, http.StatusOK, nil)
	expectIngest(key, http.StatusNotFound)
	expectIngest("toggles-in", http.StatusOK)

	var ep struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	g.admin("POST", base+"/entrypoints", nil).decode(t, http.StatusCreated, &ep)
	expectIngest(ep.Key, http.StatusOK)
	g.admin("DELETE", base+"/entrypoints/"+ep.ID, nil).decode(t, http.StatusNoContent, nil)
	expectIngest(ep.Key, http.StatusNotFound)

	// A target added now gets a delivery for the next event.
	g.admin("POST", base+"/targets", map[string]any{"name": "keep", "type": "database"}).decode(t, http.StatusCreated, nil)
	id := g.mustIngest("toggles-in", `{"after":"target"}`)
	var ev apiEvent
	poll(t, "the new target's delivery", func() (bool, string) {
		g.admin("GET", base+"/events/"+id, nil).decode(t, http.StatusOK, &ev)
		return allSettled(ev.Deliveries, 1) && ev.Deliveries[0].Status == "delivered", fmt.Sprintf("%+v", ev.Deliveries)
	})
	var page apiEventPage
	g.admin("GET", base+"/events?limit=2", nil).decode(t, http.StatusOK, &page)
	if len(page.Events) != 2 || page.Events[0].ID != id || page.NextBefore == "" {
		t.Errorf("first page = %+v", page)
	}
}

// TestAdminAPICaddyfileWebhooksReadOnly: the Caddyfile's webhooks are listed
// and readable over the API, and every change to them is 409.
func TestAdminAPICaddyfileWebhooksReadOnly(t *testing.T) {
	g := startGateway(t, `
		webhook github {
			entrypoint gh-push
			target archive database
		}
`)
	id := storage.DeclaredWebhookID("github")
	eventID := g.mustIngest("gh-push", `{"ref":"main"}`)

	var list struct{ Webhooks []apiWebhook }
	g.admin("GET", "/webhooks", nil).decode(t, http.StatusOK, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].ID != id || !list.Webhooks[0].ReadOnly ||
		list.Webhooks[0].Source != "caddyfile" {
		t.Fatalf("list = %+v", list.Webhooks)
	}
	var w apiWebhook
	g.admin("GET", "/webhooks/"+id, nil).decode(t, http.StatusOK, &w)
	if w.Name != "github" || len(w.Entrypoints) != 1 || w.Entrypoints[0].Key != "gh-push" || len(w.Targets) != 1 {
		t.Errorf("declared webhook = %+v", w)
	}
	var ev apiEvent
	poll(t, "the declared webhook's event", func() (bool, string) {
		g.admin("GET", "/webhooks/"+id+"/events/"+eventID, nil).decode(t, http.StatusOK, &ev)
		return allSettled(ev.Deliveries, 1), fmt.Sprintf("%+v", ev.Deliveries)
	})
	if ev.Body != `{"ref":"main"}` || ev.Deliveries[0].TargetName != "archive" {
		t.Errorf("event = %+v", ev)
	}

	base := "/webhooks/" + id
	eid, tid := w.Entrypoints[0].ID, w.Targets[0].ID
	for _, q := range []struct {
		method, path string
		body         any
	}{
		{"PATCH", base, map[string]any{"active": false}},
		{"DELETE", base, nil},
		{"POST", base + "/targets", map[string]any{"name": "audit", "type": "log"}},
		{"POST", base + "/entrypoints", map[string]any{"key": "gh-more"}},
		{"PATCH", base + "/entrypoints/" + eid, map[string]any{"active": false}},
		{"DELETE", base + "/entrypoints/" + eid, nil},
		{"PATCH", base + "/targets/" + tid, map[string]any{"active": false}},
		{"DELETE", base + "/targets/" + tid, nil},
	} {
		a := g.admin(q.method, q.path, q.body)
		if a.status != http.StatusConflict {
			t.Errorf("%s %s: %s, want 409", q.method, q.path, a)
			continue
		}
		if msg := a.errorMessage(t); !strings.Contains(msg, "Caddyfile") {
			t.Errorf("%s %s: %q does not say that the Caddyfile owns it", q.method, q.path, msg)
		}
	}
	// Redelivery is not a change of configuration: allowed.
	g.admin("POST", base+"/events/"+eventID+"/redeliver", nil).decode(t, http.StatusAccepted, nil)
	// Nothing changed.
	g.mustIngest("gh-push", `{"ref":"dev"}`)
	if status, _ := g.post("gh-more", `{}`); status != http.StatusNotFound {
		t.Errorf("gh-more answers %d, want 404", status)
	}
	if _, err := os.Stat(g.eventDBPath("github")); err != nil {
		t.Errorf("the declared webhook's event DB: %v", err)
	}
}

// TestAdminAPIChangesSurviveRestart: what the API created is in the main
// DB, so it is back when the storage is closed and opened again (an empty
// config, then the same config).
func TestAdminAPIChangesSurviveRestart(t *testing.T) {
	lines := `
		webhook declared {
			entrypoint declared-in
			target archive database
		}
`
	g := startGateway(t, lines)
	var w apiWebhook
	g.admin("POST", "/webhooks", map[string]any{"name": "lasting"}).decode(t, http.StatusCreated, &w)
	g.admin("POST", "/webhooks/"+w.ID+"/targets", map[string]any{"name": "keep", "type": "database"}).decode(t, http.StatusCreated, nil)
	var ep struct{ Key string }
	g.admin("POST", "/webhooks/"+w.ID+"/entrypoints", map[string]any{"key": "lasting-in", "active": false}).decode(t, http.StatusCreated, &ep)
	key := w.Entrypoints[0].Key
	first := g.mustIngest(key, `{"n":1}`)

	// No webhooker app: the storage closes and the API is not served.
	if status, body := loadConfig(t, emptyConfig, "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("load the empty config: %d %s", status, body)
	}
	if a := g.admin("GET", "/webhooks", nil); a.status != http.StatusNotFound {
		t.Errorf("the API with no webhooker app: %s, want 404", a)
	}
	g.reload(lines)

	var got apiWebhook
	g.admin("GET", "/webhooks/"+w.ID, nil).decode(t, http.StatusOK, &got)
	if got.Name != "lasting" || len(got.Targets) != 1 || len(got.Entrypoints) != 2 || got.ReadOnly {
		t.Errorf("after the restart = %+v", got)
	}
	var list struct{ Webhooks []apiWebhook }
	g.admin("GET", "/webhooks", nil).decode(t, http.StatusOK, &list)
	if len(list.Webhooks) != 2 {
		t.Errorf("after the restart %d webhooks, want the declared one and the API's", len(list.Webhooks))
	}
	second := g.mustIngest(key, `{"n":2}`)
	if status, _ := g.post("lasting-in", `{}`); status != http.StatusGone {
		t.Errorf("the disabled entrypoint answers %d after the restart, want 410", status)
	}
	g.mustIngest("declared-in", `{}`)
	var page apiEventPage
	poll(t, "both events delivered", func() (bool, string) {
		g.admin("GET", "/webhooks/"+w.ID+"/events", nil).decode(t, http.StatusOK, &page)
		ok := len(page.Events) == 2
		for _, e := range page.Events {
			ok = ok && allSettled(e.Deliveries, 1) && e.Deliveries[0].Status == "delivered"
		}
		return ok, fmt.Sprintf("%+v", page)
	})
	if page.Events[0].ID != second || page.Events[1].ID != first {
		t.Errorf("events = %+v, want %s then %s", page.Events, second, first)
	}
}

// TestAdminAPIBadInput: the error answers, through Caddy's admin endpoint.
func TestAdminAPIBadInput(t *testing.T) {
	g := startGateway(t, "")
	var w apiWebhook
	g.admin("POST", "/webhooks", map[string]any{"name": "strict"}).decode(t, http.StatusCreated, &w)
	for _, c := range []struct {
		method, path string
		body         any
		status       int
		says         string
	}{
		{"POST", "/webhooks", `{"name":`, http.StatusBadRequest, "JSON"},
		{"POST", "/webhooks", `{"name":"x","colour":1}`, http.StatusBadRequest, "colour"},
		{"POST", "/webhooks", `{"name":1}`, http.StatusBadRequest, "name"},
		{"POST", "/webhooks/" + w.ID + "/targets", map[string]any{"name": "t", "type": "http", "url": "nope"}, http.StatusBadRequest, "url"},
		{"POST", "/webhooks/" + w.ID + "/targets", map[string]any{"name": "t", "type": "carrier-pigeon"}, http.StatusBadRequest, "carrier-pigeon"},
		{"GET", "/webhooks/not-a-uuid", nil, http.StatusNotFound, "not-a-uuid"},
		{"GET", "/webhooks/00000000-0000-4000-8000-000000000000", nil, http.StatusNotFound, ""},
		{"GET", "/nothing-here", nil, http.StatusNotFound, ""},
		{"PUT", "/webhooks", nil, http.StatusMethodNotAllowed, "PUT"},
		{"POST", "/webhooks", `{"name":"` + strings.Repeat("x", 1<<20) + `"}`, http.StatusRequestEntityTooLarge, "bytes"},
	} {
		a := g.admin(c.method, c.path, c.body)
		if a.status != c.status {
			t.Errorf("%s %s: %.200s, want %d", c.method, c.path, a, c.status)
			continue
		}
		if msg := a.errorMessage(t); !strings.Contains(msg, c.says) {
			t.Errorf("%s %s: %q does not say %q", c.method, c.path, msg, c.says)
		}
		if c.status == http.StatusMethodNotAllowed && a.header.Get("Allow") != "GET, POST" {
			t.Errorf("405 Allow = %q", a.header.Get("Allow"))
		}
	}
	req, _ := http.NewRequest("POST", adminURL+"/webhooker/webhooks", strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Content-Type", "text/plain")
	if status, _, body := g.do(req); status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d %s, want 415", status, body)
	}
	var list struct{ Webhooks []apiWebhook }
	g.admin("GET", "/webhooks", nil).decode(t, http.StatusOK, &list)
	if len(list.Webhooks) != 1 || len(list.Webhooks[0].Targets) != 0 {
		t.Errorf("after the bad requests: %+v", list.Webhooks)
	}
}
