package storage

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"
)

// The delivery engine keeps no timer or record per waiting delivery: per
// webhook it keeps only when the next one comes due, and reads the due ones
// back from here, in pages, through the index deliveries_open
// (status, next_attempt_at), which holds the open deliveries alone. A page
// is a range of that index, so reading the due deliveries costs what they
// are, not what the whole backlog is.

// dueGroup is one range of deliveries_open that a walk of due deliveries
// reads, in the walk's order. Open deliveries keep to one shape (pending
// with no next attempt time, retrying with one), but a walk that skipped a
// row of another shape would leave it waiting for ever: every shape has its
// group, and a group that holds nothing costs one index probe.
type dueGroup struct {
	status DeliveryStatus
	timed  bool // next_attempt_at set: read by time, those due by now only if bounded
	bound  bool // only those whose next_attempt_at is at most now
}

var dueGroups = [...]dueGroup{
	{status: DeliveryPending},
	{status: DeliveryPending, timed: true},
	{status: DeliveryRetrying},
	{status: DeliveryRetrying, timed: true, bound: true},
}

// retryingOpen selects the retrying deliveries through deliveries_open
// (see DueDeliveries).
const retryingOpen = "status IN ('pending', 'retrying') AND status = 'retrying'"

// DueCursor is how far a walk of a webhook's due deliveries has gone
// (DueDeliveries). The zero value starts a walk.
type DueCursor struct {
	group int   // index in dueGroups
	at    int64 // next_attempt_at of the last one read, in a timed group
	row   int64 // rowid of the last one read in the group (0: none yet)
}

// Done reports whether the walk has read every due delivery.
func (c *DueCursor) Done() bool { return c.group >= len(dueGroups) }

// DueDeliveries reads the next page, at most limit, of the open deliveries
// due at now, and moves c past it: pending ones first, in the order they
// were written, then the retrying ones whose next attempt time has come,
// earliest first. Each page is one range read of deliveries_open, picked up
// where the last one ended (so a walk over a million due deliveries holds
// one page at a time, and a delivery written after the walk passed its
// place is left to the next walk). A page shorter than limit may come
// before the end: read until c.Done().
//
// The deliveries of the targets in skip are left out: those of ordered
// targets, which go one at a time from the head of their line (ordered.go),
// not as they come due.
func (db *WebhookDB) DueDeliveries(ctx context.Context, now time.Time, c *DueCursor, limit int, skip ...string) ([]Delivery, error) {
	var out []Delivery
	notSkipped, skipArgs := "", make([]any, len(skip))
	if len(skip) > 0 {
		notSkipped = " AND target_id NOT IN (?" + strings.Repeat(", ?", len(skip)-1) + ")"
		for i, id := range skip {
			skipArgs[i] = id
		}
	}
	for !c.Done() && len(out) < limit {
		g := dueGroups[c.group]
		var (
			rows *sql.Rows
			err  error
		)
		// The status is spelt out, not bound: the planner uses the partial
		// index only for a query whose WHERE repeats the index's own
		// condition (status IN …), and takes the status as its first column
		// only when it sees the value.
		open := "status IN ('pending', 'retrying') AND status = '" + string(g.status) + "'"
		switch {
		case !g.timed:
			rows, err = db.file.reader.QueryContext(ctx, "SELECT "+deliveryColumns+`, rowid FROM deliveries
				WHERE `+open+` AND next_attempt_at IS NULL AND rowid > ?`+notSkipped+` ORDER BY rowid LIMIT ?`,
				append(append([]any{c.row}, skipArgs...), limit-len(out))...)
		default:
			upTo := int64(math.MaxInt64)
			if g.bound {
				upTo = now.UnixNano()
			}
			from := int64(math.MinInt64)
			if c.row != 0 {
				from = c.at
			}
			// The row value continues from (at, rowid) within ties of
			// next_attempt_at (a circuit breaker holds many deliveries
			// until the same instant); next_attempt_at >= from bounds the
			// index range for the planner.
			rows, err = db.file.reader.QueryContext(ctx, "SELECT "+deliveryColumns+`, rowid FROM deliveries
				WHERE `+open+` AND next_attempt_at >= ? AND next_attempt_at <= ?
				AND (next_attempt_at, rowid) > (?, ?)`+notSkipped+` ORDER BY next_attempt_at, rowid LIMIT ?`,
				append(append([]any{from, upTo, from, c.row}, skipArgs...), limit-len(out))...)
		}
		if err != nil {
			return nil, fmt.Errorf("read due deliveries: %w", err)
		}
		n := len(out)
		out, err = scanDueRows(rows, out, c)
		if err != nil {
			return nil, fmt.Errorf("read due deliveries: %w", err)
		}
		if len(out)-n < limit-n {
			// The group is spent: on to the next.
			*c = DueCursor{group: c.group + 1}
		}
	}
	return out, nil
}

