package storage

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// A webhook's figures (events, the last one's time, deliveries by status)
// for the list of webhooks, which the UI polls every few seconds: they cost
// O(1) per webhook and open no event DB. Each event DB keeps them in a
// one-row table, event_stats, changed in the transaction of every write
// that changes a count, so that they never disagree with the rows:
//   - rows inserted (ingest, redelivery) are added up by the writes in
//     writeTx.inserted (a write that inserts events or deliveries must add
//     them there) and applied by one UPDATE per group-committed
//     transaction. Not triggers: a trigger per inserted row costs a
//     statement journal per row, which spilled to temporary files and
//     took ingest from 0.6 to 1.1 s of CPU per 5,000 events;
//   - status changes (attempts, holds, interrupted attempts) and deletes
//     (pruning, with its ON DELETE CASCADE) by triggers, rarer and written
//     in more places.
// The manager keeps the last committed row of each webhook in memory (read
// when the file opens and by each transaction before it commits) and
// answers from there.

// EventStats are a webhook's figures for a list of webhooks.
type EventStats struct {
	Events      int                    `json:"events"`
	LastEventAt *time.Time             `json:"last_event_at,omitempty"`
	Deliveries  map[DeliveryStatus]int `json:"deliveries"` // every status, 0 included
}

// eventStatsMigration adds event_stats to an event DB, computing the counts
// of an existing file once.
var eventStatsMigration = migration{name: "event_stats", sql: `
CREATE TABLE event_stats (
	id            INTEGER PRIMARY KEY CHECK (id = 1),
	events        INTEGER NOT NULL,
	last_event_at INTEGER,          -- max(events.received_at), NULL without events
	pending       INTEGER NOT NULL,
	retrying      INTEGER NOT NULL,
	delivered     INTEGER NOT NULL,
	failed        INTEGER NOT NULL,
	-- Counts the changes: of two copies of the row read from one file (two
	-- handles, one evicted and finishing a write), the greater is the later.
	version       INTEGER NOT NULL
);
INSERT INTO event_stats SELECT 1,
	(SELECT count(*) FROM events),
	(SELECT max(received_at) FROM events),
	(SELECT count(*) FROM deliveries WHERE status = 'pending'),
	(SELECT count(*) FROM deliveries WHERE status = 'retrying'),
	(SELECT count(*) FROM deliveries WHERE status = 'delivered'),
	(SELECT count(*) FROM deliveries WHERE status = 'failed'),
	0;

-- Pruning deletes old events: the last time is looked up again (through
-- events_received_at) only when the latest event goes.
CREATE TRIGGER event_stats_event_delete AFTER DELETE ON events BEGIN
	UPDATE event_stats SET events = events - 1,
		last_event_at = CASE WHEN OLD.received_at < last_event_at THEN last_event_at
			ELSE (SELECT max(received_at) FROM events) END,
		version = version + 1;
END;

CREATE TRIGGER event_stats_delivery_status AFTER UPDATE OF status ON deliveries
	WHEN OLD.status <> NEW.status BEGIN
	UPDATE event_stats SET
		pending = pending + (NEW.status = 'pending') - (OLD.status = 'pending'),
		retrying = retrying + (NEW.status = 'retrying') - (OLD.status = 'retrying'),
		delivered = delivered + (NEW.status = 'delivered') - (OLD.status = 'delivered'),
		failed = failed + (NEW.status = 'failed') - (OLD.status = 'failed'),
		version = version + 1;
END;
-- Also fired by ON DELETE CASCADE when pruning deletes an event.
CREATE TRIGGER event_stats_delivery_delete AFTER DELETE ON deliveries BEGIN
	UPDATE event_stats SET
		pending = pending - (OLD.status = 'pending'),
		retrying = retrying - (OLD.status = 'retrying'),
		delivered = delivered - (OLD.status = 'delivered'),
		failed = failed - (OLD.status = 'failed'),
		version = version + 1;
END;
`}

// The statements of event_stats that each group-committed transaction runs
// before it commits, prepared on the writer with the writes: sqlAddEventStats
// adds the rows it inserted (?1 events, ?2 the latest received_at or NULL,
// ?3 pending and ?4 delivered deliveries) and returns the row;
// sqlReadEventStats, for a transaction that inserted nothing, only reads it.
const (
	eventStatsColumns = `events, last_event_at, pending, retrying, delivered, failed, version`
	sqlReadEventStats = `SELECT ` + eventStatsColumns + ` FROM event_stats`
	sqlAddEventStats  = `UPDATE event_stats SET events = events + ?1,
		last_event_at = max(coalesce(last_event_at, ?2), coalesce(?2, last_event_at)),
		pending = pending + ?3, delivered = delivered + ?4, version = version + 1
		RETURNING ` + eventStatsColumns
)

// insertedCounts adds up what the writes of a transaction inserted.
type insertedCounts struct {
	events, pending, delivered int
	lastEventAt                sql.NullInt64
}

func (c *insertedCounts) event(receivedAt int64) {
	c.events++
	if !c.lastEventAt.Valid || receivedAt > c.lastEventAt.Int64 {
		c.lastEventAt = sql.NullInt64{Int64: receivedAt, Valid: true}
	}
}

// eventCounts is the event_stats row of one event DB.
type eventCounts struct {
	events                               int
	lastEventAt                          sql.NullInt64
	pending, retrying, delivered, failed int
	version                              int64
}

func scanEventCounts(row *sql.Row) (eventCounts, error) {
	var c eventCounts
	err := row.Scan(&c.events, &c.lastEventAt, &c.pending, &c.retrying, &c.delivered, &c.failed, &c.version)
	if err != nil {
		return eventCounts{}, fmt.Errorf("read event_stats: %w", err)
	}
	return c, nil
}

