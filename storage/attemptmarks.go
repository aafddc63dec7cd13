package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The writes that mark an attempt in flight; prepared with the other writes.
const (
	sqlMarkAttempt = `UPDATE deliveries SET attempt_started_at = ?
		WHERE id = ? AND status IN ('pending', 'retrying')`
	sqlClearAttempt = `UPDATE deliveries SET attempt_started_at = NULL WHERE id = ?`
	// sqlRecordInterrupted applies the outcome of an interrupted attempt only
	// if the delivery is still marked as it was read: a scan that read a mark
	// just before the attempt of this process recorded it changes nothing.
	sqlRecordInterrupted = `UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?,
		last_error = ?, updated_at = ?, attempt_started_at = NULL
		WHERE id = ? AND attempt_started_at = ? AND status IN ('pending', 'retrying')`
)

// MarkAttemptStarted durably marks an open delivery as having an attempt in
// flight since at, before the attempt goes out. RecordAttempt clears the
// mark; one found at start means the process died during the attempt. It
// shares a transaction with concurrent marks, never with other writes, and
// costs no fsync (attemptWrites). ctx ends only the wait for a place in a
// transaction: its error means nothing was marked.
func (db *WebhookDB) MarkAttemptStarted(ctx context.Context, deliveryID string, at time.Time) error {
	err := db.markCommitter().submit(&commitRequest{ctx: ctx, crashSafe: true, write: func(w *writeTx) error {
		return w.execChanging(errNoOpenDelivery, sqlMarkAttempt, at.UnixNano(), deliveryID)
	}})
	if err != nil {
		return fmt.Errorf("mark attempt of delivery %s in flight: %w", deliveryID, err)
	}
	return nil
}

// ClearAttemptStarted removes the in-flight mark of an attempt that was cut
// short by a stop and not recorded: it is not counted. ctx ends only the
// wait for a place in a transaction: its error means nothing was written.
func (db *WebhookDB) ClearAttemptStarted(ctx context.Context, deliveryID string) error {
	err := db.commits.submit(&commitRequest{ctx: ctx, write: func(w *writeTx) error {
		_, err := w.exec(sqlClearAttempt, deliveryID)
		return err
	}})
	if err != nil {
		return fmt.Errorf("clear in-flight mark of delivery %s: %w", deliveryID, err)
	}
	return nil
}

// InterruptedAttempt is an open delivery whose attempt was marked in flight
// and never recorded.
type InterruptedAttempt struct {
	DeliveryID string
	StartedAt  time.Time // the mark
}

