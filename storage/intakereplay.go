package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Replay: what the intake holds when it opens was acknowledged and may not
// be in its event DB yet (a crash came between). Every entry is applied
// again, in seq order, a page at a time; an event already there is
// skipped. Then a sync round removes them all.

const (
	replayPageRows  = 4096
	replayPageBytes = 32 << 20
)

// ReplayFigures is what a replay found.
type ReplayFigures struct {
	Events   int // entries the intake held
	Webhooks int // webhooks they belong to
}

// replay applies every entry the intake holds, before the applier starts.
// An entry that cannot be applied now stays queued, and the applier tries
// it again; only a failure to read the intake fails the open.
func (in *Intake) replay(ctx context.Context) error {
	webhooks := map[string]bool{}
	events := 0
	for {
		page, err := in.readPage(ctx, in.seq)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		in.seq = page[len(page)-1].seq
		in.mu.Lock()
		for _, e := range page {
			in.held += e.size
			webhooks[e.webhookID] = true
		}
		in.mu.Unlock()
		events += len(page)
		in.queue(page)
		in.applyReady()
	}
	if events > 0 {
		in.syncRound()
	}
	in.replayed = ReplayFigures{Events: events, Webhooks: len(webhooks)}
	return nil
}

// Replayed reports what the replay on open found.
func (in *Intake) Replayed() ReplayFigures { return in.replayed }

// readPage reads the entries after seq, up to a page's rows and bytes.
func (in *Intake) readPage(ctx context.Context, after int64) ([]*intakeEntry, error) {
	rows, err := in.file.writer.QueryContext(ctx, `SELECT seq, webhook_id, event_id, entrypoint_id, entrypoint_key,
		method, path, query, headers, body, content_type, remote_addr, received_at, verified, deliveries
		FROM intake WHERE seq > ? ORDER BY seq LIMIT ?`, after, replayPageRows)
	if err != nil {
		return nil, fmt.Errorf("read the intake: %w", err)
	}
	defer rows.Close()
	var (
		page  []*intakeEntry
		bytes int
	)
	for bytes < replayPageBytes && rows.Next() {
		var (
			e                   intakeEntry
			ev                  Event
			headers, deliveries string
			received            int64
		)
		if err := rows.Scan(&e.seq, &e.webhookID, &ev.ID, &ev.EntrypointID, &ev.EntrypointKey, &ev.Method, &ev.Path,
			&ev.Query, &headers, &ev.Body, &ev.ContentType, &ev.RemoteAddr, &received, &ev.Verified, &deliveries); err != nil {
			return nil, fmt.Errorf("read the intake: %w", err)
		}
		ev.ReceivedAt = time.Unix(0, received)
		if ev.Body == nil {
			ev.Body = []byte{}
		}
		if err := json.Unmarshal([]byte(headers), &ev.Headers); err != nil {
			return nil, fmt.Errorf("intake entry %d: headers: %w", e.seq, err)
		}
		e.rec.headers = []byte(headers)
		var ds []intakeDelivery
		if err := json.Unmarshal([]byte(deliveries), &ds); err != nil {
			return nil, fmt.Errorf("intake entry %d: deliveries: %w", e.seq, err)
		}
		for _, d := range ds {
			del := Delivery{ID: d.ID, EventID: ev.ID, TargetID: d.Target, Status: DeliveryPending,
				CreatedAt: ev.ReceivedAt, UpdatedAt: ev.ReceivedAt}
			if d.Kept {
				del.Status = DeliveryDelivered
				e.rec.kept = append(e.rec.kept, del)
			} else {
				e.rec.pending = append(e.rec.pending, del)
			}
		}
		e.ev = &ev
		e.size = int64(len(ev.Body)+len(headers)) + intakeEntryOverhead
		bytes += len(ev.Body)
		page = append(page, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the intake: %w", err)
	}
	return page, nil
}
