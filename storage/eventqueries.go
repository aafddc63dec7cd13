package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event reads one event, body included.
func (db *WebhookDB) Event(ctx context.Context, id string) (*Event, error) {
	ev, _, err := db.readEvent(ctx, id, true)
	return ev, err
}

// EventMeta reads one event without its body, and the body's size: what a
// delivery needs before it knows it will be attempted.
func (db *WebhookDB) EventMeta(ctx context.Context, id string) (*Event, int, error) {
	return db.readEvent(ctx, id, false)
}

func (db *WebhookDB) readEvent(ctx context.Context, id string, withBody bool) (*Event, int, error) {
	var (
		ev       Event
		headers  string
		size     int
		received int64
	)
	body := "NULL"
	if withBody {
		body = "body"
	}
	err := db.file.reader.QueryRowContext(ctx, `SELECT id, entrypoint_id, entrypoint_key, method, path, query,
		headers, `+body+`, body_size, content_type, remote_addr, received_at FROM events WHERE id = ?`, id).
		Scan(&ev.ID, &ev.EntrypointID, &ev.EntrypointKey, &ev.Method, &ev.Path, &ev.Query,
			&headers, &ev.Body, &size, &ev.ContentType, &ev.RemoteAddr, &received)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read event %s: %w", id, err)
	}
	if err := json.Unmarshal([]byte(headers), &ev.Headers); err != nil {
		return nil, 0, fmt.Errorf("decode headers of event %s: %w", id, err)
	}
	if withBody && ev.Body == nil {
		ev.Body = []byte{}
	}
	ev.ReceivedAt = time.Unix(0, received)
	return &ev, size, nil
}

// CountEvents counts the events stored in this file.
func (db *WebhookDB) CountEvents(ctx context.Context) (int, error) {
	var n int
	if err := db.file.reader.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

const deliveryColumns = `id, event_id, target_id, status, attempts, next_attempt_at, last_error, created_at, updated_at`

func scanDeliveries(rows *sql.Rows) ([]Delivery, error) {
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var (
			d                Delivery
			next             sql.NullInt64
			created, updated int64
		)
		if err := rows.Scan(&d.ID, &d.EventID, &d.TargetID, &d.Status, &d.Attempts, &next,
			&d.LastError, &created, &updated); err != nil {
			return nil, err
		}
		if next.Valid {
			d.NextAttemptAt = time.Unix(0, next.Int64)
		}
		d.CreatedAt, d.UpdatedAt = time.Unix(0, created), time.Unix(0, updated)
		out = append(out, d)
	}
	return out, rows.Err()
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
// oldest first: what recovery resumes after a restart.
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

// DeliveryOutcome is where a delivery stands after an attempt.
type DeliveryOutcome struct {
	Status        DeliveryStatus
	NextAttemptAt time.Time // when Status is retrying
	LastError     string
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
// transaction: its error means the attempt was not recorded.
func (db *WebhookDB) RecordAttempt(ctx context.Context, r DeliveryResult, out DeliveryOutcome) error {
	err := db.commits.submit(&commitRequest{ctx: ctx, size: len(r.ResponseBody), write: func(w *writeTx) error {
		if err := w.execChanging(ErrNotFound, sqlSetOutcome, out.Status, r.Attempt, out.nextAttempt(), out.LastError,
			time.Now().UnixNano(), r.DeliveryID); err != nil {
			return err
		}
		_, err := w.exec(sqlInsertResult, r.DeliveryID, r.Attempt, r.StartedAt.UnixNano(),
			int64(r.Duration), r.StatusCode, r.Error, r.ResponseBody)
		return err
	}})
	if err != nil {
		return fmt.Errorf("record attempt %d of delivery %s: %w", r.Attempt, r.DeliveryID, err)
	}
	return nil
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