// InterruptedAttempts lists the open deliveries marked as having an attempt
// in flight. Read at start, before any attempt of this process, they are the
// attempts that the previous process died during.
func (db *WebhookDB) InterruptedAttempts(ctx context.Context) ([]InterruptedAttempt, error) {
	rows, err := db.file.reader.QueryContext(ctx, `SELECT id, attempt_started_at FROM deliveries
		WHERE status IN ('pending', 'retrying') AND attempt_started_at IS NOT NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list interrupted attempts: %w", err)
	}
	defer rows.Close()
	var out []InterruptedAttempt
	for rows.Next() {
		var (
			a  InterruptedAttempt
			ns int64
		)
		if err := rows.Scan(&a.DeliveryID, &ns); err != nil {
			return nil, fmt.Errorf("list interrupted attempts: %w", err)
		}
		a.StartedAt = time.Unix(0, ns)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list interrupted attempts: %w", err)
	}
	return out, nil
}

// ErrNotInterrupted says that a delivery is no longer marked as it was read:
// its attempt was recorded meanwhile, and there is nothing to count.
var ErrNotInterrupted = errors.New("the delivery's attempt is no longer marked in flight")

// RecordInterruptedAttempt counts an interrupted attempt: it stores r and the
// delivery's new state, and clears the mark, in one write, provided the
// delivery is still open and marked at a.StartedAt; else it changes nothing
// and returns ErrNotInterrupted. ctx ends only the wait for a place in a
// transaction (group commit): its error means nothing was written.
func (db *WebhookDB) RecordInterruptedAttempt(ctx context.Context, a InterruptedAttempt, r DeliveryResult, out DeliveryOutcome) error {
	err := db.commits.submit(&commitRequest{ctx: ctx, write: func(w *writeTx) error {
		if err := w.execChanging(ErrNotInterrupted, sqlRecordInterrupted, out.Status, r.Attempt, out.nextAttempt(),
			out.LastError, time.Now().UnixNano(), a.DeliveryID, a.StartedAt.UnixNano()); err != nil {
			return err
		}
		_, err := w.exec(sqlInsertResult, a.DeliveryID, r.Attempt, r.StartedAt.UnixNano(),
			int64(r.Duration), r.StatusCode, r.Error, r.ResponseBody)
		return err
	}})
	if err != nil {
		return fmt.Errorf("record interrupted attempt %d of delivery %s: %w", r.Attempt, a.DeliveryID, err)
	}
	return nil
}

// crashSafeOnly reports whether every write of batch is crash-safe only.
func crashSafeOnly(batch []*commitRequest) bool {
	for _, r := range batch {
		if !r.crashSafe {
			return false
		}
	}
	return true
}

// commitCrashSafe commits a batch of crash-safe writes without an fsync, on
// a file opened with synchronous=FULL: in WAL mode a commit under
// synchronous=NORMAL is in the log file when it returns, and the kernel
// keeps it when the process dies. Only a power loss can lose it; the next
// fsync of the WAL makes it durable. Such writes are the intake's applied
// events (durable in the intake already) and the records of attempts,
// which fsync the WAL themselves once committed, outside the writer
// (outcomes.go). In-flight marks are committed the same way, apart
// (commitMarks): a lost mark only leaves one attempt uncounted, as before
// marks existed.
func (db *WebhookDB) commitCrashSafe(ctx context.Context, batch []*commitRequest) error {
	// One connection throughout, so that the relaxed setting applies to
	// this transaction and nothing else.
	conn, err := db.file.writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
		return err
	}
	err = db.runBatch(ctx, beginOn(ctx, conn), batch)
	if _, rerr := conn.ExecContext(ctx, "PRAGMA synchronous = FULL"); rerr != nil {
		// Never leave the writer without fsyncs: drop the connection, and
		// the next one is opened with the file's settings.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return errors.Join(err, fmt.Errorf("restore synchronous=FULL: %w", rerr))
	}
	return err
}

// attemptWrites is what an event DB keeps for the delivery engine's writes
// of attempts. The zero value is ready to use.
//
// marks group-commits the in-flight marks apart from the other writes.
// Through the shared group commit a mark waited for the transaction under
// way and then for the next, which at full-speed ingest carried a batch of
// events and an fsync: about 20 ms, while the attempt held its target's
// slot, so a target got MaxPerTarget attempts per 20 ms however fast it
// answered. Apart, a mark waits only for the writer connection (the
// transaction under way), and marks commit together without an fsync
// (commitMarks).
//
// wal shares the fsyncs that make recorded attempts durable (outcomes.go).
type attemptWrites struct {
	marksOnce sync.Once
	marks     groupCommitter
	wal       walSyncer
}

// markCommitter is the group commit of db's in-flight marks.
func (db *WebhookDB) markCommitter() *groupCommitter {
	db.attempts.marksOnce.Do(func() {
		db.attempts.marks.commit = db.commitMarks
		db.attempts.marks.verify = db.verifyFile
	})
	return &db.attempts.marks
}

// commitMarks commits a batch of marks in one transaction of its own on the
// writer connection, without an fsync (as commitCrashSafe, whose reasoning
// holds for a mark). A mark that finds its delivery no longer open changes
// nothing and fails alone; the others commit. It touches none of what the
// shared group commit's leader keeps (event_stats counts): a mark inserts
// nothing, and the two leaders may run at once, taking the one writer
// connection in turn.
func (db *WebhookDB) commitMarks(batch []*commitRequest) error {
	ctx, stop := marksContext(batch)
	defer stop()
	conn, err := db.file.writer.Conn(ctx)
	if err != nil {
		if ctx.Err() == nil {
			return fmt.Errorf("take the writer: %w", err)
		}
		// Every mark of the batch gave up waiting: none is made.
		for _, r := range batch {
			r.err = r.ctx.Err()
		}
		return nil
	}
	defer conn.Close()
	// From here the batch is written whatever the requests' contexts say.
	ctx = context.Background()
	relaxed := db.sync != SynchronousNormal
	if relaxed {
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
			return err
		}
	}
	err = db.runMarks(ctx, conn, batch)
	if relaxed {
		if _, rerr := conn.ExecContext(ctx, "PRAGMA synchronous = FULL"); rerr != nil {
			// Never leave the writer without fsyncs: drop the connection, and
			// the next one is opened with the file's settings.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			return errors.Join(err, fmt.Errorf("restore synchronous=FULL: %w", rerr))
		}
	}
	return err
}

// runMarks runs the marks of batch in one transaction on conn and commits
// it. A mark's own failure (no open delivery: an UPDATE that changed no row)
// is left in its request; a failure of SQLite itself fails the batch.
func (db *WebhookDB) runMarks(ctx context.Context, conn *sql.Conn, batch []*commitRequest) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	w := newWriteTx(ctx, tx, db)
	for _, r := range batch {
		if r.err = r.write(w); r.err != nil && !errors.Is(r.err, errNoOpenDelivery) {
			_ = tx.Rollback()
			return r.err
		}
	}
	return tx.Commit()
}

// marksContext ends when every request of batch has given up waiting (its
// ctx ended): only then does the wait for the writer connection stop. A
// request without a ctx waits for ever, and so does its batch.
func marksContext(batch []*commitRequest) (context.Context, func()) {
	for _, r := range batch {
		if r.ctx == nil {
			return context.Background(), func() {}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int64
	left.Store(int64(len(batch)))
	stops := make([]func() bool, len(batch))
	for i, r := range batch {
		stops[i] = context.AfterFunc(r.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
