package engine

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// The bucket lets a burst of events go, then one per interval; those put
// off are given turns one interval apart, so that they come back one at a
// time and each finds its token.
func TestTargetRatesBurstThenTurnsOneTokenApart(t *testing.T) {
	rs := newTargetRates()
	limit := &storage.RateLimit{Events: 4, Window: storage.Duration(time.Second)}
	now := time.Unix(1000, 0)
	for i := range 4 {
		if ok, _ := rs.take("t", limit, now); !ok {
			t.Fatalf("take %d of the burst refused", i)
		}
	}
	var turns []time.Time
	for i := range 3 {
		ok, at := rs.take("t", limit, now)
		if ok {
			t.Fatalf("take %d past the burst allowed", i)
		}
		turns = append(turns, at)
	}
	for i, want := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, 750 * time.Millisecond} {
		if got := turns[i].Sub(now); got != want {
			t.Errorf("turn %d in %s, want %s", i, got, want)
		}
	}
	// Each comes back at its turn and finds its token.
	for i, at := range turns {
		if ok, _ := rs.take("t", limit, at); !ok {
			t.Errorf("delivery back at its turn %d refused", i)
		}
	}
	// A changed limit starts a full bucket.
	bigger := &storage.RateLimit{Events: 10, Window: storage.Duration(time.Second)}
	for i := range 10 {
		if ok, _ := rs.take("t", bigger, turns[2]); !ok {
			t.Fatalf("take %d of the new burst refused", i)
		}
	}
	// Unlimited targets are not kept.
	if ok, _ := rs.take("free", nil, now); !ok {
		t.Fatal("unlimited target refused")
	}
	if _, kept := rs.targets["free"]; kept {
		t.Error("an unlimited target got a bucket")
	}
}

// A slow-down holds every delivery of its target until it ends, limited or
// not, and is forgotten after for an unlimited target.
func TestTargetRatesSlowDownHoldsAllUntilItEnds(t *testing.T) {
	rs := newTargetRates()
	now := time.Unix(1000, 0)
	until := now.Add(3 * time.Second)
	rs.slowDown("t", until)
	rs.slowDown("t", now.Add(time.Second)) // an earlier one does not shorten it
	for i := range 3 {
		ok, at := rs.take("t", nil, now.Add(time.Duration(i)*time.Second))
		if ok || !at.Equal(until) {
			t.Fatalf("take %d during the slow-down: ok=%v at=%s, want held until %s", i, ok, at, until)
		}
	}
	if ok, _ := rs.take("t", nil, until); !ok {
		t.Fatal("take when the slow-down ended refused")
	}
	if _, kept := rs.targets["t"]; kept {
		t.Error("an unlimited target is kept after its slow-down")
	}
}

// A backlog behind a rate-limited target waits in its event DB, not in
// memory: the burst goes, every other delivery is put off (retrying, no
// attempt counted, its turn stored), nothing is parked or in hand.
func TestRateLimitedBacklogWaitsInTheDatabase(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.pacedWebhook(tg.URL, 5, time.Hour)
	e := env.start(snap, Options{Workers: 8})

	const events = 2000
	sent := sendNumbered(env, e, snap, "paced-in", 0, events)
	waitFor(t, "every delivery past the burst put off", func() bool {
		return e.rateHeld.Load() == events-5
	}, 60*time.Second)
	if n := tg.count(); n != 5 {
		t.Errorf("target received %d, want the burst of 5", n)
	}
	if n := e.ParkedDeliveries(); n != 0 {
		t.Errorf("%d deliveries parked in memory", n)
	}
	inHand := 0
	e.owned.Range(func(any, any) bool { inHand++; return true })
	if inHand != 0 {
		t.Errorf("%d deliveries in hand", inHand)
	}
	turns := make(map[time.Time]bool)
	held := 0
	for _, in := range sent {
		d := env.delivery(in.webhookID, in.deliveries[0].ID)
		if d.Status == storage.DeliveryDelivered {
			continue
		}
		held++
		if d.Status != storage.DeliveryRetrying || d.Attempts != 0 || !d.NextAttemptAt.After(time.Now()) {
			t.Fatalf("held delivery: status %s, %d attempts, next %s; want retrying, 0, in the future",
				d.Status, d.Attempts, d.NextAttemptAt)
		}
		turns[d.NextAttemptAt] = true
	}
	if held != events-5 || len(turns) != held {
		t.Errorf("%d held with %d distinct turns, want %d each", held, len(turns), events-5)
	}
	env.noErrorLogs()
}

