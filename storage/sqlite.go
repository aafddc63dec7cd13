package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"

	// The database/sql driver for SQLite, compiled to Go: no cgo, no system library.
	_ "github.com/ncruces/go-sqlite3/driver"
)

// Synchronous is SQLite's durability setting for committed transactions.
type Synchronous string

const (
	// SynchronousFull fsyncs the write-ahead log at every commit: an
	// acknowledged event survives a power loss or a kernel crash. The default.
	SynchronousFull Synchronous = "full"
	// SynchronousNormal fsyncs only at checkpoints: an acknowledged event
	// survives a crash of the process (kill -9) but the last commits may be
	// lost if the machine itself goes down. Faster for single, ungrouped writes.
	SynchronousNormal Synchronous = "normal"
)

// Validate reports whether s is a value SQLite accepts here.
func (s Synchronous) Validate() error {
	switch s {
	case SynchronousFull, SynchronousNormal:
		return nil
	}
	return fmt.Errorf("synchronous must be %q or %q, not %q", SynchronousFull, SynchronousNormal, s)
}

// busyTimeoutMillis bounds how long a connection waits for a lock held by
// another connection of the same file before its statement fails.
const busyTimeoutMillis = 10000

// privateFileMode is the mode of every SQLite file of ours and of its -wal
// and -shm: they hold event bodies and the senders' credentials, and only the
// user Caddy runs as has any business reading them.
const privateFileMode fs.FileMode = 0o600

// sqliteFile is one SQLite file opened the way every file of ours is: in WAL
// mode, with one writer connection (every write transaction is immediate, so
// writers queue on Go's side instead of failing with SQLITE_BUSY) and a small
// pool of query-only reader connections, opened on demand.
type sqliteFile struct {
	path   string
	writer *sql.DB
	reader *sql.DB
	// identity is the file and -wal that path and path-wal named when the
	// file was opened, to notice when they stop naming them (see replaced).
	identity [2]os.FileInfo
	// moved is set once replaced has seen the path name another file (or
	// none): close then clears what the old file leaves behind.
	moved atomic.Bool
}

// openSQLiteFile opens (creating if needed) the SQLite file at path, with its
// -wal and -shm, all private to this user (privateFileMode).
func openSQLiteFile(path string, sync Synchronous) (*sqliteFile, error) {
	if sync == "" {
		sync = SynchronousFull
	}
	if err := sync.Validate(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", path, err)
	}
	// The VFS creates files 0666 less the umask, and the -shm anew after every
	// clean close: the file and its -shm are created here first, 0600, and
	// SQLite opens them as they are. modeof makes the VFS give a -wal it
	// creates the mode of the file (fchmod right after its open).
	var created []string
	for _, p := range []string{abs, abs + "-shm"} {
		made, err := createPrivateFile(p)
		if err != nil {
			removeFiles(created)
			return nil, err
		}
		if made {
			created = append(created, p)
		}
	}
	f, err := openSQLiteConns(abs, sync)
	if err != nil {
		removeFiles(created)
		return nil, err
	}
	if err := f.settle(); err != nil {
		_ = f.close()
		removeFiles(created)
		return nil, err
	}
	return f, nil
}

func openSQLiteConns(abs string, sync Synchronous) (*sqliteFile, error) {
	base := "file:" + (&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath() + "?modeof=" + url.QueryEscape(abs)
	// busy_timeout comes first: the pragmas after it may need the file's
	// lock (journal_mode does), and must wait for it rather than fail with
	// "database is locked" while another connection holds it.
	// temp_store(memory): what SQLite would put in temporary files (a
	// statement's journal when it fires triggers, as the main DB's writes
	// do; a sort) stays in memory, so that no temporary directory is
	// needed: a scratch container has none.
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=temp_store(memory)", busyTimeoutMillis)

	// page_size applies only to a file not yet written, hence before
	// journal_mode (which writes it): 16 KiB pages take a 64 KiB body in 4
	// overflow pages, WAL frames and writes instead of 16 (ingest of 64 KiB
	// bodies: about 1.5x); files made before keep their 4 KiB.
	writer, err := sql.Open("sqlite3", base+"&_txlock=immediate&"+common+"&_pragma=page_size(16384)&_pragma=journal_mode(wal)&_pragma=synchronous("+string(sync)+")")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)

	// mode=rw: a reader opened after the file was removed behind our back
	// fails instead of creating an empty file, with the VFS's mode, in its place.
	reader, err := sql.Open("sqlite3", base+"&mode=rw&_txlock=deferred&_pragma=query_only(1)&"+common)
	if err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("open %s for reading: %w", abs, err)
	}
	reader.SetMaxOpenConns(4)
	reader.SetMaxIdleConns(1)
	return &sqliteFile{path: abs, writer: writer, reader: reader}, nil
}

