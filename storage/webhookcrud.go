package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Webhooks, entrypoints and targets created and changed through the API.
// Every write is one immediate transaction on the writer connection; every
// change to a webhook or one of its children is refused with ErrReadOnly when
// the Caddyfile declares the webhook. A child named with a webhook must belong
// to it, or it is ErrNotFound.

// maxDescription bounds a webhook's description, in characters.
const maxDescription = 2000

// NewWebhook is a webhook to create through the API.
type NewWebhook struct {
	UserID        string // "" for a webhook owned by no user (created by an operator)
	Name          string
	Description   string
	RetentionDays int // 0 keeps events forever
}

// WebhookPatch changes the fields that are not nil.
type WebhookPatch struct {
	Name, Description *string
	Active            *bool
	RetentionDays     *int
}

// NewEntrypoint is an entrypoint to add to a webhook.
type NewEntrypoint struct {
	Key    string // "" for a fresh UUID
	Active *bool  // nil for true
}

// EntrypointPatch changes the fields that are not nil.
type EntrypointPatch struct {
	Key    *string
	Active *bool
}

// TargetPatch changes the fields that are not nil. Options replaces the
// options as a whole.
type TargetPatch struct {
	Name    *string
	Type    *TargetType
	URL     *string
	Options *TargetOptions
	Active  *bool
}

// timeOf reads a time stored as Unix nanoseconds.
func timeOf(unixNano int64) time.Time { return time.Unix(0, unixNano) }

// write runs fn in one immediate transaction on the writer and commits it.
func (db *MainDB) write(ctx context.Context, fn func(tx *sql.Tx, now int64) error) error {
	tx, err := db.file.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx, db.now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

// read runs fn in one read-only transaction on the reader pool, so that its
// queries see one state of the database.
func (db *MainDB) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.file.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

func validateWebhookFields(name, description string, retentionDays int) error {
	if err := ValidateName("webhook", name); err != nil {
		return invalid(err)
	}
	if n := utf8.RuneCountInString(description); n > maxDescription {
		return invalid(fmt.Errorf("description: %d characters, at most %d", n, maxDescription))
	}
	if retentionDays < 0 {
		return invalid(fmt.Errorf("retention_days must be 0 (keep forever) or more, not %d", retentionDays))
	}
	return nil
}

// writableWebhook checks, inside a write, that webhook id is live and not
// owned by the Caddyfile.
func writableWebhook(ctx context.Context, tx *sql.Tx, id string) error {
	var name string
	var source Source
	err := tx.QueryRowContext(ctx, `SELECT name, source FROM webhooks WHERE id = ? AND deleted_at IS NULL`, id).
		Scan(&name, &source)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("webhook %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if source == SourceCaddyfile {
		return readOnlyError{name: name}
	}
	return nil
}

func webhookIn(ctx context.Context, tx *sql.Tx, id string) (*Webhook, error) {
	ws, err := loadWebhooks(ctx, tx, "w.id = ?", id)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("webhook %s: %w", id, ErrNotFound)
	}
	return ws[0], nil
}

