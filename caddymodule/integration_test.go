package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter

	"github.com/webhooker/caddy-webhooker/caddymodule"
	"github.com/webhooker/caddy-webhooker/storage"
)

// statusWebhooks declares one webhook per situation the ingest statuses need.
const statusWebhooks = `
		max_body_size 1KiB
		webhook main {
			entrypoint main-in
			entrypoint main-off disabled
			target archive database
		}
		webhook paused {
			disabled
			entrypoint paused-in
			target archive database
		}
`

// TestIngestStatuses checks every answer of an entrypoint and that only the
// 200s store anything.
func TestIngestStatuses(t *testing.T) {
	g := startGateway(t, statusWebhooks)
	mainDB := g.eventDB("main")
	var stored []string // event ids answered with 200 by main

	t.Run("POST is 200 with the event id", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/main-in", strings.NewReader(`{"n":1}`))
		req.Header.Set("Content-Type", "application/json")
		status, header, body := g.do(req)
		if status != http.StatusOK {
			t.Fatalf("status %d (%s), want 200", status, body)
		}
		if ct := header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		id := eventIDFrom(t, body)
		stored = append(stored, id)
		if !eventIDs(t, mainDB)[id] {
			t.Errorf("event %s was acknowledged but is not in main's event DB", id)
		}
	})

	t.Run("other methods are 405 with Allow: POST", func(t *testing.T) {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			var body io.Reader
			if method != http.MethodGet && method != http.MethodDelete {
				body = strings.NewReader(`{"n":2}`)
			}
			req, _ := http.NewRequest(method, siteURL+"/hooks/main-in", body)
			status, header, _ := g.do(req)
			if status != http.StatusMethodNotAllowed {
				t.Errorf("%s: status %d, want 405", method, status)
			}
			if allow := header.Get("Allow"); allow != "POST" {
				t.Errorf("%s: Allow %q, want POST", method, allow)
			}
		}
	})

	t.Run("unknown key is 404", func(t *testing.T) {
		if status, body := g.post("no-such-key", `{}`); status != http.StatusNotFound {
			t.Errorf("status %d (%s), want 404", status, body)
		}
	})

	t.Run("disabled entrypoint is 410", func(t *testing.T) {
		if status, body := g.post("main-off", `{}`); status != http.StatusGone {
			t.Errorf("status %d (%s), want 410", status, body)
		}
	})

	t.Run("disabled webhook is 410", func(t *testing.T) {
		if status, body := g.post("paused-in", `{}`); status != http.StatusGone {
			t.Errorf("status %d (%s), want 410", status, body)
		}
		// Its event DB would be created by its first stored event: none.
		if _, err := os.Stat(g.eventDBPath("paused")); !os.IsNotExist(err) {
			t.Errorf("the disabled webhook has an event DB (stat: %v): something was stored", err)
		}
	})

	limit := 1024
	t.Run("body at max_body_size is 200", func(t *testing.T) {
		body := strings.Repeat("a", limit)
		id := g.mustIngest("main-in", body)
		stored = append(stored, id)
		if ev := queryEvent(t, mainDB, id); string(ev.Body) != body || ev.BodySize != limit {
			t.Errorf("stored body of %d bytes (body_size %d), want the %d bytes sent", len(ev.Body), ev.BodySize, limit)
		}
	})

	t.Run("Content-Length over max_body_size is 413", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/main-in", strings.NewReader(strings.Repeat("b", limit+1)))
		if req.ContentLength != int64(limit+1) {
			t.Fatalf("the request has Content-Length %d, want %d", req.ContentLength, limit+1)
		}
		if status, _, body := g.do(req); status != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d (%s), want 413", status, body)
		}
	})

	t.Run("chunked body over max_body_size is 413", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/main-in",
			io.MultiReader(strings.NewReader(strings.Repeat("c", 3*limit)))) // length unknown to the client
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		if status, _, body := g.do(req); status != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d (%s), want 413", status, body)
		}
	})

	t.Run("chunked body under max_body_size is 200", func(t *testing.T) {
		body := strings.Repeat("d", limit-1)
		req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/main-in", io.MultiReader(strings.NewReader(body)))
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		status, _, resp := g.do(req)
		if status != http.StatusOK {
			t.Fatalf("status %d (%s), want 200", status, resp)
		}
		id := eventIDFrom(t, resp)
		stored = append(stored, id)
		if ev := queryEvent(t, mainDB, id); string(ev.Body) != body {
			t.Errorf("stored body of %d bytes, want the %d bytes sent", len(ev.Body), len(body))
		}
	})

	// Nothing but the 200s was stored: not the 405s, 404, 410s or 413s.
	got := eventIDs(t, mainDB)
	if len(got) != len(stored) {
		t.Errorf("main's event DB holds %d events, want the %d acknowledged", len(got), len(stored))
	}
	for _, id := range stored {
		if !got[id] {
			t.Errorf("acknowledged event %s is missing", id)
		}
	}
	if n := countRows(t, mainDB, "deliveries"); n != len(stored) {
		t.Errorf("main's event DB holds %d deliveries, want %d (one per event)", n, len(stored))
	}
}

