package storage

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/webhooker/caddy-webhooker/handshake"
	"github.com/webhooker/caddy-webhooker/verify"
)

// NewEntrypoint is an entrypoint to add to a webhook.
type NewEntrypoint struct {
	Key    string // "" for a generated one (GenerateEntrypointKey)
	Active *bool  // nil for true
	// Options are its verify rules, tolerance and handshake (none when
	// zero), checked by ValidateEntrypointOptions.
	Options EntrypointOptions
}

// EntrypointPatch changes the fields that are not nil. A displaced
// entrypoint (see Entrypoint.Displaced) comes back into use with a key that
// is free, or with active true once its own key is free again.
type EntrypointPatch struct {
	Key    *string
	Active *bool
	// Options replace the stored ones whole; zero options clear them. A
	// secret or handshake argument sent as RedactedValue keeps the stored
	// one at the same position of a rule of the same scheme (or handshake
	// of the same name), so that options read back from the API, which
	// masks them, can be sent back changed elsewhere.
	Options *EntrypointOptions
}

// maxVerifyRules bounds the verify rules of one entrypoint: a request that
// passes none is tried against each, and each may hash the whole body once
// per secret.
const maxVerifyRules = 8

// ValidateEntrypointOptions checks o as the ingest handler will build it:
// each verify rule with verify.New, the handshake with handshake.New, and
// the tolerance against the rules it applies to. Errors name a rule by its
// position and never quote a secret or a handshake argument.
func ValidateEntrypointOptions(o EntrypointOptions) error {
	if len(o.Verify) > maxVerifyRules {
		return fmt.Errorf("options.verify: %d rules, at most %d", len(o.Verify), maxVerifyRules)
	}
	for i, rule := range o.Verify {
		// verify.New bounds the secrets' number and length; a control
		// character is refused here too, because basic_auth and bearer
		// compare secrets with header values, which cannot hold one, and a
		// CR or LF in a stored secret is a paste gone wrong.
		for j, secret := range rule.Secrets {
			if hasControl(secret) {
				return fmt.Errorf("options.verify[%d]: argument %d contains a control character (such as CR, LF or NUL)", i, j+1)
			}
		}
		for name, value := range map[string]string{"algorithm": rule.Algorithm, "encoding": rule.Encoding, "prefix": rule.Prefix} {
			if hasControl(value) || len(value) > 128 {
				return fmt.Errorf("options.verify[%d].%s: longer than 128 bytes or contains a control character", i, name)
			}
		}
	}
	if _, _, err := o.Build(); err != nil {
		var oe *OptionError
		if errors.As(err, &oe) {
			return fmt.Errorf("options.%s: %w", oe.Field, oe.Err)
		}
		return err
	}
	return nil
}

// OptionError is a refusal of one of an entrypoint's options; Field names
// it (verify[i], tolerance, handshake). Its text is that of Err alone, which
// never quotes a secret.
type OptionError struct {
	Field string
	Err   error
}