// settle opens the writer connection, which switches the file to WAL mode,
// and reads through it, which makes the -wal; then it gives the file, -wal
// and -shm privateFileMode (repairing files an older version created 0644,
// and whatever the umask let through) and records which files the path names.
func (f *sqliteFile) settle() error {
	conn, err := f.writer.Conn(context.Background())
	if err != nil {
		return fmt.Errorf("open %s: %w", f.path, err)
	}
	defer conn.Close()
	var pages int
	if err := conn.QueryRowContext(context.Background(), "PRAGMA page_count").Scan(&pages); err != nil {
		return fmt.Errorf("open %s: %w", f.path, err)
	}
	for _, p := range []string{f.path, f.path + "-wal", f.path + "-shm"} {
		if err := os.Chmod(p, privateFileMode); err != nil {
			return fmt.Errorf("make %s private: %w", p, err)
		}
	}
	for i, p := range f.identityPaths() {
		if f.identity[i], err = os.Stat(p); err != nil {
			return fmt.Errorf("open %s: %w", f.path, err)
		}
	}
	return nil
}

// createPrivateFile creates the empty file p with privateFileMode, and
// reports whether it did; an existing file is left as it is.
func createPrivateFile(p string) (bool, error) {
	file, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, privateFileMode)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create %s: %w", p, err)
	}
	defer file.Close()
	// The umask can only have taken bits away; this makes the mode exact.
	if err := file.Chmod(privateFileMode); err != nil {
		return true, fmt.Errorf("create %s: %w", p, err)
	}
	return true, nil
}

// removeFiles removes what a failed open created, so that it leaves nothing behind.
func removeFiles(paths []string) {
	for _, p := range paths {
		_ = os.Remove(p)
	}
}

// identityPaths are the files whose loss loses committed writes: the file,
// and its -wal, which holds the commits since the last checkpoint. (The -wal
// stays while the writer connection is open; SQLite only deletes it when the
// last connection closes.)
func (f *sqliteFile) identityPaths() [2]string { return [2]string{f.path, f.path + "-wal"} }

// replaced reports whether the file or its -wal is no longer the one that
// was opened: removed (rm events-<id>.db*) or replaced by another file.
// Writes then go into a file nobody will ever open again. An error means it
// could not tell.
func (f *sqliteFile) replaced() (bool, error) {
	for i, p := range f.identityPaths() {
		now, err := os.Stat(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("check %s is still the file opened: %w", p, err)
		}
		if err != nil || !os.SameFile(f.identity[i], now) {
			f.moved.Store(true)
			return true, nil
		}
	}
	return false, nil
}

func (f *sqliteFile) close() error {
	rerr := f.reader.Close()
	if err := f.writer.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	if rerr != nil {
		return fmt.Errorf("close %s readers: %w", f.path, rerr)
	}
	if f.moved.Load() {
		return f.removeStaleWAL()
	}
	return nil
}

// removeStaleWAL removes the -wal of a file that was replaced while open.
// SQLite does not checkpoint a moved file on close, so its -wal stays under
// the path's name, and the next open would replay its pages onto whatever
// file has the name now.
func (f *sqliteFile) removeStaleWAL() error {
	wal := f.path + "-wal"
	now, err := os.Stat(wal)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	if !os.SameFile(f.identity[1], now) {
		return nil // not ours: it came with the file that replaced ours
	}
	if err := os.Remove(wal); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("close %s: remove the -wal of the replaced file: %w", f.path, err)
	}
	return nil
}
