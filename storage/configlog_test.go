package storage

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// memLog is a configuration log in memory, shared by the nodes of a test.
type memLog struct {
	mu        sync.Mutex
	changes   [][]byte
	grown     chan struct{}
	conflicts int
	// beforeAppend, when set, runs once, before the next Append is decided.
	beforeAppend func()
	// lagging, while over 0, makes Head answer one change short, as a
	// replica not yet up to date may.
	lagging int
}

func newMemLog() *memLog { return &memLog{grown: make(chan struct{})} }

func (l *memLog) Head(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lagging > 0 && len(l.changes) > 0 {
		l.lagging--
		return uint64(len(l.changes) - 1), nil
	}
	return uint64(len(l.changes)), nil
}

func (l *memLog) Append(_ context.Context, change []byte, after uint64) (uint64, error) {
	l.mu.Lock()
	hook := l.beforeAppend
	l.beforeAppend = nil
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if after != uint64(len(l.changes)) {
		l.conflicts++
		return 0, ErrConfigConflict
	}
	l.changes = append(l.changes, change)
	close(l.grown)
	l.grown = make(chan struct{})
	return uint64(len(l.changes)), nil
}

func (l *memLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.changes)
}

// since is the log's changes after seq, and a channel closed when it grows.
func (l *memLog) since(seq uint64) ([][]byte, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changes[min(int(seq), len(l.changes)):], l.grown
}

// clusterNode is a main DB in a cluster of memLog, with its follower.
type clusterNode struct {
	*MainDB
	mu      sync.Mutex
	applied []AppliedChange
}

