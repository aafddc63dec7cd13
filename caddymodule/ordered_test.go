package caddymodule_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ordered: its mistakes refused at their line, and what it adapts to.
func TestCaddyfileOrderedOption(t *testing.T) {
	in := func(opts string) string {
		return "webhook a {\n\ttarget t http https://example.com/ {\n" + opts + "\n\t}\n}"
	}
	checkCaddyfileMistakes(t, []caddyfileMistake{
		{"ordered with an argument", in("\t\tordered yes"), 5, "wrong argument count"},
		{"ordered twice", in("\t\tordered\n\t\tordered"), 6, "ordered is set twice"},
		{"ordered with max_in_flight 4", in("\t\tordered\n\t\tmax_in_flight 4"), 6,
			"max_in_flight 4 with ordered: an ordered target sends one delivery at a time"},
		{"ordered on a log target", "webhook a {\n\ttarget t log {\n\t\tordered\n\t}\n}", 5,
			"ordered is an option of http targets"},
	})
	raw, err := adaptWebhooker(t, "{\n\twebhooker {\n"+in("\t\tordered\n\t\tmax_in_flight 1")+"\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := `"options":{"max_in_flight":1,"ordered":true}`; !strings.Contains(string(raw), want) {
		t.Errorf("adapted to %s, want it to hold %s", raw, want)
	}
}

// TestOrderedTargetThroughCaddy is the ordering must-show of issue 14: an
// ordered target limited to `rate_limit 50 1s` gets 1,000 events sent one
// after the other through a real Caddy, and fails the first event's first
// three attempts. Every other waits for that head: the arrivals are the
// head's four attempts, then every event once, in the order ingested, one
// at a time, no second holding more than the burst + the rate.
func TestOrderedTargetThroughCaddy(t *testing.T) {
	const (
		events   = 1000
		rate     = 50
		failHead = 3
	)
	var (
		mu             sync.Mutex
		arrivals       []int
		at             []time.Time
		inFlight, most atomic.Int64
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); cur > m && !most.CompareAndSwap(m, cur); m = most.Load() {
		}
		body, _ := io.ReadAll(r.Body)
		i, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(string(body), `{"i":`), "}"))
		if err != nil {
			t.Errorf("receiver: body %q", body)
		}
		mu.Lock()
		arrivals = append(arrivals, i)
		at = append(at, time.Now())
		headAttempts := 0
		for _, a := range arrivals {
			if a == 0 {
				headAttempts++
			}
		}
		mu.Unlock()
		if i == 0 && headAttempts <= failHead {
			http.Error(w, "not yet", http.StatusInternalServerError)
		}
	}))
	defer receiver.Close()
	g := startGateway(t, `
		webhook line {
			entrypoint line-in
			target in-order http `+receiver.URL+` {
				ordered
				rate_limit 50 1s
				backoff 100ms 200ms
			}
		}
`)
	// One after the other: each event is acknowledged before the next is
	// sent, so that the ingest order is defined.
	sendStart := time.Now()
	for i := range events {
		g.mustIngest("line-in", fmt.Sprintf(`{"i":%d}`, i))
	}
	t.Logf("%d events ingested one by one in %s", events, time.Since(sendStart).Round(time.Millisecond))

	db := g.eventDB("line")
	waitDelivered(t, db, events, 180*time.Second)
	mu.Lock()
	got, times := append([]int(nil), arrivals...), append([]time.Time(nil), at...)
	mu.Unlock()
	want := []int{0, 0, 0}
	for i := range events {
		want = append(want, i)
	}
	if len(got) != len(want) {
		t.Fatalf("the receiver got %d requests, want %d (the head's %d failures, then each event once)", len(got), len(want), failHead)
	}
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("arrival %d is event %d, want %d: %v…", k, got[k], want[k], got[max(0, k-5):min(len(got), k+5)])
		}
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d requests in flight at once, want 1", m)
	}
	span := times[len(times)-1].Sub(times[failHead])
	t.Logf("arrival order = ingest order over %d events; %d in flight at most; after the head: %d in %s, %.1f/s",
		events, most.Load(), events, span.Round(time.Millisecond), float64(events-1)/span.Seconds())
	checkBusiestSecond(t, times, rate)
}
