package storage

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Pausing is runtime state: it is allowed on a declared webhook, loaded into
// the snapshot, shown in JSON, and kept by a reload of the Caddyfile (which
// declares no paused flag).
func TestTargetPausedSurvivesSyncDeclared(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	w := declare("orders", true, []string{"orders-in"},
		targetSpec{name: "ci", typ: TargetHTTP, url: "http://127.0.0.1:9/hook", active: true})
	syncDeclared(t, db, w)
	targetID := DeclaredTargetID(w.ID, "ci")

	tg, err := db.SetTargetPaused(ctx, w.ID, targetID, true)
	if err != nil {
		t.Fatalf("SetTargetPaused: %v", err)
	}
	if !tg.Paused || tg.Name != "ci" {
		t.Errorf("paused target = %+v", tg)
	}
	if got, _ := snapshot(t, db).Target(w.ID, targetID); !got.Paused {
		t.Errorf("snapshot's target not paused: %+v", got)
	}
	// The reload declares the target again, changed: still paused.
	w.Targets[0].URL = "http://127.0.0.1:9/other"
	syncDeclared(t, db, w)
	got, ok := snapshot(t, db).Target(w.ID, targetID)
	if !ok || !got.Paused || got.URL != "http://127.0.0.1:9/other" || !got.Active {
		t.Errorf("after a reload: %+v, %v; want paused, new URL, active", got, ok)
	}
	js, err := json.Marshal(got)
	if err != nil || !strings.Contains(string(js), `"paused":true`) {
		t.Errorf("target JSON %s, %v; want \"paused\":true", js, err)
	}
	// Still routed: a paused target gets its deliveries, which wait.
	if r, _ := snapshot(t, db).Route("orders-in"); len(r.Targets) != 1 {
		t.Errorf("route of a paused target's webhook: %d targets, want 1", len(r.Targets))
	}

	if tg, err = db.SetTargetPaused(ctx, w.ID, targetID, false); err != nil || tg.Paused {
		t.Fatalf("resume: %+v, %v", tg, err)
	}
	if got, _ := snapshot(t, db).Target(w.ID, targetID); got.Paused {
		t.Errorf("resumed target still paused in the snapshot")
	}
	if _, err := db.SetTargetPaused(ctx, w.ID, "no-such-target", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("pause an unknown target: %v, want ErrNotFound", err)
	}
	if _, err := db.SetTargetPaused(ctx, DeclaredWebhookID("other"), targetID, true); !errors.Is(err, ErrNotFound) {
		t.Errorf("pause a target through another webhook: %v, want ErrNotFound", err)
	}
}

