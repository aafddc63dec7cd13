package datadir

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/admin"
)

func pageOf(t *testing.T, rows ...string) readAnswer {
	t.Helper()
	var events []map[string]any
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range rows {
		var id string
		var sec, deliveries int
		if _, err := fmt.Sscanf(r, "%s %d %d", &id, &sec, &deliveries); err != nil {
			t.Fatal(err)
		}
		ds := make([]map[string]any, deliveries)
		for i := range ds {
			ds[i] = map[string]any{"id": fmt.Sprintf("%s-d%d", id, i)}
		}
		events = append(events, map[string]any{"id": id, "received_at": base.Add(time.Duration(sec) * time.Second), "deliveries": ds})
	}
	body, _ := json.Marshal(map[string]any{"events": events})
	return readAnswer{Status: http.StatusOK, Body: body}
}

// TestMergePages: the nodes' pages merge newest first (ties by id), an
// event on two nodes is listed once (as the node with more deliveries has
// it), the page is cut to the limit with a cursor, and a node's 404 (it
// does not hold the webhook's events) is left out.
func TestMergePages(t *testing.T) {
	a := pageOf(t, "e9 9 1", "e5 5 1", "e3 3 0")
	b := pageOf(t, "e8 8 1", "e5 5 2", "e4 5 1")
	missing := readAnswer{Status: http.StatusNotFound, Body: errorBody("no such webhook")}
	status, body := mergePages([]readAnswer{a, missing, b}, 4)
	var page struct {
		Events []struct {
			ID         string            `json:"id"`
			Deliveries []json.RawMessage `json:"deliveries"`
		} `json:"events"`
		NextBefore   string    `json:"next_before"`
		NextBeforeAt time.Time `json:"next_before_at"`
	}
	if err := json.Unmarshal(body, &page); err != nil || status != http.StatusOK {
		t.Fatalf("%d %s (%v)", status, body, err)
	}
	var ids string
	for _, e := range page.Events {
		ids += e.ID + " "
	}
	if ids != "e9 e8 e5 e4 " {
		t.Fatalf("merged ids %q, want e9 e8 e5 e4", ids)
	}
	if len(page.Events[2].Deliveries) != 2 {
		t.Errorf("e5 listed with %d deliveries, want the 2 of the node that has more", len(page.Events[2].Deliveries))
	}
	if page.NextBefore != "e4" || page.NextBeforeAt.Second() != 5 {
		t.Errorf("cursor %q at %s, want e4 at :05", page.NextBefore, page.NextBeforeAt)
	}
	// Short of the limit on every node: the last page, no cursor.
	_, body = mergePages([]readAnswer{pageOf(t, "e1 1 0"), pageOf(t, "e2 2 0")}, 4)
	page.NextBefore, page.Events = "", nil
	if json.Unmarshal(body, &page); page.NextBefore != "" || len(page.Events) != 2 {
		t.Errorf("last page: %s", body)
	}
	// No node has it: the nodes' own answer.
	status, _ = mergePages([]readAnswer{missing, missing}, 4)
	if status != http.StatusNotFound {
		t.Errorf("no node has it: %d, want 404", status)
	}
}

