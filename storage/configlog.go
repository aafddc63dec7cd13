package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// In cluster mode every node keeps the whole configuration in its own main
// DB, and a change made through the API on any node reaches the others
// through a replicated log (the cluster package's configuration stream).
// The log is the order of the changes: a write on this node
//
//  1. waits until this DB has applied the log up to its head, so that it
//     validates against every change made anywhere before it;
//  2. runs in one transaction, in which triggers collect the rows it
//     changed (config_changes);
//  3. appends those rows to the log on the condition that the log's last
//     change is still the one this DB applied last, and commits only once
//     the log has them: a change another node appended in between makes
//     the append fail (ErrConfigConflict), and the write is rolled back and
//     tried again on the newer state, so that two nodes cannot both take a
//     name or key, or both edit one row from the same state;
//  4. records the change's place in the log (config_log.applied_seq).
//
// Every node applies the log in its order (ApplyConfigChange), its own
// changes included, which it finds applied already. So all nodes hold the
// same API configuration; what the Caddyfile declares stays each node's own.

// ConfigLog is the cluster's log of configuration changes.
type ConfigLog interface {
	// Head is the place of the last change in the log (0: none).
	Head(ctx context.Context) (uint64, error)
	// Append appends change provided that the last change in the log is
	// at after, and returns its place; ErrConfigConflict when it is not.
	Append(ctx context.Context, change []byte, after uint64) (uint64, error)
}

var (
	// ErrConfigConflict: the configuration log moved on since this node's
	// state; the write is tried again.
	ErrConfigConflict = errors.New("another node changed the configuration first")
	// ErrUnavailable: the cluster's configuration log cannot be reached
	// or this node is behind it, so no configuration can be changed here
	// now (503); nothing was written.
	ErrUnavailable = errors.New("the cluster's configuration is unavailable")
)

const (
	// configWriteAttempts bounds the tries of one write against writes
	// on other nodes.
	configWriteAttempts = 5
	// configCatchUp bounds the wait for this DB to apply the log's head.
	configCatchUp = 10 * time.Second
)

// replication is a MainDB's part in a cluster, shared by its WithRules
// copies.
type replication struct {
	log  ConfigLog
	node string
	// mu orders this node's writes, so that they do not conflict with
	// each other.
	mu sync.Mutex
	// applied is config_log.applied_seq as committed; moved is closed and
	// replaced when it grows.
	appliedMu sync.Mutex
	applied   uint64
	moved     chan struct{}
	// conflicts counts the writes tried again because another node's
	// change came first.
	conflicts atomic.Uint64
	// waiting, when set (tests), is called each time catchUp waits for
	// the follower.
	waiting func()
}

