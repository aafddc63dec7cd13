package storage

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A declared entrypoint's verification and handshake are kept with it: a
// sync writes them, a snapshot routes with them, a later sync replaces them,
// and the API's JSON of the entrypoint never shows their secrets.
func TestDeclaredEntrypointOptionsRoundTrip(t *testing.T) {
	db := openMain(t)
	w := declare("gh", true, []string{"gh-push", "plain"})
	opts := EntrypointOptions{
		Verify: []VerifyRule{
			{Scheme: "github", Secrets: []string{"s3cret-one", "s3cret-two"}},
			{Scheme: "hmac", Secrets: []string{"k"}, Header: "X-Sig", Algorithm: "sha1", Encoding: "base64", Prefix: "v1="},
		},
		Tolerance: Duration(2 * time.Minute),
		Handshake: &HandshakeRule{Name: "zoom", Args: []string{"zoom-secret"}},
	}
	w.Entrypoints[0].Options = opts
	syncDeclared(t, db, w)

	s := snapshot(t, db)
	r, ok := s.Route("gh-push")
	if !ok {
		t.Fatal("gh-push does not route")
	}
	if !reflect.DeepEqual(r.Entrypoint.Options, opts) {
		t.Errorf("options = %+v, want %+v", r.Entrypoint.Options, opts)
	}
	key := r.Entrypoint.OptionsKey()
	if key == "" {
		t.Error("OptionsKey is empty for an entrypoint with options")
	}
	plain, _ := s.Route("plain")
	if !plain.Entrypoint.Options.IsZero() || plain.Entrypoint.OptionsKey() != "" {
		t.Errorf("an entrypoint declared without options loads %+v (key %q)", plain.Entrypoint.Options, plain.Entrypoint.OptionsKey())
	}
	if again, _ := snapshot(t, db).Route("gh-push"); again.Entrypoint.OptionsKey() != key {
		t.Errorf("OptionsKey changed between two loads of the same options: %q, %q", key, again.Entrypoint.OptionsKey())
	}

	out, err := json.Marshal(r.Entrypoint)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret-one", "zoom-secret", "verify", "handshake"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("the entrypoint's JSON shows %q: %s", secret, out)
		}
	}

	// A reload that drops the options drops them from the route.
	w.Entrypoints[0].Options = EntrypointOptions{}
	syncDeclared(t, db, w)
	r, _ = snapshot(t, db).Route("gh-push")
	if !r.Entrypoint.Options.IsZero() || r.Entrypoint.OptionsKey() != "" {
		t.Errorf("after a sync without options: %+v", r.Entrypoint.Options)
	}
}

// A main DB from before entrypoint options gains the column, its rows '{}'.
func TestMainDBBeforeEntrypointOptionsGainsThem(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f, err := openSQLiteFile(filepath.Join(dir, MainDBFile), "")
	if err != nil {
		t.Fatal(err)
	}
	before := 0
	for before < len(mainMigrations) && mainMigrations[before].name != "entrypoints.options" {
		before++
	}
	if err := migrate(ctx, f.writer, mainMigrations[:before]); err != nil {
		t.Fatalf("migrate to the version before: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO webhooks (id, name, source, active, created_at, updated_at)
			VALUES ('6f1c2e9a-0000-4000-8000-000000000002', 'old', 'api', 1, 3, 3)`,
		`INSERT INTO entrypoints (id, webhook_id, key, active, created_at, updated_at)
			VALUES ('e1', '6f1c2e9a-0000-4000-8000-000000000002', 'old-key', 1, 4, 4)`,
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
	var raw string
	if err := db.file.reader.QueryRowContext(ctx, `SELECT options FROM entrypoints WHERE id = 'e1'`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if raw != "{}" {
		t.Errorf("an existing entrypoint's options = %q, want {}", raw)
	}
	r, ok := snapshot(t, db).Route("old-key")
	if !ok || !r.Entrypoint.Options.IsZero() {
		t.Errorf("the old entrypoint routes %v with options %+v", ok, r.Entrypoint.Options)
	}
}

// The verify scheme an event passed is stored with it and read back with
// it (what a delivery read back from the event DB sends); an event stored
// without one reads "".
func TestEventVerifiedSchemeStored(t *testing.T) {
	ctx := context.Background()
	_, _, db := openOne(t)
	for _, want := range []string{"stripe", ""} {
		pending, err := db.Ingest(&Event{Method: "POST", Path: "/p", Body: []byte("{}"), Verified: want}, targetsOf([]string{"http-target"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		ev, _, err := db.EventMeta(ctx, pending[0].EventID)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Verified != want {
			t.Errorf("Verified read back %q, want %q", ev.Verified, want)
		}
	}
}
