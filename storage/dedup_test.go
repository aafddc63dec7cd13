package storage

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/webhooker/caddy-webhooker/filter"
)

// ingestKey ingests an event of webhookID carrying dedup key key.
func (r *intakeRig) ingestKey(webhookID, key string, window time.Duration, received time.Time, targets ...Target) *Event {
	r.t.Helper()
	ev := &Event{EntrypointID: "ep", EntrypointKey: "key", Method: "POST", Path: "/hooks/key", Body: []byte(`{}`),
		ReceivedAt: received, Dedup: NewDedupKey(key, window)}
	if err := r.intake.Ingest(context.Background(), webhookID, ev, targets); err != nil {
		r.t.Fatalf("ingest into %s: %v", webhookID, err)
	}
	return ev
}

func (r *intakeRig) appliedCount(webhookID string) (events, deliveries int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.applied[webhookID] {
		events++
		deliveries += len(a.Pending)
	}
	return events, deliveries
}

func dedupKeys(t *testing.T, in *Intake) int {
	t.Helper()
	n, err := in.DedupKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The same key three times: one event, one delivery per target, the
// original's id answered to each repeat; the sync round keeps the key.
func TestDedupSameKeyThriceIsOneEvent(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{SyncDelay: time.Hour})
	wh := uuid.NewString()
	targets := []Target{{ID: uuid.NewString(), Type: TargetHTTP}, {ID: uuid.NewString(), Type: TargetHTTP}}
	first := r.ingestKey(wh, "delivery-1", time.Hour, time.Now(), targets...)
	if first.Dedup.Repeat {
		t.Fatal("the first event is marked a repeat")
	}
	for range 2 {
		again := r.ingestKey(wh, "delivery-1", time.Hour, time.Now(), targets...)
		if !again.Dedup.Repeat || again.ID != first.ID {
			t.Fatalf("repeat: id %s repeat %v, want %s true", again.ID, again.Dedup.Repeat, first.ID)
		}
	}
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	if n := eventCount(t, r.events, wh); n != 1 {
		t.Errorf("%d events in the event DB, want 1", n)
	}
	// The engine is told after the apply's lock is let go: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for evs, _ := r.appliedCount(wh); evs == 0 && time.Now().Before(deadline); evs, _ = r.appliedCount(wh) {
		time.Sleep(time.Millisecond)
	}
	if evs, ds := r.appliedCount(wh); evs != 1 || ds != 2 {
		t.Errorf("the engine was told of %d events with %d deliveries, want 1 with 2", evs, ds)
	}
	if f := r.intake.Figures(); f.Deduplicated != 2 || f.Held != 0 {
		t.Errorf("figures %+v, want 2 deduplicated and nothing held", f)
	}
	r.intake.syncRound()
	if n := intakeRows(t, r.dir); n != 0 {
		t.Errorf("%d intake rows after the sync round, want 0", n)
	}
	if n := dedupKeys(t, r.intake); n != 1 {
		t.Errorf("%d dedup keys after the sync round, want 1: it must not forget them", n)
	}
	// Another key is another event.
	if other := r.ingestKey(wh, "delivery-2", time.Hour, time.Now(), targets...); other.Dedup.Repeat || other.ID == first.ID {
		t.Errorf("another key answered as a repeat of %s", other.ID)
	}
}