// TestEventLogRead: only a webhook's event list and one event are asked of
// every node; anything else (and any path the mux would clean) is local.
func TestEventLogRead(t *testing.T) {
	for path, want := range map[string]string{
		"/webhooker/webhooks/w/events":              "list",
		"/webhooker/webhooks/w/events/e":            "one",
		"/webhooker/webhooks/w/events/e/redeliver":  "local",
		"/webhooker/webhooks/w":                     "local",
		"/webhooker/webhooks//events":               "local",
		"/webhooker/webhooks/../events":             "local",
		"/webhooker/webhooks/w/events/..":           "local",
		"/webhooker/webhooks/w/events/":             "local",
		"/webhooker/users/u":                        "local",
		"/other/webhooker/webhooks/w/events":        "local",
		"/webhooker/webhooks/w/targets/t/pause":     "local",
		"/webhooker/webhooks/w/deliveries/d/cancel": "local",
	} {
		list, ok := eventLogRead(path)
		got := "local"
		if ok && list {
			got = "list"
		} else if ok {
			got = "one"
		}
		if got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
}

// TestEventOp: only redelivering an event and retrying or cancelling a
// delivery are asked of every node.
func TestEventOp(t *testing.T) {
	for path, want := range map[string]bool{
		"/webhooker/webhooks/w/events/e/redeliver":   true,
		"/webhooker/webhooks/w/deliveries/d/retry":   true,
		"/webhooker/webhooks/w/deliveries/d/cancel":  true,
		"/webhooker/webhooks/w/redeliver":            false, // a bulk job: this node's
		"/webhooker/webhooks/w/targets/t/pause":      false,
		"/webhooker/webhooks/w/events/e":             false,
		"/webhooker/webhooks/w/deliveries/d/delete":  false,
		"/webhooker/webhooks/../deliveries/d/retry":  false,
		"/webhooker/webhooks/w/events//redeliver":    false,
		"/webhooker/webhooks/w/events/e/redeliver/x": false,
		"/webhooker/users/u/deliveries/d/retry":      false,
		"/elsewhere/webhooks/w/deliveries/d/cancel":  false,
	} {
		if got := eventOp(path); got != want {
			t.Errorf("%s: %v, want %v", path, got, want)
		}
	}
}

// TestMergeFigures: the webhook list's figures add up over the nodes, the
// newest last event wins, a node's error is kept beside the others' sum,
// and the list itself is this node's.
func TestMergeFigures(t *testing.T) {
	list := func(node, body string) readAnswer {
		return readAnswer{Status: http.StatusOK, Node: node, Body: json.RawMessage(body)}
	}
	a := list("n1", `{"webhooks":[
		{"id":"w1","name":"one","stats":{"events":2,"last_event_at":"2026-01-01T00:00:02Z","deliveries":{"pending":1,"delivered":1}}},
		{"id":"w2","name":"two","stats":{"events":0,"deliveries":{"pending":0}}}]}`)
	b := list("n2", `{"webhooks":[
		{"id":"w1","name":"one (n2's copy)","stats":{"events":3,"last_event_at":"2026-01-01T00:00:05Z","deliveries":{"pending":0,"delivered":3}}},
		{"id":"w2","name":"two","stats_error":"disk on fire"}]}`)
	status, body := mergeFigures([]readAnswer{b, a, {Status: http.StatusServiceUnavailable, Node: "n3"}}, "n1", nil)
	var got struct {
		Webhooks []struct {
			ID, Name   string
			StatsError string `json:"stats_error"`
			Stats      *struct {
				Events      int            `json:"events"`
				LastEventAt time.Time      `json:"last_event_at"`
				Deliveries  map[string]int `json:"deliveries"`
			} `json:"stats"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(body, &got); err != nil || status != http.StatusOK || len(got.Webhooks) != 2 {
		t.Fatalf("%d %s (%v)", status, body, err)
	}
	w1, w2 := got.Webhooks[0], got.Webhooks[1]
	if w1.Name != "one" || w1.Stats == nil || w1.Stats.Events != 5 || w1.Stats.Deliveries["delivered"] != 4 ||
		w1.Stats.Deliveries["pending"] != 1 || w1.Stats.LastEventAt.Second() != 5 {
		t.Errorf("w1: %s", body)
	}
	if w2.Stats == nil || w2.Stats.Events != 0 || w2.StatsError != "n2: disk on fire" {
		t.Errorf("w2: %s", body)
	}
}

// TestAnswerReadRefusesWhatIsNotARead: a request from the cluster's NATS
// that does not decode, names another path, or another method, is refused
// with 400 before anything is served.
func TestAnswerReadRefusesWhatIsNotARead(t *testing.T) {
	d := &Dir{} // nothing of it is reached
	for _, in := range []string{
		`junk`,
		`{"path":"/webhooker/users"}`,
		`{"path":"/webhooker/backup","method":"POST"}`,
		`{"path":"/webhooker/webhooks/w","method":"DELETE"}`,
		`{"path":"/webhooker/webhooks/w/events","method":"POST"}`,
		`{"path":"/webhooker/webhooks/w/deliveries/d/cancel","method":"GET"}`,
		`{"path":"/webhooker/webhooks/../users/events"}`,
		`{"path":"/webhooker/webhooks/w/redeliver","method":"POST","job_id":"not-a-uuid"}`,
		`{"path":"/webhooker/webhooks/w/redeliver","method":"POST","job_id":"` + strings.Repeat("0", 10000) + `"}`,
		`{"path":"/webhooker/webhooks/w/events","job_id":"01a2364f-0835-7329-a7fc-a1b2d479dfc1"}`,
		`{"path":"/webhooker/webhooks/w/redeliver/01a2364f-0835-7329-a7fc-a1b2d479dfc1","method":"DELETE","job_id":"01a2364f-0835-7329-a7fc-a1b2d479dfc1"}`,
	} {
		var a readAnswer
		if err := json.Unmarshal(d.answerRead([]byte(in)), &a); err != nil || a.Status != http.StatusBadRequest {
			t.Errorf("%s: %d %s (%v), want 400", in, a.Status, a.Body, err)
		}
	}
}

func TestBulkJobOp(t *testing.T) {
	const wh = "/webhooker/webhooks/0192a2b4-0000-7000-8000-000000000001"
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{"POST", wh + "/redeliver", true},
		{"GET", wh + "/redeliver/0192a2b4-0000-7000-8000-000000000002", true},
		{"DELETE", wh + "/redeliver/0192a2b4-0000-7000-8000-000000000002", true},
		{"GET", wh + "/redeliver", false},
		{"POST", wh + "/redeliver/x", false},
		{"DELETE", wh + "/redeliver", false},
		{"POST", wh + "/redeliver/x/y", false},
		{"POST", wh + "/events/x/redeliver", false},
		{"POST", "/webhooker/webhooks/../redeliver", false},
	} {
		if got := bulkJobOp(c.method, c.path); got != c.want {
			t.Errorf("bulkJobOp(%s %s) = %v, want %v", c.method, c.path, got, c.want)
		}
	}
}

func TestMergeJobs(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	job := func(node, state string, matched, redelivered int, started time.Time, finished *time.Time) readAnswer {
		b, _ := json.Marshal(admin.JobView{ID: "j", WebhookID: "w", State: state, Matched: matched, Redelivered: redelivered,
			StartedAt: started, FinishedAt: finished})
		return readAnswer{Node: node, Status: http.StatusOK, Body: b}
	}
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	status, body := mergeJobs([]readAnswer{
		job("n1", "done", 3, 3, t1, &t1),
		job("n2", "done", 2, 1, t0, &t2),
		{Node: "n3", Status: http.StatusNotFound, Body: errorBody("not found")},
	}, false)
	var got admin.JobView
	if err := json.Unmarshal(body, &got); err != nil || status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	if got.State != "done" || got.Matched != 5 || got.Redelivered != 4 || !got.StartedAt.Equal(t0) || got.FinishedAt == nil || !got.FinishedAt.Equal(t2) {
		t.Fatalf("merged %+v", got)
	}
	// One node still running: running, not finished.
	_, body = mergeJobs([]readAnswer{job("n1", "done", 1, 1, t0, &t1), job("n2", "running", 1, 0, t0, nil)}, false)
	if err := json.Unmarshal(body, &got); err != nil || got.State != "running" || got.FinishedAt != nil {
		t.Fatalf("merged %s", body)
	}
	// A dry run's matches add up; a start is wrapped; a node's refusal is told.
	_, body = mergeJobs([]readAnswer{
		{Node: "n1", Status: http.StatusOK, Body: []byte(`{"matched":4}`)},
		{Node: "n2", Status: http.StatusOK, Body: []byte(`{"matched":2}`)},
	}, true)
	if string(body) != `{"matched":6}` {
		t.Fatalf("dry run: %s", body)
	}
	started := job("n1", "running", 2, 0, t0, nil)
	started.Status, started.Body = http.StatusAccepted, []byte(`{"job":`+string(started.Body)+`}`)
	status, body = mergeJobs([]readAnswer{started, {Node: "n2", Status: http.StatusConflict, Body: errorBody("redelivery job x is still running")}}, true)
	var wrapped struct{ Job admin.JobView }
	if err := json.Unmarshal(body, &wrapped); err != nil || status != http.StatusAccepted || wrapped.Job.Matched != 2 ||
		!strings.Contains(wrapped.Job.LastError, "node n2: 409 redelivery job x is still running") {
		t.Fatalf("start: %d %s", status, body)
	}
	// No node has it: 404.
	if status, _ := mergeJobs([]readAnswer{{Node: "n1", Status: http.StatusNotFound, Body: errorBody("no such job")}}, false); status != http.StatusNotFound {
		t.Fatalf("unknown job: %d", status)
	}
}
