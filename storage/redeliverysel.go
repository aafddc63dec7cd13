package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The selection of a bulk redelivery: which events to send again, and to
// which targets, after an outage ("every failed delivery since T").

// MaxRedeliveryPage bounds RedeliveryPage.
const MaxRedeliveryPage = 1000

// RedeliverySelection picks, per (event, target), the latest delivery, and
// keeps the pair when that delivery is in Status: an event that failed and
// was then redelivered and delivered is not "failed" any more.
type RedeliverySelection struct {
	// Status of the latest delivery; required.
	Status DeliveryStatus
	// TargetIDs keeps only deliveries to these targets; required (the
	// caller names the targets that can take a delivery).
	TargetIDs []string
	// From and To bound the event's time of receipt: From inclusive, To
	// exclusive; zero is unbounded.
	From, To time.Time
}

// RedeliveryMatch is one selected event and the targets to send it to
// again, by id.
type RedeliveryMatch struct {
	EventID   string
	TargetIDs []string
}

func (s RedeliverySelection) where() (string, []any, error) {
	if err := s.Status.Validate(); err != nil {
		return "", nil, invalid(err)
	}
	if len(s.TargetIDs) == 0 {
		return "", nil, invalid(fmt.Errorf("redelivery selection: no target"))
	}
	if !s.From.IsZero() && !s.To.IsZero() && !s.From.Before(s.To) {
		return "", nil, invalid(fmt.Errorf("time range from %s to %s is empty: from must be before to",
			s.From.Format(time.RFC3339Nano), s.To.Format(time.RFC3339Nano)))
	}
	// Delivery ids are UUIDv7, so the greatest id of an (event, target) is
	// its latest delivery; the subquery walks deliveries_event.
	where := []string{
		`d.status = ?`,
		`d.target_id IN (?` + strings.Repeat(", ?", len(s.TargetIDs)-1) + `)`,
		`d.id = (SELECT max(l.id) FROM deliveries l WHERE l.event_id = d.event_id AND l.target_id = d.target_id)`,
	}
	args := []any{s.Status}
	for _, id := range s.TargetIDs {
		args = append(args, id)
	}
	if !s.From.IsZero() {
		where = append(where, `e.received_at >= ?`)
		args = append(args, s.From.UnixNano())
	}
	if !s.To.IsZero() {
		where = append(where, `e.received_at < ?`)
		args = append(args, s.To.UnixNano())
	}
	return strings.Join(where, " AND "), args, nil
}

// CountRedeliveries counts the events s selects (a dry run). It reads every
// delivery of the selected status and targets once: a bulk redelivery is a
// rare, operator-driven act, and no index serves a delivered or failed
// status.
func (db *WebhookDB) CountRedeliveries(ctx context.Context, s RedeliverySelection) (int, error) {
	where, args, err := s.where()
	if err != nil {
		return 0, err
	}
	var n int
	err = db.file.reader.QueryRowContext(ctx, `SELECT count(DISTINCT d.event_id) FROM deliveries d
		JOIN events e ON e.id = d.event_id WHERE `+where, args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count events to redeliver: %w", err)
	}
	return n, nil
}

// RedeliveryPage reads the next at most limit events s selects after event
// id after ("" : from the first), by event id, which is by time of receipt,
// each with its selected targets in id order. A job pages through with the
// last event id it was given, so that what it has redelivered (no longer
// latest in Status) and what arrives meanwhile do not shift its place.
//
// Cost: deliveries_event is walked from after, in event id order, and the
// walk stops once limit events matched; each delivery looked at costs one
// more look-up in that index (is it the latest?) and one in events (its
// time). Events that do not match are walked over: a page after a long
// stretch of delivered events reads that stretch.
func (db *WebhookDB) RedeliveryPage(ctx context.Context, s RedeliverySelection, after string, limit int) ([]RedeliveryMatch, error) {
	where, args, err := s.where()
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxRedeliveryPage {
		limit = MaxRedeliveryPage
	}
	if after != "" {
		where += ` AND d.event_id > ?`
		args = append(args, after)
	}
	args = append(args, limit)
	// Target ids are UUIDs: a comma cannot be part of one.
	rows, err := db.file.reader.QueryContext(ctx, `SELECT d.event_id, group_concat(d.target_id, ',')
		FROM (SELECT d.event_id, d.target_id FROM deliveries d JOIN events e ON e.id = d.event_id
			WHERE `+where+` ORDER BY d.event_id) d
		GROUP BY d.event_id ORDER BY d.event_id LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("select events to redeliver: %w", err)
	}
	defer rows.Close()
	var out []RedeliveryMatch
	for rows.Next() {
		var (
			m       RedeliveryMatch
			targets string
		)
		if err := rows.Scan(&m.EventID, &targets); err != nil {
			return nil, fmt.Errorf("select events to redeliver: %w", err)
		}
		m.TargetIDs = strings.Split(targets, ",")
		slices.Sort(m.TargetIDs) // group_concat promises no order
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select events to redeliver: %w", err)
	}
	return out, nil
}