// CreateWebhook creates a webhook owned by the API (source api), active, with
// one active entrypoint whose key is a fresh UUID. The caller creates its
// event DB.
func (db *MainDB) CreateWebhook(ctx context.Context, in NewWebhook) (*Webhook, error) {
	if err := validateWebhookFields(in.Name, in.Description, in.RetentionDays); err != nil {
		return nil, err
	}
	id := uuid.NewString()
	var w *Webhook
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		var user any // NULL for an operator's webhook
		if in.UserID != "" {
			if err := liveUser(ctx, tx, in.UserID); err != nil {
				return err
			}
			user = in.UserID
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhooks
			(id, user_id, name, description, source, active, retention_days, created_at, updated_at)
			VALUES (?, ?, ?, ?, 'api', 1, ?, ?, ?)`,
			id, user, in.Name, in.Description, in.RetentionDays, now, now); err != nil {
			return err
		}
		if _, err := insertEntrypoint(ctx, tx, id, uuid.NewString(), true, now); err != nil {
			return err
		}
		var err error
		w, err = webhookIn(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create webhook %s: %w", in.Name, err)
	}
	return w, nil
}

// Webhook reads one live webhook with its live entrypoints and targets.
func (db *MainDB) Webhook(ctx context.Context, id string) (*Webhook, error) {
	var w *Webhook
	err := db.read(ctx, func(tx *sql.Tx) error {
		var err error
		w, err = webhookIn(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read webhook: %w", err)
	}
	return w, nil
}

// Webhooks lists the live webhooks of user userID ("" for all of them),
// sorted by name and id, with their live entrypoints and targets.
func (db *MainDB) Webhooks(ctx context.Context, userID string) ([]*Webhook, error) {
	var ws []*Webhook
	err := db.read(ctx, func(tx *sql.Tx) error {
		var err error
		if userID == "" {
			ws, err = loadWebhooks(ctx, tx, "")
		} else {
			ws, err = loadWebhooks(ctx, tx, "w.user_id = ?", userID)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	return ws, nil
}

// UpdateWebhook changes the fields p sets and returns the webhook as it is now.
func (db *MainDB) UpdateWebhook(ctx context.Context, id string, p WebhookPatch) (*Webhook, error) {
	var w *Webhook
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := writableWebhook(ctx, tx, id); err != nil {
			return err
		}
		cur, err := webhookIn(ctx, tx, id)
		if err != nil {
			return err
		}
		if p.Name != nil {
			cur.Name = *p.Name
		}
		if p.Description != nil {
			cur.Description = *p.Description
		}
		if p.Active != nil {
			cur.Active = *p.Active
		}
		if p.RetentionDays != nil {
			cur.RetentionDays = *p.RetentionDays
		}
		if err := validateWebhookFields(cur.Name, cur.Description, cur.RetentionDays); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhooks SET name = ?, description = ?, active = ?,
			retention_days = ?, updated_at = ? WHERE id = ?`,
			cur.Name, cur.Description, cur.Active, cur.RetentionDays, now, id); err != nil {
			return err
		}
		w, err = webhookIn(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("update webhook: %w", err)
	}
	return w, nil
}

