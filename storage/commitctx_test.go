package storage

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// holdWriter makes db's group commit busy with a write that blocks until
// the returned release is called, so that the next writes queue behind it.
// It returns once the blocking write runs (its leader holds the writer).
func holdWriter(t *testing.T, db *WebhookDB) (release func()) {
	t.Helper()
	running, unblock, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- db.commits.submit(&commitRequest{write: func(*writeTx) error {
			close(running)
			<-unblock
			return nil
		}})
	}()
	<-running
	var released bool
	release = func() {
		if released {
			return
		}
		released = true
		close(unblock)
		if err := <-done; err != nil {
			t.Errorf("the holding write: %v", err)
		}
	}
	t.Cleanup(release)
	return release
}

// queued waits until n writes are queued behind the held one.
func queued(t *testing.T, db *WebhookDB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		db.commits.mu.Lock()
		got := len(db.commits.queue)
		db.commits.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after 10 s, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// The storage methods that write honour their ctx while they wait for a
// place in a group-committed transaction: they return its error at once,
// and the write is never made (not later, when the writer is free).
func TestWritesWaitingForGroupCommitStopWhenCtxEnds(t *testing.T) {
	bg := context.Background()
	_, _, db := openOne(t)
	var ds []Delivery
	for range 3 {
		_, d := ingestAt(t, db, 100, []string{"a"}, nil)
		ds = append(ds, d...)
	}
	ingestAt(t, db, 100, nil, []string{"kept"}) // finished: what Prune would delete
	var marked InterruptedAttempt
	marked.DeliveryID, marked.StartedAt = ds[2].ID, time.Unix(500, 0)
	if err := db.MarkAttemptStarted(bg, marked.DeliveryID, marked.StartedAt); err != nil {
		t.Fatal(err)
	}
	before := countedStats(t, db)
	results := countRows(t, db, `SELECT count(*) FROM delivery_results`)

	writes := map[string]func(context.Context) error{
		"RecordAttempt": func(ctx context.Context) error {
			return db.RecordAttempt(ctx, DeliveryResult{DeliveryID: ds[0].ID, Attempt: 1}, DeliveryOutcome{Status: DeliveryDelivered})
		},
		"Reschedule": func(ctx context.Context) error { return db.Reschedule(ctx, ds[1].ID, time.Now().Add(time.Hour)) },
		"MarkAttemptStarted": func(ctx context.Context) error {
			return db.MarkAttemptStarted(ctx, ds[0].ID, time.Unix(600, 0))
		},
		"ClearAttemptStarted": func(ctx context.Context) error { return db.ClearAttemptStarted(ctx, marked.DeliveryID) },
		"RecordInterruptedAttempt": func(ctx context.Context) error {
			return db.RecordInterruptedAttempt(ctx, marked, DeliveryResult{DeliveryID: marked.DeliveryID, Attempt: 1},
				DeliveryOutcome{Status: DeliveryFailed})
		},
		"Redeliver": func(ctx context.Context) error {
			_, err := db.Redeliver(ctx, ds[0].EventID, []string{"b"})
			return err
		},
		"Prune": func(ctx context.Context) error {
			_, err := db.Prune(ctx, time.Unix(1000, 0))
			return err
		},
	}
	for name, write := range writes {
		t.Run(name, func(t *testing.T) {
			release := holdWriter(t, db)
			ctx, cancel := context.WithCancel(bg)
			done := make(chan error, 1)
			go func() { done <- write(ctx) }()
			if name == "MarkAttemptStarted" {
				markWaiting(t, db) // marks wait for the writer, not in its queue
			} else {
				queued(t, db, 1)
			}
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%s = %v, want context.Canceled", name, err)
				}
			case <-time.After(10 * time.Second):
				release()
				t.Fatalf("%s still waiting 10 s after its ctx ended (returned %v once the writer was free)", name, <-done)
			}
			release()
			// A write through the same group commit after the cancelled one
			// proves that the cancelled one was not left in the queue either.
			if err := db.ClearAttemptStarted(bg, ds[1].ID); err != nil {
				t.Fatal(err)
			}
			if after := countedStats(t, db); !sameStats(after, before) {
				t.Errorf("after a cancelled %s: %s, want %s", name, statsString(after), statsString(before))
			}
			if n := countRows(t, db, `SELECT count(*) FROM delivery_results`); n != results {
				t.Errorf("after a cancelled %s: %d attempts recorded, want %d", name, n, results)
			}
			d, err := db.Delivery(bg, ds[0].ID)
			if err != nil || d.Status != DeliveryPending || d.NextAttemptAt != (time.Time{}) {
				t.Errorf("after a cancelled %s: delivery %+v, %v; want it pending as it was", name, d, err)
			}
			if n := countRows(t, db, `SELECT count(*) FROM deliveries WHERE attempt_started_at = ?`,
				marked.StartedAt.UnixNano()); n != 1 {
				t.Errorf("after a cancelled %s: the mark is gone", name)
			}
			if n := countRows(t, db, `SELECT count(*) FROM deliveries WHERE attempt_started_at IS NOT NULL`); n != 1 {
				t.Errorf("after a cancelled %s: %d deliveries marked, want 1", name, n)
			}
		})
	}
	if err := db.RecordAttempt(func() context.Context {
		ctx, cancel := context.WithCancel(bg)
		cancel()
		return ctx
	}(), DeliveryResult{DeliveryID: ds[0].ID, Attempt: 1}, DeliveryOutcome{Status: DeliveryDelivered}); !errors.Is(err, context.Canceled) {
		t.Errorf("RecordAttempt with an ended ctx = %v, want context.Canceled", err)
	}
}

// A write already taken into a transaction when its ctx ends waits for that
// transaction and reports its outcome: it is never reported as not made
// while it commits.
func TestWriteTakenIntoATransactionOutlivesItsCtx(t *testing.T) {
	g := &groupCommitter{}
	committing, finish := make(chan int, 2), make(chan struct{}, 2)
	var written []string // by the leaders, one after the other
	g.commit = func(batch []*commitRequest) error {
		committing <- len(batch)
		<-finish
		for _, r := range batch {
			r.err = r.write(nil)
		}
		return nil
	}
	submit := func(ctx context.Context, name string) chan error {
		done := make(chan error, 1)
		go func() {
			done <- g.submit(&commitRequest{ctx: ctx, write: func(*writeTx) error {
				written = append(written, name)
				return nil
			}})
		}()
		return done
	}
	waitQueued := func(n int) {
		for {
			g.mu.Lock()
			got := len(g.queue)
			g.mu.Unlock()
			if got == n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	first := submit(nil, "first")
	<-committing // the first batch: the first write alone
	second := submit(nil, "second")
	waitQueued(1)
	ctx, cancel := context.WithCancel(context.Background())
	third := submit(ctx, "third")
	waitQueued(2)
	finish <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := <-committing; n != 2 { // second leads a batch that carries third
		t.Fatalf("second batch of %d writes, want 2", n)
	}
	cancel()
	finish <- struct{}{}
	if err := <-third; err != nil {
		t.Errorf("a write committed after its ctx ended = %v, want its outcome (nil)", err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if want := []string{"first", "second", "third"}; !slices.Equal(written, want) {
		t.Errorf("written %v, want %v", written, want)
	}
}
