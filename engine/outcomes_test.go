package engine

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/webhooker/caddy-webhooker/storage"
)

// An attempt lets go of its target's slot and its worker when its exchange
// ends, not once its outcome is recorded: with one slot and the record of
// the first attempt held up, the second delivery to the same target still
// goes out. Before, the record held the slot (and the worker) throughout,
// so a target got one attempt per commit latency per slot.
func TestTheSlotIsFreeWhileTheOutcomeIsRecorded(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("w", httpTarget("sink", tg.URL, quick(3))))
	hold, held := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	e := env.start(snap, Options{Workers: 1, MaxPerTarget: 1,
		Recorded: func(storage.TargetType, storage.DeliveryStatus) {
			// Recorded runs where the outcome is recorded, after its commit:
			// the first one waits here until the second delivery arrived.
			if first.CompareAndSwap(false, true) {
				close(held)
				<-hold
			}
		}})
	release := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(release) // before the engine's Stop, should the test fail
	a := env.send(e, snap, "w-in", []byte(`{"n":1}`), nil)
	<-held
	b := env.send(e, snap, "w-in", []byte(`{"n":2}`), nil)
	waitFor(t, "the second delivery to reach the target while the first's outcome is being recorded",
		func() bool { return tg.count() == 2 }, waitTimeout)
	release()
	env.waitStatus(a.webhookID, a.deliveries[0].ID, storage.DeliveryDelivered)
	env.waitStatus(b.webhookID, b.deliveries[0].ID, storage.DeliveryDelivered)
	env.noErrorLogs()
}

// Stop returns only once every attempt that ended has its outcome recorded,
// metrics and all: an outcome on its way to the event DB is not dropped.
func TestStopWaitsForOutcomesBeingRecorded(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("w", httpTarget("sink", tg.URL, quick(3))))
	hold, held := make(chan struct{}), make(chan struct{})
	var reported atomic.Int64
	e := env.engine(snap, Options{Workers: 4, MaxPerTarget: 4,
		Recorded: func(storage.TargetType, storage.DeliveryStatus) {
			if reported.Add(1) == 1 {
				close(held)
				<-hold
			}
		}})
	e.Start()
	var sent []ingested
	for i := range 5 {
		sent = append(sent, env.send(e, snap, "w-in", []byte(`{"n":`+strconv.Itoa(i)+`}`), nil))
	}
	<-held
	stopped := make(chan struct{})
	go func() {
		e.Stop(context.Background())
		close(stopped)
	}()
	close(hold)
	<-stopped
	// Whatever reached the target when Stop returned is recorded, and
	// reported.
	if n, r := tg.count(), reported.Load(); int64(n) != r {
		t.Errorf("%d deliveries reached the target, %d outcomes reported when Stop returned", n, r)
	}
	delivered := 0
	for _, in := range sent {
		if d := env.delivery(in.webhookID, in.deliveries[0].ID); d.Status == storage.DeliveryDelivered {
			delivered++
		}
	}
	if delivered != tg.count() {
		t.Errorf("%d deliveries recorded delivered when Stop returned, %d reached the target", delivered, tg.count())
	}
	if n := len(e.outcomeRoom); n != 0 {
		t.Errorf("%d outcomes still pending after Stop", n)
	}
}