// stats is c as the API shows it. A fresh map each time: callers may keep it.
func (c eventCounts) stats() EventStats {
	return EventStats{Events: c.events, LastEventAt: optionalTime(c.lastEventAt), Deliveries: map[DeliveryStatus]int{
		DeliveryPending: c.pending, DeliveryRetrying: c.retrying, DeliveryDelivered: c.delivered, DeliveryFailed: c.failed,
	}}
}

// Stats reads the figures of this file: one row, whatever the number of
// events.
func (db *WebhookDB) Stats(ctx context.Context) (EventStats, error) {
	c, err := scanEventCounts(db.file.reader.QueryRowContext(ctx, sqlReadEventStats))
	if err != nil {
		return EventStats{}, fmt.Errorf("event stats of %s: %w", db.webhookID, err)
	}
	return c.stats(), nil
}

// committedCounts is the event_stats row as the transaction being committed
// leaves it, read just before its commit; only the group-commit leader of
// the file touches it.
type committedCounts struct {
	counts eventCounts
	err    error
	read   bool
}

// countInserted adds the rows the transaction inserted to event_stats, and
// keeps the row as it leaves it for afterCommit to publish once the commit
// has succeeded. A failed update fails the transaction: the counts must not
// disagree with the rows. A transaction that inserted nothing only reads
// the row, and a failed read does not fail it: the cache then forgets the
// webhook, and the next Stats reads the file.
func (w *writeTx) countInserted() error {
	in := w.inserted
	if in == (insertedCounts{}) {
		c, err := scanEventCounts(w.stmt(sqlReadEventStats).QueryRowContext(w.ctx))
		w.db.committed = committedCounts{counts: c, err: err, read: true}
		return nil
	}
	c, err := scanEventCounts(w.stmt(sqlAddEventStats).QueryRowContext(w.ctx,
		in.events, in.lastEventAt, in.pending, in.delivered))
	if err != nil {
		return fmt.Errorf("count the rows inserted: %w", err)
	}
	w.db.committed = committedCounts{counts: c, read: true}
	return nil
}

// afterCommit runs once after each transaction that committed: it checks
// that the file is still the one written to (verifyFile), then hands the
// figures the transaction left to the manager's cache.
func (db *WebhookDB) afterCommit() error {
	c := db.committed
	db.committed = committedCounts{}
	if err := db.verifyFile(); err != nil {
		// Whatever the file now holds, it is not what was counted.
		if db.counts != nil {
			db.counts.forget(db.webhookID)
		}
		return err
	}
	switch {
	case db.counts == nil || !c.read:
	case c.err != nil:
		db.counts.forget(db.webhookID)
	default:
		db.counts.publish(db.webhookID, c.counts)
	}
	return nil
}

// eventStatsCache holds the last committed event_stats row of each webhook
// whose event DB has been open since start (webhook id -> eventCounts). A
// webhook costs a few dozen bytes here, kept after its file is closed: that
// is what lets a list of many webhooks open none.
type eventStatsCache struct {
	mu   sync.Mutex
	byID map[string]eventCounts
}

// follow makes the cache receive db's figures: now, as the file holds them,
// and after each commit. Called when db opens, before anyone can write
// through it, so the row is read through the writer, idle and open already:
// the readers' connection is opened only when something reads (the applier,
// which opens files by the thousand under spread load, never does). A row
// that cannot be read is left out: Stats then reads it through the file,
// and reports the error.
func (c *eventStatsCache) follow(ctx context.Context, db *WebhookDB) {
	db.counts = c
	n, err := scanEventCounts(db.file.writer.QueryRowContext(ctx, sqlReadEventStats))
	if err == nil {
		c.publish(db.webhookID, n)
	}
}

// publish records n for webhook id unless a later row is recorded already.
func (c *eventStatsCache) publish(id string, n eventCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = make(map[string]eventCounts)
	}
	if old, ok := c.byID[id]; ok && old.version > n.version {
		return
	}
	c.byID[id] = n
}

func (c *eventStatsCache) get(id string) (eventCounts, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.byID[id]
	return n, ok
}

// forget drops webhook id: its file was deleted or replaced.
func (c *eventStatsCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byID, id)
}

// Stats are the figures of webhook id for a list of webhooks. Once its
// event DB has been open since start (the engine's start-up scan opens every
// one that exists), they come from memory: listing many webhooks opens no
// file and evicts none of those in use. A file not open since start is
// opened once, for its one row. A webhook without a file has had no event
// and gets zeros; none is created for it.
func (m *WebhookDBManager) Stats(ctx context.Context, id string) (EventStats, error) {
	if _, err := m.EventDBPath(id); err != nil {
		return EventStats{}, err
	}
	// The figures count what the intake has acknowledged, too.
	if in := m.intake.Load(); in != nil {
		if err := in.flush(id); err != nil {
			return EventStats{}, err
		}
	}
	return m.AppliedStats(ctx, id)
}

// AppliedStats is Stats of what is in the event DB, without applying what
// the intake holds for it first: for a metrics scrape, which must stay
// cheap whatever the intake holds (intake_events counts that).
func (m *WebhookDBManager) AppliedStats(ctx context.Context, id string) (EventStats, error) {
	if _, err := m.EventDBPath(id); err != nil {
		return EventStats{}, err
	}
	if c, ok := m.stats.get(id); ok {
		return c.stats(), nil
	}
	if !m.fileExists(id) {
		return eventCounts{}.stats(), nil
	}
	var st EventStats
	err := m.withDB(ctx, id, func(db *WebhookDB) error {
		var err error
		st, err = db.Stats(ctx)
		return err
	})
	return st, err
}
