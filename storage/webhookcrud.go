package storage

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

// TargetPatch changes the fields that are not nil. Options replaces the
// options as a whole, except the headers, whose values the API never shows:
// Options.Headers nil keeps the stored headers, and a header whose value is
// RedactedValue keeps its stored value; an empty, non-nil map clears them.
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

func validateWebhookFields(name, description string, retentionDays int, l Limits) error {
	if err := ValidateName("webhook", name); err != nil {
		return invalid(err)
	}
	if n := utf8.RuneCountInString(description); n > maxDescription {
		return invalid(fmt.Errorf("description: %d characters, at most %d", n, maxDescription))
	}
	if err := validateRetentionDays(retentionDays, l); err != nil {
		return invalid(err)
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
	if err := validateWebhookFields(in.Name, in.Description, in.RetentionDays, rules.Limits); err != nil {
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
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhooks
			(id, user_id, name, description, source, active, retention_days, created_at, updated_at)
			VALUES (?, ?, ?, ?, 'api', 1, ?, ?, ?)`,
			id, user, in.Name, in.Description, in.RetentionDays, now, now); err != nil {
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
		if err := validateWebhookFields(cur.Name, cur.Description, cur.RetentionDays, db.rulesOf().Limits); err != nil {
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
// new UUID is assigned); t.Active is stored as given. Its options must be
// within the limits of db's rules, and it counts against the target quota
// of the webhook's user, when they have quotas.
func (db *MainDB) AddTarget(ctx context.Context, webhookID string, t Target) (Target, error) {
	rules := db.rulesOf()
	if err := t.ValidateWithin(rules.Limits); err != nil {
		return Target{}, invalid(err)
	}
	for name, value := range t.Options.Headers {
		if value == RedactedValue {
			return Target{}, invalid(fmt.Errorf("target %s: header %s: %q stands for a stored value, and this target has none: send the value", t.Name, name, RedactedValue))
		}
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
		owner, err := ownerOf(ctx, tx, webhookID)
		if err != nil {
			return err
		}
		if err := checkQuota(ctx, tx, rules, owner, targetQuota); err != nil {
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
// Options p sets must be within the limits of db's rules; options it leaves
// as they are were accepted before, maybe from the operator, and are held to
// the operator's limits only, so that a tenant can still disable a target
// the operator gave a long timeout.
func (db *MainDB) UpdateTarget(ctx context.Context, webhookID, targetID string, p TargetPatch) (Target, error) {
	limits := OperatorLimits()
	if p.Options != nil {
		limits = db.rulesOf().Limits
	}
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
			options, err := keepStoredHeaders(*p.Options, t.Options.Headers)
			if err != nil {
				return invalid(fmt.Errorf("target %s: %w", t.Name, err))
			}
			t.Options = options
		}
		if p.Active != nil {
			t.Active = *p.Active
		}
		if err := t.ValidateWithin(limits); err != nil {
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

// keepStoredHeaders gives the headers of options, sent by a client that
// cannot read header values, their stored values where it asks to: no
// headers at all keeps every stored one, a value of RedactedValue keeps
// that header's (matched by its canonical name).
func keepStoredHeaders(options TargetOptions, stored map[string]string) (TargetOptions, error) {
	if options.Headers == nil {
		options.Headers = stored
		return options, nil
	}
	byName := make(map[string]string, len(stored))
	for name, value := range stored {
		byName[http.CanonicalHeaderKey(name)] = value
	}
	headers := make(map[string]string, len(options.Headers))
	for name, value := range options.Headers {
		if value == RedactedValue {
			old, ok := byName[http.CanonicalHeaderKey(name)]
			if !ok {
				return TargetOptions{}, fmt.Errorf("header %s: %q stands for the stored value, and the target has no such header: send the value", name, RedactedValue)
			}
			value = old
		}
		headers[name] = value
	}
	options.Headers = headers
	return options, nil
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
