//go:build unix

package storage

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// withUmask runs the rest of the test under umask mask. The umask belongs
// to the process: no test of this package runs in parallel.
func withUmask(t *testing.T, mask int) {
	t.Helper()
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func modeOf(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi.Mode().Perm()
}

// wantPrivate fails unless path, path-wal and path-shm all exist with mode 0600.
func wantPrivate(t *testing.T, path string) {
	t.Helper()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if got := modeOf(t, p); got != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", filepath.Base(p), got)
		}
	}
}

// The attack: a data directory another local user can enter, and SQLite
// files created 0644 (0666 under umask 0): that user reads the bodies and
// the senders' tokens. Whatever the umask, the data directory we create is
// 0700 and every file, main DB and event DB with their -wal and -shm, 0600.
func TestFreshDataDirAndEveryFileArePrivateWhateverTheUmask(t *testing.T) {
	for _, mask := range []int{0, 0o022, 0o077} {
		t.Run(fmt.Sprintf("umask %04o", mask), func(t *testing.T) {
			withUmask(t, mask)
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "new", "data")
			m, err := NewWebhookDBManager(dir, ManagerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.CloseAll(ctx)
			if got := modeOf(t, dir); got != 0o700 {
				t.Errorf("data dir has mode %04o, want 0700", got)
			}
			main, err := OpenMainDB(ctx, dir, "")
			if err != nil {
				t.Fatal(err)
			}
			defer main.Close()
			wantPrivate(t, filepath.Join(dir, MainDBFile))

			id := newID(t)
			withDB(t, m, id, func(db *WebhookDB) { ingestOne(t, db, "secret", "t") })
			wantPrivate(t, eventPath(t, m, id))

			// Create takes its own path (open, migrate, close): closing the
			// last connection removes the -wal and -shm, the file stays private.
			created := newID(t)
			if err := m.Create(ctx, created); err != nil {
				t.Fatal(err)
			}
			if got := modeOf(t, eventPath(t, m, created)); got != 0o600 {
				t.Errorf("created event DB has mode %04o, want 0600", got)
			}
			if warning := DataDirWarning(dir); warning != "" {
				t.Errorf("DataDirWarning of the directory we created: %q", warning)
			}
		})
	}
}

// Files an older version created 0644 (and a -shm left 0666 by a crash) are
// made 0600 when they are opened; their data stays.
func TestExistingWorldReadableFilesAreMadePrivateOnOpen(t *testing.T) {
	withUmask(t, 0)
	ctx := context.Background()
	dir := t.TempDir()
	m, err := NewWebhookDBManager(dir, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := newID(t)
	withDB(t, m, id, func(db *WebhookDB) { ingestOne(t, db, "old", "t") })
	if err := m.CloseAll(ctx); err != nil {
		t.Fatal(err)
	}
	main, err := OpenMainDB(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := main.Close(); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{eventPath(t, m, id), filepath.Join(dir, MainDBFile)} {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+"-shm", nil, 0o666); err != nil {
			t.Fatal(err)
		}
		if got := modeOf(t, path+"-shm"); got != 0o666 {
			t.Fatalf("setup: -shm has mode %04o", got)
		}
	}

	main, err = OpenMainDB(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close()
	wantPrivate(t, filepath.Join(dir, MainDBFile))

	m2, err := NewWebhookDBManager(dir, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.CloseAll(ctx)
	withDB(t, m2, id, func(db *WebhookDB) {
		if n := countEvents(t, db); n != 1 {
			t.Errorf("event DB holds %d events after reopening, want 1", n)
		}
	})
	wantPrivate(t, eventPath(t, m2, id))
}

// An existing data directory keeps the mode its owner gave it; the operator
// is warned when group or others have any access to it.
func TestDataDirWarning(t *testing.T) {
	cases := []struct {
		mode fs.FileMode
		want []string // parts of the warning; nil: no warning
	}{
		{0o700, nil},
		{0o500, nil},
		{0o750, []string{"mode 0750", "list its files", "reach files in it by name", "chmod 700"}},
		{0o755, []string{"mode 0755", "list its files", "reach files in it by name"}},
		{0o711, []string{"mode 0711", "reach files in it by name"}},
		{0o733, []string{"mode 0733", "remove or replace its files"}},
		{0o777, []string{"list its files", "remove or replace its files", "reach files in it by name"}},
		{0o704, []string{"mode 0704", "list its files"}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%04o", c.mode), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Chmod(dir, c.mode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) }) // so that TempDir can remove it
			if err := CreateDataDir(dir); err != nil {
				t.Fatal(err)
			}
			if got := modeOf(t, dir); got != c.mode {
				t.Errorf("CreateDataDir changed an existing directory's mode to %04o", got)
			}
			got := DataDirWarning(dir)
			if c.want == nil {
				if got != "" {
					t.Errorf("DataDirWarning = %q, want none", got)
				}
				return
			}
			if got == "" {
				t.Fatal("no warning for a directory open to others")
			}
			for _, part := range c.want {
				if !strings.Contains(got, part) {
					t.Errorf("DataDirWarning = %q, want it to say %q", got, part)
				}
			}
			if c.mode&0o044 == 0 && strings.Contains(got, "list its files") {
				t.Errorf("DataDirWarning = %q says others can list a directory they cannot read", got)
			}
		})
	}
	if got := DataDirWarning(filepath.Join(t.TempDir(), "missing")); got != "" {
		t.Errorf("DataDirWarning of a missing directory = %q, want none", got)
	}
}
