package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// openWait bounds the waits of these tests for an outcome that must come;
// it is a deadline for a failing test, not a performance claim.
const openWait = 10 * time.Second

// withResult is what a With call came back with.
type withResult struct {
	err    error
	events int
}

// withAsync runs With on id in the background and reports how it ended.
func withAsync(m *WebhookDBManager, ctx context.Context, id string) <-chan withResult {
	out := make(chan withResult, 1)
	go func() {
		var r withResult
		r.err = m.With(ctx, id, func(db *WebhookDB) error {
			var err error
			r.events, err = db.countEventsForTest(ctx)
			return err
		})
		out <- r
	}()
	return out
}

func (db *WebhookDB) countEventsForTest(ctx context.Context) (int, error) {
	var n int
	err := db.file.reader.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n)
	return n, err
}

// refsOf is the number of refs held on the cached handle of id (0 when none).
func refsOf(m *WebhookDBManager, id string) int64 {
	v, ok := m.handles.Load(id)
	if !ok {
		return 0
	}
	return v.(*eventDBHandle).refs.Load()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(openWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", openWait, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func receive(t *testing.T, who string, c <-chan withResult) withResult {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(openWait):
		t.Fatalf("%s still waiting after %s", who, openWait)
		return withResult{}
	}
}

// Callers share the open of an event DB. The first of them hanging up used
// to fail every caller waiting with it (the file was opened inside a
// sync.Once on the first caller's context); a later caller could not stop
// waiting on its own context either. Here the open is held up for real: the
// file was removed under a handle still in use, and a new handle on the
// path waits until that one is closed.
func TestSharedOpenOutlivesTheCallerWhoStartedIt(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	path := eventPath(t, m, id)

	var (
		first, second, patient    <-chan withResult
		cancelFirst, cancelSecond context.CancelFunc
	)
	err := m.With(ctx, id, func(db *WebhookDB) error {
		ingestOne(t, db, "before", "t")
		removeEventDBFiles(t, path)
		if errs := ingestConcurrently(db, 1); !errors.Is(errs[0], ErrEventDBGone) {
			t.Fatalf("ingest into the removed file: %v, want ErrEventDBGone", errs[0])
		}
		// The dropped handle is held (by this function) until it returns:
		// the opens below wait for it.
		var firstCtx, secondCtx context.Context
		firstCtx, cancelFirst = context.WithCancel(ctx)
		secondCtx, cancelSecond = context.WithCancel(ctx)
		first = withAsync(m, firstCtx, id)
		waitUntil(t, "the first caller to hold the new handle", func() bool { return refsOf(m, id) >= 1 })
		second = withAsync(m, secondCtx, id)
		patient = withAsync(m, ctx, id)
		// Each caller holds a ref while it waits: the three of them are in.
		waitUntil(t, "three callers waiting for the open", func() bool { return refsOf(m, id) >= 3 })

		// A caller who is not the first stops waiting on its own context.
		cancelSecond()
		if r := receive(t, "a cancelled caller behind the first", second); !errors.Is(r.err, context.Canceled) {
			t.Errorf("cancelled second caller: %v, want context.Canceled", r.err)
		}
		// The first one hangs up too.
		cancelFirst()
		if r := receive(t, "the cancelled first caller", first); !errors.Is(r.err, context.Canceled) {
			t.Errorf("cancelled first caller: %v, want context.Canceled", r.err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The removed file's handle is let go: the open goes on for the caller
	// still waiting, whom nobody's hang-up failed.
	r := receive(t, "the patient caller", patient)
	if r.err != nil {
		t.Fatalf("a caller waiting beside one who hung up failed: %v", r.err)
	}
	if r.events != 0 {
		t.Errorf("the fresh file holds %d events, want 0", r.events)
	}
	if !fileExists(t, path) {
		t.Error("the open that served the patient caller made no file")
	}
	if n := m.OpenCount(); n != 1 {
		t.Errorf("OpenCount = %d, want 1", n)
	}
}

// An open under way when CloseAll comes gives up instead of holding the
// close up, and a use after CloseAll opens the file again.
func TestCloseAllEndsAnOpenHeldUp(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	id := newID(t)
	path := eventPath(t, m, id)

	closed := make(chan error, 1)
	err := m.With(ctx, id, func(db *WebhookDB) error {
		removeEventDBFiles(t, path)
		if errs := ingestConcurrently(db, 1); !errors.Is(errs[0], ErrEventDBGone) {
			t.Fatalf("ingest into the removed file: %v, want ErrEventDBGone", errs[0])
		}
		waiting := withAsync(m, ctx, id)
		waitUntil(t, "a caller waiting for the open", func() bool { return refsOf(m, id) >= 1 })
		// CloseAll also waits for the dropped handle this function holds;
		// the open it overtakes must not wait for that.
		go func() { closed <- m.CloseAll(ctx) }()
		if r := receive(t, "a caller whose open CloseAll overtook", waiting); !errors.Is(r.err, context.Canceled) {
			t.Errorf("open overtaken by CloseAll: %v, want context.Canceled", r.err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("CloseAll: %v", err)
		}
	case <-time.After(openWait):
		t.Fatalf("CloseAll still waiting after %s", openWait)
	}
	if n := m.OpenCount(); n != 0 {
		t.Errorf("OpenCount after CloseAll = %d, want 0", n)
	}
	withDB(t, m, id, func(db *WebhookDB) { ingestOne(t, db, "after", "t") })
}

// A shutdown whose grace period is spent calls CloseAll with a context that
// is done. The handles nobody uses are closed all the same, without an
// error; one still in use is named in the error and closed by its last
// user. (A select between a closed handle and the done context used to pick
// at random, reporting handles closed as in use and leaving the rest.)
func TestCloseAllAfterTheGracePeriodClosesWhatIsIdle(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, ManagerOptions{})
	idle := make([]string, 16)
	for i := range idle {
		idle[i] = newID(t)
		withDB(t, m, idle[i], func(db *WebhookDB) { ingestOne(t, db, "idle", "t") })
	}
	spent, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.CloseAll(spent); err != nil {
		t.Errorf("CloseAll of idle handles after the grace period: %v", err)
	}
	if n := m.OpenCount(); n != 0 {
		t.Errorf("OpenCount after CloseAll = %d, want 0", n)
	}

	busy := newID(t)
	err := m.With(ctx, busy, func(db *WebhookDB) error {
		withDB(t, m, idle[0], func(db *WebhookDB) { ingestOne(t, db, "idle again", "t") })
		err := m.CloseAll(spent)
		if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), busy) {
			t.Errorf("CloseAll with %s in use: %v, want it named, still in use", busy, err)
		}
		if strings.Contains(fmt.Sprint(err), idle[0]) {
			t.Errorf("CloseAll reported idle %s: %v", idle[0], err)
		}
		if n := m.OpenCount(); n != 1 {
			t.Errorf("OpenCount with one handle in use after CloseAll = %d, want 1", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := m.OpenCount(); n != 0 {
		t.Errorf("OpenCount after the last user let go = %d, want 0", n)
	}
}