// A delivery parked behind its target's slot keeps its task (metadata and
// inline body) within the bound of such tasks; beyond it, it is parked by its
// ids, to be read back. The bytes are given back when the slot passes to it.
func TestParkedTasksAreKeptWholeWithinTheirBound(t *testing.T) {
	s := newTargetSlots(1, 10)
	body := string(make([]byte, 1000))
	task := func(id string) deliveryRef {
		return deliveryRef{webhookID: "w", deliveryID: id, attempts: 2,
			task: &Task{WebhookID: "w", DeliveryID: id, Body: &body}}
	}
	size := taskSize(task("x").task)
	s.taskBytes = 2*size + size/2 // room for two
	if got := s.acquire("t", 0, task("a")); got != slotTaken {
		t.Fatalf("first acquire = %v, want a slot", got)
	}
	for _, id := range []string{"b", "c", "d"} {
		if got := s.acquire("t", 0, task(id)); got != parked {
			t.Fatalf("acquire %s = %v, want parked", id, got)
		}
	}
	if s.parkedBytes != 2*size {
		t.Errorf("parked bytes = %d, want %d (two tasks whole)", s.parkedBytes, 2*size)
	}
	for i, want := range []struct {
		id    string
		whole bool
	}{{"b", true}, {"c", true}, {"d", false}} {
		next, ok, _ := s.done("t")
		if !ok || next.deliveryID != want.id || (next.task != nil) != want.whole || next.slot != "t" {
			t.Fatalf("handed on #%d: %+v, %v; want %s, whole %v, with the slot", i, next, ok, want.id, want.whole)
		}
		if want.whole && (next.attempts != 2 || *next.task.Body != body) {
			t.Errorf("%s parked whole as %+v, want its attempts and body", want.id, next)
		}
		if !want.whole && next.attempts != 0 {
			t.Errorf("%s parked by ids with attempts %d: it is read back", want.id, next.attempts)
		}
	}
	if s.parkedBytes != 0 {
		t.Errorf("parked bytes after the FIFO drained = %d, want 0", s.parkedBytes)
	}
}

// Deliveries parked whole go out with their bodies and headers as the
// event had them, without being read back, and a cancel while parked is
// honoured: the mark finds the delivery no longer open.
func TestParkedWholeDeliveriesAreDeliveredOrCancelled(t *testing.T) {
	t.Parallel()
	tp := newTarpit(t)
	env := newEnv(t)
	snap := env.configure(webhook("w", httpTarget("slow", tp.URL, quick(3))))
	e := env.start(snap, Options{Workers: 2, MaxPerTarget: 1})
	sent := sendNumbered(env, e, snap, "w-in", 0, 6)
	waitFor(t, "5 deliveries parked", func() bool { return e.ParkedDeliveries() == 5 }, waitTimeout)
	if e.slots.parkedBytes == 0 {
		t.Fatal("no task parked whole")
	}
	cancelled := sent[3]
	if err := e.Cancel(context.Background(), cancelled.webhookID, cancelled.deliveries[0].ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	tp.open()
	for i, in := range sent {
		if i == 3 {
			continue
		}
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
	waitFor(t, "the FIFO to drain", func() bool { return e.ParkedDeliveries() == 0 }, waitTimeout)
	if d := env.delivery(cancelled.webhookID, cancelled.deliveries[0].ID); d.Status != storage.DeliveryFailed || d.Attempts != 0 {
		t.Errorf("cancelled while parked: %+v, want failed with no attempt", d)
	}
	got := map[string]bool{}
	for _, r := range tp.all() {
		got[string(r.body)] = true
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("a parked delivery went out with Content-Type %q", r.header.Get("Content-Type"))
		}
	}
	for i, in := range sent {
		if want := i != 3; got[string(in.event.Body)] != want {
			t.Errorf("body %s at the target: %v, want %v", in.event.Body, !want, want)
		}
	}
	if e.slots.parkedBytes != 0 {
		t.Errorf("parked bytes after the FIFO drained = %d, want 0", e.slots.parkedBytes)
	}
}

// Attempts holding a body read from the event DB (InlineBodyLimit and over)
// are at most maxLargeBodiesInFlight at once, however many workers and
// slots there are: the memory they hold is bounded as it was with 32
// workers.
func TestLargeBodiesInFlightAreBounded(t *testing.T) {
	t.Parallel()
	tp := newTarpit(t)
	env := newEnv(t)
	snap := env.configure(webhook("w", httpTarget("slow", tp.URL, quick(3))))
	n := maxLargeBodiesInFlight + 8
	e := env.start(snap, Options{Workers: 2 * n, MaxPerTarget: 2 * n})
	big := make([]byte, InlineBodyLimit)
	var sent []ingested
	for range n {
		sent = append(sent, env.send(e, snap, "w-in", big, nil))
	}
	waitFor(t, "as many large bodies in flight as allowed",
		func() bool { return tp.current.Load() == int64(maxLargeBodiesInFlight) }, waitTimeout)
	tp.open()
	for _, in := range sent {
		env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryDelivered)
	}
	if m := tp.maxSeen.Load(); m != int64(maxLargeBodiesInFlight) {
		t.Errorf("%d large bodies in flight at once, want at most %d", m, maxLargeBodiesInFlight)
	}
}
