package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// A webhook's event DB is made at its first event, by the applier, and under
// load spread over new webhooks by the thousand. Running the schema's
// migrations on each new file cost about 6 ms of CPU (the ALTER TABLEs
// re-parse the whole schema), three times the open of an existing file. So
// a new event DB is a copy of a fresh one: the migrations are run once per
// process, on a file of its own, whose bytes (a few pages, checkpointed and
// closed, in WAL mode) are then written under each new name. The copy is
// what the migrations make, by construction, and it is at the latest
// version, so the open that follows migrates nothing.

// freshEventDB holds the bytes of an event DB at the latest version, made
// once per process; a failure is not kept, so the next new file tries again.
var freshEventDB struct {
	mu    sync.Mutex
	bytes []byte
}

// freshEventDBDirPattern names the directory a fresh event DB is made in.
const freshEventDBDirPattern = ".fresh-event-db-"

// removeCopyLeftovers removes what a process killed while making a fresh
// event DB, or copying one, left in dir: the directory it was made in, and
// a copy not yet linked (<file>.new). One process uses a data directory
// (its lock), and this one makes and copies only under freshEventDB.mu.
func removeCopyLeftovers(dir string) {
	for _, pattern := range []string{freshEventDBDirPattern + "*", "events-*.db.new"} {
		left, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, p := range left {
			_ = os.RemoveAll(p)
		}
	}
}

// freshEventDBBytes returns the bytes of a fresh event DB, made in dir (a
// file of the process's own, removed after) on first use.
func freshEventDBBytes(ctx context.Context, dir string) ([]byte, error) {
	freshEventDB.mu.Lock()
	defer freshEventDB.mu.Unlock()
	if freshEventDB.bytes != nil {
		return freshEventDB.bytes, nil
	}
	removeCopyLeftovers(dir)
	tmp, err := os.MkdirTemp(dir, freshEventDBDirPattern)
	if err != nil {
		return nil, fmt.Errorf("make a fresh event db: %w", err)
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "events.db")
	file, err := openSQLiteFile(path, SynchronousNormal) // its copies are fsynced
	if err != nil {
		return nil, fmt.Errorf("make a fresh event db: %w", err)
	}
	err = migrate(ctx, file.writer, eventMigrations)
	// The last connection's close checkpoints the -wal into the file and
	// removes it: the file alone is then the whole database.
	if cerr := file.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("make a fresh event db: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("make a fresh event db: %w", err)
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("make a fresh event db: its -wal was not checkpointed away (%v)", err)
	}
	// The header's read and write versions are 2 for a file in WAL mode.
	if len(b) < 100 || b[18] != 2 || b[19] != 2 {
		return nil, fmt.Errorf("make a fresh event db: %d bytes, not a database in WAL mode", len(b))
	}
	freshEventDB.bytes = b
	return b, nil
}

// createFreshEventDB makes path a fresh event DB unless a file is there
// already. The copy is written and fsynced under a name of its own, then
// linked to path, which fails if another open made path meanwhile: path is
// never a partial copy, even after a crash, and never overwritten. A crash
// can leave the copy's own name behind; the next creation of path reuses it.
func createFreshEventDB(ctx context.Context, path string) error {
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return err // there already (or unknown: the open will say)
	}
	b, err := freshEventDBBytes(ctx, filepath.Dir(path))
	if err != nil {
		return err
	}
	freshEventDB.mu.Lock() // one copy at a time per process: .new is one name
	defer freshEventDB.mu.Unlock()
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, privateFileMode)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp)
	_, err = f.Write(b)
	if err = errors.Join(err, f.Chmod(privateFileMode), f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err == nil {
		err = errors.Join(d.Sync(), d.Close())
	}
	if err != nil {
		return fmt.Errorf("create %s: sync its directory: %w", path, err)
	}
	return nil
}
