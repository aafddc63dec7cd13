package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

func scanDeliveries(rows *sql.Rows) ([]Delivery, error) {
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, _, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// scanDelivery reads one row of deliveryColumns, followed by the columns
// of extra, and returns its next_attempt_at as stored too.
func scanDelivery(rows *sql.Rows, extra ...any) (Delivery, sql.NullInt64, error) {
	var (
		d                Delivery
		next             sql.NullInt64
		created, updated int64
	)
	dest := append([]any{&d.ID, &d.EventID, &d.TargetID, &d.Status, &d.Attempts, &next,
		&d.LastError, &created, &updated}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return Delivery{}, next, err
	}
	if next.Valid {
		d.NextAttemptAt = time.Unix(0, next.Int64)
	}
	d.CreatedAt, d.UpdatedAt = time.Unix(0, created), time.Unix(0, updated)
	return d, next, nil
}

// Deliveries lists the deliveries of one event.
func (db *WebhookDB) Deliveries(ctx context.Context, eventID string) ([]Delivery, error) {
	rows, err := db.file.reader.QueryContext(ctx,
		"SELECT "+deliveryColumns+" FROM deliveries WHERE event_id = ? ORDER BY id", eventID)
	if err != nil {
		return nil, fmt.Errorf("list deliveries of event %s: %w", eventID, err)
	}
	d, err := scanDeliveries(rows)
	if err != nil {
		return nil, fmt.Errorf("list deliveries of event %s: %w", eventID, err)
	}
	return d, nil
}

// OpenDeliveries lists the deliveries still to do (pending or retrying),
// oldest first, in one slice: for tests and tools. The engine reads them
// in pages instead (DueDeliveries), however many there are.
func (db *WebhookDB) OpenDeliveries(ctx context.Context) ([]Delivery, error) {
	rows, err := db.file.reader.QueryContext(ctx, "SELECT "+deliveryColumns+
		" FROM deliveries WHERE status IN ('pending', 'retrying') ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list open deliveries: %w", err)
	}
	d, err := scanDeliveries(rows)
	if err != nil {
		return nil, fmt.Errorf("list open deliveries: %w", err)
	}
	return d, nil
}

// nextAttempt is the next_attempt_at column of a delivery with outcome o:
// set while it is retrying, NULL otherwise.
func (o DeliveryOutcome) nextAttempt() sql.NullInt64 {
	if o.Status != DeliveryRetrying {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: o.NextAttemptAt.UnixNano(), Valid: true}
}

// RecordAttempt stores one attempt and the delivery's new state together,
// so that the attempt count and the results never disagree. It shares a
// transaction with concurrent writes to the same file (group commit) and
// returns once that has committed. ctx ends only the wait for a place in a
// transaction: its error means the attempt was not recorded. See
// RecordAttemptOutcome for a delivery that is no longer open.
func (db *WebhookDB) RecordAttempt(ctx context.Context, r DeliveryResult, out DeliveryOutcome) error {
	_, _, err := db.RecordAttemptOutcome(ctx, r, out)
	return err
}