// TestIngestStoresRequest checks that an event keeps everything about the
// request, in its webhook's own file, with one pending delivery per active
// target.
func TestIngestStoresRequest(t *testing.T) {
	g := startGateway(t, `
		webhook github {
			description "Pushes from GitHub"
			entrypoint github-push
			target ci http http://127.0.0.1:9/hook {
				max_retries 3
			}
			target archive database
			target audit log
			target old database disabled
			target older http http://127.0.0.1:9/old {
				disabled
			}
		}
`)
	body := `{"ref":"refs/heads/main","commits":[{"message":"héllo"}]}` + "\x00\xff"
	req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/github-push?a=1&b=two%20words", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Custom-Header", "custom value")
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	before := time.Now()
	status, _, resp := g.do(req)
	if status != http.StatusOK {
		t.Fatalf("status %d (%s), want 200", status, resp)
	}
	id := eventIDFrom(t, resp)

	webhookID := storage.DeclaredWebhookID("github")
	db := g.eventDB("github")
	ev := queryEvent(t, db, id)
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s: stored %q, want %q", what, got, want)
		}
	}
	check("id", ev.ID, id)
	check("method", ev.Method, http.MethodPost)
	check("path", ev.Path, "/hooks/github-push")
	check("query", ev.Query, "a=1&b=two%20words")
	check("entrypoint key", ev.EntrypointKey, "github-push")
	check("entrypoint id", ev.EntrypointID, storage.DeclaredEntrypointID(webhookID, "github-push"))
	check("content type", ev.ContentType, "application/json; charset=utf-8")
	check("body", string(ev.Body), body)
	if ev.BodySize != len(body) {
		t.Errorf("body_size %d, want %d", ev.BodySize, len(body))
	}
	if !strings.HasPrefix(ev.RemoteAddr, "127.0.0.1:") {
		t.Errorf("remote address %q, want 127.0.0.1:<port>", ev.RemoteAddr)
	}
	if ev.ReceivedAt.Before(before.Add(-time.Second)) || ev.ReceivedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("received at %v, want about %v", ev.ReceivedAt, before)
	}
	for name, want := range map[string][]string{
		"Content-Type":    {"application/json; charset=utf-8"},
		"X-Github-Event":  {"push"},
		"X-Custom-Header": {"custom value"},
		"X-Multi":         {"one", "two"},
		"Host":            {"localhost:9080"},
		"Content-Length":  {strconv.Itoa(len(body))},
	} {
		if got := ev.Headers[name]; !slices.Equal(got, want) {
			t.Errorf("header %s: stored %q, want %q", name, got, want)
		}
	}

	// One delivery per active target; the disabled ones get none. (The engine
	// may have attempted them already: TestDeliveryThroughCaddy follows them.)
	var want []string
	for _, name := range []string{"ci", "archive", "audit"} {
		want = append(want, storage.DeclaredTargetID(webhookID, name))
	}
	slices.Sort(want)
	deliveries := queryDeliveries(t, db, id)
	var got []string
	for _, d := range deliveries {
		got = append(got, d.TargetID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("deliveries go to targets %v, want %v (ci, archive, audit; not old or older)", got, want)
	}
	if n := countRows(t, db, "events"); n != 1 {
		t.Errorf("the event DB holds %d events, want 1", n)
	}
}

// TestWebhooksIsolated checks that each webhook's events go to its own file only.
func TestWebhooksIsolated(t *testing.T) {
	g := startGateway(t, `
		webhook alpha {
			entrypoint alpha-in
			entrypoint alpha-too
			target archive database
		}
		webhook beta {
			entrypoint beta-in
			target archive database
		}
`)
	var alpha, beta []string
	for i := range 5 {
		key := "alpha-in"
		if i%2 == 1 {
			key = "alpha-too"
		}
		alpha = append(alpha, g.mustIngest(key, `{"to":"alpha"}`))
		if i < 3 {
			beta = append(beta, g.mustIngest("beta-in", `{"to":"beta"}`))
		}
	}
	for _, c := range []struct {
		webhook string
		mine    []string
		others  []string
		keys    []string
	}{
		{"alpha", alpha, beta, []string{"alpha-in", "alpha-too"}},
		{"beta", beta, alpha, []string{"beta-in"}},
	} {
		db := g.eventDB(c.webhook)
		ids := eventIDs(t, db)
		if len(ids) != len(c.mine) {
			t.Errorf("%s's event DB holds %d events, want %d", c.webhook, len(ids), len(c.mine))
		}
		for _, id := range c.mine {
			if !ids[id] {
				t.Errorf("%s's event %s is not in its event DB", c.webhook, id)
				continue
			}
			if ev := queryEvent(t, db, id); !slices.Contains(c.keys, ev.EntrypointKey) || !strings.Contains(string(ev.Body), c.webhook) {
				t.Errorf("%s's event DB holds event %s via %q with body %s", c.webhook, id, ev.EntrypointKey, ev.Body)
			}
		}
		for _, id := range c.others {
			if ids[id] {
				t.Errorf("event %s of the other webhook is in %s's event DB", id, c.webhook)
			}
		}
	}
}

