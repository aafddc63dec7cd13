package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Users own webhooks; API keys authenticate them on the tenant-scoped API.
// A key is shown once, when it is created: only its SHA-256 is stored.

// User owns webhooks.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// APIKey describes a user's key. It never holds the key itself.
type APIKey struct {
	ID         string     `json:"id"`
	UserID     string     `json:"user_id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"` // the first characters of the key, to recognise it
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

const (
	// APIKeyPrefix starts every API key, so that a leaked one is recognisable.
	APIKeyPrefix = "whk_"
	// apiKeyBytes is how much randomness a key carries.
	apiKeyBytes = 32
	// apiKeyShownPrefix is how many characters of a key APIKey.Prefix keeps.
	apiKeyShownPrefix = 12
	// maxAPIKeyLen bounds what Authenticate bothers to hash.
	maxAPIKeyLen = 256
	// lastUsedResolution: last_used_at is written at most this often per key,
	// not on every request.
	lastUsedResolution = time.Minute
	maxUserName        = 200
)

// validateLabel trims a human-readable name and checks its length (at most
// max characters, at least one unless empty is allowed) and that it holds no
// control characters.
func validateLabel(kind, s string, max int, allowEmpty bool) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" && !allowEmpty {
		return "", invalid(fmt.Errorf("%s must not be empty", kind))
	}
	if n := utf8.RuneCountInString(s); n > max {
		return "", invalid(fmt.Errorf("%s: %d characters, at most %d", kind, n, max))
	}
	if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "", invalid(fmt.Errorf("%s must be UTF-8 text without control characters", kind))
	}
	return s, nil
}

