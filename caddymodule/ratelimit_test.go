package caddymodule_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// checkBusiestSecond fails the test if more arrivals than a token bucket of
// rate tokens (its burst) refilled at rate per second allows fall within
// one second: the burst and rate more, and one for the token that comes
// due as the second ends. Arrivals are timed where they land, so one more
// is allowed for the jitter of scheduling and loopback: a delivery of the
// burst that lands a few milliseconds late opens a window that reaches a
// few milliseconds further (seen: 101 of a bound of 100, once in CI). A
// limiter that did not limit would be hundreds over.
func checkBusiestSecond(t *testing.T, arrivals []time.Time, rate int) {
	t.Helper()
	busiest := 0
	for i := range arrivals {
		j := i
		for j < len(arrivals) && arrivals[j].Sub(arrivals[i]) < time.Second {
			j++
		}
		busiest = max(busiest, j-i)
	}
	t.Logf("busiest second: %d arrivals", busiest)
	if bound := 2*rate + 2; busiest > bound {
		t.Errorf("%d arrivals within one second, over the burst + rate + 2 (%d)", busiest, bound)
	}
}

// TestRateLimitedTargetArrivalRate is the must-show of issue 14: a target
// limited to `rate_limit 50 1s` gets 1,000 events through a real Caddy.
// Its arrivals are timed where they land: after the burst (the bucket's 50)
// the rest come at 50/s within ±15 %, and no second holds more than the
// burst + 50. The deadline is generous for a loaded machine; the rate is
// the feature, not a performance goal.
func TestRateLimitedTargetArrivalRate(t *testing.T) {
	const (
		events = 1000
		rate   = 50 // per second, and the burst
	)
	var (
		mu       sync.Mutex
		arrivals []time.Time
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
	}))
	defer receiver.Close()
	g := startGateway(t, `
		webhook paced {
			entrypoint paced-in
			target slow http `+receiver.URL+` {
				rate_limit 50 1s
			}
		}
`)
	// Sent by a few clients at once, far faster than 50/s, so that the
	// target is behind for the whole run.
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				g.mustIngest("paced-in", fmt.Sprintf(`{"i":%d}`, i))
			}
		}()
	}
	sendStart := time.Now()
	for i := range events {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d events ingested in %s", events, time.Since(sendStart).Round(time.Millisecond))

	db := g.eventDB("paced")
	waitDelivered(t, db, events, 120*time.Second)
	mu.Lock()
	got := append([]time.Time(nil), arrivals...)
	mu.Unlock()
	if len(got) != events {
		t.Fatalf("the target received %d requests, want %d (one each)", len(got), events)
	}
	span := got[len(got)-1].Sub(got[0])
	measured := float64(events-rate) / span.Seconds()
	t.Logf("arrivals: %d in %s; after the burst of %d: %.2f/s", events, span.Round(time.Millisecond), rate, measured)
	if measured < rate*0.85 || measured > rate*1.15 {
		t.Errorf("arrival rate %.2f/s, want 50/s ±15 %%", measured)
	}
	checkBusiestSecond(t, got, rate)
	var attempts int
	if err := db.QueryRow(`SELECT max(attempts) FROM deliveries`).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 {
		t.Errorf("a delivery took %d attempts: waiting for a token must count none", attempts)
	}
}
