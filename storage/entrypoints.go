package storage

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// NewEntrypoint is an entrypoint to add to a webhook.
type NewEntrypoint struct {
	Key    string // "" for a generated one (GenerateEntrypointKey)
	Active *bool  // nil for true
}

// EntrypointPatch changes the fields that are not nil. A displaced
// entrypoint (see Entrypoint.Displaced) comes back into use with a key that
// is free, or with active true once its own key is free again.
type EntrypointPatch struct {
	Key    *string
	Active *bool
}

// GenerateEntrypointKey makes a key nobody chose: 128 random bits as 32
// lowercase hex characters, so that a key cannot be guessed, nor squatted
// ahead of the provider or the Caddyfile that would use it.
func GenerateEntrypointKey() (string, error) {
	var random [16]byte
	if _, err := rand.Read(random[:]); err != nil {
		return "", fmt.Errorf("generate an entrypoint key: %w", err)
	}
	return hex.EncodeToString(random[:]), nil
}

// keyFree checks that no live entrypoint other than except uses key. A
// displaced entrypoint keeps its key but does not hold it.
func keyFree(ctx context.Context, tx *sql.Tx, key, except string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM entrypoints
		WHERE key = ? AND deleted_at IS NULL AND displaced_at IS NULL AND id != ?`, key, except).Scan(&n); err != nil {
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
	err := tx.QueryRowContext(ctx, `SELECT id, webhook_id, key, active, displaced_at IS NOT NULL, created_at FROM entrypoints
		WHERE id = ? AND webhook_id = ? AND deleted_at IS NULL`, id, webhookID).
		Scan(&e.ID, &e.WebhookID, &e.Key, &e.Active, &e.Displaced, &created)
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
// the live entrypoints of every webhook. It counts against the entrypoint
// quota of the webhook's user, when db's rules have quotas.
func (db *MainDB) AddEntrypoint(ctx context.Context, webhookID string, in NewEntrypoint) (Entrypoint, error) {
	key := in.Key
	if key == "" {
		var err error
		if key, err = GenerateEntrypointKey(); err != nil {
			return Entrypoint{}, fmt.Errorf("add entrypoint: %w", err)
		}
	}
	if err := ValidateEntrypointKey(key); err != nil {
		return Entrypoint{}, invalid(err)
	}
	active := in.Active == nil || *in.Active
	rules := db.rulesOf()
	var e Entrypoint
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := writableWebhook(ctx, tx, webhookID); err != nil {
			return err
		}
		owner, err := ownerOf(ctx, tx, webhookID)
		if err != nil {
			return err
		}
		if err := checkQuota(ctx, tx, rules, owner, entrypointQuota); err != nil {
			return err
		}
		if err := keyFree(ctx, tx, key, ""); err != nil {
			return err
		}
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
		keyChanged := p.Key != nil && *p.Key != e.Key
		if keyChanged {
			e.Key = *p.Key
		}
		if p.Active != nil {
			e.Active = *p.Active
		}
		// A displaced entrypoint stays out of use until it holds a free key
		// and is active: only then does it take the key back.
		if keyChanged || (e.Displaced && e.Active) {
			if err := keyFree(ctx, tx, e.Key, e.ID); err != nil {
				if e.Displaced {
					return fmt.Errorf("%w (the entrypoint was displaced by the Caddyfile, which declares its key: give it another key)", err)
				}
				return err
			}
			e.Displaced = false
		}
		_, err = tx.ExecContext(ctx, `UPDATE entrypoints SET key = ?, active = ?, updated_at = ?,
			displaced_at = CASE WHEN ? THEN displaced_at END WHERE id = ?`, e.Key, e.Active, now, e.Displaced, e.ID)
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
