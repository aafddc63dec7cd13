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
// so a crash between two leaves a file at a well-defined version. The
// version is read inside that transaction: two connections opening a fresh
// file at once (a webhook's creation and its first event, say) take turns,
// and the second finds the first's work done instead of repeating it.
func migrate(ctx context.Context, db *sql.DB, migrations []migration) error {
	// A file already current needs no write transaction to say so: the
	// intake's applier opens event DBs by the thousand under spread load.
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err == nil && version == len(migrations) {
		return nil
	}
	for {
		done, err := migrateStep(ctx, db, migrations)
		if err != nil || done {
			return err
		}
	}
}

// migrateStep runs the next migration db needs, if any, in one immediate
// transaction (db is a writer: its transactions are immediate).
func migrateStep(ctx context.Context, db *sql.DB, migrations []migration) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("read schema version: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return false, fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case version > len(migrations):
		return false, fmt.Errorf("schema version %d is newer than this build knows (%d): refusing to open a file written by a newer caddy-webhooker", version, len(migrations))
	case version == len(migrations):
		return true, nil
	}
	m := migrations[version]
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("migration %d (%s): %w", version+1, m.name, err)
	}
	// PRAGMA does not take bound parameters; version is an int we control.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", version+1)); err != nil {
		return false, fmt.Errorf("migration %d (%s): set version: %w", version+1, m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migration %d (%s): commit: %w", version+1, m.name, err)
	}
	return false, nil
}
