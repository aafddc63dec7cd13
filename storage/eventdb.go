package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
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
	commits   groupCommitter

	insertEvent    *sql.Stmt
	insertDelivery *sql.Stmt
}

func openWebhookDB(ctx context.Context, webhookID, path string, sync Synchronous) (*WebhookDB, error) {
	file, err := openSQLiteFile(path, sync)
	if err != nil {
		return nil, err
	}
	db := &WebhookDB{webhookID: webhookID, file: file}
	if err := db.prepare(ctx); err != nil {
		_ = file.close()
		return nil, fmt.Errorf("event db %s: %w", webhookID, err)
	}
	db.commits.commit = db.commitBatch
	return db, nil
}

func (db *WebhookDB) prepare(ctx context.Context) error {
	if err := migrate(ctx, db.file.writer, eventMigrations); err != nil {
		return err
	}
	var err error
	db.insertEvent, err = db.file.writer.PrepareContext(ctx, `INSERT INTO events
		(id, entrypoint_id, entrypoint_key, method, path, query, headers, body, body_size, content_type, remote_addr, received_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	db.insertDelivery, err = db.file.writer.PrepareContext(ctx, `INSERT INTO deliveries
		(id, event_id, target_id, status, attempts, created_at, updated_at)
		VALUES (?, ?, ?, 'pending', 0, ?, ?)`)
	return err
}

func (db *WebhookDB) close() error {
	return db.file.close()
}

// WebhookID is the id of the webhook whose events this file holds.
func (db *WebhookDB) WebhookID() string { return db.webhookID }

// Path is the absolute path of the file.
func (db *WebhookDB) Path() string { return db.file.path }

// Transactions counts the write transactions group commit has run.
func (db *WebhookDB) Transactions() int64 { return db.commits.transactions.Load() }

// Ingest stores ev and one pending delivery per target in one transaction,
// shared with concurrent calls (group commit). It returns only after that
// transaction has committed: a nil error means the event is durable. The
// event's and deliveries' ids are assigned here when empty.
func (db *WebhookDB) Ingest(ev *Event, targetIDs []string) ([]Delivery, error) {
	if ev.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("new event id: %w", err)
		}
		ev.ID = id.String()
	}
	if ev.ReceivedAt.IsZero() {
		ev.ReceivedAt = time.Now()
	}
	deliveries := make([]Delivery, len(targetIDs))
	for i, targetID := range targetIDs {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("new delivery id: %w", err)
		}
		deliveries[i] = Delivery{
			ID: id.String(), EventID: ev.ID, TargetID: targetID,
			Status: DeliveryPending, CreatedAt: ev.ReceivedAt, UpdatedAt: ev.ReceivedAt,
		}
	}
	err := db.commits.submit(&commitRequest{size: len(ev.Body), write: func(w *writeTx) error {
		return w.insertEvent(ev, deliveries)
	}})
	if err != nil {
		return nil, fmt.Errorf("store event in %s: %w", db.webhookID, err)
	}
	return deliveries, nil
}

// writeTx is the transaction a batch of writes shares, with the prepared
// statements bound to it on first use.
type writeTx struct {
	ctx context.Context
	tx  *sql.Tx
	db  *WebhookDB

	insEvent, insDelivery *sql.Stmt
}

// commitBatch runs every write of batch in one transaction. Each write runs
// under its own savepoint, so that one failing write is rolled back alone
// and reported to its caller only; the others commit. If the commit itself
// fails, every write of the batch gets that error: none is durable.
func (db *WebhookDB) commitBatch(batch []*commitRequest) error {
	// Not a request's context: the batch carries other requests too.
	ctx := context.Background()
	tx, err := db.file.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	w := &writeTx{ctx: ctx, tx: tx, db: db}
	for _, r := range batch {
		if len(batch) == 1 {
			r.err = r.write(w)
			break
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT write"); err != nil {
			_ = tx.Rollback()
			return err
		}
		if r.err = r.write(w); r.err != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO write"); err != nil {
				_ = tx.Rollback()
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE write"); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if len(batch) == 1 && batch[0].err != nil {
		_ = tx.Rollback()
		return nil // the write's own error is reported
	}
	return tx.Commit()
}

func (w *writeTx) insertEvent(ev *Event, deliveries []Delivery) error {
	if w.insEvent == nil {
		w.insEvent = w.tx.StmtContext(w.ctx, w.db.insertEvent)
		w.insDelivery = w.tx.StmtContext(w.ctx, w.db.insertDelivery)
	}
	ctx, insEvent, insDelivery := w.ctx, w.insEvent, w.insDelivery
	headers, err := json.Marshal(ev.Headers)
	if err != nil {
		return fmt.Errorf("encode headers: %w", err)
	}
	body := ev.Body
	if body == nil {
		body = []byte{} // the column is NOT NULL; an empty body is not a missing one
	}
	received := ev.ReceivedAt.UnixNano()
	if _, err := insEvent.ExecContext(ctx, ev.ID, ev.EntrypointID, ev.EntrypointKey, ev.Method, ev.Path,
		ev.Query, string(headers), body, len(ev.Body), ev.ContentType, ev.RemoteAddr, received); err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	for _, d := range deliveries {
		if _, err := insDelivery.ExecContext(ctx, d.ID, d.EventID, d.TargetID, received, received); err != nil {
			return fmt.Errorf("insert delivery: %w", err)
		}
	}
	return nil
}
