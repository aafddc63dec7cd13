package engine

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/webhooker/caddy-webhooker/storage"
)

// A dead target with a big backlog waiting (issue 13, goal 4: a million): the
// engine holds no timer and no map entry per delivery, its start-up read
// pages through them, nothing is attempted before its time, and an idle
// engine costs no CPU. It prints what it measures (memory, goroutines,
// CPU); it asserts only the structure, never a timing. Skipped under -short
// and the race detector; WEBHOOKER_BACKLOG sets the number (default
// 100,000; WEBHOOKER_BACKLOG=1000000 for the million).
func TestBacklogHoldsNoMemoryPerDelivery(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("writes a big backlog of deliveries: not under -short or -race")
	}
	total := backlogSize(t)
	const soon = 1000 // due a few seconds after the start: attempted, and put off again

	var requests atomic.Int64
	var firstMu sync.Mutex
	var first time.Time
	tg := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		firstMu.Lock()
		if first.IsZero() {
			first = time.Now()
		}
		firstMu.Unlock()
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	env := newEnv(t)
	opts := storage.TargetOptions{
		MaxRetries:       intp(100),
		Timeout:          storage.Duration(5 * time.Second),
		BackoffInitial:   storage.Duration(time.Hour),
		BackoffMax:       storage.Duration(2 * time.Hour),
		BreakerThreshold: intp(0), // every attempt goes: each one's time is checked
	}
	snap := env.configure(webhook("backlog", httpTarget("dead", tg.URL, opts)))
	w := snap.Webhooks()[0]

	// Due times count from the end of the write, however long it took on a
	// loaded machine: the engine starts well before the first are due.
	// The rows' times are set before the UPDATE that writes them: a second
	// more per 50,000 rows leaves it time to run.
	soonAt, _ := writeBacklog(t, env, w, total, soon, 5*time.Second+time.Duration(total/50_000)*time.Second, time.Hour)

	runtime.GC()
	resetPeakRSS(t)
	before := measure()
	began := time.Now()
	e := env.start(snap, Options{})
	waitFor(t, "the recovery line", func() bool { return env.logs.FilterMessage("recovered deliveries").Len() == 1 }, 5*time.Minute)
	recovered := time.Since(began)
	late := time.Now().After(soonAt)
	after := measure()
	entry := env.logs.FilterMessage("recovered deliveries").All()[0].ContextMap()
	t.Logf("recovery: %s, logged %v", recovered.Round(time.Millisecond), entry)
	t.Logf("after recovery: heap in use %s (was %s), RSS %s, peak RSS since the start %s; goroutines %d (were %d); retry waits (PendingTimers) %d; in hand %d; %s",
		mib(after.heapInuse), mib(before.heapInuse), mib(after.rss), mib(after.peakRSS), after.goroutines, before.goroutines,
		e.PendingTimers(), e.inHand(), engineMapSizes(e))
	if late {
		t.Fatalf("recovery took %s: past the due time of the first deliveries, the test proves nothing", recovered)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d attempts before the first delivery was due", n)
	}
	// Structure, not timing: nothing per delivery.
	if n := e.PendingTimers(); n > 1 {
		t.Errorf("%d retry waits for the deliveries of one webhook, want at most 1", n)
	}
	if n := e.inHand(); n > e.opts.QueueSize+e.opts.RetryQueueSize+e.opts.Workers {
		t.Errorf("%d deliveries in hand: more than the queues and workers hold", n)
	}

	// The first `soon` come due: each attempted once, none before its time.
	waitFor(t, "the deliveries due soon to be attempted", func() bool { return requests.Load() >= soon }, 2*time.Minute)
	firstMu.Lock()
	if first.Before(soonAt) {
		t.Errorf("the first attempt came %s before its due time", soonAt.Sub(first))
	}
	firstMu.Unlock()
	waitFor(t, "their outcomes recorded and let go", func() bool { return e.inHand() == 0 }, time.Minute)

	// Idle: an hour until the next is due. Nothing runs.
	runtime.GC()
	time.Sleep(200 * time.Millisecond) // the last attempt's connection winds down
	cpu0, req0 := cpuTime(t), requests.Load()
	const idle = 3 * time.Second
	time.Sleep(idle)
	cpu := cpuTime(t) - cpu0
	if n := requests.Load() - req0; n != 0 {
		t.Errorf("%d attempts while nothing was due", n)
	}
	idleFigures := measure()
	t.Logf("idle %s: CPU %s; %d attempts in all (%d due); heap in use %s, RSS %s, goroutines %d; retry waits %d; in hand %d; %s",
		idle, cpu, requests.Load(), soon, mib(idleFigures.heapInuse), mib(idleFigures.rss), idleFigures.goroutines,
		e.PendingTimers(), e.inHand(), engineMapSizes(e))
	if n := e.PendingTimers(); n > 1 {
		t.Errorf("%d retry waits while idle, want at most 1", n)
	}
}

