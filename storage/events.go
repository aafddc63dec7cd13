package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event reads one event, body included.
func (db *WebhookDB) Event(ctx context.Context, id string) (*Event, error) {
	ev, _, err := db.readEvent(ctx, id, true)
	return ev, err
}

// EventMeta reads one event without its body, and the body's size: what a
// delivery needs before it knows it will be attempted.
func (db *WebhookDB) EventMeta(ctx context.Context, id string) (*Event, int, error) {
	return db.readEvent(ctx, id, false)
}

func (db *WebhookDB) readEvent(ctx context.Context, id string, withBody bool) (*Event, int, error) {
	var (
		ev       Event
		headers  string
		size     int
		received int64
	)
	body := "NULL"
	if withBody {
		body = "body"
	}
	err := db.file.reader.QueryRowContext(ctx, `SELECT id, entrypoint_id, entrypoint_key, method, path, query,
		headers, `+body+`, body_size, content_type, remote_addr, received_at, verified FROM events WHERE id = ?`, id).
		Scan(&ev.ID, &ev.EntrypointID, &ev.EntrypointKey, &ev.Method, &ev.Path, &ev.Query,
			&headers, &ev.Body, &size, &ev.ContentType, &ev.RemoteAddr, &received, &ev.Verified)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read event %s: %w", id, err)
	}
	if err := json.Unmarshal([]byte(headers), &ev.Headers); err != nil {
		return nil, 0, fmt.Errorf("decode headers of event %s: %w", id, err)
	}
	if withBody && ev.Body == nil {
		ev.Body = []byte{}
	}
	ev.ReceivedAt = time.Unix(0, received)
	return &ev, size, nil
}

const deliveryColumns = `id, event_id, target_id, status, attempts, next_attempt_at, last_error, created_at, updated_at`

// DeliveryOutcome is where a delivery stands after an attempt.
type DeliveryOutcome struct {
	Status        DeliveryStatus
	NextAttemptAt time.Time // when Status is retrying
	LastError     string
}

// EventBody reads the body of one event: what a delivery of a large event
// reads when its attempt runs.
func (db *WebhookDB) EventBody(ctx context.Context, eventID string) ([]byte, error) {
	var body []byte
	err := db.file.reader.QueryRowContext(ctx, "SELECT body FROM events WHERE id = ?", eventID).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("event %s: %w", eventID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read body of event %s: %w", eventID, err)
	}
	return body, nil
}
