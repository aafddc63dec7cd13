package storage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupLeavesReadersQueryOnly: the reader connection that made a copy
// lifts query_only for VACUUM INTO and puts it back before the pool has it
// again: a reader that could write would break the one-writer rule.
func TestBackupLeavesReadersQueryOnly(t *testing.T) {
	withUmask(t, 0) // nor can the umask widen the copy's mode
	db := openMain(t)
	ctx := context.Background()
	for i := range 3 {
		path := filepath.Join(t.TempDir(), MainDBFile)
		f, err := db.BackupTo(ctx, path, false)
		if err != nil {
			t.Fatal(err)
		}
		if f.SchemaVersion != len(mainMigrations) || f.Size == 0 {
			t.Errorf("copy %d: %+v, want schema version %d", i, f, len(mainMigrations))
		}
		if mode := modeOf(t, path); mode != privateFileMode {
			t.Errorf("copy %d has mode %04o, want 0600", i, mode)
		}
		// The pool keeps one idle reader: the one the copy used.
		_, err = db.file.reader.ExecContext(ctx, "CREATE TABLE written_by_a_reader (x)")
		if err == nil || !strings.Contains(err.Error(), "readonly") {
			t.Fatalf("after copy %d a reader wrote to the main DB (%v)", i, err)
		}
	}
}
