package engine

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// tarpit is a target that holds every request until it is released (or the
// client gives up), and records how many requests it had at once.
type tarpit struct {
	*target
	release  chan struct{}
	released atomic.Bool
	current  atomic.Int64
	maxSeen  atomic.Int64
}

func newTarpit(t *testing.T) *tarpit {
	t.Helper()
	tp := &tarpit{release: make(chan struct{})}
	tp.target = newTarget(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		defer countInFlight(&tp.current, &tp.maxSeen)()
		select {
		case <-tp.release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	t.Cleanup(tp.open)
	return tp
}

// countInFlight counts a request in current and records the most seen at
// once in maxSeen. Call the function it returns before answering: the
// client cannot start its next attempt while this one still counts.
func countInFlight(current, maxSeen *atomic.Int64) (done func()) {
	n := current.Add(1)
	for {
		m := maxSeen.Load()
		if n <= m || maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { current.Add(-1) }
}

// open lets every request through, now and later.
func (tp *tarpit) open() {
	if tp.released.CompareAndSwap(false, true) {
		close(tp.release)
	}
}

// A target that never answers (the finding: a huge timeout held every worker
// and another tenant's deliveries stayed pending) holds one slot; the other
// workers deliver the other webhook's events, and the tarpit's deliveries
// wait parked, then all go once it answers.
func TestTarpitTargetHoldsOnlyItsSlotsAndOthersAreDelivered(t *testing.T) {
	t.Parallel()
	tp := newTarpit(t)
	healthy := newTarget(t, nil)
	env := newEnv(t)
	slow := quick(3)
	slow.Timeout = storage.Duration(10 * time.Minute)
	snap := env.configure(
		webhook("tarpit", httpTarget("slow", tp.URL, slow)),
		webhook("other", httpTarget("fast", healthy.URL, quick(3))))
	e := env.start(snap, Options{Workers: 4, MaxPerTarget: 1})

	var stuck, others []ingested
	for i := range 40 {
		stuck = append(stuck, env.send(e, snap, "tarpit-in", []byte(`{"i":`+strconv.Itoa(i)+`}`), nil))
	}
	for i := range 20 {
		others = append(others, env.send(e, snap, "other-in", []byte(`{"i":`+strconv.Itoa(i)+`}`), nil))
	}
	for _, in := range others {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
	waitFor(t, "39 deliveries parked behind the tarpit", func() bool { return e.ParkedDeliveries() == 39 }, waitTimeout)
	if n, m := tp.count(), tp.maxSeen.Load(); n != 1 || m != 1 {
		t.Fatalf("while the other webhook was delivered, the tarpit got %d requests, %d at once; want 1 and 1", n, m)
	}
	for _, in := range stuck {
		if d := env.delivery(in.webhookID, in.deliveries[0].ID); d.Status != storage.DeliveryPending || d.Attempts != 0 {
			t.Errorf("tarpit delivery %+v, want pending with no attempt", d)
		}
	}

	tp.open()
	for _, in := range stuck {
		if d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered); d.Attempts != 1 {
			t.Errorf("tarpit delivery took %d attempts, want 1", d.Attempts)
		}
	}
	if m := tp.maxSeen.Load(); m != 1 {
		t.Errorf("the tarpit had %d requests at once, want at most MaxPerTarget (1)", m)
	}
	if n := tp.count(); n != 40 {
		t.Errorf("the tarpit got %d requests, want 40", n)
	}
	waitFor(t, "the target's slot to be free", func() bool {
		return e.slots.inFlight(snap.Webhooks()[0].Targets[0].ID) == 0 && e.ParkedDeliveries() == 0
	}, waitTimeout)
	env.noErrorLogs()
}

// With a small timeout, attempts to the tarpit fail and are retried: retries
// wait on timers, then park again behind the one slot, and none is lost.
func TestTimedOutAttemptsRetryThroughTheTargetSlot(t *testing.T) {
	t.Parallel()
	tp := newTarpit(t)
	healthy := newTarget(t, nil)
	env := newEnv(t)
	slow := quick(100)
	slow.Timeout = storage.Duration(50 * time.Millisecond)
	slow.BreakerThreshold = intp(0)
	snap := env.configure(
		webhook("tarpit", httpTarget("slow", tp.URL, slow)),
		webhook("other", httpTarget("fast", healthy.URL, quick(3))))
	e := env.start(snap, Options{Workers: 3, MaxPerTarget: 1})

	stuck := sendNumbered(env, e, snap, "tarpit-in", 0, 10)
	waitFor(t, "attempts to time out and be retried", func() bool { return tp.count() >= 15 }, waitTimeout)
	other := env.send(e, snap, "other-in", []byte(`{}`), nil)
	env.waitStatus(other.webhookID, other.deliveries[0].ID, storage.DeliveryDelivered)

	tp.open()
	for _, in := range stuck {
		d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
		rs := env.results(in.webhookID, d.ID)
		if len(rs) != d.Attempts || rs[len(rs)-1].StatusCode != 200 {
			t.Errorf("delivery %s: %d attempts, results %+v", d.ID, d.Attempts, rs)
		}
	}
}

// Parking does not disturb the circuit breaker: a target that fails opens
// it, held deliveries wait, the probe closes it, and everything is delivered
// one at a time.
func TestBreakerHoldsAndRetriesWorkWithParkedDeliveries(t *testing.T) {
	t.Parallel()
	var current, maxSeen atomic.Int64
	tg := newTarget(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		defer countInFlight(&current, &maxSeen)()
		if n <= 3 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	env := newEnv(t)
	opts := quick(20)
	opts.BreakerThreshold = intp(2)
	opts.BreakerCooldown = storage.Duration(time.Second)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, opts)))
	e := env.start(snap, Options{Workers: 4, MaxPerTarget: 1})

	all := sendNumbered(env, e, snap, "shop-in", 0, 10)
	for _, in := range all {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
	if m := maxSeen.Load(); m != 1 {
		t.Errorf("%d requests at once, want 1", m)
	}
	if n := tg.count(); n != 13 {
		t.Errorf("target got %d requests, want 3 failures and 10 deliveries", n)
	}
	env.noErrorLogs()
}

// The FIFO of a target is bounded: beyond it a delivery is let go (pending
// in its event DB, not in hand) and found again by a scan of its webhook
// once the FIFO drains.
func TestParkedOverflowIsLetGoAndDeliveredThroughAScan(t *testing.T) {
	t.Parallel()
	tp := newTarpit(t)
	env := newEnv(t)
	slow := quick(3)
	slow.Timeout = storage.Duration(10 * time.Minute)
	snap := env.configure(webhook("tarpit", httpTarget("slow", tp.URL, slow)))
	e := env.engine(snap, Options{Workers: 2, MaxPerTarget: 1})
	e.slots.parkLimit = 2
	e.Start()

	all := sendNumbered(env, e, snap, "tarpit-in", 0, 10)
	letGo := func() (n int) {
		for _, in := range all {
			if _, inHand := e.owned.Load(in.deliveries[0].ID); !inHand {
				n++
			}
		}
		return n
	}
	waitFor(t, "1 in flight, 2 parked, 7 let go", func() bool {
		return tp.count() == 1 && e.ParkedDeliveries() == 2 && letGo() == 7
	}, waitTimeout)
	if fresh, readBack := e.QueueLengths(); fresh != 0 || readBack != 0 {
		t.Fatalf("work left in the channels: %d fresh, %d read back", fresh, readBack)
	}
	// Nothing holds the 7 now: only a scan of the event DB can bring them back.
	tp.open()
	for _, in := range all {
		if d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered); d.Attempts != 1 {
			t.Errorf("delivery %s took %d attempts", d.ID, d.Attempts)
		}
	}
	perID := map[string]int{}
	for _, r := range tp.all() {
		perID[r.header.Get("Webhook-Id")]++
	}
	for _, in := range all {
		if c := perID[MessageID(in.event.ID, in.deliveries[0].TargetID)]; c != 1 {
			t.Errorf("delivery %s reached the target %d times, want 1", in.deliveries[0].ID, c)
		}
	}
	if m := tp.maxSeen.Load(); m != 1 {
		t.Errorf("%d requests at once, want 1", m)
	}
	env.noErrorLogs()
}

// A stop waits only for attempts in flight, not for parked deliveries, which
// stay open in their event DB for the next start.
func TestStopLeavesParkedDeliveriesOpenForTheNextStart(t *testing.T) {
	t.Parallel()
	tp := newTarpit(t)
	env := newEnv(t)
	slow := quick(3)
	slow.Timeout = storage.Duration(10 * time.Minute)
	snap := env.configure(webhook("tarpit", httpTarget("slow", tp.URL, slow)))
	e := env.start(snap, Options{Workers: 2, MaxPerTarget: 1})
	var all []ingested
	for range 5 {
		all = append(all, env.send(e, snap, "tarpit-in", []byte(`{}`), nil))
	}
	waitFor(t, "1 in flight and 4 parked", func() bool { return tp.count() == 1 && e.ParkedDeliveries() == 4 }, waitTimeout)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	e.Stop(ctx)
	for _, in := range all {
		d := env.delivery(in.webhookID, in.deliveries[0].ID)
		if d.Status != storage.DeliveryPending || d.Attempts != 0 {
			t.Errorf("after the stop: %+v, want pending", d)
		}
		if rs := env.results(in.webhookID, d.ID); len(rs) != 0 {
			t.Errorf("after the stop: results %+v", rs)
		}
	}
	if n := tp.count(); n != 1 {
		t.Errorf("the tarpit got %d requests, want the 1 in flight", n)
	}

	tp.open()
	env.start(snap, Options{Workers: 2, MaxPerTarget: 1})
	for _, in := range all {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
}

func TestTargetSlotsParkInOrderAndHandTheSlotOn(t *testing.T) {
	s := newTargetSlots(2, 3)
	ref := func(id string) deliveryRef { return deliveryRef{webhookID: "w" + id, deliveryID: id} }
	for _, id := range []string{"a", "b"} {
		if got := s.acquire("t", 0, ref(id)); got != slotTaken {
			t.Fatalf("acquire %s = %v, want a slot", id, got)
		}
	}
	for _, id := range []string{"c", "d", "e"} {
		if got := s.acquire("t", 0, ref(id)); got != parked {
			t.Fatalf("acquire %s = %v, want parked", id, got)
		}
	}
	if got := s.acquire("t", 0, ref("f")); got != overflowed {
		t.Fatalf("acquire beyond the FIFO = %v, want overflowed", got)
	}
	if got := s.acquire("other", 0, ref("g")); got != slotTaken {
		t.Errorf("another target's first delivery = %v, want a slot", got)
	}
	for _, want := range []string{"c", "d"} {
		next, ok, scan := s.done("t")
		if !ok || next.deliveryID != want || next.slot != "t" || scan != nil {
			t.Fatalf("done = %+v %v %v, want %s carrying the slot, no scan yet", next, ok, scan, want)
		}
	}
	next, ok, scan := s.done("t")
	if !ok || next.deliveryID != "e" || len(scan) != 1 || scan[0] != "wf" {
		t.Fatalf("last parked: %+v %v %v, want e and a scan of wf", next, ok, scan)
	}
	if s.inFlight("t") != 2 {
		t.Errorf("in flight = %d, want 2 (slots handed on stay taken)", s.inFlight("t"))
	}
	for range 2 {
		if _, ok, scan := s.done("t"); ok || scan != nil {
			t.Fatalf("done with nothing parked = %v %v", ok, scan)
		}
	}
	if _, left := s.targets["t"]; left {
		t.Error("an idle target keeps its entry")
	}
}
