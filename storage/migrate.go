package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// A migration moves a database schema from version i to i+1, where i is its
// index in the list. Migrations are append-only: a released one never changes,
// so that a file written by any earlier version can be brought up to date.
type migration struct {
	name string
	sql  string
}

// migrate brings db up to len(migrations), recording the version in
// PRAGMA user_version. Each migration runs in its own immediate transaction,
// so a crash between two leaves a file at a well-defined version.
func migrate(ctx context.Context, db *sql.DB, migrations []migration) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this build knows (%d): refusing to open a file written by a newer caddy-webhooker", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		m := migrations[i]
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %d (%s): %w", i+1, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %d (%s): %w", i+1, m.name, err)
		}
		// PRAGMA does not take bound parameters; i is an int we control.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %d (%s): set version: %w", i+1, m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d (%s): commit: %w", i+1, m.name, err)
		}
	}
	return nil
}
