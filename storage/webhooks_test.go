package storage

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// generatedKey is what GenerateEntrypointKey makes: 128 random bits in hex.
var generatedKey = regexp.MustCompile(`^[0-9a-f]{32}$`)

func strp(s string) *string { return &s }
func boolp(b bool) *bool    { return &b }

// wantErr fails the test unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

func mustCreateWebhook(t *testing.T, db *MainDB, in NewWebhook) *Webhook {
	t.Helper()
	w, err := db.CreateWebhook(context.Background(), in)
	if err != nil {
		t.Fatalf("CreateWebhook(%+v): %v", in, err)
	}
	return w
}

func mustAddTarget(t *testing.T, db *MainDB, webhookID string, tg Target) Target {
	t.Helper()
	got, err := db.AddTarget(context.Background(), webhookID, tg)
	if err != nil {
		t.Fatalf("AddTarget(%s): %v", tg.Name, err)
	}
	return got
}

func mustAddEntrypoint(t *testing.T, db *MainDB, webhookID string, in NewEntrypoint) Entrypoint {
	t.Helper()
	e, err := db.AddEntrypoint(context.Background(), webhookID, in)
	if err != nil {
		t.Fatalf("AddEntrypoint(%q): %v", in.Key, err)
	}
	return e
}

func httpTarget(name string) Target {
	return Target{Name: name, Type: TargetHTTP, URL: "http://127.0.0.1:9/" + name, Active: true}
}

func TestCreateWebhookHasDefaultEntrypointAndNoTargets(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	before := time.Now()
	w := mustCreateWebhook(t, db, NewWebhook{Name: "github", Description: "pushes", RetentionDays: 30})

	if err := ValidateID(w.ID); err != nil {
		t.Errorf("webhook id: %v", err)
	}
	if w.Name != "github" || w.Description != "pushes" || w.RetentionDays != 30 || w.Source != SourceAPI ||
		!w.Active || w.UserID != "" {
		t.Errorf("created webhook = %+v", w)
	}
	if w.CreatedAt.Before(before.Add(-time.Second)) || w.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("created_at = %v, want about now", w.CreatedAt)
	}
	if len(w.Entrypoints) != 1 {
		t.Fatalf("entrypoints = %+v, want one default", w.Entrypoints)
	}
	e := w.Entrypoints[0]
	if !generatedKey.MatchString(e.Key) || !e.Active || e.WebhookID != w.ID {
		t.Errorf("default entrypoint = %+v, want an active one with a generated key", e)
	}
	if w.Targets == nil || len(w.Targets) != 0 {
		t.Errorf("targets = %#v, want an empty, non-nil slice", w.Targets)
	}
	b, _ := json.Marshal(w)
	if !strings.Contains(string(b), `"targets":[]`) || !strings.Contains(string(b), `"retention_days":30`) {
		t.Errorf("JSON %s: want targets [] and retention_days", b)
	}

	got, err := db.Webhook(ctx, w.ID)
	if err != nil {
		t.Fatalf("Webhook: %v", err)
	}
	if got.Name != w.Name || len(got.Entrypoints) != 1 || got.Entrypoints[0].Key != e.Key || !got.CreatedAt.Equal(w.CreatedAt) {
		t.Errorf("Webhook(%s) = %+v, want %+v", w.ID, got, w)
	}
	if r, ok := snapshot(t, db).Route(e.Key); !ok || r.Webhook.ID != w.ID || r.Webhook.RetentionDays != 30 {
		t.Errorf("default key routes to %+v, %v", r.Webhook, ok)
	}
	if owner, err := webhookOwner(ctx, db, w.ID); err != nil || owner != "" {
		t.Errorf("owner = %q, %v, want no owner", owner, err)
	}
}

