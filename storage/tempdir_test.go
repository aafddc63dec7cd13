package storage

import (
	"context"
	"path/filepath"
	"testing"
)

// TestNoTemporaryDirectoryNeeded: the main DB's writes fire triggers, and a
// statement that does keeps a journal of its own, which SQLite puts in a
// temporary file unless told to keep it in memory. A scratch container has
// no temporary directory: there the first Caddyfile sync failed with "disk
// I/O error".
func TestNoTemporaryDirectoryNeeded(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", filepath.Join(dir, "no-such-directory"))
	db, err := OpenMainDB(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	syncDeclared(t, db, declare("gh", true, []string{"gh-key"}, targetSpec{name: "t", typ: TargetHTTP, url: "https://t.example/", active: true}))
	if _, err := db.CreateWebhook(context.Background(), NewWebhook{Name: "api"}); err != nil {
		t.Fatal(err)
	}
}
