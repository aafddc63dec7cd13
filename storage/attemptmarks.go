package storage

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
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
// shares a transaction with concurrent writes (group commit); a transaction
// of marks alone costs no fsync (commitCrashSafe). ctx ends only the wait
// for a place in a transaction: its error means nothing was marked.
func (db *WebhookDB) MarkAttemptStarted(ctx context.Context, deliveryID string, at time.Time) error {
	err := db.commits.submit(&commitRequest{ctx: ctx, crashSafe: true, write: func(w *writeTx) error {
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

// commitCrashSafe commits a batch of in-flight marks without an fsync, on a
// file opened with synchronous=FULL. A mark guards against a target that
// kills the process, and in WAL mode a commit under synchronous=NORMAL is in
// the log file when it returns: the kernel keeps it when the process dies.
// Only a power loss can lose it (then that one attempt is not counted, as
// before marks existed); the next fsynced commit makes it durable anyway.
// It saves one fsync per http attempt.
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