func (e *OptionError) Error() string { return e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

// Build makes the verifiers and the handshake (nil: none) of o, whose
// placeholders are replaced already: what the ingest handler enforces, and
// what the Caddyfile and the API check before storing. A refusal is an
// *OptionError.
func (o EntrypointOptions) Build() ([]verify.Verifier, handshake.Handshake, error) {
	tolerance := time.Duration(o.Tolerance)
	if tolerance < 0 {
		return nil, nil, &OptionError{"tolerance", errors.New("tolerance must not be negative")}
	}
	var verifiers []verify.Verifier
	appliesTo := false
	for i, rule := range o.Verify {
		opts := verify.Options{Header: rule.Header, Algorithm: rule.Algorithm, Encoding: rule.Encoding, Prefix: rule.Prefix}
		if slices.Contains(timestampedSchemes, rule.Scheme) {
			opts.Tolerance = tolerance
			appliesTo = true
		}
		v, err := verify.New(rule.Scheme, rule.Secrets, opts)
		if err != nil {
			return nil, nil, &OptionError{fmt.Sprintf("verify[%d]", i), err}
		}
		verifiers = append(verifiers, v)
	}
	if tolerance != 0 && !appliesTo {
		return nil, nil, &OptionError{"tolerance",
			fmt.Errorf("tolerance applies only to verify %v, and the entrypoint has none", timestampedSchemes)}
	}
	var hs handshake.Handshake
	if o.Handshake != nil {
		var err error
		if hs, err = handshake.New(o.Handshake.Name, o.Handshake.Args); err != nil {
			return nil, nil, &OptionError{"handshake", err}
		}
	}
	return verifiers, hs, nil
}

// timestampedSchemes sign a timestamp, to which an entrypoint's tolerance
// applies.
var timestampedSchemes = []string{verify.Stripe, verify.Slack, verify.StandardWebhooks}

func hasControl(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// keepRedactedOptions is in with each RedactedValue secret or handshake
// argument replaced by the stored one at the same position, the rule at
// that position having the same scheme (the handshake the same name). A
// mask with nothing stored behind it is refused: storing the mask itself
// would make it the secret. in is not changed.
func keepRedactedOptions(in, stored EntrypointOptions) (EntrypointOptions, error) {
	out := in
	out.Verify = make([]VerifyRule, len(in.Verify))
	for i, rule := range in.Verify {
		rule.Secrets = slices.Clone(rule.Secrets)
		for j, secret := range rule.Secrets {
			if secret != RedactedValue {
				continue
			}
			if i >= len(stored.Verify) || stored.Verify[i].Scheme != rule.Scheme || j >= len(stored.Verify[i].Secrets) {
				return EntrypointOptions{}, fmt.Errorf("options.verify[%d]: argument %d is %q, which stands for a stored secret, and the entrypoint has none there: send the secret", i, j+1, RedactedValue)
			}
			rule.Secrets[j] = stored.Verify[i].Secrets[j]
		}
		out.Verify[i] = rule
	}
	if len(out.Verify) == 0 {
		out.Verify = nil
	}
	if in.Handshake != nil {
		hs := *in.Handshake
		hs.Args = slices.Clone(hs.Args)
		for j, arg := range hs.Args {
			if arg != RedactedValue {
				continue
			}
			if stored.Handshake == nil || stored.Handshake.Name != hs.Name || j >= len(stored.Handshake.Args) {
				return EntrypointOptions{}, fmt.Errorf("options.handshake: argument %d is %q, which stands for a stored one, and the entrypoint has none there: send the argument", j+1, RedactedValue)
			}
			hs.Args[j] = stored.Handshake.Args[j]
		}
		out.Handshake = &hs
	}
	return out, nil
}

// checkedOptions is in with its masks replaced by what stored holds
// (keepRedactedOptions), validated, and its JSON for the options column.
func checkedOptions(in, stored EntrypointOptions) (EntrypointOptions, string, error) {
	o, err := keepRedactedOptions(in, stored)
	if err != nil {
		return EntrypointOptions{}, "", invalid(err)
	}
	if err := ValidateEntrypointOptions(o); err != nil {
		return EntrypointOptions{}, "", invalid(err)
	}
	b, err := json.Marshal(o)
	if err != nil {
		return EntrypointOptions{}, "", fmt.Errorf("entrypoint options: %w", err)
	}
	return o, string(b), nil
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
	return insertEntrypointWith(ctx, tx, webhookID, key, active, EntrypointOptions{}, "{}", now)
}

// insertEntrypointWith inserts an entrypoint with options already checked,
// optionsJSON being their JSON (checkedOptions).
func insertEntrypointWith(ctx context.Context, tx *sql.Tx, webhookID, key string, active bool, options EntrypointOptions, optionsJSON string, now int64) (Entrypoint, error) {
	e := Entrypoint{ID: uuid.NewString(), WebhookID: webhookID, Key: key, Active: active, CreatedAt: timeOf(now), Options: options}
	_, err := tx.ExecContext(ctx, `INSERT INTO entrypoints (id, webhook_id, key, active, options, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, e.ID, webhookID, key, active, optionsJSON, now, now)
	return e, err
}

func entrypointIn(ctx context.Context, tx *sql.Tx, webhookID, id string) (Entrypoint, error) {
	var (
		e       Entrypoint
		created int64
		options string
	)
	err := tx.QueryRowContext(ctx, `SELECT id, webhook_id, key, active, displaced_at IS NOT NULL, options, created_at FROM entrypoints
		WHERE id = ? AND webhook_id = ? AND deleted_at IS NULL`, id, webhookID).
		Scan(&e.ID, &e.WebhookID, &e.Key, &e.Active, &e.Displaced, &options, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Entrypoint{}, fmt.Errorf("entrypoint %s of webhook %s: %w", id, webhookID, ErrNotFound)
	}
	if err != nil {
		return Entrypoint{}, err
	}
	if err := json.Unmarshal([]byte(options), &e.Options); err != nil {
		return Entrypoint{}, fmt.Errorf("entrypoint %s: options: %w", e.ID, err)
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
	options, optionsJSON, err := checkedOptions(in.Options, EntrypointOptions{})
	if err != nil {
		return Entrypoint{}, fmt.Errorf("add entrypoint: %w", err)
	}
	rules := db.rulesOf()
	var e Entrypoint
	err = db.write(ctx, func(tx *sql.Tx, now int64) error {
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
		e, err = insertEntrypointWith(ctx, tx, webhookID, key, active, options, optionsJSON, now)
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
		// The stored options are read in this transaction, so that a mask
		// keeps the secret stored now, not one a concurrent change replaced.
		optionsJSON := ""
		if p.Options != nil {
			if e.Options, optionsJSON, err = checkedOptions(*p.Options, e.Options); err != nil {
				return err
			}
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
		// options = '' keeps the stored options (the patch has none).
		_, err = tx.ExecContext(ctx, `UPDATE entrypoints SET key = ?, active = ?, updated_at = ?,
			displaced_at = CASE WHEN ? THEN displaced_at END,
			options = CASE WHEN ? = '' THEN options ELSE ? END WHERE id = ?`,
			e.Key, e.Active, now, e.Displaced, optionsJSON, optionsJSON, e.ID)
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
