package engine

import (
	"context"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/webhooker/caddy-webhooker/storage"
)

// pointLink makes link point at target, atomically: a reader of the path
// sees the old target or the new one, never no link.
func pointLink(t *testing.T, link, target string) {
	t.Helper()
	tmp := link + ".new"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// storageFailures is the number of storage failures in a row of a delivery
// e has in hand (0 when its storage works).
func storageFailures(e *Engine, deliveryID string) int {
	v, ok := e.storageFaults.Load(deliveryID)
	if !ok {
		return 0
	}
	return v.(storageFault).failures
}

// A delivery whose event DB keeps failing used to be read back and logged
// every 5 s for ever. Now it waits twice as long after each failure up to a
// cap, the 1st, 2nd, 4th, 8th… failure is logged with the count, and the
// delivery is kept: once the storage works again it is delivered. The
// failure is real: the event DBs' directory (a symlink) is pointed at a
// directory that does not exist, and back.
func TestStuckDeliveryBacksOffLogsLessAndIsKept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	real := filepath.Join(root, "data")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "events")
	pointLink(t, link, real)
	events, err := storage.NewWebhookDBManager(link, storage.ManagerOptions{Synchronous: storage.SynchronousNormal})
	if err != nil {
		t.Fatal(err)
	}
	main, err := storage.OpenMainDB(ctx, real, storage.SynchronousNormal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := events.CloseAll(context.Background()); err != nil {
			t.Errorf("CloseAll: %v", err)
		}
		if err := main.Close(); err != nil {
			t.Errorf("close main DB: %v", err)
		}
	})
	core, logs := observer.New(zapcore.DebugLevel)
	env := &testEnv{t: t, events: events, main: main, logger: zap.New(core), logs: logs}

	snap := env.configure(webhook("stuck", storage.Target{Name: "audit", Type: storage.TargetLog}))
	e := env.engine(snap, Options{Workers: 2})
	const first, most = time.Millisecond, 8 * time.Millisecond
	e.storageRetry.first, e.storageRetry.max = first, most

	in := env.ingest(snap, "stuck-in", []byte(`{"n":1}`), nil)
	d := in.to(t, "audit")
	// Closed, so that the next use opens the path again, and fails; broken
	// before the start, whose scan would otherwise deliver it first.
	if err := events.Close(ctx, in.webhookID); err != nil {
		t.Fatal(err)
	}
	pointLink(t, link, filepath.Join(root, "missing"))
	e.Start()
	e.Notify(in.tasks)

	const failures = 40
	waitFor(t, "the stuck delivery to fail 40 times", func() bool { return storageFailures(e, d.ID) >= failures }, waitTimeout)
	pointLink(t, link, real)
	// Logged once the attempt is recorded.
	waitFor(t, "the delivery's storage to work again", func() bool {
		return logs.FilterMessage("storage works again for a delivery").Len() > 0
	}, waitTimeout)
	if got := env.delivery(in.webhookID, d.ID); got.Status != storage.DeliveryDelivered || got.Attempts != 1 {
		t.Errorf("delivery %+v, want delivered after 1 attempt (storage failures are not attempts)", got)
	}
	recovered := logs.FilterMessage("storage works again for a delivery").All()
	if len(recovered) != 1 {
		t.Fatalf("%d recovery logs, want 1", len(recovered))
	}
	n := int(recovered[0].ContextMap()["failures"].(int64))
	if n < failures {
		t.Fatalf("recovery log counts %d failures, want at least %d", n, failures)
	}
	if left := storageFailures(e, d.ID); left != 0 {
		t.Errorf("%d storage failures still counted after the delivery", left)
	}

	// The 1st, 2nd, 4th… failure logged, each with its count, and nothing
	// else: log2(n)+1 entries for n failures, not n. (A scan under way when
	// the storage broke may log its own failure: not the delivery's.)
	errorLogs := logs.FilterLevelExact(zapcore.ErrorLevel).FilterField(zap.String("delivery", d.ID)).All()
	if want := bits.Len(uint(n)); len(errorLogs) != want {
		t.Errorf("%d failures logged %d times, want %d", n, len(errorLogs), want)
	}
	for i, entry := range errorLogs {
		m := entry.ContextMap()
		count := m["failures"].(int64)
		if count != 1<<i {
			t.Errorf("error log %d (%s) counts %d failures, want %d", i, entry.Message, count, 1<<i)
		}
		wait := m["retry_in"].(time.Duration)
		want := first
		for range count - 1 {
			want = min(2*want, most)
		}
		if wait != want {
			t.Errorf("after %d failures the delivery waits %s, want %s", count, wait, want)
		}
	}
}

// The waits double from the first to the cap and stay there, and the log
// comes at the 1st, 2nd, 4th… failure or an hour after the last one.
func TestStorageFaultWaitsAndLogs(t *testing.T) {
	e := New(nil, Options{})
	now := time.Now()
	var waits []time.Duration
	var logged []int
	for i := 1; i <= 12; i++ {
		f, logIt := e.noteStorageFault("d", now)
		waits = append(waits, f.delay)
		if logIt {
			logged = append(logged, f.failures)
		}
	}
	for i, w := range waits {
		if want := min(storageRetryFirst<<i, storageRetryMax); w != want {
			t.Errorf("wait after failure %d = %s, want %s", i+1, w, want)
		}
	}
	if want := []int{1, 2, 4, 8}; !slices.Equal(logged, want) {
		t.Errorf("failures logged %v, want %v", logged, want)
	}
	later := now.Add(storageLogEvery)
	if f, logIt := e.noteStorageFault("d", later); !logIt || f.failures != 13 {
		t.Errorf("failure 13, an hour after the last log: %+v logged %v, want it logged", f, logIt)
	}
}
