package caddymodule_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// TestCaddyfileFilter checks the filter option of a target block: the
// expression of the issue, written as is, reaches the JSON config as is; a
// backtick-quoted one keeps its spacing; every target type takes one.
func TestCaddyfileFilter(t *testing.T) {
	raw, err := adaptWebhooker(t, "{\n\twebhooker {\n"+`
		webhook github {
			entrypoint github-in
			target prs http https://ci.example.com/prs {
				filter body.action == "opened" && header["X-Github-Event"] == "pull_request"
				timeout 5s
			}
			target spaced database {
				filter `+"`"+`body.title == "two  spaces"`+"`"+`
			}
			target audit log disabled {
				filter method == 'POST'
			}
		}`+"\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	var app struct {
		Webhooks []struct {
			Targets []struct {
				Name   string `json:"name"`
				Filter string `json:"filter"`
			} `json:"targets"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(raw, &app); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"prs":    `body.action == "opened" && header["X-Github-Event"] == "pull_request"`,
		"spaced": `body.title == "two  spaces"`,
		"audit":  `method == 'POST'`,
	}
	if len(app.Webhooks) != 1 || len(app.Webhooks[0].Targets) != 3 {
		t.Fatalf("adapted %s", raw)
	}
	for _, tg := range app.Webhooks[0].Targets {
		if tg.Filter != want[tg.Name] {
			t.Errorf("target %s: filter %q, want %q", tg.Name, tg.Filter, want[tg.Name])
		}
	}
}

// TestCaddyfileFilterMistakesNameTheirLine: a filter that does not compile
// is a Caddyfile error with CEL's message and the file and line of the
// filter.
func TestCaddyfileFilterMistakesNameTheirLine(t *testing.T) {
	checkCaddyfileMistakes(t, []caddyfileMistake{
		{"syntax", "webhook a {\n\ttarget t database {\n\t\tfilter body.action ==\n\t}\n}", 5,
			"webhook a: target t: filter: ERROR: <input>:1:15: Syntax error"},
		{"unknown variable", "webhook a {\n\ttarget t http https://example.com/ {\n\t\ttimeout 5s\n\t\tfilter request.method == 'POST'\n\t}\n}", 6,
			"undeclared reference to 'request'"},
		{"header not canonical", "webhook a {\n\ttarget t log {\n\t\tfilter header['x-github-event'] == 'push'\n\t}\n}", 5,
			`write header["X-Github-Event"]`},
		{"not a bool", "webhook a {\n\ttarget t log {\n\t\tfilter method + 'x'\n\t}\n}", 5, "gives string, not a bool"},
		{"filter twice", "webhook a {\n\ttarget t log {\n\t\tfilter true\n\t\tfilter false\n\t}\n}", 6, "filter is set twice"},
		{"no expression", "webhook a {\n\ttarget t log {\n\t\tfilter\n\t}\n}", 5, "wrong argument count"},
		{"too long", "webhook a {\n\ttarget t log {\n\t\tfilter method == '" + strings.Repeat("a", 4100) + "'\n\t}\n}", 5, "at most 4096"},
	})
}

// TestJSONConfigFilterChecked: a JSON config's filter is compiled by
// Provision, as the Caddyfile's is at its line.
func TestJSONConfigFilterChecked(t *testing.T) {
	for _, c := range []struct{ name, filter, want string }{
		{"syntax", `body.action ==`, "webhook a: target t: filter: ERROR: <input>:1:15: Syntax error"},
		{"header not canonical", `header[\"x-github-event\"] == \"push\"`, `write header["X-Github-Event"]`},
		{"fine", `header[\"X-Github-Event\"] == \"push\"`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkJSONConfig(t, `{"webhooks":[{"name":"a","targets":[{"name":"t","type":"database","filter":"`+c.filter+`"}]}]}`, c.want)
		})
	}
}

// TestGitHubTargetsFilteredOnEventType sends GitHub-style events to a
// webhook with three http targets filtered on the event type, through a
// real Caddy and its Caddyfile: each target receives only its events, the
// deliveries stored at ingest are only those, an event no filter matches is
// stored with no delivery, and the rejections are counted per target.
func TestGitHubTargetsFilteredOnEventType(t *testing.T) {
	var (
		mu       sync.Mutex
		received = map[string][]string{} // path -> X-Github-Delivery
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		received[r.URL.Path] = append(received[r.URL.Path], r.Header.Get("X-Github-Delivery"))
		mu.Unlock()
	}))
	defer receiver.Close()

	g := startGateway(t, `
		webhook github {
			entrypoint github-in
			target prs http `+receiver.URL+`/prs {
				filter body.action == "opened" && header["X-Github-Event"] == "pull_request"
			}
			target pushes http `+receiver.URL+`/pushes {
				filter header["X-Github-Event"] == "push" && body.ref == "refs/heads/main"
			}
			target issues http `+receiver.URL+`/issues {
				filter header["X-Github-Event"] == "issues"
			}
		}
`)
	type sent struct {
		delivery, event, body string
		targets               []string // those that must get it
		lowerCase             bool     // header name sent as x-github-event
	}
	events := []sent{
		{"d1", "pull_request", `{"action":"opened","number":1}`, []string{"prs"}, false},
		{"d2", "push", `{"ref":"refs/heads/main","commits":[]}`, []string{"pushes"}, false},
		{"d3", "issues", `{"action":"opened","issue":{"number":2}}`, []string{"issues"}, true},
		{"d4", "pull_request", `{"action":"closed","number":1}`, nil, false},
		{"d5", "push", `{"ref":"refs/heads/dev"}`, nil, false},
		{"d6", "ping", `{"zen":"Keep it logically awesome."}`, nil, false},
		{"d7", "push", `not json at all`, nil, false},
		{"d8", "pull_request", `{"action":"opened","number":3}`, []string{"prs"}, true},
	}
	targetIDs := map[string]string{}
	for _, name := range []string{"prs", "pushes", "issues"} {
		targetIDs[storage.DeclaredTargetID(storage.DeclaredWebhookID("github"), name)] = name
	}
	db := g.eventDB("github")
	before := filterMetrics(t)
	want := map[string][]string{}
	for _, e := range events {
		req, err := http.NewRequest(http.MethodPost, siteURL+"/hooks/github-in", strings.NewReader(e.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Github-Delivery", e.delivery)
		if e.lowerCase {
			req.Header["x-github-event"] = []string{e.event}
		} else {
			req.Header.Set("X-GitHub-Event", e.event)
		}
		status, _, resp := g.do(req)
		if status != http.StatusOK {
			t.Fatalf("%s: ingest %d %s", e.delivery, status, resp)
		}
		id := eventIDFrom(t, resp)
		// The deliveries are chosen and made durable with the event,
		// before the 200 (g.do then applies the intake to the event DB):
		// what the event DB holds now is all the event will ever get.
		var got []string
		for _, d := range queryDeliveries(t, db, id) {
			got = append(got, targetIDs[d.TargetID])
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(e.targets, ",") {
			t.Errorf("%s (%s %s): deliveries to %v, want %v", e.delivery, e.event, e.body, got, e.targets)
		}
		for _, name := range e.targets {
			want["/"+name] = append(want["/"+name], e.delivery)
		}
	}
	if n := countRows(t, db, "events"); n != len(events) {
		t.Errorf("%d events stored, want %d: an event no filter matches is stored all the same", n, len(events))
	}

	// Every delivery stored is delivered, and then the receiver has seen
	// every request it will see.
	wantDeliveries := 0
	for _, ids := range want {
		wantDeliveries += len(ids)
	}
	waitDelivered(t, db, wantDeliveries, 20*time.Second)
	mu.Lock()
	for path, ids := range received {
		sort.Strings(ids)
		if strings.Join(ids, ",") != strings.Join(want[path], ",") {
			t.Errorf("%s received %v, want %v", path, ids, want[path])
		}
	}
	if len(received) != len(want) {
		t.Errorf("received on %v, want %v", received, want)
	}
	mu.Unlock()

	// Each target counts the events its filter left out: 8 sent, prs took
	// 2, pushes 1, issues 1. Of those, the evaluations that failed: only
	// pushes on d7, whose header matched and which has no body to read
	// body.ref from. prs reads body.action, which d2, d5, d6 and d7 lack,
	// but its header test is false for each, and CEL's && is false when
	// either side is, whatever the error of the other.
	after := filterMetrics(t)
	for series, n := range map[string]float64{
		filterSeries("events_filtered_total", "prs"): 6, filterSeries("events_filtered_total", "pushes"): 7,
		filterSeries("events_filtered_total", "issues"): 7,
		filterSeries("filter_errors_total", "prs"):      0, filterSeries("filter_errors_total", "pushes"): 1,
		filterSeries("filter_errors_total", "issues"): 0,
	} {
		if got := after[series] - before[series]; got != n {
			t.Errorf("%s grew by %v, want %v", series, got, n)
		}
	}
}

// filterSeries names a counter of the github webhook's target.
func filterSeries(name, target string) string {
	return fmt.Sprintf(`caddy_webhooker_%s{target=%q,webhook="github",webhook_id=%q}`, name, target, storage.DeclaredWebhookID("github"))
}

// filterMetrics reads the filter counters on Caddy's /metrics (the
// counters live for the process: the test compares two readings).
func filterMetrics(t *testing.T) map[string]float64 {
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
	for _, m := range regexp.MustCompile(`(?m)^(caddy_webhooker_(?:events_filtered|filter_errors)_total\{[^}]*\}) (\S+)$`).FindAllSubmatch(body, -1) {
		v, err := strconv.ParseFloat(string(m[2]), 64)
		if err != nil {
			t.Fatalf("%s: %v", m[0], err)
		}
		out[string(m[1])] = v
	}
	return out
}

// countDelivered counts the deliveries of db that are delivered.
// waitDelivered waits until db holds n delivered deliveries, failing the
// test after timeout.
func waitDelivered(t *testing.T, db *sql.DB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for countDelivered(t, db) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d deliveries delivered after %s", countDelivered(t, db), n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countDelivered(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM deliveries WHERE status = ?`, string(storage.DeliveryDelivered)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