// Two copies in one group commit make one event: the second sees the key
// the first claimed in the same transaction.
func TestDedupSameKeyInOneBatch(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{})
	wh := uuid.NewString()
	target := Target{ID: uuid.NewString(), Type: TargetHTTP}
	var batch []*commitRequest
	var evs []*Event
	for range 3 {
		ev := &Event{EntrypointID: "ep", Method: "POST", Path: "/", Body: []byte(`{}`), Dedup: NewDedupKey("same", time.Hour)}
		rec, err := newEventRecord(ev, []Target{target})
		if err != nil {
			t.Fatal(err)
		}
		e := &intakeEntry{webhookID: wh, ev: ev, rec: rec, targets: []Target{target}, size: intakeEntryOverhead}
		if err := r.intake.reserve(context.Background(), e.size); err != nil {
			t.Fatal(err)
		}
		batch = append(batch, &commitRequest{entry: e})
		evs = append(evs, ev)
	}
	if err := r.intake.commitBatch(batch); err != nil {
		t.Fatal(err)
	}
	if evs[0].Dedup.Repeat || !evs[1].Dedup.Repeat || !evs[2].Dedup.Repeat {
		t.Errorf("repeats %v %v %v, want false true true", evs[0].Dedup.Repeat, evs[1].Dedup.Repeat, evs[2].Dedup.Repeat)
	}
	if evs[1].ID != evs[0].ID || evs[2].ID != evs[0].ID {
		t.Errorf("ids %s %s %s, want all the first's", evs[0].ID, evs[1].ID, evs[2].ID)
	}
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	if n := eventCount(t, r.events, wh); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
}

// A repeat after the intake is closed and opened again is still caught.
func TestDedupCaughtAfterReopen(t *testing.T) {
	dir := t.TempDir()
	r := newIntakeRig(t, dir, IntakeOptions{})
	wh := uuid.NewString()
	target := Target{ID: uuid.NewString(), Type: TargetHTTP}
	first := r.ingestKey(wh, "gh-123", time.Hour, time.Now(), target)
	r.close()

	again := newIntakeRig(t, dir, IntakeOptions{})
	ev := again.ingestKey(wh, "gh-123", time.Hour, time.Now(), target)
	if !ev.Dedup.Repeat || ev.ID != first.ID {
		t.Fatalf("after a reopen: id %s repeat %v, want %s true", ev.ID, ev.Dedup.Repeat, first.ID)
	}
	if err := again.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	if n := eventCount(t, again.events, wh); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	if evs, _ := again.appliedCount(wh); evs != 0 {
		t.Errorf("the engine was told of %d events after the reopen, want none", evs)
	}
}

// An expired key is taken over: a new event, which later copies repeat.
func TestDedupExpiredKeyMakesANewEvent(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{})
	wh := uuid.NewString()
	// Received two hours ago with a one-hour window: expired on arrival.
	old := r.ingestKey(wh, "k", time.Hour, time.Now().Add(-2*time.Hour))
	fresh := r.ingestKey(wh, "k", time.Hour, time.Now())
	if fresh.Dedup.Repeat || fresh.ID == old.ID {
		t.Fatalf("a copy past the window answered as a repeat of %s", old.ID)
	}
	if again := r.ingestKey(wh, "k", time.Hour, time.Now()); !again.Dedup.Repeat || again.ID != fresh.ID {
		t.Errorf("a copy within the new window: id %s repeat %v, want %s true", again.ID, again.Dedup.Repeat, fresh.ID)
	}
	if err := r.intake.ApplyAll(); err != nil {
		t.Fatal(err)
	}
	if n := eventCount(t, r.events, wh); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}

// Keys belong to their webhook, each with its own window.
func TestDedupKeysPerWebhook(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{})
	short, long := uuid.NewString(), uuid.NewString()
	received := time.Now().Add(-2 * time.Minute)
	a := r.ingestKey(short, "k", time.Minute, received)
	b := r.ingestKey(long, "k", time.Hour, received)
	if b.Dedup.Repeat || a.ID == b.ID {
		t.Fatal("the same key of another webhook answered as a repeat")
	}
	if ev := r.ingestKey(short, "k", time.Minute, time.Now()); ev.Dedup.Repeat {
		t.Error("a copy 2 minutes later was caught by a 1-minute window")
	}
	if ev := r.ingestKey(long, "k", time.Hour, time.Now()); !ev.Dedup.Repeat || ev.ID != b.ID {
		t.Error("a copy 2 minutes later was not caught by a 1-hour window")
	}
}