// A rate-limited target gets its deliveries at its rate: the burst at once,
// then one per interval, every one delivered.
func TestRateLimitPacesDeliveries(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.pacedWebhook(tg.URL, 20, time.Second)
	e := env.start(snap, Options{Workers: 16})
	const events = 60
	sent := sendNumbered(env, e, snap, "paced-in", 0, events)
	waitAll(env, sent, storage.DeliveryDelivered)
	got := tg.all()
	if len(got) != events {
		t.Fatalf("target received %d, want %d", len(got), events)
	}
	// 20 at once, then 40 more at 20/s: at least 2 s (less a margin for
	// the clock's grain), and no second holds more than burst + rate.
	if span := got[len(got)-1].at.Sub(got[0].at); span < 1900*time.Millisecond {
		t.Errorf("%d deliveries in %s: faster than 20/s after the burst", events, span)
	}
	for i := range got {
		n := 0
		for j := i; j < len(got) && got[j].at.Sub(got[i].at) < time.Second; j++ {
			n++
		}
		if n > 41 {
			t.Errorf("%d deliveries within 1s from arrival %d: over burst 20 + rate 20", n, i)
		}
	}
	for _, in := range sent {
		if d := env.delivery(in.webhookID, in.deliveries[0].ID); d.Attempts != 1 {
			t.Errorf("delivery %s: %d attempts, want 1 (waiting for a token is no attempt)", d.ID, d.Attempts)
		}
	}
}

// A 429 with Retry-After holds the target's other deliveries too until it
// has passed, and does not open the circuit breaker, even at threshold 1; a
// 503 with Retry-After holds them too (and counts against the breaker, as
// any 5xx: threshold 0 keeps it out of the way here).
func TestTooManyRequestsSlowsTheWholeTargetWithoutOpeningTheBreaker(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		status    int
		threshold int
	}{
		{"429", http.StatusTooManyRequests, 1},
		{"503 with Retry-After", http.StatusServiceUnavailable, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			slowedByRetryAfter(t, c.status, c.threshold)
		})
	}
}

