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
// PRAGMA user_version. The pending migrations run in one immediate
// transaction, so a crash or a failing migration leaves the file at the
// version it had, and a fresh file is made in one commit (one fsync, not
// one per migration: the intake's applier makes a webhook's file at its
// first event, by the thousand when load spreads over new webhooks). The
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
	tx, err := db.BeginTx(ctx, nil) // db is a writer: its transactions are immediate
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case version > len(migrations):
		return fmt.Errorf("schema version %d is newer than this build knows (%d): refusing to open a file written by a newer caddy-webhooker", version, len(migrations))
	case version == len(migrations):
		return nil
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i].sql); err != nil {
			return fmt.Errorf("migration %d (%s): %w", i+1, migrations[i].name, err)
		}
	}
	// PRAGMA does not take bound parameters; the version is an int we control.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("migrations %d to %d: set version: %w", version+1, len(migrations), err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrations %d to %d: commit: %w", version+1, len(migrations), err)
	}
	return nil
}
