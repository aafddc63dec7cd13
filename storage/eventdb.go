package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Event is one received request, stored before it is acknowledged.
type Event struct {
	ID            string // UUIDv7, assigned by Ingest when empty
	EntrypointID  string
	EntrypointKey string
	Method        string
	Path          string
	Query         string
	Headers       http.Header
	Body          []byte
	ContentType   string
	RemoteAddr    string
	ReceivedAt    time.Time
	// Verified is the verify scheme the request passed at its entrypoint,
	// "" when the entrypoint verifies nothing.
	Verified string
	// Dedup is the event's dedup id, for the intake only (dedup.go).
	Dedup DedupKey
}

// DeliveryStatus is where a delivery stands.
type DeliveryStatus string

const (
	DeliveryPending   DeliveryStatus = "pending"
	DeliveryRetrying  DeliveryStatus = "retrying"
	DeliveryDelivered DeliveryStatus = "delivered"
	DeliveryFailed    DeliveryStatus = "failed"
)

// Delivery is one event going to one target.
type Delivery struct {
	ID            string
	EventID       string
	TargetID      string
	Status        DeliveryStatus
	Attempts      int
	NextAttemptAt time.Time // zero unless retrying
	LastError     string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// DeliveryResult is one attempt of a delivery.
type DeliveryResult struct {
	DeliveryID   string
	Attempt      int
	StartedAt    time.Time
	Duration     time.Duration
	StatusCode   int
	Error        string
	ResponseBody []byte
}

// WebhookDB is the event DB of one webhook. Get one from a WebhookDBManager.
type WebhookDB struct {
	webhookID string
	file      *sqliteFile
	sync      Synchronous
	commits   groupCommitter
	attempts  attemptWrites // in-flight marks and attempt records (attemptmarks.go, outcomes.go)

	// onGone, set by the manager, drops this handle when its file turns out
	// to be removed or replaced, so that the next use opens the path again.
	onGone func()

	// stmts are the writes of the hot paths, prepared on the writer when the
	// file opens (not later: inside a transaction the one writer connection is
	// taken), so that SQLite parses each once, not once per write.
	stmts map[string]*sql.Stmt

	// counts, set by the manager, receives this file's figures after each
	// commit (eventstats.go); committed is the row the transaction being
	// committed read, touched by the group-commit leader alone.
	counts    *eventStatsCache
	committed committedCounts

	// isolatedBatches counts the batches run again with a savepoint per
	// write because one of their writes failed (runBatch).
	isolatedBatches atomic.Int64
}

// The statements prepared when an event DB opens.
const (
	sqlInsertEvent = `INSERT INTO events
		(id, entrypoint_id, entrypoint_key, method, path, query, headers, body, body_size, content_type, remote_addr, received_at, verified)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlInsertDelivery = `INSERT INTO deliveries
		(id, event_id, target_id, status, attempts, created_at, updated_at)
		VALUES (?, ?, ?, 'pending', 0, ?, ?)`
	sqlInsertKept = `INSERT INTO deliveries
		(id, event_id, target_id, status, attempts, created_at, updated_at, kept)
		VALUES (?, ?, ?, 'delivered', 1, ?, ?, 1)`
	// sqlApplyEvent is sqlInsertEvent for an event from the intake, which
	// may have been applied already before a crash (intakeapply.go).
	sqlApplyEvent = `INSERT INTO events
		(id, entrypoint_id, entrypoint_key, method, path, query, headers, body, body_size, content_type, remote_addr, received_at, verified)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`
	sqlSavepoint    = "SAVEPOINT write"
	sqlRollbackTo   = "ROLLBACK TO write"
	sqlRelease      = "RELEASE write"
	sqlSetOutcome   = `UPDATE deliveries SET status = ?1, attempts = ?2, next_attempt_at = ?3, last_error = ?4, updated_at = ?5, attempt_started_at = NULL WHERE id = ?6 AND (status IN ('pending', 'retrying') OR ?1 = 'delivered')`
	sqlInsertResult = `INSERT INTO delivery_attempts
		(delivery_id, attempt, started_at, duration_ns, status_code, error, response_body)
		VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlReschedule = `UPDATE deliveries SET status = 'retrying', next_attempt_at = ?, updated_at = ?
		WHERE id = ? AND status IN ('pending', 'retrying')`
)

var preparedWrites = []string{sqlInsertEvent, sqlApplyEvent, sqlInsertDelivery, sqlInsertKept, sqlSavepoint, sqlRollbackTo, sqlRelease,
	sqlSetOutcome, sqlInsertResult, sqlReschedule, sqlMarkAttempt, sqlClearAttempt, sqlRecordInterrupted, sqlReadEventStats, sqlAddEventStats}

func openWebhookDB(ctx context.Context, webhookID, path string, sync Synchronous) (*WebhookDB, error) {
	if err := createFreshEventDB(ctx, path); err != nil {
		return nil, fmt.Errorf("event db %s: %w", webhookID, err)
	}
	file, err := openSQLiteFile(path, sync)
	if err != nil {
		return nil, err
	}
	db := &WebhookDB{webhookID: webhookID, file: file, sync: sync}
	if err := db.prepare(ctx); err != nil {
		_ = file.close()
		return nil, fmt.Errorf("event db %s: %w", webhookID, err)
	}
	db.commits.commit = db.commitBatch
	db.commits.verify = db.afterCommit
	return db, nil
}

func (db *WebhookDB) prepare(ctx context.Context) error {
	if err := migrate(ctx, db.file.writer, eventMigrations); err != nil {
		return err
	}
	db.stmts = make(map[string]*sql.Stmt, len(preparedWrites))
	for _, q := range preparedWrites {
		stmt, err := db.file.writer.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		db.stmts[q] = stmt
	}
	return nil
}

func (db *WebhookDB) close() error {
	return db.file.close()
}

// Ingest stores ev with one delivery per target in one transaction, shared
// with concurrent calls (group commit), and returns only after that
// transaction has committed: a nil error means the event is durable. A
// database target's destination is this very file: its delivery is stored
// delivered, its one attempt implied (insertKept), in the same transaction,
// so that it costs the engine and the writer nothing more. The other
// deliveries are stored pending and returned, for the engine. The event's
// and deliveries' ids are assigned here when empty.
func (db *WebhookDB) Ingest(ev *Event, targets []Target) ([]Delivery, error) {
	rec, err := newEventRecord(ev, targets)
	if err != nil {
		return nil, err
	}
	err = db.commits.submit(&commitRequest{size: len(ev.Body), write: func(w *writeTx) error {
		if err := w.insertEvent(ev, rec.headers, rec.pending); err != nil {
			return err
		}
		return w.insertKept(ev, rec.kept)
	}})
	if err != nil {
		return nil, fmt.Errorf("store event in %s: %w", db.webhookID, err)
	}
	return rec.pending, nil
}

// IngestOnce is Ingest for an event that may be stored already, by its id
// (cluster mode: a message handed out again once the consumers' state was
// lost with every node): then nothing is written, stored is true and
// pending is nil.
func (db *WebhookDB) IngestOnce(ev *Event, targets []Target) (pending []Delivery, stored bool, err error) {
	rec, err := newEventRecord(ev, targets)
	if err != nil {
		return nil, false, err
	}
	err = db.commits.submit(&commitRequest{size: len(ev.Body), write: func(w *writeTx) error {
		stored = false // a batch retried after a failed commit runs this again
		res, err := w.exec(sqlApplyEvent, eventArgs(ev, rec.headers)...)
		if err != nil {
			return fmt.Errorf("insert event: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			stored = err == nil
			return err
		}
		if err := w.insertPending(ev, rec.pending); err != nil {
			return err
		}
		return w.insertKept(ev, rec.kept)
	}})
	if err != nil {
		return nil, false, fmt.Errorf("store event in %s: %w", db.webhookID, err)
	}
	if stored {
		return nil, true, nil
	}
	return rec.pending, false, nil
}

// eventRecord is what storing an event writes besides the event itself:
// its headers encoded, and its deliveries, pending for the engine or kept
// (to a database target: delivered at ingest).
type eventRecord struct {
	headers       []byte
	pending, kept []Delivery
}

// newEventRecord gives ev its id and time of receipt when they are empty,
// and makes one delivery per target. The headers are encoded here, not in
// the write: a writer is held only for SQL.
func newEventRecord(ev *Event, targets []Target) (eventRecord, error) {
	var pendingTargetIDs, keptTargetIDs []string
	for _, t := range targets {
		if t.Type == TargetDatabase {
			keptTargetIDs = append(keptTargetIDs, t.ID)
		} else {
			pendingTargetIDs = append(pendingTargetIDs, t.ID)
		}
	}
	if ev.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return eventRecord{}, fmt.Errorf("new event id: %w", err)
		}
		ev.ID = id.String()
	}
	if ev.ReceivedAt.IsZero() {
		ev.ReceivedAt = time.Now()
	}
	newDeliveries := func(targetIDs []string, status DeliveryStatus) ([]Delivery, error) {
		out := make([]Delivery, len(targetIDs))
		for i, targetID := range targetIDs {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, fmt.Errorf("new delivery id: %w", err)
			}
			out[i] = Delivery{
				ID: id.String(), EventID: ev.ID, TargetID: targetID,
				Status: status, CreatedAt: ev.ReceivedAt, UpdatedAt: ev.ReceivedAt,
			}
		}
		return out, nil
	}
	var rec eventRecord
	var err error
	if rec.pending, err = newDeliveries(pendingTargetIDs, DeliveryPending); err != nil {
		return eventRecord{}, err
	}
	if rec.kept, err = newDeliveries(keptTargetIDs, DeliveryDelivered); err != nil {
		return eventRecord{}, err
	}
	if rec.headers, err = json.Marshal(ev.Headers); err != nil {
		return eventRecord{}, fmt.Errorf("encode headers: %w", err)
	}
	return rec, nil
}