func TestCreateWebhookRejectsBadInput(t *testing.T) {
	db := openMain(t)
	ctx := context.Background()
	deleted, err := db.CreateUser(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteUser(ctx, deleted.ID); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   NewWebhook
		want error
	}{
		{"empty name", NewWebhook{Name: ""}, ErrInvalid},
		{"name with a space", NewWebhook{Name: "my hook"}, ErrInvalid},
		{"name with a slash", NewWebhook{Name: "../x"}, ErrInvalid},
		{"negative retention", NewWebhook{Name: "ok", RetentionDays: -1}, ErrInvalid},
		{"description too long", NewWebhook{Name: "ok", Description: strings.Repeat("x", maxDescription+1)}, ErrInvalid},
		{"unknown user", NewWebhook{Name: "ok", UserID: uuid.NewString()}, ErrNotFound},
		{"deleted user", NewWebhook{Name: "ok", UserID: deleted.ID}, ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := db.CreateWebhook(ctx, c.in)
			wantErr(t, "CreateWebhook", err, c.want)
		})
	}
	if n := count(t, db, "SELECT count(*) FROM webhooks"); n != 0 {
		t.Errorf("%d webhooks stored by failed creates", n)
	}
	if n := count(t, db, "SELECT count(*) FROM entrypoints"); n != 0 {
		t.Errorf("%d entrypoints stored by failed creates", n)
	}
}

