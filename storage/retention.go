package storage

import (
	"context"
	"fmt"
	"math"
	"time"
)

// pruneChunk is how many events one write of Prune deletes at most, so that
// pruning a large backlog does not hold the writer (and the ingests queued
// behind it) for long.
const pruneChunk = 1000

// maxRetentionDays is the longest retention whose cutoff time.Duration can
// express (about 292 years): days*24h beyond it overflows, and the wrapped
// cutoff could land anywhere, in the future included, pruning every event.
const maxRetentionDays = math.MaxInt64 / int64(24*time.Hour)

// RetentionCutoff is the time before which the finished events of a webhook
// that keeps them retentionDays days are pruned, counted back from now. ok is
// false when nothing is to be pruned: a retention of 0 or less (keep for
// ever), or one too long to compute, which saturates instead of overflowing.
func RetentionCutoff(now time.Time, retentionDays int) (cutoff time.Time, ok bool) {
	if retentionDays <= 0 || int64(retentionDays) > maxRetentionDays {
		return time.Time{}, false
	}
	return now.Add(-time.Duration(retentionDays) * 24 * time.Hour), true
}

// PruneRetention prunes the finished events older than retentionDays days
// before now (see RetentionCutoff and Prune): this is how a webhook's
// retention_days, whatever its value, turns into a Prune.
func (db *WebhookDB) PruneRetention(ctx context.Context, now time.Time, retentionDays int) (int, error) {
	cutoff, ok := RetentionCutoff(now, retentionDays)
	if !ok {
		return 0, nil
	}
	return db.Prune(ctx, cutoff)
}

// Received times are stored as Unix nanoseconds, an int64: these bound them.
var (
	earliestStorable = time.Unix(0, math.MinInt64)
	latestStorable   = time.Unix(0, math.MaxInt64)
)

// Prune deletes the events received before olderThan whose deliveries are
// all done (delivered or failed), with their deliveries and attempts; an
// event with a pending or retrying delivery is kept whatever its age. It
// deletes in chunks, each one group-committed write, and returns how many
// events it deleted, also when ctx ends it early: between chunks, or while
// a chunk waits for its place in a transaction (that chunk deletes nothing).
func (db *WebhookDB) Prune(ctx context.Context, olderThan time.Time) (int, error) {
	// UnixNano is undefined outside the int64 range; saturate instead.
	if olderThan.Before(earliestStorable) {
		return 0, nil // no event was received before that
	}
	cutoff := int64(math.MaxInt64)
	if olderThan.Before(latestStorable) {
		cutoff = olderThan.UnixNano()
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("prune events: %w", err)
		}
		var deleted int
		err := db.commits.submit(&commitRequest{ctx: ctx, write: func(w *writeTx) error {
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