// joinLog opens a main DB that replicates through log and applies it in
// the background, as the datadir package does with the cluster's stream.
func joinLog(t *testing.T, log *memLog, name string, db *MainDB) *clusterNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := db.Replicate(ctx, log, name); err != nil {
		t.Fatalf("Replicate: %v", err)
	}
	n := &clusterNode{MainDB: db}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			seq := db.ConfigApplied()
			changes, grown := log.since(seq)
			for i, c := range changes {
				a, err := db.ApplyConfigChange(ctx, seq+uint64(i)+1, c)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("%s applies change %d: %v", name, seq+uint64(i)+1, err)
					}
					return
				}
				n.mu.Lock()
				n.applied = append(n.applied, a)
				n.mu.Unlock()
			}
			select {
			case <-grown:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

// caughtUp waits until n has applied the whole log.
func (n *clusterNode) caughtUp(t *testing.T, log *memLog) {
	t.Helper()
	if err := n.repl.catchUp(context.Background()); err != nil {
		t.Fatalf("catch up: %v", err)
	}
}

func (n *clusterNode) appliedChanges() []AppliedChange {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]AppliedChange(nil), n.applied...)
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConfigMadeOnOneNodeReachesTheOther(t *testing.T) {
	ctx := context.Background()
	log := newMemLog()
	a, b := joinLog(t, log, "a", openMain(t)), joinLog(t, log, "b", openMain(t))

	u, err := a.CreateUser(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := a.CreateAPIKey(ctx, u.ID, "ci")
	if err != nil {
		t.Fatal(err)
	}
	wh, err := a.CreateWebhook(ctx, NewWebhook{Name: "orders", UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	signing, err := NewSigningSecret()
	if err != nil {
		t.Fatal(err)
	}
	tg, err := b.AddTarget(ctx, wh.ID, Target{Name: "shop", Type: TargetHTTP, URL: "https://shop.example/hook",
		Active: true, Options: TargetOptions{SigningSecret: signing}})
	if err != nil {
		t.Fatalf("add a target on the other node to a webhook made on the first: %v", err)
	}
	if _, err := a.SetTargetPaused(ctx, wh.ID, tg.ID, true); err != nil {
		t.Fatal(err)
	}
	if log.len() != 5 {
		t.Fatalf("log has %d changes, want 5 (one per write)", log.len())
	}
	a.caughtUp(t, log)
	b.caughtUp(t, log)

	wa, err := a.Webhook(ctx, wh.ID)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := b.Webhook(ctx, wh.ID)
	if err != nil {
		t.Fatal(err)
	}
	if asJSON(t, wa) != asJSON(t, wb) {
		t.Fatalf("the nodes differ:\n a %s\n b %s", asJSON(t, wa), asJSON(t, wb))
	}
	if !wb.Targets[0].Paused || wb.Targets[0].Options.SigningSecret != signing {
		t.Fatalf("b's target %+v: want paused, with the signing secret made on b", wb.Targets[0])
	}
	if got, err := b.Authenticate(ctx, secret); err != nil || got.ID != u.ID {
		t.Fatalf("b authenticates the key made on a: %v, %v", got, err)
	}
	if _, ok := snapshot(t, b.MainDB).Route(wh.Entrypoints[0].Key); !ok {
		t.Fatal("b does not route the entrypoint made on a")
	}
	if n := count(t, a.MainDB, `SELECT count(*) FROM config_changes`) + count(t, b.MainDB, `SELECT count(*) FROM config_changes`); n != 0 {
		t.Fatalf("config_changes keeps %d rows after the writes", n)
	}

	// Deleting on b: a is told which event DB goes.
	if err := b.DeleteWebhook(ctx, wh.ID); err != nil {
		t.Fatal(err)
	}
	a.caughtUp(t, log)
	if _, err := a.Webhook(ctx, wh.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a reads the webhook deleted on b: %v", err)
	}
	changes := a.appliedChanges()
	last := changes[len(changes)-1]
	if last.Node != "b" || !reflect.DeepEqual(last.Deleted, []string{wh.ID}) {
		t.Fatalf("a's last applied change: %+v, want b's delete of %s", last, wh.ID)
	}
	for _, c := range changes {
		if c.Node == "a" && !c.Already {
			t.Fatalf("a applied its own change again: %+v", c)
		}
	}
}

func TestConfigWriteOnStaleStateIsTriedAgainAndValidatedOnTheNewOne(t *testing.T) {
	ctx := context.Background()
	log := newMemLog()
	a, b := joinLog(t, log, "a", openMain(t)), joinLog(t, log, "b", openMain(t))
	wh, err := a.CreateWebhook(ctx, NewWebhook{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	b.caughtUp(t, log)

	// b takes the name "shop" between a's validation and a's append.
	var bErr error
	log.mu.Lock()
	log.beforeAppend = func() {
		_, bErr = b.AddTarget(ctx, wh.ID, Target{Name: "shop", Type: TargetHTTP, URL: "https://b.example/", Active: true})
	}
	log.mu.Unlock()
	_, aErr := a.AddTarget(ctx, wh.ID, Target{Name: "shop", Type: TargetHTTP, URL: "https://a.example/", Active: true})
	if bErr != nil {
		t.Fatalf("b's add: %v", bErr)
	}
	if !errors.Is(aErr, ErrConflict) {
		t.Fatalf("a's add after b took the name: %v, want ErrConflict (name taken), found on the retry", aErr)
	}
	if log.conflicts != 1 {
		t.Fatalf("the log refused %d appends, want 1 (a's first try)", log.conflicts)
	}
	a.caughtUp(t, log)
	for _, n := range []*clusterNode{a, b} {
		w, err := n.Webhook(ctx, wh.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(w.Targets) != 1 || w.Targets[0].URL != "https://b.example/" {
			t.Fatalf("targets %+v: want b's only", w.Targets)
		}
	}
}

// TestConfigWriteAfterAConflictWaitsForTheChangeThatCameFirst: a head
// read from a replica not yet up to date must not send the write round
// again on the state that just lost (it would lose again, five times,
// while this node's follower is slow: CI saw it): it waits for the change
// the conflict says is there. Here a's follower applies nothing until a
// waits for it.
func TestConfigWriteAfterAConflictWaitsForTheChangeThatCameFirst(t *testing.T) {
	ctx := context.Background()
	log := newMemLog()
	a := openMain(t)
	if err := a.Replicate(ctx, log, "a"); err != nil {
		t.Fatal(err)
	}
	b := joinLog(t, log, "b", openMain(t))
	wh, err := b.CreateWebhook(ctx, NewWebhook{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	applyTo := func(upTo int) {
		for seq := a.ConfigApplied() + 1; seq <= uint64(upTo); seq++ {
			changes, _ := log.since(seq - 1)
			if _, err := a.ApplyConfigChange(ctx, seq, changes[0]); err != nil {
				t.Errorf("a applies %d: %v", seq, err)
			}
		}
	}
	applyTo(1)
	// b takes the name between a's validation and a's append; from then
	// on every head is one short.
	log.mu.Lock()
	log.beforeAppend = func() {
		if _, err := b.AddTarget(ctx, wh.ID, Target{Name: "shop", Type: TargetHTTP, URL: "https://b.example/", Active: true}); err != nil {
			t.Errorf("b's add: %v", err)
		}
		log.mu.Lock()
		log.lagging = 100
		log.mu.Unlock()
	}
	log.mu.Unlock()
	var waited atomic.Int32
	a.repl.waiting = func() {
		if waited.Add(1) == 1 {
			go applyTo(2) // a's follower, woken by a's wait
		}
	}
	_, err = a.AddTarget(ctx, wh.ID, Target{Name: "shop", Type: TargetHTTP, URL: "https://a.example/", Active: true})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("a's add on stale heads: %v, want ErrConflict (name taken), found once a waited for b's change", err)
	}
	if log.conflicts != 1 || waited.Load() == 0 {
		t.Fatalf("the log refused %d appends (want 1), a waited %d times (want some)", log.conflicts, waited.Load())
	}
}

func TestWritesNotForTheLogPublishNothing(t *testing.T) {
	ctx := context.Background()
	log := newMemLog()
	a := joinLog(t, log, "a", openMain(t))
	u, err := a.CreateUser(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := a.CreateAPIKey(ctx, u.ID, "ci")
	if err != nil {
		t.Fatal(err)
	}
	before := log.len()
	syncDeclared(t, a.MainDB, declare("gh", true, []string{"gh-key"}, targetSpec{name: "t", typ: TargetHTTP, url: "https://t.example/", active: true}))
	if _, err := a.Authenticate(ctx, secret); err != nil { // writes last_used_at
		t.Fatal(err)
	}
	if _, err := a.CreateWebhook(ctx, NewWebhook{Name: strings.Repeat("x", 1000)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an invalid webhook: %v", err)
	}
	if _, err := a.AddTarget(ctx, "no-such-webhook", Target{Name: "t", Type: TargetLog, Active: true}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a target of no webhook: %v", err)
	}
	if got := log.len(); got != before {
		t.Fatalf("the log grew from %d to %d changes: a Caddyfile sync, a key's use and refused writes are not for it", before, got)
	}
	if n := count(t, a.MainDB, `SELECT count(*) FROM config_changes`); n != 0 {
		t.Fatalf("config_changes keeps %d rows", n)
	}
}

func TestDeclaredWebhooksStayEachNodesOwn(t *testing.T) {
	ctx := context.Background()
	log := newMemLog()
	a, b := joinLog(t, log, "a", openMain(t)), joinLog(t, log, "b", openMain(t))
	syncDeclared(t, a.MainDB, declare("gh", true, []string{"gh-key"}, targetSpec{name: "t", typ: TargetHTTP, url: "https://a.example/", active: true}))
	syncDeclared(t, b.MainDB, declare("gh", true, []string{"gh-key"}, targetSpec{name: "t", typ: TargetHTTP, url: "https://b.example/", active: true}))
	c := joinLog(t, log, "c", openMain(t)) // declares nothing

	id := DeclaredWebhookID("gh")
	if _, err := a.SetTargetPaused(ctx, id, DeclaredTargetID(id, "t"), true); err != nil {
		t.Fatal(err)
	}
	b.caughtUp(t, log)
	c.caughtUp(t, log)
	w, err := b.Webhook(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Targets[0].Paused || w.Targets[0].URL != "https://b.example/" {
		t.Fatalf("b's declared target %+v: want paused from a, with b's own URL", w.Targets[0])
	}
	if _, err := c.Webhook(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("c, which declares no gh, reads it: %v", err)
	}

	// An API entrypoint on a with a key b's Caddyfile declares is displaced on b.
	api, err := a.CreateWebhook(ctx, NewWebhook{Name: "api"})
	if err != nil {
		t.Fatal(err)
	}
	syncDeclared(t, a.MainDB) // a no longer declares gh: the key is free there
	if _, err := a.AddEntrypoint(ctx, api.ID, NewEntrypoint{Key: "gh-key"}); err != nil {
		t.Fatal(err)
	}
	b.caughtUp(t, log)
	if r, ok := snapshot(t, b.MainDB).Route("gh-key"); !ok || r.Webhook.ID != id {
		t.Fatalf("b routes gh-key to %+v, want its declared gh", r.Webhook)
	}
	changes := b.appliedChanges()
	clashes := changes[len(changes)-1].Clashes
	if len(clashes) != 1 || clashes[0].DeclaredBy != "gh" || clashes[0].WebhookID != api.ID {
		t.Fatalf("clashes %+v: want the API entrypoint displaced by gh", clashes)
	}
}

func TestSeedPublishesConfigMadeBeforeTheClusterOnce(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	u, err := db.CreateUser(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	wh, err := db.CreateWebhook(ctx, NewWebhook{Name: "orders", UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	log := newMemLog()
	a, b := joinLog(t, log, "a", db), joinLog(t, log, "b", openMain(t))
	// Made through the log before the seed: not the seed's.
	if _, err := a.CreateWebhook(ctx, NewWebhook{Name: "after"}); err != nil {
		t.Fatal(err)
	}
	n, err := a.SeedConfigLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 { // the user, the webhook, its entrypoint
		t.Fatalf("seeded %d rows, want 3", n)
	}
	if n, err := a.SeedConfigLog(ctx); err != nil || n != 0 {
		t.Fatalf("seeding again: %d rows, %v; want none", n, err)
	}
	b.caughtUp(t, log)
	if _, err := b.Webhook(ctx, wh.ID); err != nil {
		t.Fatalf("b lacks the seeded webhook: %v", err)
	}
	if log.len() != 2 {
		t.Fatalf("log has %d changes, want the webhook made after joining and the one seed", log.len())
	}
	// Joining again (a restart) lists nothing more to seed.
	if err := db.Replicate(ctx, log, "a"); err != nil {
		t.Fatal(err)
	}
	if n, err := a.SeedConfigLog(ctx); err != nil || n != 0 {
		t.Fatalf("seeding after a restart: %d rows, %v; want none", n, err)
	}
}

func TestApplyRefusesWhatItCannotApplyWhole(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	if err := db.Replicate(ctx, newMemLog(), "x"); err != nil {
		t.Fatal(err)
	}
	id, one := "u1", int64(1)
	for name, change := range map[string]configChange{
		"unknown table":  {Rows: []configRow{{Table: "sqlite_master", Values: map[string]configValue{"id": {S: &id}}}}},
		"unknown column": {Rows: []configRow{{Table: "users", Values: map[string]configValue{"id": {S: &id}, "name": {S: &id}, "created_at": {I: &one}, "colour": {S: &id}}}}},
		"two types":      {Rows: []configRow{{Table: "users", Values: map[string]configValue{"id": {S: &id, I: &one}}}}},
		"no id":          {Rows: []configRow{{Table: "users", Values: map[string]configValue{"name": {S: &id}}}}},
	} {
		data, _ := json.Marshal(change)
		if _, err := db.ApplyConfigChange(ctx, 1, data); err == nil {
			t.Errorf("%s: applied", name)
		}
	}
	if _, err := db.ApplyConfigChange(ctx, 1, []byte(`{"rows":[],"extra":1}`)); err == nil {
		t.Error("a change with an unknown field: applied")
	}
	if db.ConfigApplied() != 0 || count(t, db, `SELECT count(*) FROM users`) != 0 {
		t.Fatal("a refused change moved the log's place or wrote")
	}
}