// RecordAttemptOutcome is RecordAttempt, and says what the delivery is once
// it is recorded. An attempt that ends after its delivery stopped being open
// (the operator cancelled it while it was in flight) is recorded, but
// changes its status only if it delivered: a cancelled delivery is never
// made retrying (or given a new last error) again. applied reports whether
// out was applied; status is the delivery's status after the write.
//
// The record is durable when it returns (under synchronous full): committed
// crash-safe, then the WAL fsynced outside the writer, that fsync shared
// with the records waiting for one (outcomes.go). An error from the fsync
// means the record may not survive a power loss, though a kill it does.
func (db *WebhookDB) RecordAttemptOutcome(ctx context.Context, r DeliveryResult, out DeliveryOutcome) (status DeliveryStatus, applied bool, err error) {
	defer func() {
		if err == nil {
			if serr := db.syncAttempts(); serr != nil {
				status, applied = "", false
				err = fmt.Errorf("record attempt %d of delivery %s: %w", r.Attempt, r.DeliveryID, serr)
			}
		}
	}()
	err = db.commits.submit(&commitRequest{ctx: ctx, crashSafe: true, size: len(r.ResponseBody), write: func(w *writeTx) error {
		now := time.Now().UnixNano()
		status, applied = out.Status, true
		if err := w.execChanging(errNoOpenDelivery, sqlSetOutcome, out.Status, r.Attempt, out.nextAttempt(), out.LastError,
			now, r.DeliveryID); err != nil {
			if !errors.Is(err, errNoOpenDelivery) {
				return err
			}
			// Not open any more: count the attempt, keep the status.
			applied = false
			if err := w.tx.QueryRowContext(w.ctx, `UPDATE deliveries SET attempts = max(attempts, ?),
				attempt_started_at = NULL, updated_at = ? WHERE id = ? RETURNING status`,
				r.Attempt, now, r.DeliveryID).Scan(&status); err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("delivery %s: %w", r.DeliveryID, ErrNotFound)
				}
				return err
			}
		}
		_, err := w.exec(sqlInsertResult, r.DeliveryID, r.Attempt, r.StartedAt.UnixNano(),
			int64(r.Duration), r.StatusCode, r.Error, r.ResponseBody)
		return err
	}})
	if err != nil {
		return "", false, fmt.Errorf("record attempt %d of delivery %s: %w", r.Attempt, r.DeliveryID, err)
	}
	return status, applied, nil
}

// CancelledError is the last error of a delivery the operator cancelled.
const CancelledError = "cancelled by the operator"