// writeTx is the transaction a batch of writes shares, with the prepared
// statements bound to it on first use.
type writeTx struct {
	ctx   context.Context
	tx    *sql.Tx
	db    *WebhookDB
	bound map[string]*sql.Stmt
	// inserted adds up the events and deliveries the writes inserted, for
	// event_stats (see countInserted).
	inserted insertedCounts
}

// exec runs query in the transaction, as a prepared statement when it is one
// of preparedWrites.
func (w *writeTx) exec(query string, args ...any) (sql.Result, error) {
	if _, ok := w.db.stmts[query]; !ok {
		return w.tx.ExecContext(w.ctx, query, args...)
	}
	return w.stmt(query).ExecContext(w.ctx, args...)
}

// stmt is the prepared statement of query (one of preparedWrites), bound to
// the transaction.
func (w *writeTx) stmt(query string) *sql.Stmt {
	stmt := w.bound[query]
	if stmt == nil {
		stmt = w.tx.StmtContext(w.ctx, w.db.stmts[query])
		w.bound[query] = stmt
	}
	return stmt
}

// commitBatch runs every write of batch in one transaction (runBatch). If
// the commit itself fails, every write of the batch gets that error: none
// is durable.
func (db *WebhookDB) commitBatch(batch []*commitRequest) error {
	// Not a request's context: the batch carries other requests too.
	ctx := context.Background()
	db.committed = committedCounts{}
	if db.sync != SynchronousNormal && crashSafeOnly(batch) {
		return db.commitCrashSafe(ctx, batch)
	}
	return db.runBatch(ctx, func() (*sql.Tx, error) { return db.file.writer.BeginTx(ctx, nil) }, batch)
}