// Expired keys are pruned by a later commit, a bounded batch at a time;
// live ones stay.
func TestDedupPrunesExpiredKeys(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{})
	wh := uuid.NewString()
	for i := range dedupPruneBatch + 10 {
		r.ingestKey(wh, "old-"+uuid.NewString()+string(rune('a'+i%26)), time.Hour, time.Now().Add(-2*time.Hour))
	}
	live := r.ingestKey(wh, "live", time.Hour, time.Now())
	if n := dedupKeys(t, r.intake); n != dedupPruneBatch+11 {
		t.Fatalf("%d keys, want %d before a prune is due", n, dedupPruneBatch+11)
	}
	r.intake.dedup.pruneAt = time.Time{} // due now
	r.ingest(wh, `{}`)
	if n := dedupKeys(t, r.intake); n != 11 {
		t.Fatalf("%d keys after one prune, want 11: a batch of %d removed", n, dedupPruneBatch)
	}
	r.ingest(wh, `{}`) // the batch came back full: the next commit goes on
	if n := dedupKeys(t, r.intake); n != 1 {
		t.Fatalf("%d keys after two prunes, want the live one", n)
	}
	if f := r.intake.Figures(); f.DedupPruned != dedupPruneBatch+10 {
		t.Errorf("%d pruned, want %d", f.DedupPruned, dedupPruneBatch+10)
	}
	if ev := r.ingestKey(wh, "live", time.Hour, time.Now()); !ev.Dedup.Repeat || ev.ID != live.ID {
		t.Error("the live key was pruned")
	}
}

func TestDedupLongKeyIsHashed(t *testing.T) {
	a := NewDedupKey(strings.Repeat("a", 10_000), time.Hour)
	b := NewDedupKey(strings.Repeat("a", 9_999)+"b", time.Hour)
	if len(a.Key) != len("sha256:")+64 || !strings.HasPrefix(a.Key, "sha256:") {
		t.Errorf("a 10,000-byte key stored as %q", a.Key)
	}
	if a.Key == b.Key {
		t.Error("two long keys that differ hash alike")
	}
	if k := NewDedupKey(strings.Repeat("a", MaxDedupKeyBytes), time.Hour); k.Key != strings.Repeat("a", MaxDedupKeyBytes) {
		t.Error("a key of MaxDedupKeyBytes was changed")
	}
}

func TestDedupValidate(t *testing.T) {
	for _, c := range []struct {
		d    Dedup
		l    Limits
		want string // "" for valid
	}{
		{Dedup{Kind: DedupHeader, Source: "X-GitHub-Delivery"}, OperatorLimits(), ""},
		{Dedup{Kind: DedupExpression, Source: "body.id", Window: Duration(time.Hour)}, TenantLimits(), ""},
		{Dedup{Kind: DedupExpression, Source: "body.n + 1"}, OperatorLimits(), ""},
		{Dedup{Kind: DedupHeader, Source: "X Bad"}, OperatorLimits(), "not a header name"},
		{Dedup{Kind: DedupHeader, Source: strings.Repeat("X", 300)}, OperatorLimits(), "not a header name"},
		{Dedup{Kind: "body", Source: "id"}, OperatorLimits(), "unknown kind"},
		{Dedup{Kind: DedupExpression, Source: "body.id =="}, OperatorLimits(), "Syntax error"},
		{Dedup{Kind: DedupExpression, Source: `body.action == "opened"`}, OperatorLimits(), "not a string or an int"},
		{Dedup{Kind: DedupExpression, Source: `header["x-id"]`}, OperatorLimits(), `write header["X-Id"]`},
		{Dedup{Kind: DedupExpression, Source: "body.id + '" + strings.Repeat("x", 1100) + "'"}, TenantLimits(), "at most 1024"},
		{Dedup{Kind: DedupHeader, Source: "Idempotency-Key", Window: Duration(time.Millisecond)}, OperatorLimits(), "between 1s"},
		{Dedup{Kind: DedupHeader, Source: "Idempotency-Key", Window: Duration(8 * 24 * time.Hour)}, TenantLimits(), "tenant limits"},
		{Dedup{Kind: DedupHeader, Source: "Idempotency-Key", Window: Duration(8 * 24 * time.Hour)}, OperatorLimits(), ""},
		{Dedup{Kind: DedupHeader, Source: "Idempotency-Key", Window: Duration(31 * 24 * time.Hour)}, OperatorLimits(), "operator limits"},
	} {
		err := c.d.Validate(c.l)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v within %s: %v", c.d, c.l.Name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v within %s: %v, want an error with %q", c.d, c.l.Name, err, c.want)
		}
	}
}

