package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/caddymodule"
	"github.com/webhooker/caddy-webhooker/storage"
)

// TestCaddyfileDedup checks both forms of the dedup line: a header with a
// window, and an expression written as is (its last token a window) or as
// one quoted token.
func TestCaddyfileDedup(t *testing.T) {
	raw, err := adaptWebhooker(t, "{\n\twebhooker {\n"+`
		webhook github {
			dedup header X-GitHub-Delivery 48h
		}
		webhook stripe {
			dedup expression body.data.object.id + ":" + body.type 1h
		}
		webhook quoted {
			dedup expression `+"`"+`header["Idempotency-Key"]`+"`"+`
		}`+"\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	var app struct {
		Webhooks []struct {
			Name  string         `json:"name"`
			Dedup *storage.Dedup `json:"dedup"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(raw, &app); err != nil {
		t.Fatal(err)
	}
	want := map[string]storage.Dedup{
		"github": {Kind: storage.DedupHeader, Source: "X-GitHub-Delivery", Window: storage.Duration(48 * time.Hour)},
		"stripe": {Kind: storage.DedupExpression, Source: `body.data.object.id + ":" + body.type`, Window: storage.Duration(time.Hour)},
		"quoted": {Kind: storage.DedupExpression, Source: `header["Idempotency-Key"]`},
	}
	if len(app.Webhooks) != 3 {
		t.Fatalf("adapted %s", raw)
	}
	for _, w := range app.Webhooks {
		if w.Dedup == nil || *w.Dedup != want[w.Name] {
			t.Errorf("webhook %s: dedup %+v, want %+v", w.Name, w.Dedup, want[w.Name])
		}
	}
}

// TestCaddyfileDedupMistakesNameTheirLine: each mistake of a dedup line is
// refused with its file and line, an expression's with CEL's message.
func TestCaddyfileDedupMistakesNameTheirLine(t *testing.T) {
	checkCaddyfileMistakes(t, []caddyfileMistake{
		{"twice", "webhook a {\n\tdedup header X-Id\n\tdedup header X-Other\n}", 5, "webhook a: dedup is set twice"},
		{"no kind", "webhook a {\n\tdedup\n}", 4, "wrong argument count"},
		{"no source", "webhook a {\n\tdedup header\n}", 4, "wrong argument count"},
		{"unknown kind", "webhook a {\n\tdedup body id\n}", 4, `unknown kind "body"`},
		{"header name", "webhook a {\n\tdedup header X(Id)\n}", 4, `dedup header "X(Id)": not a header name`},
		{"two headers", "webhook a {\n\tdedup header X-Id X-Other\n}", 4, "want one header name"},
		{"syntax", "webhook a {\n\tentrypoint a-in\n\tdedup expression body.id ==\n}", 5, "dedup expression: ERROR: <input>:1:11: Syntax error"},
		{"not a key", "webhook a {\n\tdedup expression body.action == 'opened'\n}", 4, "gives bool, not a string or an int"},
		{"header not canonical", "webhook a {\n\tdedup expression header['x-id']\n}", 4, `write header["X-Id"]`},
		{"window under 1s", "webhook a {\n\tdedup header X-Id 10ms\n}", 4, "dedup window 10ms: between 1s and 720h0m0s (operator limits)"},
		{"window over 30d", "webhook a {\n\tdedup header X-Id 31d\n}", 4, "between 1s and 720h0m0s"},
		{"window 0", "webhook a {\n\tdedup header X-Id 0s\n}", 4, "want a duration over 0"},
	})
}

// TestJSONConfigDedupChecked: a JSON config's dedup gets the Caddyfile's
// checks from Provision.
func TestJSONConfigDedupChecked(t *testing.T) {
	for _, c := range []struct{ name, dedup, want string }{
		{"syntax", `{"kind":"expression","source":"body.id =="}`, "webhook a: dedup expression: ERROR: <input>:1:11: Syntax error"},
		{"window", `{"kind":"header","source":"X-Id","window":"960h"}`, "between 1s and 720h0m0s"},
		{"kind", `{"kind":"cookie","source":"id"}`, `unknown kind "cookie"`},
		{"fine", `{"kind":"expression","source":"body.id","window":"2h"}`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkJSONConfig(t, `{"webhooks":[{"name":"a","dedup":`+c.dedup+`}]}`, c.want)
		})
	}
}

// TestDedupSameDeliveryThriceThroughRestart is the must-show of idempotent
// ingest, through a real Caddy and its Caddyfile: a provider sends the
// same delivery (same X-GitHub-Delivery) three times, the third after the
// data directory was closed and opened again (a config without webhooker,
// then the same config). Each copy is answered 200 with the first event's
// id; the event DB holds one event with one delivery per target, and each
// target receives it once. A Stripe-style webhook does the same on body.id.
// The repeats are counted in events_deduplicated_total.
func TestDedupSameDeliveryThriceThroughRestart(t *testing.T) {
	var (
		mu       sync.Mutex
		received = map[string][]string{} // path -> X-Github-Delivery or body
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		if d := r.Header.Get("X-Github-Delivery"); d != "" {
			received[r.URL.Path] = append(received[r.URL.Path], d)
		} else {
			received[r.URL.Path] = append(received[r.URL.Path], string(body))
		}
		mu.Unlock()
	}))
	defer receiver.Close()

	lines := `
		webhook github {
			dedup header X-GitHub-Delivery
			entrypoint github-in
			target ci http ` + receiver.URL + `/ci
			target chat http ` + receiver.URL + `/chat
		}
		webhook stripe {
			dedup expression body.id 1h
			entrypoint stripe-in
			target billing http ` + receiver.URL + `/billing
		}
`
	g := startGateway(t, lines)
	before := dedupMetrics(t)
	send := func(key, delivery, body string) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, siteURL+"/hooks/"+key, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if delivery != "" {
			req.Header.Set("X-GitHub-Delivery", delivery)
			req.Header.Set("X-GitHub-Event", "push")
		}
		status, _, resp := g.do(req)
		if status != http.StatusOK {
			t.Fatalf("%s %s: ingest %d %s", key, delivery, status, resp)
		}
		return eventIDFrom(t, resp)
	}

	first := send("github-in", "d-1", `{"ref":"refs/heads/main"}`)
	if again := send("github-in", "d-1", `{"ref":"refs/heads/main"}`); again != first {
		t.Errorf("second copy answered %s, want the first event's %s", again, first)
	}
	stripeFirst := send("stripe-in", "", `{"id":"evt_1","type":"charge.succeeded","attempt":1}`)
	if again := send("stripe-in", "", `{"id":"evt_1","type":"charge.succeeded","attempt":2}`); again != stripeFirst {
		t.Errorf("stripe's second copy answered %s, want %s", again, stripeFirst)
	}

	// A restart: no config uses the data directory, so it closes (its
	// engine goes), then the same config opens it again.
	engineBefore := caddymodule.EngineOf(g.dataDir)
	if status, body := loadConfig(t, emptyConfig, "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("load the empty config: %d %s", status, body)
	}
	if caddymodule.EngineOf(g.dataDir) != nil {
		t.Fatal("the data directory is still open with no config using it")
	}
	g.reload(lines)
	if e := caddymodule.EngineOf(g.dataDir); e == nil || e == engineBefore {
		t.Fatal("the data directory was not opened again")
	}

	if third := send("github-in", "d-1", `{"ref":"refs/heads/main"}`); third != first {
		t.Errorf("the copy after the restart answered %s, want %s", third, first)
	}
	if third := send("stripe-in", "", `{"id":"evt_1","type":"charge.succeeded","attempt":3}`); third != stripeFirst {
		t.Errorf("stripe's copy after the restart answered %s, want %s", third, stripeFirst)
	}
	other := send("github-in", "d-2", `{"ref":"refs/heads/dev"}`)
	if other == first {
		t.Fatal("another delivery id answered as a repeat")
	}
	// No id (the header is missing): stored as any other event.
	noID := send("github-in", "", `{}`)

	gh, st := g.eventDB("github"), g.eventDB("stripe")
	if n := countRows(t, gh, "events"); n != 3 {
		t.Errorf("github holds %d events, want 3 (d-1 once, d-2, the one without an id)", n)
	}
	if n := countRows(t, st, "events"); n != 1 {
		t.Errorf("stripe holds %d events, want 1", n)
	}
	for _, id := range []string{first, other, noID} {
		if ds := queryDeliveries(t, gh, id); len(ds) != 2 {
			t.Errorf("github event %s has %d deliveries, want one per target", id, len(ds))
		}
	}
	if ds := queryDeliveries(t, st, stripeFirst); len(ds) != 1 {
		t.Errorf("stripe event has %d deliveries, want 1", len(ds))
	}
	deadline := time.Now().Add(20 * time.Second)
	for countDelivered(t, gh) < 6 || countDelivered(t, st) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("not delivered: github %d of 6, stripe %d of 1", countDelivered(t, gh), countDelivered(t, st))
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	// The event without an id has no X-Github-Delivery: the receiver
	// records its body, {}.
	for _, path := range []string{"/ci", "/chat"} {
		if got := received[path]; !sameSet(got, []string{"d-1", "d-2", "{}"}) {
			t.Errorf("%s received %v, want d-1, d-2 and {} once each", path, got)
		}
	}
	if got := received["/billing"]; len(got) != 1 || !strings.Contains(got[0], `"attempt":1`) {
		t.Errorf("/billing received %v, want the first copy once", got)
	}
	mu.Unlock()

	after := dedupMetrics(t)
	for webhook, n := range map[string]float64{"github": 2, "stripe": 2} {
		series := fmt.Sprintf(`caddy_webhooker_events_deduplicated_total{webhook=%q,webhook_id=%q}`, webhook, storage.DeclaredWebhookID(webhook))
		if got := after[series] - before[series]; got != n {
			t.Errorf("%s grew by %v, want %v", series, got, n)
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// dedupMetrics reads events_deduplicated_total on Caddy's /metrics.
func dedupMetrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, m := range regexp.MustCompile(`(?m)^(caddy_webhooker_events_deduplicated_total\{[^}]*\}) (\S+)$`).FindAllSubmatch(body, -1) {
		v, err := strconv.ParseFloat(string(m[2]), 64)
		if err != nil {
			t.Fatalf("%s: %v", m[0], err)
		}
		out[string(m[1])] = v
	}
	return out
}

// TestDedupWithFilters: a dedup expression and targets' filters over the
// same body (one parse, shared): the repeat is caught, each event goes to
// the targets whose filter matches.
func TestDedupWithFilters(t *testing.T) {
	g := startGateway(t, `
		webhook shop {
			dedup expression body.id
			entrypoint shop-in
			target orders database {
				filter body.type == "order"
			}
			target refunds database {
				filter body.type == "refund"
			}
		}
`)
	order := g.mustIngest("shop-in", `{"id": 7, "type": "order"}`)
	if again := g.mustIngest("shop-in", `{"id": 7, "type": "order", "retry": true}`); again != order {
		t.Errorf("the repeat answered %s, want %s", again, order)
	}
	refund := g.mustIngest("shop-in", `{"id": 8, "type": "refund"}`)
	db := g.eventDB("shop")
	if n := countRows(t, db, "events"); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
	for id, want := range map[string]string{order: "orders", refund: "refunds"} {
		ds := queryDeliveries(t, db, id)
		if len(ds) != 1 || ds[0].TargetID != storage.DeclaredTargetID(storage.DeclaredWebhookID("shop"), want) {
			t.Errorf("event %s: deliveries %+v, want one to %s", id, ds, want)
		}
	}
}