// liveUser checks, inside a transaction, that user id exists and is not deleted.
func liveUser(ctx context.Context, tx *sql.Tx, id string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE id = ? AND deleted_at IS NULL`, id).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("user %s: %w", id, ErrNotFound)
	}
	return nil
}

// CreateUser creates a user named name (trimmed, 1 to 200 characters).
func (db *MainDB) CreateUser(ctx context.Context, name string) (User, error) {
	name, err := validateLabel("user name", name, maxUserName, false)
	if err != nil {
		return User{}, err
	}
	u := User{ID: uuid.NewString(), Name: name}
	err = db.write(ctx, func(tx *sql.Tx, now int64) error {
		u.CreatedAt = timeOf(now)
		_, err := tx.ExecContext(ctx, `INSERT INTO users (id, name, created_at) VALUES (?, ?, ?)`, u.ID, u.Name, now)
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// Users lists the live users by name.
func (db *MainDB) Users(ctx context.Context) ([]User, error) {
	rows, err := db.file.reader.QueryContext(ctx, `SELECT id, name, created_at FROM users
		WHERE deleted_at IS NULL ORDER BY name, id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	users := []User{}
	for rows.Next() {
		var (
			u       User
			created int64
		)
		if err := rows.Scan(&u.ID, &u.Name, &created); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		u.CreatedAt = timeOf(created)
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// User reads one live user.
func (db *MainDB) User(ctx context.Context, id string) (User, error) {
	var (
		u       User
		created int64
	)
	err := db.file.reader.QueryRowContext(ctx, `SELECT id, name, created_at FROM users
		WHERE id = ? AND deleted_at IS NULL`, id).Scan(&u.ID, &u.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("read user %s: %w", id, err)
	}
	u.CreatedAt = timeOf(created)
	return u, nil
}

// DeleteUser soft-deletes a user and revokes all their keys. A user who
// still owns live webhooks is not deleted (ErrConflict).
func (db *MainDB) DeleteUser(ctx context.Context, id string) error {
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := liveUser(ctx, tx, id); err != nil {
			return err
		}
		var owned int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM webhooks WHERE user_id = ? AND deleted_at IS NULL`, id).
			Scan(&owned); err != nil {
			return err
		}
		if owned > 0 {
			return fmt.Errorf("%w: user owns %d webhooks: delete them first", ErrConflict, owned)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL`, now, id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE users SET deleted_at = ? WHERE id = ?`, now, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	return nil
}

// hashAPIKey is what the api_keys table stores of a key.
func hashAPIKey(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// CreateAPIKey creates a key for a live user and returns it with the secret,
// which is not stored and cannot be read again. name may be empty.
func (db *MainDB) CreateAPIKey(ctx context.Context, userID, name string) (APIKey, string, error) {
	name, err := validateLabel("API key name", name, maxUserName, true)
	if err != nil {
		return APIKey{}, "", err
	}
	random := make([]byte, apiKeyBytes)
	if _, err := rand.Read(random); err != nil {
		return APIKey{}, "", fmt.Errorf("create API key: %w", err)
	}
	secret := APIKeyPrefix + base64.RawURLEncoding.EncodeToString(random)
	k := APIKey{ID: uuid.NewString(), UserID: userID, Name: name, Prefix: secret[:apiKeyShownPrefix]}
	err = db.write(ctx, func(tx *sql.Tx, now int64) error {
		if err := liveUser(ctx, tx, userID); err != nil {
			return err
		}
		k.CreatedAt = timeOf(now)
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (id, user_id, name, prefix, hash, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, k.ID, userID, name, k.Prefix, hashAPIKey(secret), now)
		return err
	})
	if err != nil {
		return APIKey{}, "", fmt.Errorf("create API key: %w", err)
	}
	return k, secret, nil
}

// APIKeys lists the keys of a live user, revoked ones included, newest first.
func (db *MainDB) APIKeys(ctx context.Context, userID string) ([]APIKey, error) {
	keys := []APIKey{}
	err := db.read(ctx, func(tx *sql.Tx) error {
		if err := liveUser(ctx, tx, userID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, user_id, name, prefix, created_at, last_used_at, revoked_at
			FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id DESC`, userID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				k             APIKey
				created       int64
				used, revoked sql.NullInt64
			)
			if err := rows.Scan(&k.ID, &k.UserID, &k.Name, &k.Prefix, &created, &used, &revoked); err != nil {
				return err
			}
			k.CreatedAt, k.LastUsedAt, k.RevokedAt = timeOf(created), optionalTime(used), optionalTime(revoked)
			keys = append(keys, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	return keys, nil
}

func optionalTime(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := timeOf(n.Int64)
	return &t
}

// RevokeAPIKey revokes key keyID of user userID. Revoking a revoked key
// keeps its first revocation time.
func (db *MainDB) RevokeAPIKey(ctx context.Context, userID, keyID string) error {
	err := db.write(ctx, func(tx *sql.Tx, now int64) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?)
			WHERE id = ? AND user_id = ?`, now, keyID, userID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("API key %s of user %s: %w", keyID, userID, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke API key: %w", err)
	}
	return nil
}

// Authenticate finds the user of an API key. A key that is unknown or
// revoked, or whose user is deleted, is ErrUnauthorized. The key's
// last_used_at is written at most once a minute; failing to write it does
// not fail the authentication.
func (db *MainDB) Authenticate(ctx context.Context, secret string) (User, error) {
	if !strings.HasPrefix(secret, APIKeyPrefix) || len(secret) > maxAPIKeyLen {
		return User{}, fmt.Errorf("%w: not an API key", ErrUnauthorized)
	}
	var (
		keyID               string
		u                   User
		created             int64
		used, revoked, gone sql.NullInt64
	)
	err := db.file.reader.QueryRowContext(ctx, `SELECT k.id, k.last_used_at, k.revoked_at, u.id, u.name, u.created_at, u.deleted_at
		FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.hash = ?`, hashAPIKey(secret)).
		Scan(&keyID, &used, &revoked, &u.ID, &u.Name, &created, &gone)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("%w: unknown API key", ErrUnauthorized)
	}
	if err != nil {
		return User{}, fmt.Errorf("authenticate: %w", err)
	}
	if revoked.Valid {
		return User{}, fmt.Errorf("%w: API key %s is revoked", ErrUnauthorized, keyID)
	}
	if gone.Valid {
		return User{}, fmt.Errorf("%w: the user of API key %s is deleted", ErrUnauthorized, keyID)
	}
	u.CreatedAt = timeOf(created)

	now := db.now().UnixNano()
	due := now - int64(lastUsedResolution)
	if !used.Valid || used.Int64 <= due {
		// The condition again in the UPDATE: of concurrent requests, one writes.
		_, _ = db.file.writer.ExecContext(ctx, `UPDATE api_keys SET last_used_at = ?
			WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)`, now, keyID, due)
	}
	return u, nil
}