// CancelDelivery ends an open delivery as failed, with last error
// CancelledError, and clears its in-flight mark: an attempt still in flight
// is recorded when it ends without reviving it (RecordAttemptOutcome). A
// delivery that is not open is ErrNotOpen; an unknown one ErrNotFound.
// ctx ends only the wait for a place in a transaction: its error means
// nothing was written.
func (db *WebhookDB) CancelDelivery(ctx context.Context, id string) error {
	err := db.commits.submit(&commitRequest{ctx: ctx, write: func(w *writeTx) error {
		res, err := w.tx.ExecContext(w.ctx, `UPDATE deliveries SET status = 'failed', next_attempt_at = NULL,
			last_error = ?, attempt_started_at = NULL, updated_at = ?
			WHERE id = ? AND status IN ('pending', 'retrying')`, CancelledError, time.Now().UnixNano(), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		return notOpen(w, id)
	}})
	if err != nil {
		return fmt.Errorf("cancel delivery %s: %w", id, err)
	}
	return nil
}

// RetryDeliveryNow makes an open delivery due now: a retrying one's
// next_attempt_at becomes now (a pending one is due already), so that a
// restart before the attempt runs it at once too. The caller (the engine)
// stops its timer and queues it. Errors as CancelDelivery.
func (db *WebhookDB) RetryDeliveryNow(ctx context.Context, id string) error {
	err := db.commits.submit(&commitRequest{ctx: ctx, write: func(w *writeTx) error {
		now := time.Now().UnixNano()
		res, err := w.tx.ExecContext(w.ctx, `UPDATE deliveries
			SET next_attempt_at = CASE WHEN status = 'retrying' THEN ? ELSE next_attempt_at END, updated_at = ?
			WHERE id = ? AND status IN ('pending', 'retrying')`, now, now, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		return notOpen(w, id)
	}})
	if err != nil {
		return fmt.Errorf("retry delivery %s now: %w", id, err)
	}
	return nil
}

// notOpen is the error for a write to an open delivery that changed none:
// ErrNotOpen if the delivery exists, else ErrNotFound.
func notOpen(w *writeTx, id string) error {
	var status DeliveryStatus
	err := w.tx.QueryRowContext(w.ctx, `SELECT status FROM deliveries WHERE id = ?`, id).Scan(&status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("delivery %s: %w", id, ErrNotFound)
	case err != nil:
		return err
	}
	return fmt.Errorf("delivery %s is %s: %w", id, status, ErrNotOpen)
}

// DeliveryResults lists the attempts of one delivery, first first.
func (db *WebhookDB) DeliveryResults(ctx context.Context, deliveryID string) ([]DeliveryResult, error) {
	rows, err := db.file.reader.QueryContext(ctx, `SELECT delivery_id, attempt, started_at, duration_ns,
		status_code, error, response_body FROM delivery_results WHERE delivery_id = ? ORDER BY attempt, id`, deliveryID)
	if err != nil {
		return nil, fmt.Errorf("list attempts of %s: %w", deliveryID, err)
	}
	defer rows.Close()
	var out []DeliveryResult
	for rows.Next() {
		var (
			r           DeliveryResult
			started, ns int64
		)
		if err := rows.Scan(&r.DeliveryID, &r.Attempt, &started, &ns, &r.StatusCode, &r.Error, &r.ResponseBody); err != nil {
			return nil, fmt.Errorf("list attempts of %s: %w", deliveryID, err)
		}
		r.StartedAt, r.Duration = time.Unix(0, started), time.Duration(ns)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list attempts of %s: %w", deliveryID, err)
	}
	return out, nil
}

// Delivery reads one delivery.
func (db *WebhookDB) Delivery(ctx context.Context, id string) (Delivery, error) {
	rows, err := db.file.reader.QueryContext(ctx, "SELECT "+deliveryColumns+" FROM deliveries WHERE id = ?", id)
	if err != nil {
		return Delivery{}, fmt.Errorf("read delivery %s: %w", id, err)
	}
	ds, err := scanDeliveries(rows)
	if err != nil {
		return Delivery{}, fmt.Errorf("read delivery %s: %w", id, err)
	}
	if len(ds) == 0 {
		return Delivery{}, fmt.Errorf("delivery %s: %w", id, ErrNotFound)
	}
	return ds[0], nil
}

// errNoOpenDelivery: a write meant for an open delivery found none.
var errNoOpenDelivery = fmt.Errorf("no open delivery with this id: %w", ErrNotFound)

// Reschedule puts off an open delivery until at without counting an attempt
// (its target's circuit breaker is open). The time is stored so that it
// survives a restart. ctx ends only the wait for a place in a transaction
// (group commit): its error means nothing was written.
func (db *WebhookDB) Reschedule(ctx context.Context, deliveryID string, at time.Time) error {
	err := db.commits.submit(&commitRequest{ctx: ctx, write: func(w *writeTx) error {
		return w.execChanging(errNoOpenDelivery, sqlReschedule, at.UnixNano(), time.Now().UnixNano(), deliveryID)
	}})
	if err != nil {
		return fmt.Errorf("reschedule delivery %s: %w", deliveryID, err)
	}
	return nil
}

// Redeliver adds one pending delivery of an existing event per target id, in
// one group-committed write, and returns them once durable; the caller hands
// them to the engine. A missing event is ErrNotFound; no target is ErrInvalid.
// ctx ends only the wait for a place in a transaction: its error means no
// delivery was added.
func (db *WebhookDB) Redeliver(ctx context.Context, eventID string, targetIDs []string) ([]Delivery, error) {
	if len(targetIDs) == 0 {
		if _, _, err := db.EventMeta(ctx, eventID); err != nil {
			return nil, fmt.Errorf("redeliver: %w", err)
		}
		return nil, fmt.Errorf("redeliver event %s: %w: no target to deliver to", eventID, ErrInvalid)
	}
	now := time.Now()
	deliveries := make([]Delivery, len(targetIDs))
	for i, targetID := range targetIDs {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("new delivery id: %w", err)
		}
		deliveries[i] = Delivery{ID: id.String(), EventID: eventID, TargetID: targetID,
			Status: DeliveryPending, CreatedAt: now, UpdatedAt: now}
	}
	err := db.commits.submit(&commitRequest{ctx: ctx, write: func(w *writeTx) error {
		var n int
		if err := w.tx.QueryRowContext(w.ctx, `SELECT count(*) FROM events WHERE id = ?`, eventID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("event %s: %w", eventID, ErrNotFound)
		}
		for _, d := range deliveries {
			if _, err := w.tx.ExecContext(w.ctx, `INSERT INTO deliveries
				(id, event_id, target_id, status, attempts, created_at, updated_at)
				VALUES (?, ?, ?, 'pending', 0, ?, ?)`, d.ID, d.EventID, d.TargetID, now.UnixNano(), now.UnixNano()); err != nil {
				return fmt.Errorf("insert delivery: %w", err)
			}
		}
		w.inserted.pending += len(deliveries)
		return nil
	}})
	if err != nil {
		return nil, fmt.Errorf("redeliver: %w", err)
	}
	return deliveries, nil
}
