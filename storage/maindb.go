package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/uuid"
)

// MainDBFile is the name of the main DB in the data directory.
const MainDBFile = "webhooker.db"

// declaredNamespace derives the ids of Caddyfile-declared configuration, so
// that a webhook keeps its id, and so its event DB, across restarts and reloads.
var declaredNamespace = uuid.MustParse("5d0c1f9e-8a3b-4e57-9b1a-7f3e2c6d4a10")

// DeclaredWebhookID is the id of the webhook declared with name.
func DeclaredWebhookID(name string) string {
	return uuid.NewSHA1(declaredNamespace, []byte("webhook/"+name)).String()
}

// DeclaredEntrypointID is the id of a declared webhook's entrypoint with key.
func DeclaredEntrypointID(webhookID, key string) string {
	return uuid.NewSHA1(declaredNamespace, []byte(webhookID+"/entrypoint/"+key)).String()
}

// DeclaredTargetID is the id of a declared webhook's target with name.
func DeclaredTargetID(webhookID, name string) string {
	return uuid.NewSHA1(declaredNamespace, []byte(webhookID+"/target/"+name)).String()
}

// MainDB is the configuration database: users, API keys, webhooks,
// entrypoints and targets.
type MainDB struct {
	file  *sqliteFile
	now   func() time.Time // the clock; tests replace it
	rules *Rules           // what writes obey; nil: the operator's (see WithRules)
	// filters are the compiled target filters of the last snapshot, which
	// the next one reuses (LoadSnapshot).
	filters *compiledFilters
	// repl is the cluster's configuration log this DB's writes go
	// through; nil outside cluster mode (see Replicate).
	repl *replication
}

// OpenMainDB opens (creating and migrating) the main DB in dataDir.
func OpenMainDB(ctx context.Context, dataDir string, sync Synchronous) (*MainDB, error) {
	file, err := openSQLiteFile(filepath.Join(dataDir, MainDBFile), sync)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, file.writer, mainMigrations); err != nil {
		_ = file.close()
		return nil, fmt.Errorf("main db %s: %w", file.path, err)
	}
	return &MainDB{file: file, now: time.Now, filters: new(compiledFilters)}, nil
}

// Close closes the main DB.
func (db *MainDB) Close() error { return db.file.close() }

// KeyClash is an API entrypoint whose key a declared entrypoint took.
type KeyClash struct {
	Key          string
	WebhookID    string // the API webhook of the displaced entrypoint
	EntrypointID string // the displaced entrypoint
	DeclaredBy   string // the name of the declared webhook that now owns Key
}

// SyncDeclared makes the Caddyfile-owned configuration in the main DB match
// declared, in one transaction: declared webhooks, entrypoints and targets are
// inserted, updated or revived; Caddyfile-owned rows no longer declared are
// soft-deleted (their event DBs are kept). Configuration created through the
// API is untouched, but for this: a declared key always wins, so that
// nobody can squat a key ahead of the Caddyfile or stop it from loading. A
// live API entrypoint with a declared key is displaced (inactive, kept for
// its owner to see, routing nothing) and returned as a KeyClash; once
// displaced it clashes no more. A key declared twice is an error.
func (db *MainDB) SyncDeclared(ctx context.Context, declared []*Webhook) ([]KeyClash, error) {
	clashes, err := db.syncDeclared(ctx, declared)
	if err != nil {
		return nil, fmt.Errorf("sync declared webhooks: %w", err)
	}
	return clashes, nil
}

func (db *MainDB) syncDeclared(ctx context.Context, declared []*Webhook) ([]KeyClash, error) {
	now := time.Now().UnixNano()
	tx, err := db.file.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()

	// Retire every Caddyfile-owned row, then revive what is still declared:
	// a key may move from one declared webhook to another in one reload.
	for _, q := range []string{
		`UPDATE entrypoints SET deleted_at = ? WHERE deleted_at IS NULL AND webhook_id IN (SELECT id FROM webhooks WHERE source = 'caddyfile')`,
		`UPDATE targets SET deleted_at = ? WHERE deleted_at IS NULL AND webhook_id IN (SELECT id FROM webhooks WHERE source = 'caddyfile')`,
		`UPDATE webhooks SET deleted_at = ? WHERE deleted_at IS NULL AND source = 'caddyfile'`,
	} {
		if _, err := tx.ExecContext(ctx, q, now); err != nil {
			return nil, err
		}
	}
	up, err := prepareDeclaredUpserts(ctx, tx)
	if err != nil {
		return nil, err
	}
	defer up.close()
	var clashes []KeyClash
	for _, w := range declared {
		c, err := up.upsert(ctx, w, now)
		if err != nil {
			return nil, fmt.Errorf("webhook %s: %w", w.Name, err)
		}
		clashes = append(clashes, c...)
	}
	// Each node's Caddyfile declares its own: not for the cluster's log.
	if err := forgetChanges(ctx, tx); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return clashes, nil
}