// Replicate makes every write of db go through log (see above), node
// naming this node in the changes it appends. Call it once, before any
// write and before ApplyConfigChange. The first time, it lists the API
// configuration made before (users, API keys, API webhooks with their
// entrypoints and targets) for SeedConfigLog to publish.
func (db *MainDB) Replicate(ctx context.Context, log ConfigLog, node string) error {
	var applied uint64
	err := db.writeTx(ctx, func(tx *sql.Tx, _ int64) error {
		var seeded bool
		if err := tx.QueryRowContext(ctx, `SELECT applied_seq, seeded FROM config_log`).Scan(&applied, &seeded); err != nil || seeded {
			return err
		}
		for _, q := range []string{
			`INSERT INTO config_seed SELECT 'users', id FROM users`,
			`INSERT INTO config_seed SELECT 'api_keys', id FROM api_keys`,
			`INSERT INTO config_seed SELECT 'webhooks', id FROM webhooks WHERE source = 'api'`,
			`INSERT INTO config_seed SELECT 'entrypoints', e.id FROM entrypoints e
				JOIN webhooks w ON w.id = e.webhook_id WHERE w.source = 'api'`,
			`INSERT INTO config_seed SELECT 'targets', t.id FROM targets t
				JOIN webhooks w ON w.id = t.webhook_id WHERE w.source = 'api'`,
			`UPDATE config_log SET seeded = 1`,
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if err != nil {
		return fmt.Errorf("join the configuration log: %w", err)
	}
	db.repl = &replication{log: log, node: node, applied: applied, moved: make(chan struct{})}
	return nil
}

// ConfigApplied is the place in the configuration log of the last change
// this DB holds (0 when not in cluster mode or none yet).
func (db *MainDB) ConfigApplied() uint64 {
	if db.repl == nil {
		return 0
	}
	seq, _ := db.repl.state()
	return seq
}

// ConfigConflicts counts the writes tried again because another node's
// change reached the configuration log first.
func (db *MainDB) ConfigConflicts() uint64 {
	if db.repl == nil {
		return 0
	}
	return db.repl.conflicts.Load()
}

// Replicated says whether db's writes go through a cluster's
// configuration log.
func (db *MainDB) Replicated() bool { return db.repl != nil }

// CatchUp waits until db has applied every change the configuration log
// holds now (at most 10 s, or until ctx is done): ErrUnavailable when it
// cannot tell or has not. Outside cluster mode it returns at once. The
// context it returns is ctx marked as caught up: a write on it does not
// ask the log's head again before its first try (a change come since is a
// conflict, and the write is tried again after catching up).
func (db *MainDB) CatchUp(ctx context.Context) (context.Context, error) {
	if db.repl == nil {
		return ctx, nil
	}
	if err := db.repl.catchUp(ctx); err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, caughtUpKey{}, true), nil
}

// caughtUpKey marks a context CatchUp returned.
type caughtUpKey struct{}

func (r *replication) state() (uint64, <-chan struct{}) {
	r.appliedMu.Lock()
	defer r.appliedMu.Unlock()
	return r.applied, r.moved
}

func (r *replication) advance(seq uint64) {
	r.appliedMu.Lock()
	defer r.appliedMu.Unlock()
	if seq > r.applied {
		r.applied = seq
		close(r.moved)
		r.moved = make(chan struct{})
	}
}

// catchUp waits until the DB has applied the log up to its head.
func (r *replication) catchUp(ctx context.Context) error { return r.catchUpTo(ctx, 0) }

// catchUpTo waits until the DB has applied the log up to its head, and at
// least up to atLeast: after a conflict, the log is known to hold a change
// past the one the write was appended after, whatever a head read from a
// replica not yet up to date says.
func (r *replication) catchUpTo(ctx context.Context, atLeast uint64) error {
	ctx, cancel := context.WithTimeout(ctx, configCatchUp)
	defer cancel()
	head, err := r.log.Head(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	head = max(head, atLeast)
	if seq, _ := r.state(); head < seq {
		return fmt.Errorf("%w: the log ends at change %d, before this node's %d: it was recreated without this node's changes; "+
			"restore its stream, or start this node from a fresh data directory", ErrUnavailable, head, seq)
	}
	for {
		seq, moved := r.state()
		if seq >= head {
			return nil
		}
		if r.waiting != nil {
			r.waiting()
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("%w: this node has applied the configuration log up to %d of %d", ErrUnavailable, seq, head)
		}
	}
}

// write is MainDB.write in cluster mode.
func (r *replication) write(ctx context.Context, db *MainDB, fn func(tx *sql.Tx, now int64) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var atLeast uint64
	for attempt := 1; ; attempt++ {
		if attempt > 1 || ctx.Value(caughtUpKey{}) == nil {
			if err := r.catchUpTo(ctx, atLeast); err != nil {
				return err
			}
		}
		var seq, after uint64
		err := db.writeTx(ctx, fn, func(tx *sql.Tx) (err error) {
			seq, after, err = r.publish(ctx, tx)
			return err
		})
		if err == nil {
			r.advance(seq)
			return nil
		}
		if !errors.Is(err, ErrConfigConflict) || attempt == configWriteAttempts {
			return err
		}
		r.conflicts.Add(1)
		// The log holds a change past after: the next try waits for it.
		atLeast = after + 1
	}
}

// publish appends the rows tx changed to the log after the change the DB
// applied last (after), and records the new change's place (seq) in tx.
// Nothing changed: nothing is appended, and seq is 0.
func (r *replication) publish(ctx context.Context, tx *sql.Tx) (seq, after uint64, err error) {
	rows, err := collectChanges(ctx, tx)
	if err != nil || len(rows) == 0 {
		return 0, 0, err
	}
	if err := tx.QueryRowContext(ctx, `SELECT applied_seq FROM config_log`).Scan(&after); err != nil {
		return 0, 0, err
	}
	change, err := json.Marshal(configChange{Node: r.node, Rows: rows})
	if err != nil {
		return 0, 0, err
	}
	seq, err = r.log.Append(ctx, change, after)
	if err != nil {
		if errors.Is(err, ErrConfigConflict) {
			return 0, after, err
		}
		return 0, after, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE config_log SET applied_seq = ?`, seq)
	return seq, after, err
}

// writeTx runs fn in one immediate transaction on the writer, then publish
// (nil: the changed rows are forgotten), and commits.
func (db *MainDB) writeTx(ctx context.Context, fn func(tx *sql.Tx, now int64) error, publish func(*sql.Tx) error) error {
	tx, err := db.file.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx, db.now().UnixNano()); err != nil {
		return err
	}
	if publish == nil {
		err = forgetChanges(ctx, tx)
	} else {
		err = publish(tx)
	}
	if err != nil {
		return err
	}
	return tx.Commit()
}

// forgetChanges empties config_changes: the write is not for the log.
func forgetChanges(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM config_changes`)
	return err
}

// SeedConfigLog publishes the configuration made through the API on this
// node before it ran in a cluster (listed by Replicate), as it is now, so
// that the other nodes have it too. It returns how many rows it published;
// once they are published, it publishes nothing.
func (db *MainDB) SeedConfigLog(ctx context.Context) (int, error) {
	if db.repl == nil {
		return 0, errors.New("seed the configuration log: not in cluster mode")
	}
	var n int
	err := db.write(ctx, func(tx *sql.Tx, _ int64) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO config_changes SELECT tbl, id FROM config_seed s
			WHERE NOT EXISTS (SELECT 1 FROM config_changes c WHERE c.tbl = s.tbl AND c.id = s.id)`)
		if err != nil {
			return err
		}
		rows, err := res.RowsAffected()
		n = int(rows)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM config_seed`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("seed the configuration log: %w", err)
	}
	return n, nil
}