// A route computes its key: the header's first value, or the expression's
// string or int; a missing header or a failed evaluation is no key.
func TestRouteDedupKey(t *testing.T) {
	routeOf := func(d *Dedup) Route {
		w := &Webhook{ID: "w", Name: "w", Active: true, Dedup: d,
			Entrypoints: []Entrypoint{{ID: "e", Key: "k", Active: true}}}
		r, ok := newSnapshot([]*Webhook{w}, nil).Route("k")
		if !ok {
			t.Fatal("no route")
		}
		return r
	}
	header := http.Header{"X-Github-Delivery": {"abc", "def"}}
	eventOf := func(body string) func() *filter.Event {
		return func() *filter.Event { return filter.NewEvent("POST", "/", "", header, []byte(body)) }
	}
	for _, c := range []struct {
		d      *Dedup
		body   string
		want   string
		wantOK bool
	}{
		{nil, `{}`, "", false},
		{&Dedup{Kind: DedupHeader, Source: "x-github-delivery"}, `{}`, "abc", true},
		{&Dedup{Kind: DedupHeader, Source: "Idempotency-Key"}, `{}`, "", false},
		{&Dedup{Kind: DedupExpression, Source: "body.id"}, `{"id": "evt_1"}`, "evt_1", true},
		{&Dedup{Kind: DedupExpression, Source: "body.id"}, `{"id": 42}`, "42", true},
		{&Dedup{Kind: DedupExpression, Source: "body.id"}, `{"id": 4.5}`, "", false},
		{&Dedup{Kind: DedupExpression, Source: "body.id"}, `{"other": 1}`, "", false},
		{&Dedup{Kind: DedupExpression, Source: "body.id"}, `not json`, "", false},
		{&Dedup{Kind: DedupExpression, Source: "body.id"}, `{"id": ""}`, "", false},
		{&Dedup{Kind: DedupExpression, Source: `header["X-Github-Delivery"] + ":" + body.action`}, `{"action": "opened"}`, "abc:opened", true},
	} {
		r := routeOf(c.d)
		k, ok, _ := r.DedupKey(header, eventOf(c.body))
		if ok != c.wantOK || k.Key != c.want {
			t.Errorf("%+v over %s: %q %v, want %q %v", c.d, c.body, k.Key, ok, c.want, c.wantOK)
		}
		if ok && k.Window != DefaultDedupWindow {
			t.Errorf("%+v: window %s, want the default", c.d, k.Window)
		}
	}
	// A stored expression that does not compile refuses rather than stores.
	r := routeOf(&Dedup{Kind: DedupExpression, Source: "body.id =="})
	if r.DedupError() == nil {
		t.Error("a stored expression that does not compile gave no DedupError")
	}
}