// declaredUpserts are the statements of SyncDeclared, prepared once per sync:
// a config may declare thousands of webhooks.
type declaredUpserts struct {
	webhook, keyOwner, displace, entrypoint, target *sql.Stmt
}

func prepareDeclaredUpserts(ctx context.Context, tx *sql.Tx) (*declaredUpserts, error) {
	var up declaredUpserts
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&up.webhook, `INSERT INTO webhooks (id, name, description, source, active, retention_days,
				dedup_kind, dedup_source, dedup_window, created_at, updated_at)
			VALUES (?, ?, ?, 'caddyfile', ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description,
				source = 'caddyfile', active = excluded.active, retention_days = excluded.retention_days,
				dedup_kind = excluded.dedup_kind, dedup_source = excluded.dedup_source, dedup_window = excluded.dedup_window,
				updated_at = excluded.updated_at, deleted_at = NULL`},
		{&up.keyOwner, `SELECT e.id, w.id, w.name, w.source FROM entrypoints e JOIN webhooks w ON w.id = e.webhook_id
			WHERE e.key = ? AND e.deleted_at IS NULL AND e.displaced_at IS NULL`},
		{&up.displace, `UPDATE entrypoints SET active = 0, displaced_at = ?, updated_at = ? WHERE id = ?`},
		{&up.entrypoint, `INSERT INTO entrypoints (id, webhook_id, key, active, options, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET active = excluded.active, options = excluded.options,
				updated_at = excluded.updated_at, deleted_at = NULL`},
		{&up.target, `INSERT INTO targets (id, webhook_id, name, type, url, options, filter, active, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET type = excluded.type, url = excluded.url, options = excluded.options,
				filter = excluded.filter, active = excluded.active, updated_at = excluded.updated_at, deleted_at = NULL`},
	} {
		stmt, err := tx.PrepareContext(ctx, p.query)
		if err != nil {
			up.close()
			return nil, err
		}
		*p.stmt = stmt
	}
	return &up, nil
}

func (up *declaredUpserts) close() {
	for _, s := range []*sql.Stmt{up.webhook, up.keyOwner, up.displace, up.entrypoint, up.target} {
		if s != nil {
			_ = s.Close() // closing a statement of a finished transaction cannot fail usefully
		}
	}
}

func (up *declaredUpserts) upsert(ctx context.Context, w *Webhook, now int64) ([]KeyClash, error) {
	// The Caddyfile is held to the operator's limits like the admin API:
	// an overflowing retention would prune acknowledged events.
	if err := validateRetentionDays(w.RetentionDays, OperatorLimits()); err != nil {
		return nil, err
	}
	if w.Dedup != nil {
		if err := w.Dedup.Validate(OperatorLimits()); err != nil {
			return nil, err
		}
	}
	kind, source, window := dedupColumns(w.Dedup)
	if _, err := up.webhook.ExecContext(ctx, w.ID, w.Name, w.Description, w.Active, w.RetentionDays,
		kind, source, window, now, now); err != nil {
		return nil, err
	}
	var clashes []KeyClash
	for _, e := range w.Entrypoints {
		// Every Caddyfile-owned entrypoint was retired at the start of the
		// sync: a live holder of the key is an API entrypoint, or one this
		// sync declared already.
		var entrypointID, webhookID, owner string
		var source Source
		err := up.keyOwner.QueryRowContext(ctx, e.Key).Scan(&entrypointID, &webhookID, &owner, &source)
		switch {
		case err == nil && source == SourceCaddyfile:
			return nil, fmt.Errorf("entrypoint key %q is already used by webhook %q", e.Key, owner)
		case err == nil:
			if _, err := up.displace.ExecContext(ctx, now, now, entrypointID); err != nil {
				return nil, fmt.Errorf("displace entrypoint %s of webhook %s: %w", entrypointID, webhookID, err)
			}
			clashes = append(clashes, KeyClash{Key: e.Key, WebhookID: webhookID, EntrypointID: entrypointID, DeclaredBy: w.Name})
		case !errors.Is(err, sql.ErrNoRows):
			return nil, err
		}
		options, err := json.Marshal(e.Options)
		if err != nil {
			return nil, fmt.Errorf("entrypoint %s: %w", e.Key, err)
		}
		if _, err := up.entrypoint.ExecContext(ctx, e.ID, w.ID, e.Key, e.Active, string(options), now, now); err != nil {
			return nil, fmt.Errorf("entrypoint %s: %w", e.Key, err)
		}
	}
	for _, t := range w.Targets {
		options, err := json.Marshal(t.Options)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		if _, err := up.target.ExecContext(ctx, t.ID, w.ID, t.Name, t.Type, t.URL, string(options), t.Filter, t.Active, now, now); err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
	}
	return clashes, nil
}