// DeleteWebhook soft-deletes a webhook with its entrypoints and targets: its
// keys route nowhere from the next snapshot on, and may be used again. The
// caller deletes its event DB.
func (db *MainDB) DeleteWebhook(ctx context.Context, id string) error {
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := writableWebhook(ctx, tx, id); err != nil {
			return err
		}
		for _, q := range []string{
			`UPDATE entrypoints SET deleted_at = ? WHERE webhook_id = ? AND deleted_at IS NULL`,
			`UPDATE targets SET deleted_at = ? WHERE webhook_id = ? AND deleted_at IS NULL`,
			`UPDATE webhooks SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL`,
		} {
			if _, err := tx.ExecContext(ctx, q, now, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	return nil
}

// --- entrypoints ---

// keyFree checks that no live entrypoint other than except uses key.
func keyFree(ctx context.Context, tx *sql.Tx, key, except string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM entrypoints
		WHERE key = ? AND deleted_at IS NULL AND id != ?`, key, except).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w: entrypoint key %q is already in use", ErrConflict, key)
	}
	return nil
}

func insertEntrypoint(ctx context.Context, tx *sql.Tx, webhookID, key string, active bool, now int64) (Entrypoint, error) {
	e := Entrypoint{ID: uuid.NewString(), WebhookID: webhookID, Key: key, Active: active, CreatedAt: timeOf(now)}
	_, err := tx.ExecContext(ctx, `INSERT INTO entrypoints (id, webhook_id, key, active, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?)`, e.ID, webhookID, key, active, now, now)
	return e, err
}

func entrypointIn(ctx context.Context, tx *sql.Tx, webhookID, id string) (Entrypoint, error) {
	var (
		e       Entrypoint
		created int64
	)
	err := tx.QueryRowContext(ctx, `SELECT id, webhook_id, key, active, created_at FROM entrypoints
		WHERE id = ? AND webhook_id = ? AND deleted_at IS NULL`, id, webhookID).
		Scan(&e.ID, &e.WebhookID, &e.Key, &e.Active, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Entrypoint{}, fmt.Errorf("entrypoint %s of webhook %s: %w", id, webhookID, ErrNotFound)
	}
	if err != nil {
		return Entrypoint{}, err
	}
	e.CreatedAt = timeOf(created)
	return e, nil
}

// AddEntrypoint adds an entrypoint to a webhook. Its key must be free among
// the live entrypoints of every webhook.
func (db *MainDB) AddEntrypoint(ctx context.Context, webhookID string, in NewEntrypoint) (Entrypoint, error) {
	key := in.Key
	if key == "" {
		key = uuid.NewString()
	}
	if err := ValidateEntrypointKey(key); err != nil {
		return Entrypoint{}, invalid(err)
	}
	active := in.Active == nil || *in.Active
	var e Entrypoint
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := writableWebhook(ctx, tx, webhookID); err != nil {
			return err
		}
		if err := keyFree(ctx, tx, key, ""); err != nil {
			return err
		}
		var err error
		e, err = insertEntrypoint(ctx, tx, webhookID, key, active, now)
		return err
	})
	if err != nil {
		return Entrypoint{}, fmt.Errorf("add entrypoint: %w", err)
	}
	return e, nil
}

// UpdateEntrypoint changes the key or the state of an entrypoint of webhookID.
func (db *MainDB) UpdateEntrypoint(ctx context.Context, webhookID, entrypointID string, p EntrypointPatch) (Entrypoint, error) {
	if p.Key != nil {
		if err := ValidateEntrypointKey(*p.Key); err != nil {
			return Entrypoint{}, invalid(err)
		}
	}
	var e Entrypoint
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := writableWebhook(ctx, tx, webhookID); err != nil {
			return err
		}
		var err error
		if e, err = entrypointIn(ctx, tx, webhookID, entrypointID); err != nil {
			return err
		}
		if p.Key != nil && *p.Key != e.Key {
			if err := keyFree(ctx, tx, *p.Key, e.ID); err != nil {
				return err
			}
			e.Key = *p.Key
		}
		if p.Active != nil {
			e.Active = *p.Active
		}
		_, err = tx.ExecContext(ctx, `UPDATE entrypoints SET key = ?, active = ?, updated_at = ? WHERE id = ?`,
			e.Key, e.Active, now, e.ID)
		return err
	})
	if err != nil {
		return Entrypoint{}, fmt.Errorf("update entrypoint: %w", err)
	}
	return e, nil
}

// DeleteEntrypoint soft-deletes an entrypoint of webhookID; its key is free again.
func (db *MainDB) DeleteEntrypoint(ctx context.Context, webhookID, entrypointID string) error {
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := writableWebhook(ctx, tx, webhookID); err != nil {
			return err
		}
		if _, err := entrypointIn(ctx, tx, webhookID, entrypointID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE entrypoints SET deleted_at = ? WHERE id = ?`, now, entrypointID)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete entrypoint: %w", err)
	}
	return nil
}

// --- targets ---