// beginOn begins transactions on conn, for runBatch.
func beginOn(ctx context.Context, conn *sql.Conn) func() (*sql.Tx, error) {
	return func() (*sql.Tx, error) { return conn.BeginTx(ctx, nil) }
}

// runBatch runs every write of batch in one transaction from begin, then
// commits it; a write that fails is rolled back alone and reported to its
// caller only, and the others commit.
//
// The writes run first as they are, with no savepoint each: a savepoint
// makes SQLite copy every page a write touches to a statement journal (a
// temporary file), which cost half the CPU of ingest (1 KiB events: 160 µs
// an event with, 60–75 µs without). Writes fail rarely (a duplicate id, a
// delivery no longer open), so when one does the transaction is rolled back
// and the batch runs again, each write under its own savepoint. A write may
// therefore run twice; the write functions set their outputs, never add to
// them, so the second run's are the ones that count.
func (db *WebhookDB) runBatch(ctx context.Context, begin func() (*sql.Tx, error), batch []*commitRequest) error {
	tx, err := begin()
	if err != nil {
		return err
	}
	w := newWriteTx(ctx, tx, db)
	for _, r := range batch {
		if r.err = r.write(w); r.err != nil {
			break
		}
	}
	if failed := slices.ContainsFunc(batch, func(r *commitRequest) bool { return r.err != nil }); failed {
		_ = tx.Rollback()
		if len(batch) == 1 {
			return nil // the write's own error is reported
		}
		db.isolatedBatches.Add(1)
		for _, r := range batch {
			r.err = nil
		}
		if tx, err = begin(); err != nil {
			return err
		}
		w = newWriteTx(ctx, tx, db)
		if err := w.runIsolated(batch); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if err := w.countInserted(); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func newWriteTx(ctx context.Context, tx *sql.Tx, db *WebhookDB) *writeTx {
	return &writeTx{ctx: ctx, tx: tx, db: db, bound: make(map[string]*sql.Stmt, 4)}
}

// runIsolated runs every write of batch under its own savepoint, so that
// one that fails is rolled back alone, with the rows it counted; its error
// is left in its request. An error returned is the transaction's own.
func (w *writeTx) runIsolated(batch []*commitRequest) error {
	for _, r := range batch {
		if _, err := w.exec(sqlSavepoint); err != nil {
			return err
		}
		inserted := w.inserted
		if r.err = r.write(w); r.err != nil {
			if _, err := w.exec(sqlRollbackTo); err != nil {
				return err
			}
			w.inserted = inserted // its rows are rolled back
		}
		if _, err := w.exec(sqlRelease); err != nil {
			return err
		}
	}
	return nil
}

// execChanging runs query (see exec) and returns none when it changed no
// row: the delivery it names is not open, or not as the caller read it.
func (w *writeTx) execChanging(none error, query string, args ...any) error {
	res, err := w.exec(query, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return none
	}
	return nil
}

func (w *writeTx) insertEvent(ev *Event, headers []byte, deliveries []Delivery) error {
	if _, err := w.exec(sqlInsertEvent, eventArgs(ev, headers)...); err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return w.insertPending(ev, deliveries)
}

// eventArgs are the values of sqlInsertEvent (and sqlApplyEvent) for ev.
func eventArgs(ev *Event, headers []byte) []any {
	body := ev.Body
	if body == nil {
		body = []byte{} // the column is NOT NULL; an empty body is not a missing one
	}
	return []any{ev.ID, ev.EntrypointID, ev.EntrypointKey, ev.Method, ev.Path,
		ev.Query, string(headers), body, len(ev.Body), ev.ContentType, ev.RemoteAddr, ev.ReceivedAt.UnixNano(), ev.Verified}
}

// insertPending stores the event's deliveries for the engine, pending, and
// counts the event (which the caller has just inserted) with them.
func (w *writeTx) insertPending(ev *Event, deliveries []Delivery) error {
	received := ev.ReceivedAt.UnixNano()
	for _, d := range deliveries {
		if _, err := w.exec(sqlInsertDelivery, d.ID, d.EventID, d.TargetID, received, received); err != nil {
			return fmt.Errorf("insert delivery: %w", err)
		}
	}
	w.inserted.event(received)
	w.inserted.pending += len(deliveries)
	return nil
}

// insertKept stores deliveries to database targets as delivered at ingest.
// Their one attempt is not a row: delivery_results lists it for any kept
// delivery (keptDeliveriesMigration).
func (w *writeTx) insertKept(ev *Event, kept []Delivery) error {
	received := ev.ReceivedAt.UnixNano()
	for _, d := range kept {
		if _, err := w.exec(sqlInsertKept, d.ID, d.EventID, d.TargetID, received, received); err != nil {
			return fmt.Errorf("insert delivery: %w", err)
		}
	}
	w.inserted.delivered += len(kept)
	return nil
}