// LoadSnapshot reads the live (not deleted) configuration.
func (db *MainDB) LoadSnapshot(ctx context.Context) (*Snapshot, error) {
	tx, err := db.file.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("load configuration: %w", err)
	}
	defer tx.Rollback()
	webhooks, err := loadWebhooks(ctx, tx, "")
	if err != nil {
		return nil, err
	}
	return newSnapshot(webhooks, db.filters), nil
}

// loadWebhooks reads the live webhooks matching where (a condition on the
// webhooks table aliased w, "" for all), sorted by name and id, each with its
// live entrypoints and targets (empty slices, never nil). Three queries,
// whatever the number of webhooks.
func loadWebhooks(ctx context.Context, tx *sql.Tx, where string, args ...any) ([]*Webhook, error) {
	cond := "w.deleted_at IS NULL"
	if where != "" {
		cond += " AND (" + where + ")"
	}
	byID := make(map[string]*Webhook)
	webhooks := []*Webhook{}
	rows, err := tx.QueryContext(ctx, `SELECT w.id, coalesce(w.user_id, ''), w.name, w.description, w.source,
		w.active, w.retention_days, w.dedup_kind, w.dedup_source, w.dedup_window, w.created_at
		FROM webhooks w WHERE `+cond+` ORDER BY w.name, w.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("load webhooks: %w", err)
	}
	for rows.Next() {
		var (
			created, dedupWindow   int64
			dedupKind, dedupSource string
		)
		w := &Webhook{Entrypoints: []Entrypoint{}, Targets: []Target{}}
		if err := rows.Scan(&w.ID, &w.UserID, &w.Name, &w.Description, &w.Source, &w.Active,
			&w.RetentionDays, &dedupKind, &dedupSource, &dedupWindow, &created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load webhooks: %w", err)
		}
		w.Dedup = dedupOf(dedupKind, dedupSource, dedupWindow)
		w.CreatedAt = timeOf(created)
		byID[w.ID] = w
		webhooks = append(webhooks, w)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load webhooks: %w", err)
	}
	if len(webhooks) == 0 {
		return webhooks, nil
	}

	rows, err = tx.QueryContext(ctx, `SELECT e.id, e.webhook_id, e.key, e.active, e.displaced_at IS NOT NULL, e.options, e.created_at
		FROM entrypoints e JOIN webhooks w ON w.id = e.webhook_id
		WHERE e.deleted_at IS NULL AND `+cond+` ORDER BY e.created_at, e.key`, args...)
	if err != nil {
		return nil, fmt.Errorf("load entrypoints: %w", err)
	}
	for rows.Next() {
		var (
			e       Entrypoint
			created int64
		)
		if err := rows.Scan(&e.ID, &e.WebhookID, &e.Key, &e.Active, &e.Displaced, &e.optionsKey, &created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load entrypoints: %w", err)
		}
		if err := json.Unmarshal([]byte(e.optionsKey), &e.Options); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load entrypoint %s: options: %w", e.ID, err)
		}
		if e.Options.IsZero() {
			e.optionsKey = ""
		}
		e.CreatedAt = timeOf(created)
		if w := byID[e.WebhookID]; w != nil {
			w.Entrypoints = append(w.Entrypoints, e)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load entrypoints: %w", err)
	}

	rows, err = tx.QueryContext(ctx, `SELECT `+targetColumns+`
		FROM targets t JOIN webhooks w ON w.id = t.webhook_id
		WHERE t.deleted_at IS NULL AND `+cond+` ORDER BY t.created_at, t.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("load targets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, fmt.Errorf("load targets: %w", err)
		}
		if w := byID[t.WebhookID]; w != nil {
			w.Targets = append(w.Targets, t)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load targets: %w", err)
	}
	return webhooks, nil
}

// targetColumns are the columns scanTarget reads, of the targets table aliased t.
const targetColumns = `t.id, t.webhook_id, t.name, t.type, t.url, t.options, t.filter, t.active, t.paused, t.created_at`

func scanTarget(row interface{ Scan(...any) error }) (Target, error) {
	var (
		t       Target
		options string
		created int64
	)
	if err := row.Scan(&t.ID, &t.WebhookID, &t.Name, &t.Type, &t.URL, &options, &t.Filter, &t.Active, &t.Paused, &created); err != nil {
		return Target{}, err
	}
	if err := json.Unmarshal([]byte(options), &t.Options); err != nil {
		return Target{}, fmt.Errorf("target %s: options: %w", t.ID, err)
	}
	t.CreatedAt = timeOf(created)
	return t, nil
}

func sortWebhooks(ws []*Webhook) {
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].Name != ws[j].Name {
			return ws[i].Name < ws[j].Name
		}
		return ws[i].ID < ws[j].ID
	})
}
