package storage

import (
	"context"
	"database/sql"
	"time"
)

// timeOf reads a time stored as Unix nanoseconds.
func timeOf(unixNano int64) time.Time { return time.Unix(0, unixNano) }

// write runs fn in one immediate transaction on the writer and commits it;
// in cluster mode, once the cluster's configuration log has the rows it
// changed (configlog.go).
func (db *MainDB) write(ctx context.Context, fn func(tx *sql.Tx, now int64) error) error {
	if db.repl != nil {
		return db.repl.write(ctx, db, fn)
	}
	return db.writeTx(ctx, fn, nil)
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
