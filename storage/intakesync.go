package storage

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Sync rounds: the applier writes into event DBs without an fsync, so the
// intake keeps an entry until the event DB it went into has been fsynced.
// A round closes the current epoch, fsyncs every event DB applied to in it
// (its -wal, then the file itself), and removes from the intake the entries
// applied in that epoch (and in those before it whose fsync failed). A round is due a SyncDelay after the first
// apply since the last, or at once when maxSyncEntries have been applied;
// nothing runs while nothing is applied.

// maxSyncEntries applied entries make a sync round due at once, which
// bounds the intake's size under sustained load.
const maxSyncEntries = 16384

// wantSync arms the round's timer (first apply of an epoch), or asks for
// a round now.
func (in *Intake) wantSync(arm, now bool) {
	switch {
	case now:
		signal(in.syncs)
	case arm:
		time.AfterFunc(in.opts.SyncDelay, func() { signal(in.syncs) })
	}
}

// syncLoop runs the rounds asked for, until stop (Close runs the last).
func (in *Intake) syncLoop() {
	defer in.loops.Done()
	for {
		select {
		case <-in.syncs:
			in.syncRound()
		case <-in.stop:
			return
		}
	}
}

// syncRound fsyncs the event DBs applied to in the epoch it closes, then
// removes from the intake the entries they now hold durably. If an fsync
// fails the round's webhooks are kept dirty and the entries kept: they are
// tried again next round.
func (in *Intake) syncRound() {
	in.syncMu.Lock()
	defer in.syncMu.Unlock()
	in.mu.Lock()
	dirty, applied := in.dirty, in.appliedNow
	in.dirty, in.appliedNow = make(map[string]struct{}), nil
	in.syncArmed = false
	in.mu.Unlock()

	var failed []string
	for id := range dirty {
		if err := in.events.syncEventDB(id); err != nil {
			failed = append(failed, id)
			if in.opts.Trouble != nil {
				in.opts.Trouble(id, 0, err)
			}
		}
	}
	if len(failed) > 0 {
		// The whole epoch waits: which entries went into which file is not
		// worth tracking for a failure this rare.
		in.mu.Lock()
		for _, id := range failed {
			in.dirty[id] = struct{}{}
		}
		in.appliedNow = append(in.appliedNow, applied...)
		arm := !in.syncArmed
		in.syncArmed = true
		in.mu.Unlock()
		in.wantSync(arm, false)
		return
	}

	synced := make([]int64, len(applied))
	var size int64
	for i, r := range applied {
		synced[i] = r.seq
		size += r.size
	}
	slices.Sort(synced) // applied a webhook at a time: in seq order, they are near in the file
	err := in.forget(synced)
	in.mu.Lock()
	in.kept -= int64(len(synced))
	// Even if the forget failed: those left in intake.db are applied again
	// at the next start, which skips them; nothing is lost, some work is
	// repeated, and until then they are not what ingest waits for.
	in.onDisk -= size
	in.freed()
	in.mu.Unlock()
	if err != nil && in.opts.Trouble != nil {
		in.opts.Trouble("", len(synced), err)
	}
}

// forgetChunk bounds the entries one transaction of forget removes: the
// intake's writer is free between two, for the commits of ingests. Under
// spread load the entries a round forgets are scattered, each on a page of
// its own, so a chunk costs a page rewritten per entry: at 1,024 a chunk of
// 1 KiB events held the writer up to 92 ms, at 128 still 12 to 36 ms, and
// the ingests that waited for it made the p99. wrk over 1,000 webhooks:
// p99 85 to 90 ms at 1,024, 55 to 60 at 128 (the throughput the same);
// then, alternated, 38 to 42 ms at 32 against 42 to 55 at 128, and over
// 10,000 webhooks 5,305 to 7,220 req/s (p99 31 to 43) against 4,055 to
// 4,360 (48 to 52).
const forgetChunk = 32

// forget removes the entries of seqs from the intake, forgetChunk at a
// time, each chunk one statement in a transaction of its own. Losing
// these writes in a crash costs only a replay that finds the entries
// applied, so they are committed without an fsync.
//
// Entries are applied a webhook at a time, so under spread load the seqs
// a round forgets are scattered. Removed a range of consecutive seqs at a
// time, as they once were, a round of 16,384 took a statement each (about
// 55 µs apiece here) and held the writer for most of a second in one
// transaction, and ingests waited for it.
func (in *Intake) forget(seqs []int64) error {
	for len(seqs) > 0 {
		n := min(len(seqs), forgetChunk)
		if err := in.forgetSome(seqs[:n]); err != nil {
			return fmt.Errorf("forget %d synced entries of the intake: %w", len(seqs), err)
		}
		seqs = seqs[n:]
	}
	return nil
}

func (in *Intake) forgetSome(seqs []int64) error {
	list, err := json.Marshal(seqs)
	if err != nil {
		return err
	}
	ctx := context.Background()
	// One connection throughout, so that the relaxed setting applies to
	// this statement and nothing else (as commitCrashSafe).
	conn, err := in.file.writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	relax := in.sync != SynchronousNormal
	if relax {
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
			return err
		}
	}
	_, err = conn.ExecContext(ctx, "DELETE FROM intake WHERE seq IN (SELECT value FROM json_each(?))", string(list))
	if relax {
		if _, rerr := conn.ExecContext(ctx, "PRAGMA synchronous = "+string(in.sync)); rerr != nil {
			// Never leave the writer without its fsyncs: drop the
			// connection, and the next one is opened with the file's settings.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			return errors.Join(err, fmt.Errorf("restore synchronous=%s: %w", in.sync, rerr))
		}
	}
	return err
}

// syncEventDB fsyncs the event DB of webhook id, its -wal first: what the
// applier committed there without an fsync is then durable. A file that is
// gone was closed (closing checkpoints it, fsynced) or deleted with its
// webhook: there is nothing to sync (syncFile).
func (m *WebhookDBManager) syncEventDB(id string) error {
	path, err := m.EventDBPath(id)
	if err != nil {
		return err
	}
	if err := syncFile(path + "-wal"); err != nil {
		return err
	}
	return syncFile(path)
}