// A main DB from before the paused flag gains it, its targets not paused.
func TestMainDBBeforePausedGainsIt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f, err := openSQLiteFile(filepath.Join(dir, MainDBFile), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, f.writer, mainMigrations[:len(mainMigrations)-1]); err != nil {
		t.Fatalf("migrate to the version before: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO webhooks (id, name, source, active, created_at, updated_at)
			VALUES ('6f1c2e9a-0000-4000-8000-000000000003', 'old', 'api', 1, 3, 3)`,
		`INSERT INTO targets (id, webhook_id, name, type, active, created_at, updated_at)
			VALUES ('t1', '6f1c2e9a-0000-4000-8000-000000000003', 'keep', 'database', 1, 4, 4)`,
	} {
		if _, err := f.writer.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	db, err := OpenMainDB(ctx, dir, "")
	if err != nil {
		t.Fatalf("OpenMainDB: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	got, ok := snapshot(t, db).Target("6f1c2e9a-0000-4000-8000-000000000003", "t1")
	if !ok || got.Paused {
		t.Errorf("old target = %+v, %v; want not paused", got, ok)
	}
}

func TestCancelAndRetryNowOfDeliveries(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	ev := ingestOne(t, db, "cancel", "t1", "t2")
	ds, err := db.Deliveries(ctx, ev.ID)
	if err != nil || len(ds) != 2 {
		t.Fatalf("deliveries = %+v, %v", ds, err)
	}
	pending, retrying := ds[0].ID, ds[1].ID
	later := time.Now().Add(time.Hour)
	if err := db.RecordAttempt(ctx, DeliveryResult{DeliveryID: retrying, Attempt: 1, StartedAt: time.Now(), Error: "target answered 500"},
		DeliveryOutcome{Status: DeliveryRetrying, NextAttemptAt: later, LastError: "target answered 500"}); err != nil {
		t.Fatal(err)
	}

	// Retry now: due now, status kept.
	before := time.Now()
	if err := db.RetryDeliveryNow(ctx, retrying); err != nil {
		t.Fatalf("RetryDeliveryNow: %v", err)
	}
	if d, _ := db.Delivery(ctx, retrying); d.Status != DeliveryRetrying || d.NextAttemptAt.Before(before) || d.NextAttemptAt.After(time.Now()) {
		t.Errorf("retried now: %+v; want retrying, due between %v and now", d, before)
	}
	if err := db.RetryDeliveryNow(ctx, pending); err != nil {
		t.Errorf("RetryDeliveryNow of a pending delivery: %v", err)
	}
	if d, _ := db.Delivery(ctx, pending); d.Status != DeliveryPending {
		t.Errorf("pending retried now: %+v", d)
	}

	for _, id := range []string{pending, retrying} {
		if err := db.CancelDelivery(ctx, id); err != nil {
			t.Fatalf("CancelDelivery %s: %v", id, err)
		}
		d, _ := db.Delivery(ctx, id)
		if d.Status != DeliveryFailed || d.LastError != CancelledError || !d.NextAttemptAt.IsZero() {
			t.Errorf("cancelled: %+v", d)
		}
		if err := db.CancelDelivery(ctx, id); !errors.Is(err, ErrNotOpen) {
			t.Errorf("cancel twice: %v, want ErrNotOpen", err)
		}
		if err := db.RetryDeliveryNow(ctx, id); !errors.Is(err, ErrNotOpen) {
			t.Errorf("retry a cancelled delivery now: %v, want ErrNotOpen", err)
		}
	}
	if err := db.CancelDelivery(ctx, "no-such-delivery"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel an unknown delivery: %v, want ErrNotFound", err)
	}
	if err := db.RetryDeliveryNow(ctx, "no-such-delivery"); !errors.Is(err, ErrNotFound) {
		t.Errorf("retry an unknown delivery now: %v, want ErrNotFound", err)
	}
	stats, err := db.Stats(ctx)
	if err != nil || stats.Deliveries[DeliveryFailed] != 2 || stats.Deliveries[DeliveryPending] != 0 || stats.Deliveries[DeliveryRetrying] != 0 {
		t.Errorf("stats after two cancels = %+v, %v", stats, err)
	}
}

// An attempt in flight when its delivery is cancelled is recorded when it
// ends, but a failure does not make the delivery retrying again; one that
// delivered does make it delivered (it was).
func TestAttemptEndingAfterCancelDoesNotReviveIt(t *testing.T) {
	ctx := context.Background()
	db := openEventDB(t)
	ev := ingestOne(t, db, "race", "t1", "t2")
	ds, err := db.Deliveries(ctx, ev.ID)
	if err != nil || len(ds) != 2 {
		t.Fatalf("deliveries = %+v, %v", ds, err)
	}
	for _, d := range ds {
		if err := db.MarkAttemptStarted(ctx, d.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := db.CancelDelivery(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	failing, delivering := ds[0].ID, ds[1].ID

	status, applied, err := db.RecordAttemptOutcome(ctx,
		DeliveryResult{DeliveryID: failing, Attempt: 1, StartedAt: time.Now(), StatusCode: 500, Error: "target answered 500"},
		DeliveryOutcome{Status: DeliveryRetrying, NextAttemptAt: time.Now().Add(time.Minute), LastError: "target answered 500"})
	if err != nil || applied || status != DeliveryFailed {
		t.Errorf("record a failed attempt of a cancelled delivery: %s, applied %v, %v; want failed, not applied", status, applied, err)
	}
	d, _ := db.Delivery(ctx, failing)
	if d.Status != DeliveryFailed || d.LastError != CancelledError || !d.NextAttemptAt.IsZero() || d.Attempts != 1 {
		t.Errorf("cancelled delivery after its attempt failed: %+v", d)
	}
	if rs, err := db.DeliveryResults(ctx, failing); err != nil || len(rs) != 1 || rs[0].StatusCode != 500 {
		t.Errorf("the attempt is recorded: %+v, %v", rs, err)
	}

	status, applied, err = db.RecordAttemptOutcome(ctx,
		DeliveryResult{DeliveryID: delivering, Attempt: 1, StartedAt: time.Now(), StatusCode: 200},
		DeliveryOutcome{Status: DeliveryDelivered})
	if err != nil || !applied || status != DeliveryDelivered {
		t.Errorf("record a delivered attempt of a cancelled delivery: %s, applied %v, %v; want delivered", status, applied, err)
	}
	if marked, err := db.InterruptedAttempts(ctx); err != nil || len(marked) != 0 {
		t.Errorf("marks left: %+v, %v", marked, err)
	}
	stats, err := db.Stats(ctx)
	if err != nil || stats.Deliveries[DeliveryFailed] != 1 || stats.Deliveries[DeliveryDelivered] != 1 || stats.Deliveries[DeliveryRetrying] != 0 {
		t.Errorf("stats = %+v, %v", stats, err)
	}
	if _, _, err := db.RecordAttemptOutcome(ctx, DeliveryResult{DeliveryID: "no-such", Attempt: 1, StartedAt: time.Now()},
		DeliveryOutcome{Status: DeliveryFailed}); !errors.Is(err, ErrNotFound) {
		t.Errorf("record an attempt of an unknown delivery: %v, want ErrNotFound", err)
	}
}