type memFigures struct {
	heapInuse, rss, peakRSS uint64
	goroutines              int
}

func measure() memFigures {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	f := memFigures{heapInuse: m.HeapInuse, goroutines: runtime.NumGoroutine()}
	f.rss, f.peakRSS = procStatus("VmRSS:"), procStatus("VmHWM:")
	return f
}

// procStatus reads a figure in kB of /proc/self/status, in bytes (0 where
// there is no /proc).
func procStatus(field string) uint64 {
	file, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer file.Close()
	s := bufio.NewScanner(file)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS starts VmHWM again from the current RSS (Linux: clear_refs
// 5), so that the peak read later is that of the engine's start, not of the
// writes before it.
func resetPeakRSS(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Logf("peak RSS not reset (%v): it includes the writes", err)
	}
}

func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// backlogSize is WEBHOOKER_BACKLOG, or 100,000: enough to see any memory
// per delivery, and quick enough for every run of the tests.
func backlogSize(t *testing.T) int {
	v := os.Getenv("WEBHOOKER_BACKLOG")
	if v == "" {
		return 100_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2000 {
		t.Fatalf("WEBHOOKER_BACKLOG=%q: want a number of at least 2000", v)
	}
	return n
}

// writeBacklog writes total retrying deliveries of w's first target, with
// their events: the first soon of them due soonIn after the write ends, the
// others from laterIn after it on, a millisecond apart. It returns those two
// times.
func writeBacklog(t *testing.T, env *testEnv, w *storage.Webhook, total, soon int, soonIn, laterIn time.Duration) (soonAt, laterAt time.Time) {
	t.Helper()
	// Written through the storage API, many at once, so that group commit
	// makes big transactions; then put off in one UPDATE (retrying, one
	// attempt made), as a dead target leaves them.
	ctx := context.Background()
	began := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Value
	const writers = 256
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < total; i += writers {
				err := env.events.With(ctx, w.ID, func(db *storage.WebhookDB) error {
					_, err := db.Ingest(&storage.Event{EntrypointID: w.Entrypoints[0].ID, EntrypointKey: "backlog-in",
						Method: http.MethodPost, Path: "/hooks/backlog-in", Headers: http.Header{"Content-Type": {"application/json"}},
						Body: []byte(`{"n":` + strconv.Itoa(i) + `}`), ContentType: "application/json", ReceivedAt: time.Now()}, w.Targets)
					return err
				})
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("ingest: %v", err)
	}
	path, err := env.events.EventDBPath(w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.events.Close(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	// rowid order is the order written: the first `soon` come due at
	// soonAt, the others from laterAt on, a millisecond apart.
	soonAt, laterAt = time.Now().Add(soonIn), time.Now().Add(laterIn)
	_, err = raw.ExecContext(ctx, `UPDATE deliveries SET status = 'retrying', attempts = 1,
		last_error = 'target answered 503', next_attempt_at = CASE WHEN rowid <= ? THEN ? ELSE ? + rowid * 1000000 END`,
		soon, soonAt.UnixNano(), laterAt.UnixNano())
	if err == nil {
		err = raw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d retrying deliveries (and their events) in %s", total, time.Since(began).Round(time.Millisecond))
	return soonAt, laterAt
}

// A big backlog (WEBHOOKER_BACKLOG) due at once, to a paused target, read by the
// start-up read: every one of them is walked (and left, paused), a page at a
// time. It prints the walk's time and the memory it took; it asserts that
// nothing was taken in hand. Skipped as the test above.
func TestDueBacklogIsReadInPages(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("writes a big backlog of deliveries: not under -short or -race")
	}
	total := backlogSize(t)
	tg := newTarget(t, nil)
	env := newEnv(t)
	declared := webhook("backlog", httpTarget("paused", tg.URL, quick(3)))
	snap := env.configure(declared)
	w := snap.Webhooks()[0]
	writeBacklog(t, env, w, total, 0, -time.Hour, -time.Hour)
	snap = env.setPaused(w.ID, w.Targets[0].ID, true)

	runtime.GC()
	resetPeakRSS(t)
	before := measure()
	began := time.Now()
	e := env.start(snap, Options{})
	waitFor(t, "the recovery line", func() bool { return env.logs.FilterMessage("recovered deliveries").Len() == 1 }, 5*time.Minute)
	walked := time.Since(began)
	after := measure()
	t.Logf("start-up read of %d due deliveries (paused target: each walked, none taken): %s; heap in use %s (was %s), RSS %s, peak RSS %s; in hand %d, retry waits %d; %s",
		total, walked.Round(time.Millisecond), mib(after.heapInuse), mib(before.heapInuse), mib(after.rss), mib(after.peakRSS),
		e.inHand(), e.PendingTimers(), engineMapSizes(e))
	if n := e.inHand(); n != 0 || tg.count() != 0 {
		t.Errorf("%d in hand, %d attempts to a paused target", n, tg.count())
	}
}
