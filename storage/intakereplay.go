package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Replay: what the intake holds when it opens was acknowledged and may not
// be in its event DB yet (a stop or a crash came between). On open only
// the entries' seqs, webhooks and sizes are read, and queued as spilled
// entries are (intakespill.go), so that the start waits for none of it:
// the applier loads each entry from the intake when it applies it, all of
// a webhook's at once, and a read of a webhook (the engine's recovery scan
// among them) applies that webhook's first. An event applied before the
// crash is skipped (sqlApplyEvent).

// loadChunk bounds the entries loaded from the intake in one query.
const loadChunk = 256

// ReplayFigures is what the intake held when it opened.
type ReplayFigures struct {
	Events   int // entries the intake held
	Webhooks int // webhooks they belong to
}

// replay queues every entry the intake holds, spilled (their seqs and
// sizes alone), before the applier starts.
func (in *Intake) replay(ctx context.Context) error {
	// length() of a column is read from the row's header, not its content.
	rows, err := in.file.reader.QueryContext(ctx, "SELECT seq, webhook_id, length(body) + length(headers) FROM intake ORDER BY seq")
	if err != nil {
		return fmt.Errorf("read the intake: %w", err)
	}
	defer rows.Close()
	in.mu.Lock()
	defer in.mu.Unlock()
	var events int64
	for rows.Next() {
		var (
			ref     intakeRef
			webhook string
		)
		if err := rows.Scan(&ref.seq, &webhook, &ref.size); err != nil {
			return fmt.Errorf("read the intake: %w", err)
		}
		ref.size += intakeEntryOverhead
		q := in.queues[webhook]
		if q == nil {
			q = &intakeQueue{}
			in.queues[webhook] = q
		}
		// Not ready: they wait for a read of their webhook, or for
		// ReleaseReplayed, unless a fresh entry comes along (queue).
		q.spilled = appendRef(q.spilled, nil, ref)
		q.waiting.Add(1)
		in.held += intakeRefSize
		in.onDisk += ref.size
		in.seq = ref.seq
		events++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the intake: %w", err)
	}
	in.kept, in.spilledNow, in.holdReplayed = events, events, events > 0
	in.unapplied.Store(events)
	in.replayed = ReplayFigures{Events: int(events), Webhooks: len(in.queues)}
	return nil
}

// ReleaseReplayed lets the applier take the replayed entries that no read
// has applied yet. Until then they wait for the reads of their webhooks:
// the engine's recovery scan reads every webhook once at the start, and an
// applier going through the same webhooks in another order would make
// both open each event DB (past max_open_event_dbs, each evicting what the
// other is about to use). Call it once that scan is done.
func (in *Intake) ReleaseReplayed() {
	in.mu.Lock()
	in.holdReplayed = false
	for id, q := range in.queues {
		if (len(q.spilled) > 0 || len(q.entries) > 0) && !q.inReady && q.retry == nil {
			q.inReady = true
			in.ready = append(in.ready, id)
		}
	}
	in.mu.Unlock()
	signal(in.wake)
}

// Replayed reports what the intake held when it opened.
func (in *Intake) Replayed() ReplayFigures { return in.replayed }

// load reads the events of the entries of chunk that have none (replayed
// ones) from the intake.
func (in *Intake) load(ctx context.Context, chunk []*intakeEntry) error {
	bySeq := make(map[int64]*intakeEntry, len(chunk))
	args := make([]any, 0, len(chunk))
	for _, e := range chunk {
		if e.ev == nil {
			bySeq[e.seq] = e
			args = append(args, e.seq)
		}
	}
	if len(args) == 0 {
		return nil
	}
	rows, err := in.file.reader.QueryContext(ctx, `SELECT seq, event_id, entrypoint_id, entrypoint_key,
		method, path, query, headers, body, content_type, remote_addr, received_at, verified, deliveries
		FROM intake WHERE seq IN (?`+strings.Repeat(", ?", len(args)-1)+`)`, args...)
	if err != nil {
		return fmt.Errorf("read the intake: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			seq                 int64
			ev                  Event
			headers, deliveries string
			received            int64
		)
		if err := rows.Scan(&seq, &ev.ID, &ev.EntrypointID, &ev.EntrypointKey, &ev.Method, &ev.Path,
			&ev.Query, &headers, &ev.Body, &ev.ContentType, &ev.RemoteAddr, &received, &ev.Verified, &deliveries); err != nil {
			return fmt.Errorf("read the intake: %w", err)
		}
		e := bySeq[seq]
		if e == nil {
			return fmt.Errorf("read the intake: entry %d was not asked for", seq)
		}
		if err := decodeIntakeEntry(e, &ev, received, headers, deliveries); err != nil {
			return err
		}
		delete(bySeq, seq)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the intake: %w", err)
	}
	for seq := range bySeq {
		return fmt.Errorf("intake entry %d is missing from intake.db", seq)
	}
	return nil
}

// decodeIntakeEntry fills e with ev and the columns read beside it.
func decodeIntakeEntry(e *intakeEntry, ev *Event, received int64, headers, deliveries string) error {
	ev.ReceivedAt = time.Unix(0, received)
	if ev.Body == nil {
		ev.Body = []byte{}
	}
	if err := json.Unmarshal([]byte(headers), &ev.Headers); err != nil {
		return fmt.Errorf("intake entry %d: headers: %w", e.seq, err)
	}
	var ds []intakeDelivery
	if err := json.Unmarshal([]byte(deliveries), &ds); err != nil {
		return fmt.Errorf("intake entry %d: deliveries: %w", e.seq, err)
	}
	rec := eventRecord{headers: []byte(headers)}
	for _, d := range ds {
		del := Delivery{ID: d.ID, EventID: ev.ID, TargetID: d.Target, Status: DeliveryPending,
			CreatedAt: ev.ReceivedAt, UpdatedAt: ev.ReceivedAt}
		if d.Kept {
			del.Status = DeliveryDelivered
			rec.kept = append(rec.kept, del)
		} else {
			rec.pending = append(rec.pending, del)
		}
	}
	e.ev, e.rec = ev, rec
	return nil
}
