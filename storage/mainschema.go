package storage

// mainMigrations is the schema of the main DB (webhooker.db): configuration
// only, never events. Config rows are soft-deleted (deleted_at), so that ids
// are never reused and the event log can still name a deleted target.
var mainMigrations = []migration{
	{name: "users, api_keys, webhooks, entrypoints, targets", sql: `
CREATE TABLE users (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	deleted_at INTEGER
);

CREATE TABLE api_keys (
	id           TEXT PRIMARY KEY,
	user_id      TEXT NOT NULL REFERENCES users (id),
	name         TEXT NOT NULL DEFAULT '',
	prefix       TEXT NOT NULL,        -- the first characters, to recognise a key
	hash         BLOB NOT NULL UNIQUE, -- SHA-256 of the key; the key itself is never stored
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER,
	revoked_at   INTEGER
);

CREATE TABLE webhooks (
	id          TEXT PRIMARY KEY,
	user_id     TEXT REFERENCES users (id),
	name        TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	source      TEXT NOT NULL CHECK (source IN ('caddyfile', 'api')),
	active      INTEGER NOT NULL DEFAULT 1,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	deleted_at  INTEGER
);

CREATE TABLE entrypoints (
	id         TEXT PRIMARY KEY,
	webhook_id TEXT NOT NULL REFERENCES webhooks (id),
	key        TEXT NOT NULL,
	active     INTEGER NOT NULL DEFAULT 1,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	deleted_at INTEGER
);
CREATE UNIQUE INDEX entrypoints_live_key ON entrypoints (key) WHERE deleted_at IS NULL;
CREATE INDEX entrypoints_webhook ON entrypoints (webhook_id);

CREATE TABLE targets (
	id         TEXT PRIMARY KEY,
	webhook_id TEXT NOT NULL REFERENCES webhooks (id),
	name       TEXT NOT NULL,
	type       TEXT NOT NULL CHECK (type IN ('http', 'database', 'log')),
	url        TEXT NOT NULL DEFAULT '',
	options    TEXT NOT NULL DEFAULT '{}', -- JSON: TargetOptions
	active     INTEGER NOT NULL DEFAULT 1,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	deleted_at INTEGER
);
CREATE UNIQUE INDEX targets_live_name ON targets (webhook_id, name) WHERE deleted_at IS NULL;
CREATE INDEX targets_webhook ON targets (webhook_id);
`},
	{name: "webhooks.retention_days", sql: `
-- How many days a webhook keeps its events; 0 keeps them forever.
ALTER TABLE webhooks ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 0;
`},
	{name: "entrypoints.displaced_at", sql: `
-- When a key declared in the Caddyfile displaced this API entrypoint: it is
-- kept, inactive, for its owner to see, but no longer holds its key.
ALTER TABLE entrypoints ADD COLUMN displaced_at INTEGER;
DROP INDEX entrypoints_live_key;
CREATE UNIQUE INDEX entrypoints_live_key ON entrypoints (key) WHERE deleted_at IS NULL AND displaced_at IS NULL;
`},
	{name: "entrypoints.options", sql: `
-- JSON: EntrypointOptions, an entrypoint's verification and handshake.
ALTER TABLE entrypoints ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
`},
	{name: "targets.paused", sql: `
-- A paused target's deliveries wait (pending or retrying) and are not
-- attempted: runtime state, set through the API, kept across reloads.
ALTER TABLE targets ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
`},
	{name: "targets.filter", sql: `
-- A CEL expression over an event (filter package): a target whose filter
-- does not match an event gets no delivery of it. '' for none: every event.
ALTER TABLE targets ADD COLUMN filter TEXT NOT NULL DEFAULT '';
`},
	{name: "webhooks.dedup", sql: `
-- Idempotent ingest (dedup.go): where the sender's id of a delivery is
-- ('header' or 'expression', '' for no dedup), the header's name or the
-- key expression, and how long an id is remembered (ns, 0 for the default).
ALTER TABLE webhooks ADD COLUMN dedup_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE webhooks ADD COLUMN dedup_source TEXT NOT NULL DEFAULT '';
ALTER TABLE webhooks ADD COLUMN dedup_window INTEGER NOT NULL DEFAULT 0;
`},
	{name: "config_changes, config_log", sql: `
-- Cluster mode (configlog.go): the rows a write changed, collected by these
-- triggers and published to the cluster's configuration log in the write's
-- transaction (every other write empties the table), and how far this node
-- has applied that log. An API key's last use is this node's own. (No
-- INSERT OR IGNORE in the triggers: an upsert's conflict clause overrides
-- a trigger's.)
CREATE TABLE config_changes (
	tbl TEXT NOT NULL,
	id  TEXT NOT NULL,
	PRIMARY KEY (tbl, id)
) WITHOUT ROWID;
CREATE TABLE config_log (
	one         INTEGER PRIMARY KEY CHECK (one = 1),
	applied_seq INTEGER NOT NULL, -- the last change of the log in this DB
	seeded      INTEGER NOT NULL  -- config_seed lists the API rows made before cluster mode
);
INSERT INTO config_log VALUES (1, 0, 0);
-- The API rows made before this node ran in a cluster, still to publish.
CREATE TABLE config_seed (
	tbl TEXT NOT NULL,
	id  TEXT NOT NULL,
	PRIMARY KEY (tbl, id)
) WITHOUT ROWID;
CREATE TRIGGER users_inserted AFTER INSERT ON users BEGIN INSERT INTO config_changes SELECT 'users', NEW.id WHERE NOT EXISTS (SELECT 1 FROM config_changes WHERE tbl = 'users' AND id = NEW.id); END;
CREATE TRIGGER users_updated AFTER UPDATE ON users BEGIN INSERT INTO config_changes SELECT 'users', NEW.id WHERE NOT EXISTS (SELECT 1 FROM config_changes WHERE tbl = 'users' AND id = NEW.id); END;
CREATE TRIGGER api_keys_inserted AFTER INSERT ON api_keys BEGIN INSERT INTO config_changes SELECT 'api_keys', NEW.id WHERE NOT EXISTS (SELECT 1 FROM config_changes WHERE tbl = 'api_keys' AND id = NEW.id); END;
CREATE TRIGGER api_keys_updated AFTER UPDATE OF user_id, name, prefix, hash, created_at, revoked_at ON api_keys
	BEGIN INSERT INTO config_changes SELECT 'api_keys', NEW.id WHERE NOT EXISTS (SELECT 1 FROM config_changes WHERE tbl = 'api_keys' AND id = NEW.id); END;
CREATE TRIGGER webhooks_inserted AFTER INSERT ON webhooks BEGIN INSERT INTO config_changes SELECT 'webhooks', NEW.id WHERE NOT EXISTS (SELECT 1 FROM config_changes WHERE tbl = 'webhooks' AND id = NEW.id); END;
CREATE TRIGGER webhooks_updated AFTER UPDATE ON webhooks BEGIN INSERT INTO config_changes SELECT 'webhooks', NEW.id WHERE NOT EXISTS (SELECT 1 FROM config_changes WHERE tbl = 'webhooks' AND id = NEW.id); END;
CREATE TRIGGER entrypoints_inserted AFTER INSERT ON entrypoints BEGIN INSERT INTO config_changes SELECT 'entrypoints', NEW.id WHERE NOT EXISTS (SELECT 1 FROM config_changes WHERE tbl = 'entrypoints' AND id = NEW.id); END;
CREATE TRIGGER entrypoints_updated AFTER UPDATE ON entrypoints BEGIN INSERT INTO config_changes SELECT 'entrypoints', NEW.id WHERE NOT EXISTS (SELECT 1 FROM config_changes WHERE tbl = 'entrypoints' AND id = NEW.id); END;
CREATE TRIGGER targets_inserted AFTER INSERT ON targets BEGIN INSERT INTO config_changes SELECT 'targets', NEW.id WHERE NOT EXISTS (SELECT 1 FROM config_changes WHERE tbl = 'targets' AND id = NEW.id); END;
CREATE TRIGGER targets_updated AFTER UPDATE ON targets BEGIN INSERT INTO config_changes SELECT 'targets', NEW.id WHERE NOT EXISTS (SELECT 1 FROM config_changes WHERE tbl = 'targets' AND id = NEW.id); END;
`},
}
