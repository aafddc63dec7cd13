package storage

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func openMain(t *testing.T) *MainDB {
	t.Helper()
	db, err := OpenMainDB(context.Background(), t.TempDir(), "")
	if err != nil {
		t.Fatalf("OpenMainDB: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

type targetSpec struct {
	name       string
	typ        TargetType
	url        string
	active     bool
	maxRetries *int
}

func intp(n int) *int { return &n }

// declare builds a Caddyfile-declared webhook the way the Caddyfile parser
// would: ids derived from names.
func declare(name string, active bool, keys []string, targets ...targetSpec) *Webhook {
	id := DeclaredWebhookID(name)
	w := &Webhook{ID: id, Name: name, Description: "declared " + name, Source: SourceCaddyfile, Active: active}
	for _, k := range keys {
		w.Entrypoints = append(w.Entrypoints, Entrypoint{ID: DeclaredEntrypointID(id, k), WebhookID: id, Key: k, Active: true})
	}
	for _, ts := range targets {
		w.Targets = append(w.Targets, Target{ID: DeclaredTargetID(id, ts.name), WebhookID: id, Name: ts.name,
			Type: ts.typ, URL: ts.url, Active: ts.active, Options: TargetOptions{MaxRetries: ts.maxRetries}})
	}
	return w
}

func syncDeclared(t *testing.T, db *MainDB, declared ...*Webhook) {
	t.Helper()
	if _, err := db.SyncDeclared(context.Background(), declared); err != nil {
		t.Fatalf("SyncDeclared: %v", err)
	}
}

func snapshot(t *testing.T, db *MainDB) *Snapshot {
	t.Helper()
	s, err := db.LoadSnapshot(context.Background())
	if err != nil {
		t.Fatalf("LoadSnapshot: %v", err)
	}
	return s
}

func targetNames(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	sort.Strings(out)
	return out
}

func count(t *testing.T, db *MainDB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.file.reader.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func deletedAt(t *testing.T, db *MainDB, table, id string) sql.NullInt64 {
	t.Helper()
	var d sql.NullInt64
	if err := db.file.reader.QueryRow("SELECT deleted_at FROM "+table+" WHERE id = ?", id).Scan(&d); err != nil {
		t.Fatalf("deleted_at of %s %s: %v", table, id, err)
	}
	return d
}

func TestOpenMainDBCreatesSchema(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := OpenMainDB(ctx, dir, SynchronousFull)
	if err != nil {
		t.Fatalf("OpenMainDB: %v", err)
	}
	path := filepath.Join(dir, MainDBFile)
	if !fileExists(t, path) {
		t.Fatalf("%s not created", path)
	}
	if got := dirEntries(t, dir); contains(got, "events") {
		t.Errorf("main DB dir holds %v", got)
	}
	if _, err := db.SyncDeclared(ctx, []*Webhook{declare("persisted", true, []string{"p"})}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	raw := rawDB(t, path)
	if v := userVersion(t, raw); v != len(mainMigrations) {
		t.Errorf("user_version = %d, want %d", v, len(mainMigrations))
	}
	if got, want := tableNames(t, raw), []string{"api_keys", "config_changes", "config_log", "config_seed", "entrypoints", "targets", "users", "webhooks"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tables = %v, want %v (configuration and its cluster log's place only, no events)", got, want)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening an existing main DB keeps its contents.
	db, err = OpenMainDB(ctx, dir, SynchronousNormal)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	if _, ok := snapshot(t, db).Route("p"); !ok {
		t.Error("configuration lost across reopen")
	}

	if _, err := OpenMainDB(ctx, t.TempDir(), "sometimes"); err == nil {
		t.Error("OpenMainDB accepted synchronous \"sometimes\"")
	}
}

func TestSyncDeclaredAndRouteToActiveTargets(t *testing.T) {
	db := openMain(t)
	github := declare("github", true, []string{"github-push", "github-release"},
		targetSpec{name: "ci", typ: TargetHTTP, url: "http://127.0.0.1:9000/hook", active: true, maxRetries: intp(8)},
		targetSpec{name: "archive", typ: TargetDatabase, active: true},
		targetSpec{name: "audit", typ: TargetLog, active: false},
	)
	stripe := declare("stripe", false, []string{"stripe"}, targetSpec{name: "keep", typ: TargetDatabase, active: true})
	syncDeclared(t, db, github, stripe)
	s := snapshot(t, db)

	for _, key := range []string{"github-push", "github-release"} {
		r, ok := s.Route(key)
		if !ok {
			t.Fatalf("no route for %s", key)
		}
		if r.Webhook.ID != DeclaredWebhookID("github") || r.Webhook.Name != "github" ||
			r.Webhook.Source != SourceCaddyfile || !r.Webhook.Active || r.Webhook.Description != "declared github" {
			t.Errorf("route %s leads to %+v", key, r.Webhook)
		}
		if r.Entrypoint.ID != DeclaredEntrypointID(github.ID, key) || r.Entrypoint.Key != key ||
			r.Entrypoint.WebhookID != github.ID || !r.Entrypoint.Active {
			t.Errorf("route %s entrypoint = %+v", key, r.Entrypoint)
		}
		if got := targetNames(r.Targets); !reflect.DeepEqual(got, []string{"archive", "ci"}) {
			t.Errorf("route %s targets = %v, want the active ones: archive, ci", key, got)
		}
	}
	w, ok := s.Webhook(github.ID)
	if !ok {
		t.Fatal("Webhook(github) not found")
	}
	if got := targetNames(w.Targets); !reflect.DeepEqual(got, []string{"archive", "audit", "ci"}) {
		t.Errorf("webhook targets = %v, want all three, inactive included", got)
	}
	for _, tg := range w.Targets {
		if tg.ID != DeclaredTargetID(github.ID, tg.Name) || tg.WebhookID != github.ID {
			t.Errorf("target %s: id %s webhook %s", tg.Name, tg.ID, tg.WebhookID)
		}
		if tg.Name == "ci" {
			if tg.Type != TargetHTTP || tg.URL != "http://127.0.0.1:9000/hook" || tg.Options.MaxRetries == nil || *tg.Options.MaxRetries != 8 {
				t.Errorf("ci target read back as %+v", tg)
			}
		}
		if tg.Name == "archive" && tg.Options.MaxRetries != nil {
			t.Errorf("archive max_retries = %d, want unset", *tg.Options.MaxRetries)
		}
	}

	r, ok := s.Route("stripe")
	if !ok {
		t.Fatal("an inactive webhook's entrypoint has no route (the handler answers 410 for it)")
	}
	if r.Webhook.Active {
		t.Error("stripe webhook is active, declared inactive")
	}
	if _, ok := s.Route("unknown"); ok {
		t.Error("route for an undeclared key")
	}
	var names []string
	for _, w := range s.Webhooks() {
		names = append(names, w.Name)
	}
	if !reflect.DeepEqual(names, []string{"github", "stripe"}) {
		t.Errorf("Webhooks() = %v, want github, stripe", names)
	}
}

func TestDeclaredIDsAreStableCanonicalAndDistinct(t *testing.T) {
	a, b := DeclaredWebhookID("github"), DeclaredWebhookID("stripe")
	if a != DeclaredWebhookID("github") {
		t.Error("DeclaredWebhookID is not deterministic")
	}
	ids := []string{a, b, DeclaredEntrypointID(a, "k"), DeclaredEntrypointID(b, "k"), DeclaredTargetID(a, "k"), DeclaredTargetID(a, "l")}
	seen := map[string]bool{}
	for _, id := range ids {
		if err := ValidateID(id); err != nil {
			t.Errorf("declared id %q cannot name an event DB: %v", id, err)
		}
		if seen[id] {
			t.Errorf("id %s derived twice from different inputs", id)
		}
		seen[id] = true
	}
}

func TestResyncWithoutWebhookSoftDeletesItAndRedeclaringRevivesIt(t *testing.T) {
	db := openMain(t)
	a := declare("a", true, []string{"key-a"}, targetSpec{name: "t", typ: TargetDatabase, active: true})
	b := declare("b", true, []string{"key-b"}, targetSpec{name: "t", typ: TargetLog, active: true})
	syncDeclared(t, db, a, b)
	bEntry, bTarget := b.Entrypoints[0].ID, b.Targets[0].ID

	syncDeclared(t, db, a)
	s := snapshot(t, db)
	if _, ok := s.Route("key-b"); ok {
		t.Error("route of an undeclared webhook survives")
	}
	if _, ok := s.Webhook(b.ID); ok {
		t.Error("undeclared webhook still in the snapshot")
	}
	if _, ok := s.Route("key-a"); !ok {
		t.Error("route of the still declared webhook is gone")
	}
	for table, id := range map[string]string{"webhooks": b.ID, "entrypoints": bEntry, "targets": bTarget} {
		if d := deletedAt(t, db, table, id); !d.Valid {
			t.Errorf("%s row %s not soft-deleted", table, id)
		}
	}
	if d := deletedAt(t, db, "webhooks", a.ID); d.Valid {
		t.Error("the still declared webhook is marked deleted")
	}

	syncDeclared(t, db, a, b)
	r, ok := snapshot(t, db).Route("key-b")
	if !ok {
		t.Fatal("re-declared webhook has no route")
	}
	if r.Webhook.ID != b.ID || r.Entrypoint.ID != bEntry || len(r.Targets) != 1 || r.Targets[0].ID != bTarget {
		t.Errorf("revived with other ids: %+v", r)
	}
	for table, id := range map[string]string{"webhooks": b.ID, "entrypoints": bEntry, "targets": bTarget} {
		if d := deletedAt(t, db, table, id); d.Valid {
			t.Errorf("%s row %s still marked deleted after revival", table, id)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM webhooks"); n != 2 {
		t.Errorf("webhook rows = %d, want 2 (revived, not inserted again)", n)
	}
	if n := count(t, db, "SELECT count(*) FROM entrypoints"); n != 2 {
		t.Errorf("entrypoint rows = %d, want 2", n)
	}
}

func TestResyncUpdatesAndRetiresTargetsAndEntrypoints(t *testing.T) {
	db := openMain(t)
	syncDeclared(t, db, declare("w", true, []string{"old-key", "kept-key"},
		targetSpec{name: "ci", typ: TargetHTTP, url: "http://a.example/", active: true},
		targetSpec{name: "gone", typ: TargetLog, active: true},
	))
	w := declare("w", true, []string{"kept-key"},
		targetSpec{name: "ci", typ: TargetHTTP, url: "https://b.example/hook", active: false, maxRetries: intp(0)},
		targetSpec{name: "new", typ: TargetDatabase, active: true},
	)
	syncDeclared(t, db, w)
	s := snapshot(t, db)
	if _, ok := s.Route("old-key"); ok {
		t.Error("entrypoint no longer declared still routes")
	}
	r, ok := s.Route("kept-key")
	if !ok {
		t.Fatal("kept entrypoint lost")
	}
	if got := targetNames(r.Targets); !reflect.DeepEqual(got, []string{"new"}) {
		t.Errorf("active targets = %v, want only new (ci deactivated, gone retired)", got)
	}
	got, _ := s.Webhook(w.ID)
	if names := targetNames(got.Targets); !reflect.DeepEqual(names, []string{"ci", "new"}) {
		t.Errorf("live targets = %v, want ci, new", names)
	}
	for _, tg := range got.Targets {
		if tg.Name == "ci" && (tg.URL != "https://b.example/hook" || tg.Active || tg.Options.MaxRetries == nil || *tg.Options.MaxRetries != 0) {
			t.Errorf("ci not updated: %+v", tg)
		}
	}
	if d := deletedAt(t, db, "targets", DeclaredTargetID(w.ID, "gone")); !d.Valid {
		t.Error("retired target not soft-deleted")
	}
}

func TestSyncDeclaredMovesKeyBetweenWebhooks(t *testing.T) {
	db := openMain(t)
	syncDeclared(t, db,
		declare("a", true, []string{"shared", "a-only"}),
		declare("b", true, []string{"b-only"}),
	)
	if r, _ := snapshot(t, db).Route("shared"); r.Webhook == nil || r.Webhook.Name != "a" {
		t.Fatalf("shared routes to %+v, want a", r.Webhook)
	}

	syncDeclared(t, db,
		declare("a", true, []string{"a-only"}),
		declare("b", true, []string{"b-only", "shared"}),
	)
	r, ok := snapshot(t, db).Route("shared")
	if !ok || r.Webhook.Name != "b" {
		t.Fatalf("after the move shared routes to %+v (found %v), want b", r.Webhook, ok)
	}
	if r.Entrypoint.ID != DeclaredEntrypointID(DeclaredWebhookID("b"), "shared") {
		t.Errorf("moved entrypoint id = %s, want b's", r.Entrypoint.ID)
	}
	if d := deletedAt(t, db, "entrypoints", DeclaredEntrypointID(DeclaredWebhookID("a"), "shared")); !d.Valid {
		t.Error("a's old entrypoint not soft-deleted")
	}
	if n := count(t, db, "SELECT count(*) FROM entrypoints WHERE key = 'shared' AND deleted_at IS NULL"); n != 1 {
		t.Errorf("live entrypoints with key shared = %d, want 1", n)
	}

	// And back again, reviving a's old row.
	syncDeclared(t, db,
		declare("a", true, []string{"a-only", "shared"}),
		declare("b", true, []string{"b-only"}),
	)
	if r, _ := snapshot(t, db).Route("shared"); r.Webhook == nil || r.Webhook.Name != "a" {
		t.Errorf("after moving back shared routes to %+v, want a", r.Webhook)
	}
}

func insertAPIWebhook(t *testing.T, db *MainDB, name, key string) (webhookID string) {
	t.Helper()
	now := time.Now().UnixNano()
	webhookID, entryID := uuid.NewString(), uuid.NewString()
	if _, err := db.file.writer.Exec(`INSERT INTO webhooks (id, name, source, active, created_at, updated_at)
		VALUES (?, ?, 'api', 1, ?, ?)`, webhookID, name, now, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.file.writer.Exec(`INSERT INTO entrypoints (id, webhook_id, key, active, created_at, updated_at)
		VALUES (?, ?, ?, 1, ?, ?)`, entryID, webhookID, key, now, now); err != nil {
		t.Fatal(err)
	}
	return webhookID
}

// A tenant squatted future-key before the operator declared it: the
// declaration wins, without failing, and the squatter's entrypoint is
// displaced (kept, disabled), reported once.
func TestSyncDeclaredDisplacesAPIEntrypointWithDeclaredKey(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	syncDeclared(t, db, declare("before", true, []string{"before-key"}))
	apiID := insertAPIWebhook(t, db, "from-api", "future-key")

	declared := []*Webhook{
		declare("before", true, []string{"before-key"}),
		declare("owner", true, []string{"future-key"}),
	}
	clashes, err := db.SyncDeclared(ctx, declared)
	if err != nil {
		t.Fatalf("SyncDeclared with a key an API entrypoint holds: %v", err)
	}
	api, err := db.Webhook(ctx, apiID)
	if err != nil {
		t.Fatal(err)
	}
	squatter := api.Entrypoints[0]
	want := []KeyClash{{Key: "future-key", WebhookID: apiID, EntrypointID: squatter.ID, DeclaredBy: "owner"}}
	if !reflect.DeepEqual(clashes, want) {
		t.Errorf("clashes = %+v, want %+v", clashes, want)
	}
	if squatter.Active || !squatter.Displaced || squatter.Key != "future-key" {
		t.Errorf("the API entrypoint reads back %+v, want it disabled and displaced, with its key", squatter)
	}
	s := snapshot(t, db)
	if r, ok := s.Route("future-key"); !ok || r.Webhook.ID != DeclaredWebhookID("owner") || r.Entrypoint.ID != DeclaredEntrypointID(DeclaredWebhookID("owner"), "future-key") {
		t.Errorf("future-key routes to %+v (ok %v), want the declared webhook owner", r.Webhook, ok)
	}

	// The same declaration again (a reload, a restart) is quiet.
	clashes, err = db.SyncDeclared(ctx, declared)
	if err != nil || len(clashes) != 0 {
		t.Errorf("second SyncDeclared = %+v, %v; want no clash and no error", clashes, err)
	}
	if r, ok := snapshot(t, db).Route("future-key"); !ok || r.Webhook.Source != SourceCaddyfile {
		t.Errorf("after the second sync future-key routes to %+v", r.Webhook)
	}

	// The squatter cannot take the key back while it is declared...
	_, err = db.UpdateEntrypoint(ctx, apiID, squatter.ID, EntrypointPatch{Active: boolp(true)})
	wantErr(t, "enabling a displaced entrypoint whose key is declared", err, ErrConflict)
	// ...nor once the declaration goes, until its owner enables it.
	syncDeclared(t, db, declare("before", true, []string{"before-key"}))
	if _, ok := snapshot(t, db).Route("future-key"); ok {
		t.Error("a displaced entrypoint took its key back by itself")
	}
	e, err := db.UpdateEntrypoint(ctx, apiID, squatter.ID, EntrypointPatch{Active: boolp(true)})
	if err != nil || !e.Active || e.Displaced {
		t.Fatalf("enabling the displaced entrypoint with its key free = %+v, %v", e, err)
	}
	if r, ok := snapshot(t, db).Route("future-key"); !ok || r.Webhook.ID != apiID {
		t.Errorf("future-key routes to %+v, want the API webhook again", r.Webhook)
	}
	if d := deletedAt(t, db, "webhooks", apiID); d.Valid {
		t.Error("SyncDeclared soft-deleted an API webhook")
	}
}

// A displaced entrypoint given another key is in use again, and the key it
// left stays the Caddyfile's.
func TestDisplacedEntrypointComesBackWithAnotherKey(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	apiID := insertAPIWebhook(t, db, "from-api", "future-key")
	if _, err := db.SyncDeclared(ctx, []*Webhook{declare("owner", true, []string{"future-key"})}); err != nil {
		t.Fatal(err)
	}
	api, err := db.Webhook(ctx, apiID)
	if err != nil {
		t.Fatal(err)
	}
	e, err := db.UpdateEntrypoint(ctx, apiID, api.Entrypoints[0].ID, EntrypointPatch{Key: strp("elsewhere"), Active: boolp(true)})
	if err != nil || e.Displaced || !e.Active || e.Key != "elsewhere" {
		t.Fatalf("rekeying the displaced entrypoint = %+v, %v", e, err)
	}
	s := snapshot(t, db)
	if r, ok := s.Route("elsewhere"); !ok || r.Webhook.ID != apiID {
		t.Errorf("elsewhere routes to %+v", r.Webhook)
	}
	if r, ok := s.Route("future-key"); !ok || r.Webhook.Source != SourceCaddyfile {
		t.Errorf("future-key routes to %+v, want the declared webhook", r.Webhook)
	}
}

func TestSyncDeclaredRefusesKeyDeclaredTwice(t *testing.T) {
	db := openMain(t)
	_, err := db.SyncDeclared(context.Background(), []*Webhook{
		declare("one", true, []string{"dup"}),
		declare("two", true, []string{"dup"}),
	})
	if err == nil || !strings.Contains(err.Error(), `"dup"`) {
		t.Errorf("SyncDeclared of a key declared twice = %v, want an error naming it", err)
	}
	if n := count(t, db, "SELECT count(*) FROM webhooks"); n != 0 {
		t.Errorf("webhook rows after the failed sync = %d, want 0", n)
	}
}

func TestValidateName(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"github", true},
		{"a", true},
		{"0", true},
		{"A.b_c-D9", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"-lead", false},
		{".lead", false},
		{"_lead", false},
		{"with space", false},
		{"a/b", false},
		{"a~b", false},
		{"café", false},
		{"trailing\n", false},
		{"{$ENV}", false},
	}
	for _, tc := range cases {
		err := ValidateName("target", tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "target name") {
			t.Errorf("error %q does not name the kind", err)
		}
	}
}

func TestValidateEntrypointKey(t *testing.T) {
	cases := []struct {
		key string
		ok  bool
	}{
		{"github-push", true},
		{uuid.NewString(), true},
		{"A.b_c~d-9", true},
		{"~", true},
		{"...", true},
		{strings.Repeat("k", 128), true},
		{strings.Repeat("k", 129), false},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a b", false},
		{"a%20b", false},
		{"a?b", false},
		{"a#b", false},
		{"clé", false},
		{"key\n", false},
	}
	for _, tc := range cases {
		if err := ValidateEntrypointKey(tc.key); (err == nil) != tc.ok {
			t.Errorf("ValidateEntrypointKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
	}
}

func TestTargetValidate(t *testing.T) {
	cases := []struct {
		name   string
		target Target
		ok     bool
	}{
		{"http", Target{Name: "ci", Type: TargetHTTP, URL: "http://127.0.0.1:9000/hook"}, true},
		{"https with retries", Target{Name: "ci", Type: TargetHTTP, URL: "https://example.com/x?y=1", Options: TargetOptions{MaxRetries: intp(8)}}, true},
		{"zero retries", Target{Name: "ci", Type: TargetHTTP, URL: "https://example.com", Options: TargetOptions{MaxRetries: intp(0)}}, true},
		{"negative retries", Target{Name: "ci", Type: TargetHTTP, URL: "https://example.com", Options: TargetOptions{MaxRetries: intp(-1)}}, false},
		{"http without url", Target{Name: "ci", Type: TargetHTTP}, false},
		{"http relative url", Target{Name: "ci", Type: TargetHTTP, URL: "/hook"}, false},
		{"http without host", Target{Name: "ci", Type: TargetHTTP, URL: "http:///hook"}, false},
		{"ftp url", Target{Name: "ci", Type: TargetHTTP, URL: "ftp://example.com/x"}, false},
		{"unparsable url", Target{Name: "ci", Type: TargetHTTP, URL: "http://[::1"}, false},
		{"database", Target{Name: "archive", Type: TargetDatabase}, true},
		{"database with url", Target{Name: "archive", Type: TargetDatabase, URL: "http://x"}, false},
		{"log", Target{Name: "audit", Type: TargetLog}, true},
		{"log with url", Target{Name: "audit", Type: TargetLog, URL: "http://x"}, false},
		{"unknown type", Target{Name: "mail", Type: "smtp"}, false},
		{"no type", Target{Name: "none"}, false},
		{"bad name", Target{Name: "bad name", Type: TargetLog}, false},
		{"no name", Target{Type: TargetLog}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.target.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("Validate(%+v) = %v, want ok=%v", tc.target, err, tc.ok)
			}
		})
	}
}