func slowedByRetryAfter(t *testing.T, status, threshold int) {
	var throttled atomic.Int64
	tg := newTarget(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			throttled.Store(time.Now().UnixNano())
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(status)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	env := newEnv(t)
	o := quick(3)
	o.BackoffMax = storage.Duration(10 * time.Second) // lets Retry-After: 1 stand
	o.BreakerThreshold = intp(threshold)
	snap := env.configure(webhook("busy", httpTarget("recv", tg.URL, o)))
	e := env.start(snap, Options{Workers: 4})
	first := env.send(e, snap, "busy-in", []byte(`{"i":0}`), nil)
	waitFor(t, "the answer with Retry-After", func() bool { return throttled.Load() != 0 }, waitTimeout)
	var later []ingested
	for i := range 5 {
		later = append(later, env.send(e, snap, "busy-in", []byte(`{"i":`+strconv.Itoa(i+1)+`}`), nil))
	}
	env.waitStatus(first.webhookID, first.deliveries[0].ID, storage.DeliveryDelivered)
	for _, in := range later {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
	at := time.Unix(0, throttled.Load())
	for i, r := range tg.all()[1:] {
		if r.at.Sub(at) < 900*time.Millisecond {
			t.Errorf("request %d came %s after the %d with Retry-After: 1", i+2, r.at.Sub(at), status)
		}
	}
	if state := e.BreakerState(first.targets[0].ID); threshold > 0 && state != "closed" {
		t.Errorf("breaker %s after a %d at threshold %d, want closed", state, status, threshold)
	}
	if e.rateHeld.Load() == 0 {
		t.Error("no delivery was put off by the slow-down")
	}
}

// max_in_flight is the target's slot count, over the engine's default.
func TestMaxInFlightBoundsTheTargetsAttempts(t *testing.T) {
	t.Parallel()
	tp := newTarpit(t)
	env := newEnv(t)
	o := quick(3)
	o.MaxInFlight = intp(2)
	snap := env.configure(webhook("narrow", httpTarget("slow", tp.URL, o)))
	e := env.start(snap, Options{Workers: 16, MaxPerTarget: 8})
	sent := sendNumbered(env, e, snap, "narrow-in", 0, 10)
	waitFor(t, "two in flight and eight parked", func() bool {
		return tp.current.Load() == 2 && e.ParkedDeliveries() == 8
	}, waitTimeout)
	tp.open()
	for _, in := range sent {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
	if m := tp.maxSeen.Load(); m != 2 {
		t.Errorf("%d attempts at once, want max_in_flight 2", m)
	}
}

// waitStatusWithin is waitStatus with its own timeout, for deliveries that
// a rate limit spreads over seconds.
func (env *testEnv) waitStatusWithin(webhookID, id string, status storage.DeliveryStatus, timeout time.Duration) {
	env.t.Helper()
	waitFor(env.t, "delivery "+id+" to be "+string(status), func() bool {
		return env.delivery(webhookID, id).Status == status
	}, timeout)
}

// Deliveries put off for their target's rate are durable: a new engine on
// the same event DBs (a restart) finds them at their turns and delivers
// each once.
func TestRateLimitedDeliveriesSurviveARestart(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.pacedWebhook(tg.URL, 2, time.Second)
	first := env.engine(snap, Options{Workers: 4})
	first.Start()
	const events = 8
	sent := sendNumbered(env, first, snap, "paced-in", 0, events)
	waitFor(t, "the deliveries past the burst put off", func() bool {
		return first.rateHeld.Load() == events-2
	}, waitTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first.Stop(ctx)
	delivered := tg.count()

	env.start(snap, Options{Workers: 4})
	waitAll(env, sent, storage.DeliveryDelivered)
	if n := tg.count(); n != events {
		t.Errorf("target received %d (%d before the restart), want %d: each once", n, delivered, events)
	}
	env.noErrorLogs()
}

// A lowered max_in_flight takes effect as attempts end: the slots over the
// new count are given back, not handed to the deliveries parked behind.
func TestLoweredMaxInFlightTakesEffectAsAttemptsEnd(t *testing.T) {
	s := newTargetSlots(8, 100)
	ref := func(id string) deliveryRef { return deliveryRef{webhookID: "w", deliveryID: id} }
	for _, id := range []string{"a", "b", "c"} {
		if got := s.acquire("t", 3, ref(id)); got != slotTaken {
			t.Fatalf("acquire %s at max_in_flight 3: %v, want a slot", id, got)
		}
	}
	if got := s.acquire("t", 1, ref("d")); got != parked {
		t.Fatalf("acquire at max_in_flight 1 with 3 in flight: %v, want parked", got)
	}
	for i := range 2 {
		if _, ok, _ := s.done("t"); ok {
			t.Fatalf("end %d: a slot over max_in_flight 1 was handed on", i+1)
		}
	}
	next, ok, _ := s.done("t")
	if !ok || next.deliveryID != "d" {
		t.Fatalf("last end: handed on %v %q, want the parked d", ok, next.deliveryID)
	}
	if n := s.inFlight("t"); n != 1 {
		t.Errorf("%d in flight, want 1", n)
	}
}

// pacedWebhook declares the webhook "paced" (entrypoint "paced-in") with
// one http target, "slow", to url, limited to events per window.
func (env *testEnv) pacedWebhook(url string, events int, window time.Duration) *storage.Snapshot {
	env.t.Helper()
	o := quick(3)
	o.RateLimit = &storage.RateLimit{Events: events, Window: storage.Duration(window)}
	return env.configure(webhook("paced", httpTarget("slow", url, o)))
}
