package storage

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// WithDelivered reaches a webhook's event DB without applying what the
// intake holds for it first: with an apply of the webhook held up behind a
// write in progress, With waits for it, WithDelivered does not. Before, the
// engine's marks and records of attempts went through With, and at
// full-speed ingest each waited for an apply under way.
func TestWithDeliveredDoesNotWaitForTheIntake(t *testing.T) {
	ctx := context.Background()
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{})
	wh := uuid.NewString()
	target := Target{ID: uuid.NewString(), Type: TargetHTTP}
	r.ingest(wh, `{"n":1}`, target)
	var release func()
	if err := r.events.With(ctx, wh, func(db *WebhookDB) error {
		release = holdWriter(t, db)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.ingest(wh, `{"n":2}`, target) // acknowledged; its apply waits for the writer
	flushed := make(chan error, 1)
	go func() { flushed <- r.events.With(ctx, wh, func(*WebhookDB) error { return nil }) }()

	reached := make(chan error, 1)
	go func() { reached <- r.events.WithDelivered(ctx, wh, func(*WebhookDB) error { return nil }) }()
	select {
	case err := <-reached:
		if err != nil {
			t.Fatalf("WithDelivered: %v", err)
		}
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("WithDelivered waited for the intake's apply")
	}
	select {
	case err := <-flushed:
		t.Fatalf("With returned (%v) before the apply it must wait for could run", err)
	default:
	}
	release()
	if err := <-flushed; err != nil {
		t.Fatalf("With: %v", err)
	}
	if n := eventCount(t, r.events, wh); n != 2 {
		t.Errorf("%d events applied, want 2", n)
	}
}

// A recorded attempt is durable when RecordAttemptOutcome returns: under
// synchronous full the WAL was fsynced after its commit, one fsync shared
// by the records waiting together; under synchronous normal it is not.
func TestRecordedAttemptsShareAnFsyncOfTheWAL(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []Synchronous{SynchronousFull, SynchronousNormal} {
		t.Run(string(mode), func(t *testing.T) {
			m := newManager(t, ManagerOptions{Synchronous: mode})
			id := newID(t)
			var ids []string
			err := m.With(ctx, id, func(db *WebhookDB) error {
				for i := range 64 {
					ev := ingestOne(t, db, fmt.Sprintf("sync%d", i), "t1")
					ds, err := db.Deliveries(ctx, ev.ID)
					if err != nil {
						return err
					}
					ids = append(ids, ds[0].ID)
				}
				before := db.attempts.wal.syncs.Load()
				if err := db.RecordAttempt(ctx, DeliveryResult{DeliveryID: ids[0], Attempt: 1, StartedAt: time.Now()},
					DeliveryOutcome{Status: DeliveryDelivered}); err != nil {
					return err
				}
				one := db.attempts.wal.syncs.Load() - before
				var wg sync.WaitGroup
				errs := make(chan error, len(ids))
				for _, d := range ids[1:] {
					wg.Go(func() {
						errs <- db.RecordAttempt(ctx, DeliveryResult{DeliveryID: d, Attempt: 1, StartedAt: time.Now()},
							DeliveryOutcome{Status: DeliveryDelivered})
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						return err
					}
				}
				all := db.attempts.wal.syncs.Load() - before - one
				switch mode {
				case SynchronousFull:
					if one != 1 {
						t.Errorf("one record: %d fsyncs, want 1", one)
					}
					// How many records wait together is the scheduler's to say
					// (43 of 63 once, under the race detector on a loaded
					// machine): one fsync fewer than records shows sharing;
					// without it each record has its own.
					if all < 1 || all >= int64(len(ids)-1) {
						t.Errorf("%d records at once: %d fsyncs, want at least one and fewer than records", len(ids)-1, all)
					}
				case SynchronousNormal:
					if one+all != 0 {
						t.Errorf("synchronous normal: %d fsyncs, want none", one+all)
					}
				}
				for _, d := range ids {
					got, err := db.Delivery(ctx, d)
					if err != nil || got.Status != DeliveryDelivered {
						t.Errorf("delivery %s after its record: %+v, %v", d, got, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
