package storage

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// OldestEventAt is when the oldest event of this file was received; ok is
// false when it holds none. Retention schedules a webhook's next pruning
// from it: that event is the next one to come of age. One lookup in
// events_received_at, whatever the number of events.
func (db *WebhookDB) OldestEventAt(ctx context.Context) (at time.Time, ok bool, err error) {
	var oldest sql.NullInt64
	if err := db.file.reader.QueryRowContext(ctx, "SELECT min(received_at) FROM events").Scan(&oldest); err != nil {
		return time.Time{}, false, fmt.Errorf("oldest event of %s: %w", db.webhookID, err)
	}
	if !oldest.Valid {
		return time.Time{}, false, nil
	}
	return timeOf(oldest.Int64), true, nil
}

// OldestOpenDeliveryAt is when the oldest delivery still to do (pending or
// retrying) of this file was created; ok is false when none is open. It
// reads only open deliveries (the partial index deliveries_open), for a
// gauge of how long the oldest one has waited.
func (db *WebhookDB) OldestOpenDeliveryAt(ctx context.Context) (at time.Time, ok bool, err error) {
	var oldest sql.NullInt64
	err = db.file.reader.QueryRowContext(ctx,
		"SELECT min(created_at) FROM deliveries WHERE status IN ('pending', 'retrying')").Scan(&oldest)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("oldest open delivery of %s: %w", db.webhookID, err)
	}
	if !oldest.Valid {
		return time.Time{}, false, nil
	}
	return timeOf(oldest.Int64), true, nil
}
