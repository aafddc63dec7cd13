package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

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

// EventBody reads the body of one event: what a delivery of a large event
// reads when its attempt runs.
func (db *WebhookDB) EventBody(ctx context.Context, eventID string) ([]byte, error) {
	var body []byte
	err := db.file.reader.QueryRowContext(ctx, "SELECT body FROM events WHERE id = ?", eventID).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("event %s: %w", eventID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read body of event %s: %w", eventID, err)
	}
	return body, nil
}

// Reschedule puts off an open delivery until at without counting an attempt
// (its target's circuit breaker is open). The time is stored so that it
// survives a restart.
func (db *WebhookDB) Reschedule(ctx context.Context, deliveryID string, at time.Time) error {
	err := db.commits.submit(&commitRequest{write: func(w *writeTx) error {
		res, err := w.exec(sqlReschedule, at.UnixNano(), time.Now().UnixNano(), deliveryID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("no open delivery with this id: %w", ErrNotFound)
		}
		return nil
	}})
	if err != nil {
		return fmt.Errorf("reschedule delivery %s: %w", deliveryID, err)
	}
	return nil
}