// A webhook's dedup is stored, read back, changed and removed; a tenant is
// held to its limits; a declared webhook carries it.
func TestMainDBWebhookDedup(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	d := &Dedup{Kind: DedupHeader, Source: "X-GitHub-Delivery", Window: Duration(2 * time.Hour)}
	w, err := db.CreateWebhook(ctx, NewWebhook{Name: "gh", Dedup: d})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Webhook(ctx, w.ID); got.Dedup == nil || *got.Dedup != *d {
		t.Fatalf("read back %+v, want %+v", got.Dedup, d)
	}
	if _, err := db.CreateWebhook(ctx, NewWebhook{Name: "bad", Dedup: &Dedup{Kind: DedupExpression, Source: "body.id =="}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("create with a bad expression: %v, want ErrInvalid", err)
	}
	expr := &Dedup{Kind: DedupExpression, Source: "body.id"}
	if got, err := db.UpdateWebhook(ctx, w.ID, WebhookPatch{Dedup: expr}); err != nil || got.Dedup == nil || *got.Dedup != *expr {
		t.Fatalf("update: %+v %v", got, err)
	}
	snap, err := db.LoadSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := snap.Route(w.Entrypoints[0].Key)
	if k, ok, _ := r.DedupKey(nil, func() *filter.Event { return filter.NewEvent("POST", "/", "", nil, []byte(`{"id":"x"}`)) }); !ok || k.Key != "x" {
		t.Errorf("the snapshot's route computes %q %v, want x", k.Key, ok)
	}
	tenant := db.WithRules(Rules{Limits: TenantLimits()})
	long := &Dedup{Kind: DedupHeader, Source: "Idempotency-Key", Window: Duration(10 * 24 * time.Hour)}
	if _, err := tenant.UpdateWebhook(ctx, w.ID, WebhookPatch{Dedup: long}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a tenant's 10-day window: %v, want ErrInvalid", err)
	}
	if got, err := db.UpdateWebhook(ctx, w.ID, WebhookPatch{ClearDedup: true}); err != nil || got.Dedup != nil {
		t.Errorf("clear: %+v %v", got, err)
	}

	declared := &Webhook{ID: uuid.NewString(), Name: "declared", Active: true, Dedup: d,
		Entrypoints: []Entrypoint{{ID: uuid.NewString(), Key: "declared-key", Active: true}}, Targets: []Target{}}
	if _, err := db.SyncDeclared(ctx, []*Webhook{declared}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Webhook(ctx, declared.ID); got.Dedup == nil || *got.Dedup != *d {
		t.Errorf("declared webhook read back with %+v, want %+v", got.Dedup, d)
	}
}

// An intake.db from before dedup (schema version 1) gains the table on
// open, its waiting entries replayed as before.
func TestIntakeFromBeforeDedupMigrates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f, err := openSQLiteFile(filepath.Join(dir, intakeFileName), SynchronousFull)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, f.writer, intakeMigrations[:1]); err != nil {
		t.Fatal(err)
	}
	wh := uuid.NewString()
	ev := &Event{ID: uuid.NewString(), EntrypointID: "ep", EntrypointKey: "k", Method: "POST", Path: "/", Body: []byte(`{}`), ReceivedAt: time.Now()}
	rec, err := newEventRecord(ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := encodeIntakeDeliveries(rec)
	if _, err := f.writer.Exec(sqlInsertIntake, 1, wh, ev.ID, ev.EntrypointID, ev.EntrypointKey,
		ev.Method, ev.Path, "", string(rec.headers), ev.Body, "", "", ev.ReceivedAt.UnixNano(), "", string(ds)); err != nil {
		t.Fatal(err)
	}
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	r := newIntakeRig(t, dir, IntakeOptions{})
	if got := r.intake.Replayed(); got.Events != 1 {
		t.Errorf("replayed %+v, want the 1 entry written before the migration", got)
	}
	first := r.ingestKey(wh, "k", time.Hour, time.Now())
	if again := r.ingestKey(wh, "k", time.Hour, time.Now()); !again.Dedup.Repeat || again.ID != first.ID {
		t.Error("dedup does not work on a migrated intake")
	}
	if n := eventCount(t, r.events, wh); n != 2 {
		t.Errorf("%d events, want the replayed one and the first copy", n)
	}
}

// A hostile id (a 1 MiB header) costs intake.db 71 bytes, and its
// repeats are still caught.
func TestDedupHostileKeyIsBounded(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{})
	wh := uuid.NewString()
	huge := strings.Repeat("k", 1<<20)
	first := r.ingestKey(wh, huge, time.Hour, time.Now())
	if again := r.ingestKey(wh, huge, time.Hour, time.Now()); !again.Dedup.Repeat || again.ID != first.ID {
		t.Error("the repeat of a long id was not caught")
	}
	if other := r.ingestKey(wh, huge[1:]+"x", time.Hour, time.Now()); other.Dedup.Repeat {
		t.Error("another long id of the same length was taken for a repeat")
	}
	var longest int
	if err := r.intake.file.reader.QueryRow("SELECT max(length(key)) FROM dedup").Scan(&longest); err != nil {
		t.Fatal(err)
	}
	if longest != len("sha256:")+64 {
		t.Errorf("the longest stored id is %d bytes, want %d", longest, len("sha256:")+64)
	}
}
