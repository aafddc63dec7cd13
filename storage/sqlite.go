package storage

import (
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"

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

// sqliteFile is one SQLite file opened the way every file of ours is: in WAL
// mode, with one writer connection (every write transaction is immediate, so
// writers queue on Go's side instead of failing with SQLITE_BUSY) and a small
// pool of query-only reader connections, opened on demand.
type sqliteFile struct {
	path   string
	writer *sql.DB
	reader *sql.DB
}

// openSQLiteFile opens (creating if needed) the SQLite file at path. Nothing
// touches the disk until the first statement runs.
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
	base := "file:" + (&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath()
	// busy_timeout comes first: the pragmas after it may need the file's
	// lock (journal_mode does), and must wait for it rather than fail with
	// "database is locked" while another connection holds it.
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeoutMillis)

	writer, err := sql.Open("sqlite3", base+"?_txlock=immediate&"+common+"&_pragma=journal_mode(wal)&_pragma=synchronous("+string(sync)+")")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)

	reader, err := sql.Open("sqlite3", base+"?_txlock=deferred&_pragma=query_only(1)&"+common)
	if err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("open %s for reading: %w", abs, err)
	}
	reader.SetMaxOpenConns(4)
	reader.SetMaxIdleConns(1)
	return &sqliteFile{path: abs, writer: writer, reader: reader}, nil
}

func (f *sqliteFile) close() error {
	rerr := f.reader.Close()
	if err := f.writer.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	if rerr != nil {
		return fmt.Errorf("close %s readers: %w", f.path, rerr)
	}
	return nil
}
