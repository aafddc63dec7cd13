package storage

// eventMigrations is the schema of an event DB (events-<webhook uuid>.db).
// Times are Unix nanoseconds (UTC) so that they sort and compare as integers;
// in the sqlite3 shell, datetime(received_at / 1e9, 'unixepoch') reads them.
var eventMigrations = []migration{
	{name: "events, deliveries, delivery_results", sql: `
CREATE TABLE events (
	id             TEXT PRIMARY KEY,  -- UUIDv7: sorts by time of receipt
	entrypoint_id  TEXT NOT NULL,
	entrypoint_key TEXT NOT NULL,
	method         TEXT NOT NULL,
	path           TEXT NOT NULL,
	query          TEXT NOT NULL DEFAULT '',
	headers        TEXT NOT NULL,     -- JSON object: canonical name -> [values]
	body           BLOB NOT NULL,
	body_size      INTEGER NOT NULL,
	content_type   TEXT NOT NULL DEFAULT '',
	remote_addr    TEXT NOT NULL DEFAULT '',
	received_at    INTEGER NOT NULL
);
CREATE INDEX events_received_at ON events (received_at);

CREATE TABLE deliveries (
	id              TEXT PRIMARY KEY,
	event_id        TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
	target_id       TEXT NOT NULL,
	status          TEXT NOT NULL CHECK (status IN ('pending', 'retrying', 'delivered', 'failed')),
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER,          -- set while retrying: survives a restart
	last_error      TEXT NOT NULL DEFAULT '',
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_event ON deliveries (event_id);
-- The recovery scan reads only deliveries still to do.
CREATE INDEX deliveries_open ON deliveries (status, next_attempt_at)
	WHERE status IN ('pending', 'retrying');

CREATE TABLE delivery_results (
	id            INTEGER PRIMARY KEY,
	delivery_id   TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
	attempt       INTEGER NOT NULL,
	started_at    INTEGER NOT NULL,
	duration_ns   INTEGER NOT NULL,
	status_code   INTEGER NOT NULL DEFAULT 0,
	error         TEXT NOT NULL DEFAULT '',
	response_body BLOB                -- the first 4 KiB
);
CREATE INDEX delivery_results_delivery ON delivery_results (delivery_id, attempt);
`},
	// Set (Unix ns) just before an http attempt goes out and cleared by the
	// write that records it: a delivery found marked at start was in flight
	// when the process died (a target that kills the gateway, say), and is
	// counted as an attempt, so that max_retries ends a crash loop. No index:
	// marks are few, and recovery finds them through deliveries_open.
	{name: "deliveries.attempt_started_at", sql: `
ALTER TABLE deliveries ADD COLUMN attempt_started_at INTEGER;
`},
	eventStatsMigration, // a webhook's figures for the list of webhooks (eventstats.go)
	// The verify scheme the event passed at its entrypoint; '' when the
	// entrypoint verifies nothing (and for the events from before).
	{name: "events.verified", sql: `
ALTER TABLE events ADD COLUMN verified TEXT NOT NULL DEFAULT '';
`},
	keptDeliveriesMigration,
	orderedMigration, // the line of an ordered target (ordered.go)
}

// keptDeliveriesMigration stops storing the one attempt of a delivery to a
// database target as a row: such a delivery is delivered at ingest by
// definition (kept = 1 says it), and its attempt row was a third of the
// rows and B-tree entries every ingest wrote. The attempts recorded
// (delivery_attempts) keep their rows; delivery_results, what the readers
// and the sqlite3 shell query, becomes a view of them and of one attempt
// per kept delivery, as it was stored before (attempt 1, started at the
// delivery's creation, no duration, status or error), so that what the API
// and the UI show does not change. Deliveries kept before this migration
// have kept = 0 and their attempt row: each is listed once either way.
var keptDeliveriesMigration = migration{name: "deliveries.kept, delivery_results as a view", sql: `
ALTER TABLE delivery_results RENAME TO delivery_attempts;
ALTER TABLE deliveries ADD COLUMN kept INTEGER NOT NULL DEFAULT 0;
CREATE VIEW delivery_results (id, delivery_id, attempt, started_at, duration_ns, status_code, error, response_body) AS
	SELECT id, delivery_id, attempt, started_at, duration_ns, status_code, error, response_body FROM delivery_attempts
	UNION ALL
	SELECT NULL, id, 1, created_at, 0, 0, '', NULL FROM deliveries WHERE kept = 1;
-- Writes through the old name still land in the table, with its defaults.
CREATE TRIGGER delivery_results_insert INSTEAD OF INSERT ON delivery_results BEGIN
	INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ns, status_code, error, response_body)
	VALUES (NEW.delivery_id, NEW.attempt, NEW.started_at, NEW.duration_ns,
		coalesce(NEW.status_code, 0), coalesce(NEW.error, ''), NEW.response_body);
END;
`}
