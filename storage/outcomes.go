package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
)

// WithDelivered runs fn with the open event DB of webhook id as it is,
// without first applying what the intake holds for the webhook (With does).
// It is for the delivery engine's writes to a delivery it has in hand (its
// in-flight mark, the record of its attempt) and the read of that
// delivery's event: the delivery is in the event DB already (the engine is
// told of it once applied, or read it there), and nothing acknowledged since
// concerns it. Through With, each of those writes applied (or waited for)
// the webhook's latest events first: at full-speed ingest an apply is
// always under way, and an attempt's mark waited for it while holding its
// target's slot.
func (m *WebhookDBManager) WithDelivered(ctx context.Context, id string, fn func(*WebhookDB) error) error {
	return m.withDB(ctx, id, fn)
}

// The record of an attempt (RecordAttemptOutcome) is durable when it
// returns, under synchronous full as before; but its fsync is no longer
// taken while the writer is held. It is committed as the intake's applied
// events and the marks are (crash-safe: in the WAL, in the kernel's hands,
// when the commit returns), and then the WAL file is fsynced on a
// descriptor of its own, by one caller for all those waiting (walSyncer).
// fsync works on the file, not the descriptor: every frame written before
// it began is on disk when it returns, the transaction's commit frame
// among them; a checkpoint in between copied those frames into the main
// file and synced both. Meanwhile the writer takes marks and applies:
// before, each batch of records held it through an fsync, and the marks of
// the next attempts, waiting for it, held their targets' slots.
//
// Under synchronous normal the WAL is not synced: an attempt's record is
// then crash-safe only, as every write of such a file.

// walSyncer shares fsyncs of an event DB's WAL among those waiting for one.
// The zero value is ready to use.
type walSyncer struct {
	mu      sync.Mutex
	syncing bool
	waiting []chan error // for the next fsync to begin
	// syncs counts the fsyncs done.
	syncs atomic.Int64
}

// sync returns once an fsync of the WAL at path that began after the call
// has ended. One caller syncs for every caller that queued meanwhile.
func (s *walSyncer) sync(path string) error {
	done := make(chan error, 1)
	s.mu.Lock()
	s.waiting = append(s.waiting, done)
	if s.syncing {
		s.mu.Unlock()
		return <-done
	}
	s.syncing = true
	for len(s.waiting) > 0 {
		batch := s.waiting
		s.waiting = nil
		s.mu.Unlock()
		err := syncFile(path)
		s.syncs.Add(1)
		for _, w := range batch {
			w <- err
		}
		s.mu.Lock()
	}
	s.syncing = false
	s.mu.Unlock()
	return <-done
}

// syncFile fsyncs the file at path. A WAL that is not there was checkpointed
// and removed by the close of its last connection, which synced it first.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s to sync it: %w", path, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// syncAttempts makes the attempts db recorded crash-safe durable (see
// above), unless the file is synchronous normal.
func (db *WebhookDB) syncAttempts() error {
	if db.sync == SynchronousNormal {
		return nil
	}
	return db.attempts.wal.sync(db.file.path + "-wal")
}