// targetNameFree checks that no live target of webhookID other than except is named name.
func targetNameFree(ctx context.Context, tx *sql.Tx, webhookID, name, except string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM targets
		WHERE webhook_id = ? AND name = ? AND deleted_at IS NULL AND id != ?`, webhookID, name, except).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w: the webhook already has a target named %q", ErrConflict, name)
	}
	return nil
}

func targetIn(ctx context.Context, tx *sql.Tx, webhookID, id string) (Target, error) {
	t, err := scanTarget(tx.QueryRowContext(ctx, `SELECT `+targetColumns+` FROM targets t
		WHERE t.id = ? AND t.webhook_id = ? AND t.deleted_at IS NULL`, id, webhookID))
	if errors.Is(err, sql.ErrNoRows) {
		return Target{}, fmt.Errorf("target %s of webhook %s: %w", id, webhookID, ErrNotFound)
	}
	return t, err
}

// AddTarget adds a target to a webhook. t.ID and t.WebhookID are ignored (a
// new UUID is assigned); t.Active is stored as given.
func (db *MainDB) AddTarget(ctx context.Context, webhookID string, t Target) (Target, error) {
	if err := t.Validate(); err != nil {
		return Target{}, invalid(err)
	}
	options, err := json.Marshal(t.Options)
	if err != nil {
		return Target{}, invalid(fmt.Errorf("target %s: options: %v", t.Name, err))
	}
	t.ID, t.WebhookID = uuid.NewString(), webhookID
	err = db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := writableWebhook(ctx, tx, webhookID); err != nil {
			return err
		}
		if err := targetNameFree(ctx, tx, webhookID, t.Name, ""); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO targets
			(id, webhook_id, name, type, url, options, active, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, webhookID, t.Name, t.Type, t.URL, string(options), t.Active, now, now); err != nil {
			return err
		}
		t.CreatedAt = timeOf(now)
		return nil
	})
	if err != nil {
		return Target{}, fmt.Errorf("add target: %w", err)
	}
	return t, nil
}

// UpdateTarget changes the fields p sets on a target of webhookID; the target
// as changed must validate as a whole (a type change may need the URL too).
func (db *MainDB) UpdateTarget(ctx context.Context, webhookID, targetID string, p TargetPatch) (Target, error) {
	var t Target
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := writableWebhook(ctx, tx, webhookID); err != nil {
			return err
		}
		var err error
		if t, err = targetIn(ctx, tx, webhookID, targetID); err != nil {
			return err
		}
		if p.Name != nil {
			t.Name = *p.Name
		}
		if p.Type != nil {
			t.Type = *p.Type
		}
		if p.URL != nil {
			t.URL = *p.URL
		}
		if p.Options != nil {
			t.Options = *p.Options
		}
		if p.Active != nil {
			t.Active = *p.Active
		}
		if err := t.Validate(); err != nil {
			return invalid(err)
		}
		options, err := json.Marshal(t.Options)
		if err != nil {
			return invalid(fmt.Errorf("target %s: options: %v", t.Name, err))
		}
		if err := targetNameFree(ctx, tx, webhookID, t.Name, t.ID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE targets SET name = ?, type = ?, url = ?, options = ?, active = ?,
			updated_at = ? WHERE id = ?`, t.Name, t.Type, t.URL, string(options), t.Active, now, t.ID)
		return err
	})
	if err != nil {
		return Target{}, fmt.Errorf("update target: %w", err)
	}
	return t, nil
}

// DeleteTarget soft-deletes a target of webhookID. Its deliveries already
// stored keep naming it (see TargetsOf).
func (db *MainDB) DeleteTarget(ctx context.Context, webhookID, targetID string) error {
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := writableWebhook(ctx, tx, webhookID); err != nil {
			return err
		}
		if _, err := targetIn(ctx, tx, webhookID, targetID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE targets SET deleted_at = ? WHERE id = ?`, now, targetID)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete target: %w", err)
	}
	return nil
}

// TargetsOf maps the ids of every target webhookID ever had, soft-deleted
// ones included, to the target, so that the event log can name the target
// of an old delivery. A webhook with no targets, or none at all, gives an
// empty map.
func (db *MainDB) TargetsOf(ctx context.Context, webhookID string) (map[string]Target, error) {
	rows, err := db.file.reader.QueryContext(ctx, `SELECT `+targetColumns+` FROM targets t WHERE t.webhook_id = ?`, webhookID)
	if err != nil {
		return nil, fmt.Errorf("list targets of webhook %s: %w", webhookID, err)
	}
	defer rows.Close()
	out := make(map[string]Target)
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, fmt.Errorf("list targets of webhook %s: %w", webhookID, err)
		}
		out[t.ID] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list targets of webhook %s: %w", webhookID, err)
	}
	return out, nil
}
