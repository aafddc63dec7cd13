package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"
)

// TargetPatch changes the fields that are not nil. Options replaces the
// options as a whole, except the headers, whose values the API never shows:
// Options.Headers nil keeps the stored headers, and a header whose value is
// RedactedValue keeps its stored value; an empty, non-nil map clears them
// (HeadersAdd likewise). So do the signing secrets: left out or
// RedactedValue, kept; NoSigningSecret removes them; a new SigningSecret
// moves the stored one to SigningSecretPrevious for SigningSecretGrace
// (keepStoredSecrets).
type TargetPatch struct {
	Name    *string
	Type    *TargetType
	URL     *string
	Options *TargetOptions
	// Filter replaces the target's filter; "" removes it.
	Filter *string
	Active *bool
}

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
// new UUID is assigned); t.Active and t.Paused are stored as given. Its options must be
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
			(id, webhook_id, name, type, url, options, filter, active, paused, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, webhookID, t.Name, t.Type, t.URL, string(options), t.Filter, t.Active, t.Paused, now, now); err != nil {
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
// Options and a filter p sets must be within the limits of db's rules (the
// target is then checked as a whole against them); options it leaves
// as they are were accepted before, maybe from the operator, and are held to
// the operator's limits only, so that a tenant can still disable a target
// the operator gave a long timeout.
func (db *MainDB) UpdateTarget(ctx context.Context, webhookID, targetID string, p TargetPatch) (Target, error) {
	limits := OperatorLimits()
	if p.Options != nil || p.Filter != nil {
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
			if err == nil {
				options, err = keepStoredSecrets(options, t.Options, timeOf(now))
			}
			if err != nil {
				return invalid(fmt.Errorf("target %s: %w", t.Name, err))
			}
			t.Options = options
		}
		if p.Filter != nil {
			t.Filter = *p.Filter
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
		_, err = tx.ExecContext(ctx, `UPDATE targets SET name = ?, type = ?, url = ?, options = ?, filter = ?, active = ?,
			updated_at = ? WHERE id = ?`, t.Name, t.Type, t.URL, string(options), t.Filter, t.Active, now, t.ID)
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

// SetTargetPaused pauses or resumes a live target of webhookID and returns
// it as stored. Pausing is runtime state, not configuration: it is allowed
// on a webhook the Caddyfile declares (which SyncDeclared then leaves
// paused), and it changes no delivery: the engine holds back a paused
// target's deliveries itself, and is told when the target resumes.
func (db *MainDB) SetTargetPaused(ctx context.Context, webhookID, targetID string, paused bool) (Target, error) {
	var t Target
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		var err error
		if t, err = targetIn(ctx, tx, webhookID, targetID); err != nil {
			return err
		}
		if t.Paused == paused {
			return nil
		}
		t.Paused = paused
		_, err = tx.ExecContext(ctx, `UPDATE targets SET paused = ?, updated_at = ? WHERE id = ?`, paused, now, t.ID)
		return err
	})
	if err != nil {
		verb := "pause"
		if !paused {
			verb = "resume"
		}
		return Target{}, fmt.Errorf("%s target: %w", verb, err)
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