// TestIngestStorageFailure makes a webhook's event DB impossible to open (a
// directory where the file should be). An event is acknowledged once it is
// in the intake; the applier cannot write it into the file, keeps it, and
// from then on the webhook's POSTs get 503 (not one 2xx more that would
// wait in memory) until the path is usable again, when every event
// acknowledged lands in the file. Other webhooks are unaffected.
func TestIngestStorageFailure(t *testing.T) {
	// The path is spoiled before the config loads: once the gateway has the
	// file open (the engine's recovery scan opens every event DB at start),
	// nothing done to the path reaches it.
	var path string
	g := startGatewayPrepared(t, `
		webhook fragile {
			entrypoint fragile-in
			target archive database
		}
		webhook steady {
			entrypoint steady-in
			target archive database
		}
`, func(dataDir string) {
		path = filepath.Join(dataDir, "events-"+storage.DeclaredWebhookID("fragile")+".db")
		if err := os.Mkdir(path, 0o750); err != nil {
			t.Fatal(err)
		}
	})

	var acked []string
	refused := 0
	for range 3 {
		switch status, body := g.post("fragile-in", `{"n":1}`); status {
		case http.StatusOK:
			acked = append(acked, eventIDFrom(t, body))
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("status %d (%s) while the event DB cannot be opened, want 200 or 503", status, body)
		}
	}
	// The first is taken (nothing is known wrong yet) and its apply fails;
	// post applies the intake after each 200, so the rest are refused.
	if len(acked) != 1 || refused != 2 {
		t.Errorf("%d acknowledged and %d refused while the event DB cannot be opened, want 1 and 2", len(acked), refused)
	}
	if err := caddymodule.ApplyIntake(g.dataDir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("applying the intake while the path is a directory: %v, want the open's error", err)
	}
	steadyID := g.mustIngest("steady-in", `{"n":2}`) // another webhook's file is fine

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := caddymodule.ApplyIntake(g.dataDir); err != nil { // the manager creates the file again
		t.Fatalf("apply the intake once the path is free: %v", err)
	}
	acked = append(acked, g.mustIngest("fragile-in", `{"n":3}`))
	ids := eventIDs(t, g.eventDB("fragile"))
	if len(ids) != len(acked) {
		t.Errorf("fragile's event DB holds %d events, want the %d acknowledged", len(ids), len(acked))
	}
	for _, id := range acked {
		if !ids[id] {
			t.Errorf("event %s was acknowledged but is not in fragile's event DB", id)
		}
	}
	if ids := eventIDs(t, g.eventDB("steady")); len(ids) != 1 || !ids[steadyID] {
		t.Errorf("steady's event DB holds %v, want only %s", ids, steadyID)
	}
}

