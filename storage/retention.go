package storage

import (
	"context"
	"fmt"
	"time"
)

// pruneChunk is how many events one write of Prune deletes at most, so that
// pruning a large backlog does not hold the writer (and the ingests queued
// behind it) for long.
const pruneChunk = 1000

// Prune deletes the events received before olderThan whose deliveries are
// all done (delivered or failed), with their deliveries and attempts; an
// event with a pending or retrying delivery is kept whatever its age. It
// deletes in chunks, each one group-committed write, and returns how many
// events it deleted, also when ctx ends it early.
func (db *WebhookDB) Prune(ctx context.Context, olderThan time.Time) (int, error) {
	cutoff := olderThan.UnixNano()
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("prune events: %w", err)
		}
		var deleted int
		err := db.commits.submit(&commitRequest{write: func(w *writeTx) error {
			// Deliveries and delivery_results go with their event (ON DELETE CASCADE).
			res, err := w.tx.ExecContext(w.ctx, `DELETE FROM events WHERE id IN (
				SELECT e.id FROM events e WHERE e.received_at < ? AND NOT EXISTS (
					SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status IN ('pending', 'retrying'))
				LIMIT ?)`, cutoff, pruneChunk)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			deleted = int(n)
			return err
		}})
		if err != nil {
			return total, fmt.Errorf("prune events: %w", err)
		}
		total += deleted
		if deleted < pruneChunk {
			return total, nil
		}
	}
}