func TestWebhooksListsAllOrOneUsersSortedWithChildren(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	alice, _ := db.CreateUser(ctx, "alice")
	bob, _ := db.CreateUser(ctx, "bob")
	a2 := mustCreateWebhook(t, db, NewWebhook{UserID: alice.ID, Name: "zeta"})
	a1 := mustCreateWebhook(t, db, NewWebhook{UserID: alice.ID, Name: "alpha"})
	b1 := mustCreateWebhook(t, db, NewWebhook{UserID: bob.ID, Name: "beta"})
	op := mustCreateWebhook(t, db, NewWebhook{Name: "ops"})
	syncDeclared(t, db, declare("declared", true, []string{"d"}, targetSpec{name: "keep", typ: TargetDatabase, active: true}))
	mustAddTarget(t, db, a1.ID, httpTarget("ci"))
	gone := mustCreateWebhook(t, db, NewWebhook{UserID: alice.ID, Name: "gone"})
	if err := db.DeleteWebhook(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}

	names := func(ws []*Webhook) string {
		var out []string
		for _, w := range ws {
			out = append(out, w.Name)
		}
		return strings.Join(out, ",")
	}
	all, err := db.Webhooks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(all); got != "alpha,beta,declared,ops,zeta" {
		t.Errorf("all webhooks = %s", got)
	}
	for _, w := range all {
		if len(w.Entrypoints) != 1 || w.Targets == nil {
			t.Errorf("%s: entrypoints %v, targets %#v", w.Name, w.Entrypoints, w.Targets)
		}
		if w.Name == "alpha" && (len(w.Targets) != 1 || w.Targets[0].Name != "ci") {
			t.Errorf("alpha targets = %+v", w.Targets)
		}
		if w.Name == "declared" && (w.Source != SourceCaddyfile || len(w.Targets) != 1) {
			t.Errorf("declared webhook = %+v", w)
		}
	}
	mine, err := db.Webhooks(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(mine); got != "alpha,zeta" {
		t.Errorf("alice's webhooks = %s", got)
	}
	if mine[0].ID != a1.ID || mine[1].ID != a2.ID {
		t.Errorf("alice's ids = %s, %s", mine[0].ID, mine[1].ID)
	}
	if theirs, _ := db.Webhooks(ctx, bob.ID); names(theirs) != "beta" {
		t.Errorf("bob's webhooks = %s", names(theirs))
	}
	if none, err := db.Webhooks(ctx, uuid.NewString()); err != nil || none == nil || len(none) != 0 {
		t.Errorf("webhooks of a stranger = %#v, %v, want an empty slice", none, err)
	}
	for id, want := range map[string]string{a1.ID: alice.ID, b1.ID: bob.ID, op.ID: ""} {
		if got, err := webhookOwner(ctx, db, id); err != nil || got != want {
			t.Errorf("owner of %s = %q, %v, want %q", id, got, err, want)
		}
	}
	_, err = webhookOwner(ctx, db, gone.ID)
	wantErr(t, "the owner of a deleted webhook", err, ErrNotFound)
}

func TestUpdateWebhookChangesOnlyPatchedFields(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	w := mustCreateWebhook(t, db, NewWebhook{Name: "shop", Description: "orders", RetentionDays: 7})

	got, err := db.UpdateWebhook(ctx, w.ID, WebhookPatch{Description: strp("all orders")})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "shop" || got.Description != "all orders" || !got.Active || got.RetentionDays != 7 {
		t.Errorf("after description patch: %+v", got)
	}
	got, err = db.UpdateWebhook(ctx, w.ID, WebhookPatch{Name: strp("store"), Active: boolp(false), RetentionDays: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "store" || got.Description != "all orders" || got.Active || got.RetentionDays != 0 {
		t.Errorf("after second patch: %+v", got)
	}
	if len(got.Entrypoints) != 1 || got.Entrypoints[0].Key != w.Entrypoints[0].Key {
		t.Errorf("entrypoints changed: %+v", got.Entrypoints)
	}
	r, ok := snapshot(t, db).Route(w.Entrypoints[0].Key)
	if !ok || r.Webhook.Active || r.Webhook.Name != "store" {
		t.Errorf("snapshot route = %+v, want the inactive, renamed webhook", r.Webhook)
	}

	for name, p := range map[string]WebhookPatch{
		"bad name":           {Name: strp("no spaces please")},
		"negative retention": {RetentionDays: intp(-3)},
	} {
		_, err := db.UpdateWebhook(ctx, w.ID, p)
		wantErr(t, name, err, ErrInvalid)
	}
	if cur, _ := db.Webhook(ctx, w.ID); cur.Name != "store" || cur.RetentionDays != 0 {
		t.Errorf("a rejected patch changed the webhook: %+v", cur)
	}
}

func TestDeleteWebhookSoftDeletesItsChildrenAndFreesItsKeys(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	w := mustCreateWebhook(t, db, NewWebhook{Name: "doomed"})
	extra := mustAddEntrypoint(t, db, w.ID, NewEntrypoint{Key: "doomed-key"})
	tg := mustAddTarget(t, db, w.ID, httpTarget("ci"))

	if err := db.DeleteWebhook(ctx, w.ID); err != nil {
		t.Fatalf("DeleteWebhook: %v", err)
	}
	for table, id := range map[string]string{"webhooks": w.ID, "entrypoints": extra.ID, "targets": tg.ID} {
		if d := deletedAt(t, db, table, id); !d.Valid {
			t.Errorf("%s %s not soft-deleted", table, id)
		}
	}
	_, err := db.Webhook(ctx, w.ID)
	wantErr(t, "Webhook after delete", err, ErrNotFound)
	wantErr(t, "DeleteWebhook twice", db.DeleteWebhook(ctx, w.ID), ErrNotFound)
	s := snapshot(t, db)
	for _, key := range []string{w.Entrypoints[0].Key, "doomed-key"} {
		if r, ok := s.Route(key); ok {
			t.Errorf("key %s of a deleted webhook routes to %+v", key, r.Webhook)
		}
	}
	if _, ok := s.Target(w.ID, tg.ID); ok {
		t.Error("the snapshot still has the deleted webhook's target")
	}
	// Its key can be used again, and the event log can still name its target.
	other := mustCreateWebhook(t, db, NewWebhook{Name: "heir"})
	mustAddEntrypoint(t, db, other.ID, NewEntrypoint{Key: "doomed-key"})
	ts, err := db.TargetsOf(ctx, w.ID)
	if err != nil || ts[tg.ID].Name != "ci" {
		t.Errorf("TargetsOf(deleted webhook) = %+v, %v", ts, err)
	}
}

func TestEntrypointLifecycle(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	w := mustCreateWebhook(t, db, NewWebhook{Name: "hooks"})
	other := mustCreateWebhook(t, db, NewWebhook{Name: "other"})

	named := mustAddEntrypoint(t, db, w.ID, NewEntrypoint{Key: "stripe-events"})
	if named.Key != "stripe-events" || !named.Active || named.WebhookID != w.ID || ValidateID(named.ID) != nil || named.CreatedAt.IsZero() {
		t.Errorf("named entrypoint = %+v", named)
	}
	fresh := mustAddEntrypoint(t, db, w.ID, NewEntrypoint{Active: boolp(false)})
	if !generatedKey.MatchString(fresh.Key) || fresh.Active {
		t.Errorf("entrypoint with no key = %+v, want an inactive one with a generated key", fresh)
	}
	s := snapshot(t, db)
	if r, ok := s.Route("stripe-events"); !ok || r.Webhook.ID != w.ID || !r.Entrypoint.Active {
		t.Errorf("stripe-events routes to %+v", r)
	}
	if r, ok := s.Route(fresh.Key); !ok || r.Entrypoint.Active {
		t.Errorf("inactive entrypoint routes as %+v, %v", r.Entrypoint, ok)
	}

	// Keys are unique among live entrypoints of every webhook.
	_, err := db.AddEntrypoint(ctx, other.ID, NewEntrypoint{Key: "stripe-events"})
	wantErr(t, "AddEntrypoint with a taken key", err, ErrConflict)
	if err == nil || !strings.Contains(err.Error(), `"stripe-events"`) {
		t.Errorf("conflict %v does not name the key", err)
	}
	_, err = db.UpdateEntrypoint(ctx, w.ID, fresh.ID, EntrypointPatch{Key: strp(other.Entrypoints[0].Key)})
	wantErr(t, "UpdateEntrypoint to a taken key", err, ErrConflict)
	for _, bad := range []string{"a/b", "..", "with space", strings.Repeat("k", 129)} {
		_, err = db.AddEntrypoint(ctx, w.ID, NewEntrypoint{Key: bad})
		wantErr(t, "AddEntrypoint("+bad+")", err, ErrInvalid)
		_, err = db.UpdateEntrypoint(ctx, w.ID, named.ID, EntrypointPatch{Key: strp(bad)})
		wantErr(t, "UpdateEntrypoint("+bad+")", err, ErrInvalid)
	}

	// Renaming to its own key is no conflict; then a real rename and a toggle.
	if _, err := db.UpdateEntrypoint(ctx, w.ID, named.ID, EntrypointPatch{Key: strp("stripe-events")}); err != nil {
		t.Errorf("UpdateEntrypoint to its own key: %v", err)
	}
	got, err := db.UpdateEntrypoint(ctx, w.ID, named.ID, EntrypointPatch{Key: strp("stripe-v2")})
	if err != nil || got.Key != "stripe-v2" || !got.Active || got.ID != named.ID {
		t.Errorf("rename = %+v, %v", got, err)
	}
	got, err = db.UpdateEntrypoint(ctx, w.ID, fresh.ID, EntrypointPatch{Active: boolp(true)})
	if err != nil || !got.Active || got.Key != fresh.Key {
		t.Errorf("enable = %+v, %v", got, err)
	}
	s = snapshot(t, db)
	if _, ok := s.Route("stripe-events"); ok {
		t.Error("the old key still routes after a rename")
	}
	if r, ok := s.Route("stripe-v2"); !ok || r.Entrypoint.ID != named.ID {
		t.Errorf("the new key routes to %+v, %v", r.Entrypoint, ok)
	}
	if r, _ := s.Route(fresh.Key); !r.Entrypoint.Active {
		t.Error("the enabled entrypoint is inactive in the snapshot")
	}

	if err := db.DeleteEntrypoint(ctx, w.ID, named.ID); err != nil {
		t.Fatalf("DeleteEntrypoint: %v", err)
	}
	if _, ok := snapshot(t, db).Route("stripe-v2"); ok {
		t.Error("a deleted entrypoint still routes")
	}
	wantErr(t, "DeleteEntrypoint twice", db.DeleteEntrypoint(ctx, w.ID, named.ID), ErrNotFound)
	_, err = db.UpdateEntrypoint(ctx, w.ID, named.ID, EntrypointPatch{Active: boolp(true)})
	wantErr(t, "UpdateEntrypoint of a deleted one", err, ErrNotFound)
	// The key of a deleted entrypoint is free again, for any webhook.
	mustAddEntrypoint(t, db, other.ID, NewEntrypoint{Key: "stripe-v2"})
	if cur, _ := db.Webhook(ctx, w.ID); len(cur.Entrypoints) != 2 {
		t.Errorf("entrypoints after delete = %+v, want the default and fresh", cur.Entrypoints)
	}
}

func TestTargetLifecycle(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	w := mustCreateWebhook(t, db, NewWebhook{Name: "hooks"})
	other := mustCreateWebhook(t, db, NewWebhook{Name: "other"})

	in := Target{ID: "ignored", WebhookID: "ignored", Name: "ci", Type: TargetHTTP, URL: "https://ci.example/hook",
		Active: true, Options: TargetOptions{MaxRetries: intp(3), Timeout: Duration(5 * time.Second),
			Headers: map[string]string{"X-Token": "t"}}}
	ci := mustAddTarget(t, db, w.ID, in)
	if ValidateID(ci.ID) != nil || ci.WebhookID != w.ID || ci.CreatedAt.IsZero() {
		t.Errorf("added target = %+v, want a fresh id of webhook %s", ci, w.ID)
	}
	archive := mustAddTarget(t, db, w.ID, Target{Name: "archive", Type: TargetDatabase, Active: false})
	if archive.Active {
		t.Error("AddTarget did not keep Active false as given")
	}
	cur, _ := db.Webhook(ctx, w.ID)
	if len(cur.Targets) != 2 || cur.Targets[0].ID != ci.ID || *cur.Targets[0].Options.MaxRetries != 3 ||
		cur.Targets[0].Options.Headers["X-Token"] != "t" || cur.Targets[0].Options.Timeout != Duration(5*time.Second) {
		t.Errorf("stored targets = %+v", cur.Targets)
	}

	// Names are unique within a webhook, not across webhooks.
	_, err := db.AddTarget(ctx, w.ID, httpTarget("ci"))
	wantErr(t, "AddTarget with a taken name", err, ErrConflict)
	mustAddTarget(t, db, other.ID, httpTarget("ci"))
	_, err = db.UpdateTarget(ctx, w.ID, archive.ID, TargetPatch{Name: strp("ci")})
	wantErr(t, "UpdateTarget to a taken name", err, ErrConflict)

	for name, bad := range map[string]Target{
		"bad name":         {Name: "no spaces", Type: TargetLog},
		"unknown type":     {Name: "x", Type: "ftp"},
		"relative url":     {Name: "x", Type: TargetHTTP, URL: "/hook"},
		"url on a log":     {Name: "x", Type: TargetLog, URL: "http://a/"},
		"negative retries": {Name: "x", Type: TargetHTTP, URL: "http://a/", Options: TargetOptions{MaxRetries: intp(-1)}},
	} {
		_, err := db.AddTarget(ctx, w.ID, bad)
		wantErr(t, "AddTarget "+name, err, ErrInvalid)
	}

	// The merged target is validated: a type change may need the URL too.
	dbType := TargetDatabase
	_, err = db.UpdateTarget(ctx, w.ID, ci.ID, TargetPatch{Type: &dbType})
	wantErr(t, "UpdateTarget to database keeping the url", err, ErrInvalid)
	got, err := db.UpdateTarget(ctx, w.ID, ci.ID, TargetPatch{Type: &dbType, URL: strp("")})
	if err != nil || got.Type != TargetDatabase || got.URL != "" || got.Name != "ci" || *got.Options.MaxRetries != 3 {
		t.Errorf("UpdateTarget to database = %+v, %v", got, err)
	}
	httpType := TargetHTTP
	got, err = db.UpdateTarget(ctx, w.ID, ci.ID, TargetPatch{Type: &httpType, URL: strp("http://new.example/"),
		Options: &TargetOptions{}, Name: strp("ci2")})
	if err != nil || got.URL != "http://new.example/" || got.Options.MaxRetries != nil || got.Name != "ci2" {
		t.Errorf("UpdateTarget back to http = %+v, %v", got, err)
	}
	_, err = db.UpdateTarget(ctx, w.ID, ci.ID, TargetPatch{URL: strp("ftp://nope/")})
	wantErr(t, "UpdateTarget with a bad url", err, ErrInvalid)

	// Enabling and disabling is what the snapshot routes by.
	if _, err := db.UpdateTarget(ctx, w.ID, archive.ID, TargetPatch{Active: boolp(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateTarget(ctx, w.ID, ci.ID, TargetPatch{Active: boolp(false)}); err != nil {
		t.Fatal(err)
	}
	r, _ := snapshot(t, db).Route(w.Entrypoints[0].Key)
	if got := targetNames(r.Targets); strings.Join(got, ",") != "archive" {
		t.Errorf("route targets = %v, want only the active archive", got)
	}

	if err := db.DeleteTarget(ctx, w.ID, archive.ID); err != nil {
		t.Fatalf("DeleteTarget: %v", err)
	}
	wantErr(t, "DeleteTarget twice", db.DeleteTarget(ctx, w.ID, archive.ID), ErrNotFound)
	_, err = db.UpdateTarget(ctx, w.ID, archive.ID, TargetPatch{Active: boolp(true)})
	wantErr(t, "UpdateTarget of a deleted target", err, ErrNotFound)
	s := snapshot(t, db)
	if _, ok := s.Target(w.ID, archive.ID); ok {
		t.Error("the snapshot still has a deleted target")
	}
	// Its name is free again; TargetsOf still knows the deleted one.
	again := mustAddTarget(t, db, w.ID, Target{Name: "archive", Type: TargetDatabase, Active: true})
	ts, err := db.TargetsOf(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 || ts[archive.ID].Name != "archive" || ts[again.ID].Name != "archive" || ts[ci.ID].Name != "ci2" {
		t.Errorf("TargetsOf = %+v, want ci2, the deleted archive and the new one", ts)
	}
	if none, err := db.TargetsOf(ctx, uuid.NewString()); err != nil || len(none) != 0 {
		t.Errorf("TargetsOf(unknown) = %v, %v", none, err)
	}
}

// children creates two webhooks, each with an extra entrypoint and a target.
func children(t *testing.T, db *MainDB) (a, b *Webhook, ea, eb Entrypoint, ta, tb Target) {
	t.Helper()
	a = mustCreateWebhook(t, db, NewWebhook{Name: "a"})
	b = mustCreateWebhook(t, db, NewWebhook{Name: "b"})
	ea = mustAddEntrypoint(t, db, a.ID, NewEntrypoint{Key: "key-a"})
	eb = mustAddEntrypoint(t, db, b.ID, NewEntrypoint{Key: "key-b"})
	ta = mustAddTarget(t, db, a.ID, httpTarget("ta"))
	tb = mustAddTarget(t, db, b.ID, httpTarget("tb"))
	return
}

func TestChildOfAnotherWebhookIsNotFound(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	a, _, _, eb, _, tb := children(t, db)
	cases := map[string]func() error{
		"UpdateEntrypoint": func() error {
			_, err := db.UpdateEntrypoint(ctx, a.ID, eb.ID, EntrypointPatch{Active: boolp(false)})
			return err
		},
		"DeleteEntrypoint": func() error { return db.DeleteEntrypoint(ctx, a.ID, eb.ID) },
		"UpdateTarget": func() error {
			_, err := db.UpdateTarget(ctx, a.ID, tb.ID, TargetPatch{Active: boolp(false)})
			return err
		},
		"DeleteTarget": func() error { return db.DeleteTarget(ctx, a.ID, tb.ID) },
	}
	for name, call := range cases {
		t.Run(name, func(t *testing.T) { wantErr(t, name, call(), ErrNotFound) })
	}
	// b's children are untouched.
	s := snapshot(t, db)
	if r, ok := s.Route("key-b"); !ok || !r.Entrypoint.Active || len(r.Targets) != 1 {
		t.Errorf("b's route after the refused calls = %+v, %v", r, ok)
	}
}

func TestUnknownWebhookIsNotFound(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	_, _, ea, _, ta, _ := children(t, db)
	unknown := uuid.NewString()
	cases := map[string]func() error{
		"Webhook":       func() error { _, err := db.Webhook(ctx, unknown); return err },
		"UpdateWebhook": func() error { _, err := db.UpdateWebhook(ctx, unknown, WebhookPatch{}); return err },
		"DeleteWebhook": func() error { return db.DeleteWebhook(ctx, unknown) },
		"AddEntrypoint": func() error { _, err := db.AddEntrypoint(ctx, unknown, NewEntrypoint{}); return err },
		"UpdateEntrypoint": func() error {
			_, err := db.UpdateEntrypoint(ctx, unknown, ea.ID, EntrypointPatch{})
			return err
		},
		"DeleteEntrypoint": func() error { return db.DeleteEntrypoint(ctx, unknown, ea.ID) },
		"AddTarget":        func() error { _, err := db.AddTarget(ctx, unknown, httpTarget("x")); return err },
		"UpdateTarget":     func() error { _, err := db.UpdateTarget(ctx, unknown, ta.ID, TargetPatch{}); return err },
		"DeleteTarget":     func() error { return db.DeleteTarget(ctx, unknown, ta.ID) },
		"unknown entrypoint of a known webhook": func() error {
			return db.DeleteEntrypoint(ctx, ea.WebhookID, uuid.NewString())
		},
		"unknown target of a known webhook": func() error {
			_, err := db.UpdateTarget(ctx, ta.WebhookID, uuid.NewString(), TargetPatch{})
			return err
		},
	}
	for name, call := range cases {
		t.Run(name, func(t *testing.T) { wantErr(t, name, call(), ErrNotFound) })
	}
}

func TestCaddyfileWebhookIsReadOnly(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	declared := declare("github", true, []string{"github-push"},
		targetSpec{name: "ci", typ: TargetHTTP, url: "http://127.0.0.1:9000/hook", active: true})
	syncDeclared(t, db, declared)
	id, eid, tid := declared.ID, declared.Entrypoints[0].ID, declared.Targets[0].ID

	cases := map[string]func() error{
		"UpdateWebhook":    func() error { _, err := db.UpdateWebhook(ctx, id, WebhookPatch{Active: boolp(false)}); return err },
		"empty patch":      func() error { _, err := db.UpdateWebhook(ctx, id, WebhookPatch{}); return err },
		"DeleteWebhook":    func() error { return db.DeleteWebhook(ctx, id) },
		"AddEntrypoint":    func() error { _, err := db.AddEntrypoint(ctx, id, NewEntrypoint{Key: "more"}); return err },
		"UpdateEntrypoint": func() error { _, err := db.UpdateEntrypoint(ctx, id, eid, EntrypointPatch{Key: strp("x")}); return err },
		"DeleteEntrypoint": func() error { return db.DeleteEntrypoint(ctx, id, eid) },
		"AddTarget":        func() error { _, err := db.AddTarget(ctx, id, httpTarget("more")); return err },
		"UpdateTarget":     func() error { _, err := db.UpdateTarget(ctx, id, tid, TargetPatch{Active: boolp(false)}); return err },
		"DeleteTarget":     func() error { return db.DeleteTarget(ctx, id, tid) },
	}
	for name, call := range cases {
		t.Run(name, func(t *testing.T) {
			err := call()
			wantErr(t, name, err, ErrReadOnly)
			if err == nil || !strings.Contains(err.Error(), "webhook github is declared in the Caddyfile, which owns it: change it there") {
				t.Errorf("message %q", err)
			}
		})
	}
	// Readable, and unchanged.
	w, err := db.Webhook(ctx, id)
	if err != nil || w.Source != SourceCaddyfile || !w.Active || len(w.Entrypoints) != 1 || len(w.Targets) != 1 ||
		w.Entrypoints[0].Key != "github-push" || !w.Targets[0].Active {
		t.Errorf("declared webhook after refused changes = %+v, %v", w, err)
	}
	if n := count(t, db, "SELECT count(*) FROM entrypoints"); n != 1 {
		t.Errorf("%d entrypoint rows, want 1", n)
	}
}

func TestSyncDeclaredStoresRetentionDays(t *testing.T) {
	db := openMain(t)
	w := declare("kept", true, []string{"kept"})
	w.RetentionDays = 14
	syncDeclared(t, db, w)
	if got, _ := snapshot(t, db).Webhook(w.ID); got == nil || got.RetentionDays != 14 {
		t.Errorf("declared retention = %+v, want 14 days", got)
	}
	w.RetentionDays = 0
	syncDeclared(t, db, w)
	if got, _ := snapshot(t, db).Webhook(w.ID); got == nil || got.RetentionDays != 0 {
		t.Errorf("declared retention after resync = %+v, want 0", got)
	}
}

func TestSnapshotFollowsAPIChanges(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	w := mustCreateWebhook(t, db, NewWebhook{Name: "live"})
	key := w.Entrypoints[0].Key
	ci := mustAddTarget(t, db, w.ID, httpTarget("ci"))
	mustAddTarget(t, db, w.ID, Target{Name: "audit", Type: TargetLog, Active: true})

	r, ok := snapshot(t, db).Route(key)
	if !ok || strings.Join(targetNames(r.Targets), ",") != "audit,ci" {
		t.Fatalf("route = %+v, %v, want audit and ci", r, ok)
	}
	if _, err := db.UpdateTarget(ctx, w.ID, ci.ID, TargetPatch{Active: boolp(false)}); err != nil {
		t.Fatal(err)
	}
	s := snapshot(t, db)
	if r, _ := s.Route(key); strings.Join(targetNames(r.Targets), ",") != "audit" {
		t.Errorf("route targets after disabling ci = %v", targetNames(r.Targets))
	}
	if tg, ok := s.Target(w.ID, ci.ID); !ok || tg.Active {
		t.Errorf("a disabled target is looked up as %+v, %v, want present and inactive", tg, ok)
	}
	if _, err := db.UpdateWebhook(ctx, w.ID, WebhookPatch{Active: boolp(false)}); err != nil {
		t.Fatal(err)
	}
	if r, _ := snapshot(t, db).Route(key); r.Webhook.Active {
		t.Error("a disabled webhook is active in the snapshot")
	}
	if err := db.DeleteWebhook(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	s = snapshot(t, db)
	if r, ok := s.Route(key); ok {
		t.Errorf("the key of a deleted webhook routes to %+v", r.Webhook)
	}
	if _, ok := s.Webhook(w.ID); ok {
		t.Error("a deleted webhook is in the snapshot")
	}
}

// webhookOwner is the user a live webhook belongs to ("" for none).
func webhookOwner(ctx context.Context, db *MainDB, id string) (string, error) {
	w, err := db.Webhook(ctx, id)
	if err != nil {
		return "", err
	}
	return w.UserID, nil
}
