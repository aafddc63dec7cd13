package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
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
	// BeforeAt, if set, is Before's time of receipt: the cursor then needs
	// no event of this file (a page merged from several nodes' files, in
	// cluster mode, ends at an event of one of them).
	BeforeAt time.Time
	// Status keeps only events with at least one delivery in that status
	// (to TargetID, when set).
	Status DeliveryStatus
	// TargetID keeps only events with a delivery to that target.
	TargetID string
	// From and To bound the time of receipt: From inclusive, To exclusive.
	// Zero: unbounded. Both use the index events_received_at.
	From, To time.Time
	// EventID keeps only the event with that id.
	EventID string
	// BodyContains keeps only events whose body holds these bytes, compared
	// literally (instr, not LIKE: % and _ are not wildcards). At most
	// MaxBodySearch bytes.
	BodyContains string
}

// MaxBodySearch bounds EventQuery.BodyContains.
const MaxBodySearch = 200

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
// Before is ErrNotFound; an unknown Status, a search over MaxBodySearch
// bytes or a From not before To is ErrInvalid.
//
// Cost: the time range and Before are ranges on events_received_at, and an
// event id is a primary key look-up. A body search has no index: SQLite
// reads the bodies of the events the other filters leave, newest first,
// until the page is full, so a search that matches little reads every body
// in the range. Give a time range to bound it.
func (db *WebhookDB) ListEvents(ctx context.Context, q EventQuery) ([]EventSummary, error) {
	if q.Status != "" {
		if err := q.Status.Validate(); err != nil {
			return nil, invalid(err)
		}
	}
	if len(q.BodyContains) > MaxBodySearch {
		return nil, invalid(fmt.Errorf("body search of %d bytes: at most %d", len(q.BodyContains), MaxBodySearch))
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return nil, invalid(fmt.Errorf("time range from %s to %s is empty: from must be before to",
			q.From.Format(time.RFC3339Nano), q.To.Format(time.RFC3339Nano)))
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
		switch {
		case errors.Is(err, sql.ErrNoRows) && !q.BeforeAt.IsZero():
			before = q.BeforeAt.UnixNano()
		case errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("list events before %s: event %s: %w", q.Before, q.Before, ErrNotFound)
		case err != nil:
			return nil, fmt.Errorf("list events: %w", err)
		}
		where = append(where, `(e.received_at < ? OR (e.received_at = ? AND e.id < ?))`)
		args = append(args, before, before, q.Before)
	}
	switch {
	case q.Status != "" && q.TargetID != "":
		where = append(where, `EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.target_id = ? AND d.status = ?)`)
		args = append(args, q.TargetID, q.Status)
	case q.Status != "":
		where = append(where, `EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = ?)`)
		args = append(args, q.Status)
	case q.TargetID != "":
		where = append(where, `EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.target_id = ?)`)
		args = append(args, q.TargetID)
	}
	if !q.From.IsZero() {
		where = append(where, `e.received_at >= ?`)
		args = append(args, q.From.UnixNano())
	}
	if !q.To.IsZero() {
		where = append(where, `e.received_at < ?`)
		args = append(args, q.To.UnixNano())
	}
	if q.EventID != "" {
		where = append(where, `e.id = ?`)
		args = append(args, q.EventID)
	}
	if q.BodyContains != "" {
		// A blob argument: instr compares bytes, whatever the body's encoding.
		where = append(where, `instr(e.body, ?) > 0`)
		args = append(args, []byte(q.BodyContains))
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
