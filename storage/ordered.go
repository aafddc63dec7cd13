package storage

import (
	"context"
	"fmt"
)

// An ordered target (TargetOptions.Ordered) takes its deliveries one at a
// time, in the order they were written: its line is its open deliveries in
// rowid order, and its head the first of them. Rowids follow the order of
// commit, and an event DB commits a webhook's events in the order they were
// acknowledged (the intake applies in its own commit order, and a direct
// ingest first applies what the intake holds), so rowid order is ingest
// order; a new row's rowid is above every row the table holds, so a
// redelivery joins the end of the line.
//
// deliveries_open_target finds a target's head in one probe, and counts its
// line without reading the rows. It holds open deliveries alone, as
// deliveries_open does: a delivered one leaves it.
var orderedMigration = migration{name: "deliveries_open_target", sql: `
CREATE INDEX deliveries_open_target ON deliveries (target_id)
	WHERE status IN ('pending', 'retrying');
`}

// openOfTarget selects a target's open deliveries through
// deliveries_open_target: as with deliveries_open, the planner takes a
// partial index only for a WHERE that repeats its condition.
const openOfTarget = "status IN ('pending', 'retrying') AND target_id = ?"

// LineHead is the first open delivery of targetID in the order they were
// written, the one an ordered target sends next; ok is false when the
// target has none open.
func (db *WebhookDB) LineHead(ctx context.Context, targetID string) (d Delivery, ok bool, err error) {
	rows, err := db.file.reader.QueryContext(ctx, "SELECT "+deliveryColumns+
		" FROM deliveries WHERE "+openOfTarget+" ORDER BY rowid LIMIT 1", targetID)
	if err != nil {
		return Delivery{}, false, fmt.Errorf("read the head of target %s's line: %w", targetID, err)
	}
	ds, err := scanDeliveries(rows)
	if err != nil {
		return Delivery{}, false, fmt.Errorf("read the head of target %s's line: %w", targetID, err)
	}
	if len(ds) == 0 {
		return Delivery{}, false, nil
	}
	return ds[0], true, nil
}

// Line is where an ordered target's deliveries stand: its head and how
// many open deliveries there are, the head among them.
type Line struct {
	Head Delivery
	Open int
}

// Line reads targetID's line for the API and UI; ok is false when the
// target has no open delivery. The count reads the index alone.
func (db *WebhookDB) Line(ctx context.Context, targetID string) (l Line, ok bool, err error) {
	head, ok, err := db.LineHead(ctx, targetID)
	if err != nil || !ok {
		return Line{}, ok, err
	}
	err = db.file.reader.QueryRowContext(ctx, "SELECT count(*) FROM deliveries WHERE "+openOfTarget, targetID).Scan(&l.Open)
	if err != nil {
		return Line{}, false, fmt.Errorf("count target %s's open deliveries: %w", targetID, err)
	}
	l.Head = head
	return l, true, nil
}
