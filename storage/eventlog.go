package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The event log: pages of events with their deliveries, and redelivery.
// (A webhook's figures for the list of webhooks: eventstats.go.)

const (
	// DefaultEventPage and MaxEventPage bound ListEvents.
	DefaultEventPage = 50
	MaxEventPage     = 500
)

// EventQuery selects a page of events, newest first.
type EventQuery struct {
	// Limit is the page size: <= 0 means DefaultEventPage, and it is capped
	// at MaxEventPage.
	Limit int
	// Before is an event id: only events older than it (by time of receipt,
	// then id). "" starts at the newest.
	Before string
	// Status keeps only events with at least one delivery in that status.
	Status DeliveryStatus
}

// EventSummary is an event without its body, with its deliveries.
type EventSummary struct {
	Event                 // Body is nil
	BodySize   int        // the size of the body left out
	Deliveries []Delivery // by id, which is by time of creation
}

// Validate checks that s is one of the delivery statuses.
func (s DeliveryStatus) Validate() error {
	switch s {
	case DeliveryPending, DeliveryRetrying, DeliveryDelivered, DeliveryFailed:
		return nil
	}
	return fmt.Errorf("delivery status %q: want pending, retrying, delivered or failed", s)
}

// ListEvents reads one page of events, newest first, with their deliveries:
// two queries (plus one to find Before), in one read transaction. An unknown
// Before is ErrNotFound; an unknown Status is ErrInvalid.
func (db *WebhookDB) ListEvents(ctx context.Context, q EventQuery) ([]EventSummary, error) {
	if q.Status != "" {
		if err := q.Status.Validate(); err != nil {
			return nil, invalid(err)
		}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultEventPage
	}
	limit = min(limit, MaxEventPage)

	tx, err := db.file.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer tx.Rollback()

	var (
		where []string
		args  []any
	)
	if q.Before != "" {
		var before int64
		err := tx.QueryRowContext(ctx, `SELECT received_at FROM events WHERE id = ?`, q.Before).Scan(&before)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("list events before %s: event %s: %w", q.Before, q.Before, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		where = append(where, `(e.received_at < ? OR (e.received_at = ? AND e.id < ?))`)
		args = append(args, before, before, q.Before)
	}
	if q.Status != "" {
		where = append(where, `EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = ?)`)
		args = append(args, q.Status)
	}
	query := `SELECT e.id, e.entrypoint_id, e.entrypoint_key, e.method, e.path, e.query, e.headers,
		e.body_size, e.content_type, e.remote_addr, e.received_at FROM events e`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY e.received_at DESC, e.id DESC LIMIT ?"
	args = append(args, limit)

	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	page := []EventSummary{}
	for rows.Next() {
		var (
			s        EventSummary
			headers  string
			received int64
		)
		if err := rows.Scan(&s.ID, &s.EntrypointID, &s.EntrypointKey, &s.Method, &s.Path, &s.Query, &headers,
			&s.BodySize, &s.ContentType, &s.RemoteAddr, &received); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list events: %w", err)
		}
		if err := json.Unmarshal([]byte(headers), &s.Headers); err != nil {
			rows.Close()
			return nil, fmt.Errorf("decode headers of event %s: %w", s.ID, err)
		}
		s.ReceivedAt = timeOf(received)
		s.Deliveries = []Delivery{}
		page = append(page, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	if len(page) == 0 {
		return page, nil
	}

	index := make(map[string]int, len(page))
	ids := make([]any, len(page))
	for i, s := range page {
		index[s.ID] = i
		ids[i] = s.ID
	}
	rows, err = tx.QueryContext(ctx, "SELECT "+deliveryColumns+" FROM deliveries WHERE event_id IN (?"+
		strings.Repeat(", ?", len(ids)-1)+") ORDER BY id", ids...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries of events: %w", err)
	}
	deliveries, err := scanDeliveries(rows)
	if err != nil {
		return nil, fmt.Errorf("list deliveries of events: %w", err)
	}
	for _, d := range deliveries {
		s := &page[index[d.EventID]]
		s.Deliveries = append(s.Deliveries, d)
	}
	return page, nil
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