// scanDueRows appends the deliveries of rows (deliveryColumns, then rowid)
// to out, and moves c to the last one.
func scanDueRows(rows *sql.Rows, out []Delivery, c *DueCursor) ([]Delivery, error) {
	defer rows.Close()
	for rows.Next() {
		d, next, err := scanDelivery(rows, &c.row)
		if err != nil {
			return nil, err
		}
		if next.Valid {
			c.at = next.Int64
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// NextRetryAt is when the earliest retrying delivery whose next attempt is
// after `after` comes due; ok is false when there is none. A zero after
// counts every retrying delivery. One probe of deliveries_open.
func (db *WebhookDB) NextRetryAt(ctx context.Context, after time.Time) (at time.Time, ok bool, err error) {
	from := int64(math.MinInt64)
	if !after.IsZero() {
		from = after.UnixNano()
	}
	var next sql.NullInt64
	err = db.file.reader.QueryRowContext(ctx, `SELECT min(next_attempt_at) FROM deliveries
		WHERE `+retryingOpen+` AND next_attempt_at > ?`, from).Scan(&next)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next retry time of %s: %w", db.webhookID, err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return timeOf(next.Int64), true, nil
}

// CountRetryingAfter counts the retrying deliveries whose next attempt is
// after `after`: those of targetID, or of every target when it is empty.
// It reads the range of deliveries_open they are in (and, for one target,
// their rows): for the start-up report, not for every wake-up.
func (db *WebhookDB) CountRetryingAfter(ctx context.Context, after time.Time, targetID string) (int, error) {
	q, args := `SELECT count(*) FROM deliveries WHERE `+retryingOpen+` AND next_attempt_at > ?`, []any{after.UnixNano()}
	if targetID != "" {
		q, args = q+` AND target_id = ?`, append(args, targetID)
	}
	var n int
	if err := db.file.reader.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count retrying deliveries of %s: %w", db.webhookID, err)
	}
	return n, nil
}

// ReleaseHeld makes due now the retrying deliveries of targetID that its
// circuit breaker held until `until` (Reschedule), now that a probe found
// the target well: they go at once rather than at the time they were put
// off to. It returns how many it changed. Held deliveries share their time
// to the nanosecond, so this is one equality range of deliveries_open. ctx
// ends only the wait for a place in a transaction: its error means nothing
// was written.
func (db *WebhookDB) ReleaseHeld(ctx context.Context, targetID string, until time.Time) (int, error) {
	var n int64
	err := db.commits.submit(&commitRequest{ctx: ctx, write: func(w *writeTx) error {
		now := time.Now().UnixNano()
		res, err := w.tx.ExecContext(w.ctx, `UPDATE deliveries SET next_attempt_at = ?, updated_at = ?
			WHERE `+retryingOpen+` AND next_attempt_at = ? AND target_id = ?`, now, now, until.UnixNano(), targetID)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	}})
	if err != nil {
		return 0, fmt.Errorf("release the deliveries held for target %s: %w", targetID, err)
	}
	return int(n), nil
}