// TestCaddyfileErrors checks that bad configs are refused with a message that
// says what is wrong, and that the config in force stays in force.
func TestCaddyfileErrors(t *testing.T) {
	g := startGateway(t, `
		webhook good {
			entrypoint good-in
			target archive database
		}
`)
	for _, c := range []struct {
		name, config, want string
	}{
		{"unknown option", caddyfile(g.dataDir, "\t\tbogus 1"),
			`unrecognized webhooker option "bogus"`},
		{"unknown webhook option", caddyfile(g.dataDir, "\t\twebhook w {\n\t\t\tfrobnicate\n\t\t}"),
			`webhook w: unrecognized option "frobnicate"`},
		{"duplicate webhook name", caddyfile(g.dataDir, `
		webhook twice {
			entrypoint one
		}
		webhook twice {
			entrypoint two
		}`), "webhook twice is declared twice"},
		{"duplicate entrypoint key", caddyfile(g.dataDir, `
		webhook a {
			entrypoint shared-key
		}
		webhook b {
			entrypoint shared-key
		}`), `entrypoint key "shared-key" is already used by webhook a`},
		{"http target without url", caddyfile(g.dataDir, `
		webhook w {
			target ci http
		}`), "target ci: an http target needs a url"},
		{"http target with a relative url", caddyfile(g.dataDir, `
		webhook w {
			target ci http /hook
		}`), `url "/hook" must be an absolute http:// or https:// URL`},
		{"bad target type", caddyfile(g.dataDir, `
		webhook w {
			target out ftp
		}`), `target out: unknown type "ftp"`},
		{"http options on a database target", caddyfile(g.dataDir, `
		webhook w {
			target keep database {
				max_retries 3
			}
		}`), `target keep: max_retries is an option of http targets, not of database ones`},
		{"bad max_body_size", caddyfile(g.dataDir, "\t\tmax_body_size lots"),
			`max_body_size "lots": want a size`},
		{"zero max_body_size", caddyfile(g.dataDir, "\t\tmax_body_size 0"),
			`max_body_size "0": want a size`},
		{"bad synchronous", caddyfile(g.dataDir, "\t\tsynchronous sometimes"),
			`synchronous must be "full" or "normal", not "sometimes"`},
		{"bad webhook name", caddyfile(g.dataDir, "\t\twebhook ../etc {\n\t\t}"),
			`webhook name "../etc"`},
		{"webhooker option twice", strings.Replace(caddyfile(g.dataDir, ""), "https_port 9443",
			"https_port 9443\n\twebhooker {\n\t}", 1), "the webhooker global option may appear only once"},
		{"handler with a block", strings.Replace(caddyfile(g.dataDir, ""), "webhooker /hooks/*",
			"webhooker /hooks/* {\n\t\twebhook x\n\t}", 1), "webhooker takes no block"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := loadConfig(t, c.config, "text/caddyfile")
			if status != http.StatusBadRequest {
				t.Errorf("status %d, want 400 (%s)", status, body)
			}
			var answer struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &answer); err != nil {
				t.Fatalf("answer %q: %v", body, err)
			}
			if !strings.Contains(answer.Error, c.want) {
				t.Errorf("error %q\ndoes not say %q", answer.Error, c.want)
			}
		})
	}
	// The good config is still the one in force.
	g.mustIngest("good-in", `{}`)
	if status, body := g.post("shared-key", `{}`); status != http.StatusNotFound {
		t.Errorf("an entrypoint of a refused config answers %d (%s), want 404", status, body)
	}
}

// TestCaddyfileExampleAdapts adapts the shipped Caddyfile.example, as
// `caddy adapt` does, and checks that the webhooker app and handler are in it.
func TestCaddyfileExampleAdapts(t *testing.T) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	t.Setenv("WEBHOOKER_DATA_DIR", dataDir)
	adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatalf("adapt Caddyfile.example: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s:%d: %s", w.File, w.Line, w.Message)
	}
	var cfg struct {
		Apps struct {
			Webhooker *struct {
				DataDir     string `json:"data_dir"`
				MaxBodySize int64  `json:"max_body_size"`
				Synchronous string `json:"synchronous"`
				Webhooks    []struct {
					Name        string `json:"name"`
					Entrypoints []struct {
						Key string `json:"key"`
					} `json:"entrypoints"`
					Targets []struct {
						Name, Type, URL string
						Options         struct {
							MaxRetries *int `json:"max_retries"`
						} `json:"options"`
					} `json:"targets"`
				} `json:"webhooks"`
			} `json:"webhooker"`
			HTTP json.RawMessage `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatalf("adapted config: %v\n%s", err, adapted)
	}
	app := cfg.Apps.Webhooker
	if app == nil {
		t.Fatalf("the adapted config has no webhooker app:\n%s", adapted)
	}
	if app.DataDir != dataDir {
		t.Errorf("data_dir %q, want %q from WEBHOOKER_DATA_DIR", app.DataDir, dataDir)
	}
	if app.MaxBodySize != 10<<20 || app.Synchronous != "full" {
		t.Errorf("max_body_size %d, synchronous %q; want 10 MiB, full", app.MaxBodySize, app.Synchronous)
	}
	var names []string
	for _, w := range app.Webhooks {
		names = append(names, w.Name)
	}
	if !slices.Equal(names, []string{"github", "stripe"}) {
		t.Fatalf("webhooks %v, want [github stripe]", names)
	}
	gh := app.Webhooks[0]
	if len(gh.Entrypoints) != 1 || gh.Entrypoints[0].Key != "github-push" {
		t.Errorf("github's entrypoints: %+v", gh.Entrypoints)
	}
	if len(gh.Targets) != 3 || gh.Targets[0].Type != "http" || gh.Targets[0].URL != "http://127.0.0.1:9000/hook" ||
		gh.Targets[0].Options.MaxRetries == nil || *gh.Targets[0].Options.MaxRetries != 8 ||
		gh.Targets[1].Type != "database" || gh.Targets[2].Type != "log" {
		t.Errorf("github's targets: %+v", gh.Targets)
	}
	if !bytes.Contains(cfg.Apps.HTTP, []byte(`"handler":"webhooker"`)) {
		t.Errorf("no webhooker handler in the http app: %s", cfg.Apps.HTTP)
	}
}
