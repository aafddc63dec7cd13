package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
	RetentionDays int    // 0 keeps events forever
	Dedup         *Dedup // nil: no idempotent ingest
}

// WebhookPatch changes the fields that are not nil.
type WebhookPatch struct {
	Name, Description *string
	Active            *bool
	RetentionDays     *int
	// Dedup, when set, replaces the webhook's dedup; ClearDedup removes it.
	Dedup      *Dedup
	ClearDedup bool
}

func validateWebhookFields(name, description string, retentionDays int, dedup *Dedup, l Limits) error {
	if err := ValidateName("webhook", name); err != nil {
		return invalid(err)
	}
	if n := utf8.RuneCountInString(description); n > maxDescription {
		return invalid(fmt.Errorf("description: %d characters, at most %d", n, maxDescription))
	}
	if err := validateRetentionDays(retentionDays, l); err != nil {
		return invalid(err)
	}
	if dedup != nil {
		if err := dedup.Validate(l); err != nil {
			return invalid(err)
		}
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
// one active entrypoint whose key is generated. The caller creates its
// event DB. The webhook and its entrypoint count against the quotas of its
// user, when db's rules have quotas.
func (db *MainDB) CreateWebhook(ctx context.Context, in NewWebhook) (*Webhook, error) {
	rules := db.rulesOf()
	if err := validateWebhookFields(in.Name, in.Description, in.RetentionDays, in.Dedup, rules.Limits); err != nil {
		return nil, err
	}
	id := uuid.NewString()
	key, err := GenerateEntrypointKey()
	if err != nil {
		return nil, fmt.Errorf("create webhook %s: %w", in.Name, err)
	}
	var w *Webhook
	err = db.write(ctx, func(tx *sql.Tx, now int64) error {
		var user any // NULL for an operator's webhook
		if in.UserID != "" {
			if err := liveUser(ctx, tx, in.UserID); err != nil {
				return err
			}
			user = in.UserID
			for _, qu := range []quota{webhookQuota, entrypointQuota} {
				if err := checkQuota(ctx, tx, rules, in.UserID, qu); err != nil {
					return err
				}
			}
		}
		kind, source, window := dedupColumns(in.Dedup)
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhooks
			(id, user_id, name, description, source, active, retention_days, dedup_kind, dedup_source, dedup_window,
				created_at, updated_at)
			VALUES (?, ?, ?, ?, 'api', 1, ?, ?, ?, ?, ?, ?)`,
			id, user, in.Name, in.Description, in.RetentionDays, kind, source, window, now, now); err != nil {
			return err
		}
		if _, err := insertEntrypoint(ctx, tx, id, key, true, now); err != nil {
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
		switch {
		case p.ClearDedup:
			cur.Dedup = nil
		case p.Dedup != nil:
			cur.Dedup = p.Dedup
		}
		if err := validateWebhookFields(cur.Name, cur.Description, cur.RetentionDays, cur.Dedup, db.rulesOf().Limits); err != nil {
			return err
		}
		kind, source, window := dedupColumns(cur.Dedup)
		if _, err := tx.ExecContext(ctx, `UPDATE webhooks SET name = ?, description = ?, active = ?,
			retention_days = ?, dedup_kind = ?, dedup_source = ?, dedup_window = ?, updated_at = ? WHERE id = ?`,
			cur.Name, cur.Description, cur.Active, cur.RetentionDays, kind, source, window, now, id); err != nil {
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

// --- targets ---

// DeletedAPIWebhooks lists the ids of webhooks created through the API and
// deleted since: their event DBs have no use. (A webhook the Caddyfile no
// longer declares is soft-deleted too, but keeps its file: declared again,
// it finds its events.)
func (db *MainDB) DeletedAPIWebhooks(ctx context.Context) ([]string, error) {
	var ids []string
	err := db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id FROM webhooks WHERE source = 'api' AND deleted_at IS NOT NULL`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list deleted webhooks: %w", err)
	}
	return ids, nil
}
