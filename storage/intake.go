package storage

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// The intake: one log, intake.db, shared by every webhook of a data
// directory, where an event is made durable before it is acknowledged.
//
// Group commit works per file. With the events of many webhooks arriving
// at once, each event DB's transactions carried about one event, so each
// event cost an fsync (and, past max_open_event_dbs, the open and close of
// a file). Every event now goes first into the intake, whose transactions
// are shared by all webhooks: one fsync acknowledges all the events that
// arrived while the one before it ran, whichever their webhook.
//
// An applier then writes the events into their webhooks' event DBs, in one
// transaction per webhook and round, without an fsync: the intake still
// holds them. A sync round (intakesync.go) fsyncs the event DBs written to
// and only then removes the events from the intake. A crash at any moment
// leaves every acknowledged event in the intake, its event DB, or both; on
// start the intake is replayed (intakereplay.go), and an event applied
// before the crash is not applied twice (sqlApplyEvent).
//
// The event DBs remain what the API, the UI, retention and the engine read.
// Reads of a webhook's event DB first apply what the intake holds for it
// (WebhookDBManager.With calls flush), so that a read never misses an
// acknowledged event. The engine hears of an event's deliveries once they
// are applied (IntakeOptions.Applied).

const intakeFileName = "intake.db"

// DefaultIntakeMemory bounds the bytes of the events acknowledged but not
// yet applied to their event DBs, which the intake keeps in memory. Past
// it, the events of the webhooks the applier reaches last are dropped from
// memory and read back from intake.db when applied (intakespill.go).
const DefaultIntakeMemory = 64 << 20

// intakeCheckpointPages is the size of intake.db's -wal, in pages, past
// which the commit that goes past it checkpoints. That commit copies the
// -wal into the file while the ingests behind it wait: at SQLite's 1,000
// (16 MiB of 16 KiB pages) it took 20 to 40 ms, and made much of the p99
// under load spread over many webhooks; at 256 (4 MiB), with wrk, alternated:
// over 1,000 webhooks p99 46 and 49 ms against 54 and 56, over 10,000
// 6,897 and 5,982 req/s (p99 34, 37 ms) against 4,888 and 3,805 (45, 59 ms).
const intakeCheckpointPages = 256

// DefaultIntakeSize bounds the bytes of the events intake.db holds (those
// not yet applied and synced into their event DBs). Past it, ingest waits
// for the applier and the sync rounds.
const DefaultIntakeSize = 1 << 30

// intakeEntryOverhead is what an entry costs besides its body and
// headers, in memory while its event is there and in intake.db, counted
// against both bounds.
const intakeEntryOverhead = 512

var intakeMigrations = []migration{
	{name: "intake", sql: `
CREATE TABLE intake (
	seq            INTEGER PRIMARY KEY, -- order of commit
	webhook_id     TEXT NOT NULL,
	event_id       TEXT NOT NULL,
	entrypoint_id  TEXT NOT NULL,
	entrypoint_key TEXT NOT NULL,
	method         TEXT NOT NULL,
	path           TEXT NOT NULL,
	query          TEXT NOT NULL,
	headers        TEXT NOT NULL,
	body           BLOB NOT NULL,
	content_type   TEXT NOT NULL,
	remote_addr    TEXT NOT NULL,
	received_at    INTEGER NOT NULL,
	verified       TEXT NOT NULL,
	deliveries     TEXT NOT NULL  -- JSON: [{"id": …, "target": …, "kept": true|false}]
);`},
	{name: "dedup", sql: `
-- The dedup ids of webhooks with idempotent ingest (dedup.go), written in
-- the transaction of the event they name; never deleted by the sync round,
-- pruned once expired.
CREATE TABLE dedup (
	webhook_id TEXT NOT NULL,
	key        TEXT NOT NULL,
	event_id   TEXT NOT NULL,
	expires_at INTEGER NOT NULL, -- Unix ns: the event's receipt plus the window
	PRIMARY KEY (webhook_id, key)
);
CREATE INDEX dedup_expires ON dedup (expires_at);`},
}

const sqlInsertIntake = `INSERT INTO intake
	(seq, webhook_id, event_id, entrypoint_id, entrypoint_key, method, path, query, headers, body, content_type, remote_addr, received_at, verified, deliveries)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// AppliedEvent is an event the applier wrote into its webhook's event DB,
// with its deliveries still to be made and the targets they go to.
type AppliedEvent struct {
	Event   *Event
	Pending []Delivery
	Targets []Target
}

// IntakeOptions are an Intake's settings.
type IntakeOptions struct {
	// Memory bounds the events kept in memory until applied
	// (DefaultIntakeMemory when zero); past it, events are spilled.
	Memory int64
	// Size bounds the events intake.db holds (DefaultIntakeSize when
	// zero); past it, ingest waits.
	Size int64
	// Applied, if set, is told of the events of one webhook once they are
	// in its event DB, in the order received. Events replayed on start are
	// not told: the engine's recovery finds them. It must not block.
	Applied func(webhookID string, events []AppliedEvent)
	// Trouble, if set, is told when events could not be applied or synced;
	// they stay in the intake and are tried again.
	Trouble func(webhookID string, events int, err error)
	// SyncDelay is how long applied events may wait for the sync round
	// that lets the intake forget them (time.Second when zero).
	SyncDelay time.Duration
}

// Intake is the shared intake log of a data directory.
type Intake struct {
	file    *sqliteFile
	sync    Synchronous // intake.db's, restored after forget's relaxed writes
	events  *WebhookDBManager
	opts    IntakeOptions
	commits groupCommitter
	insert  *sql.Stmt
	dedup   intakeDedup

	seq      int64 // the last seq given; the group-commit leader's alone
	replayed ReplayFigures
	// holdReplayed keeps the applier off replayed entries until
	// ReleaseReplayed (under mu).
	holdReplayed bool

	mu     sync.Mutex
	queues map[string]*intakeQueue
	// ready are the webhooks with entries to apply, in the order their
	// first entry arrived.
	ready []string
	// appliedNow are the entries applied in this sync epoch, to be
	// forgotten once their event DBs are synced (intakesync.go).
	appliedNow []intakeRef
	dirty      map[string]struct{} // webhooks applied to in this epoch
	syncArmed  bool                // a sync round is due (timer or signal)
	// held are the bytes of memory entries not yet applied count against
	// IntakeOptions.Memory; onDisk the bytes of the entries intake.db
	// holds (or is about to) against IntakeOptions.Size.
	held, onDisk int64
	kept         int64         // entries committed and not yet forgotten
	spilledNow   int64         // entries waiting in intake.db alone
	space        chan struct{} // closed when held or onDisk falls, then replaced
	closed       bool

	syncMu sync.Mutex // one sync round at a time

	wake  chan struct{} // entries are ready to apply
	syncs chan struct{} // a sync round is due
	stop  chan struct{}
	// stopping is a context ended by Close, for the applier's loop.
	stopping    context.Context
	endStopping context.CancelFunc
	loops       sync.WaitGroup

	// Figures, for tests and metrics.
	unapplied    atomic.Int64 // entries committed and not yet applied
	appliedTotal atomic.Int64
	spilledTotal atomic.Int64 // entries whose events were dropped from memory
	pauses       atomic.Int64 // waits of the applier after a cold open
	deduplicated atomic.Int64 // repeats answered with their original event
	dedupPruned  atomic.Int64 // expired dedup keys removed
}

// intakeEntry is one acknowledged event on its way to its event DB.
type intakeEntry struct {
	seq       int64
	webhookID string
	ev        *Event // nil until loaded, for a spilled or replayed entry
	rec       eventRecord
	targets   []Target // nil for a replayed entry
	// size counts against IntakeOptions.Size, and against Memory while
	// the entry's event is in memory.
	size int64
	// spilled entries were taken from intake.db, not memory: they count
	// intakeRefSize against Memory.
	spilled bool
}

// held is what e counts against IntakeOptions.Memory.
func (e *intakeEntry) held() int64 {
	if e.spilled {
		return intakeRefSize
	}
	return e.size
}

// intakeQueue is one webhook's entries waiting to be applied.
type intakeQueue struct {
	// apply is held while its entries are taken and written, so that a
	// flush waits for an apply under way.
	apply sync.Mutex
	// spilled (events in intake.db alone, intakespill.go), then entries
	// (in memory), oldest first, are guarded by Intake.mu; waiting counts
	// them (and those being applied) for flush's fast path.
	spilled []intakeRun
	entries []*intakeEntry
	inReady bool
	waiting atomic.Int64
	retry   *time.Timer // set while a failed apply waits to be tried again
	backoff time.Duration
	// failing is the error of the last apply, until one succeeds: the
	// webhook takes no new event meanwhile (see Ingest).
	failing error
}

// OpenIntake opens (creating if needed) the intake of data directory dir,
// whose event DBs events manages, replays what a crash left in it into
// them, and starts its applier. Reads through events apply its entries
// first from then on.
func OpenIntake(ctx context.Context, dir string, sync Synchronous, events *WebhookDBManager, opts IntakeOptions) (*Intake, error) {
	if opts.Memory <= 0 {
		opts.Memory = DefaultIntakeMemory
	}
	if opts.Size <= 0 {
		opts.Size = DefaultIntakeSize
	}
	if opts.SyncDelay <= 0 {
		opts.SyncDelay = time.Second
	}
	file, err := openSQLiteFile(filepath.Join(dir, intakeFileName), sync)
	if err != nil {
		return nil, err
	}
	in := &Intake{
		file: file, sync: cmp.Or(sync, SynchronousFull), events: events, opts: opts,
		queues: make(map[string]*intakeQueue), dirty: make(map[string]struct{}),
		space: make(chan struct{}), wake: make(chan struct{}, 1), syncs: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	in.stopping, in.endStopping = context.WithCancel(context.Background())
	fail := func(err error) (*Intake, error) {
		_ = file.close()
		return nil, fmt.Errorf("intake %s: %w", file.path, err)
	}
	if err := migrate(ctx, file.writer, intakeMigrations); err != nil {
		return fail(err)
	}
	if _, err := file.writer.ExecContext(ctx, fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", intakeCheckpointPages)); err != nil {
		return fail(err)
	}
	if in.insert, err = file.writer.PrepareContext(ctx, sqlInsertIntake); err != nil {
		return fail(err)
	}
	if err := in.prepareDedup(ctx); err != nil {
		return fail(err)
	}
	in.commits.commit = in.commitBatch
	if err := in.replay(ctx); err != nil {
		return fail(err)
	}
	events.intake.Store(in)
	in.loops.Add(2)
	go in.applyLoop()
	go in.syncLoop()
	return in, nil
}

// ErrIntakeClosed is returned by Ingest once the intake is closing.
var ErrIntakeClosed = errors.New("the intake is closed")

// Ingest stores ev for webhook webhookID, with one delivery per target,
// and returns once it is durable in the intake: the caller may then
// acknowledge it. ev's id and time of receipt are assigned when empty. Its
// deliveries reach the engine through IntakeOptions.Applied. When ev.Dedup
// has a key that is live for the webhook, nothing is stored: ev.Dedup.Repeat
// is set and ev.ID is the original event's (dedup.go). ctx bounds the
// wait for memory and for the commit; once the commit has begun its outcome
// is the answer. It waits while intake.db holds IntakeOptions.Size bytes
// of events not yet synced into their event DBs.
func (in *Intake) Ingest(ctx context.Context, webhookID string, ev *Event, targets []Target) error {
	if err := in.failing(webhookID); err != nil {
		return err
	}
	rec, err := newEventRecord(ev, targets)
	if err != nil {
		return err
	}
	e := &intakeEntry{webhookID: webhookID, ev: ev, rec: rec, targets: targets,
		size: int64(len(ev.Body)+len(rec.headers)) + intakeEntryOverhead}
	if err := in.reserve(ctx, e.size); err != nil {
		return err
	}
	err = in.commits.submit(&commitRequest{size: len(ev.Body), entry: e, ctx: ctx})
	if err != nil {
		in.release(e.size)
		return fmt.Errorf("store event of webhook %s in the intake: %w", webhookID, err)
	}
	return nil
}

// failing refuses an event for a webhook whose event DB the applier
// cannot write: the events it took before wait in the intake, in memory,
// and taking more would let one broken file hold the memory every webhook
// shares. The provider is answered 503 and sends it again later.
func (in *Intake) failing(webhookID string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if q := in.queues[webhookID]; q != nil && q.failing != nil {
		return fmt.Errorf("the event DB of webhook %s cannot be written, %d acknowledged events wait for it: %w",
			webhookID, q.waiting.Load(), q.failing)
	}
	return nil
}

// reserve waits until an entry of size bytes fits under both bounds, or
// ctx ends. Past the memory bound it first spills the events of other
// webhooks' entries; it waits for memory only when none is left to spill
// (all are being committed or applied). A lone entry always fits.
func (in *Intake) reserve(ctx context.Context, size int64) error {
	for {
		in.mu.Lock()
		if in.closed {
			in.mu.Unlock()
			return ErrIntakeClosed
		}
		onDisk := in.onDisk == 0 || in.onDisk+size <= in.opts.Size
		if onDisk && in.held > 0 && in.held+size > in.opts.Memory {
			in.spill(in.held + size - int64(float64(in.opts.Memory)*spillTo))
		}
		if onDisk && (in.held == 0 || in.held+size <= in.opts.Memory) {
			in.held += size
			in.onDisk += size
			in.mu.Unlock()
			return nil
		}
		space, held, disk := in.space, in.held, in.onDisk
		in.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			if !onDisk {
				return fmt.Errorf("wait for room in the intake: it holds %d bytes of acknowledged events not yet in their event DBs, its bound is %d: %w",
					disk, in.opts.Size, ctx.Err())
			}
			return fmt.Errorf("wait for the intake's applier: %d bytes of acknowledged events held in memory, the bound is %d: %w",
				held, in.opts.Memory, ctx.Err())
		}
	}
}

// release gives back the bytes of an entry not written, and wakes the
// ingests waiting for them.
func (in *Intake) release(size int64) {
	in.mu.Lock()
	in.held -= size
	in.onDisk -= size
	in.freed()
	in.mu.Unlock()
}

// freed wakes the ingests waiting for room. Under in.mu.
func (in *Intake) freed() {
	close(in.space)
	in.space = make(chan struct{})
}

// intakeDelivery is a delivery as the intake stores it.
type intakeDelivery struct {
	ID     string `json:"id"`
	Target string `json:"target"`
	Kept   bool   `json:"kept,omitempty"`
}

func encodeIntakeDeliveries(rec eventRecord) ([]byte, error) {
	out := make([]intakeDelivery, 0, len(rec.pending)+len(rec.kept))
	for _, d := range rec.pending {
		out = append(out, intakeDelivery{ID: d.ID, Target: d.TargetID})
	}
	for _, d := range rec.kept {
		out = append(out, intakeDelivery{ID: d.ID, Target: d.TargetID, Kept: true})
	}
	return json.Marshal(out)
}

// commitBatch writes a batch of entries in one transaction and, once it has
// committed, queues them for the applier in seq order, before any of their
// ingests is answered. If anything fails, none is written.
func (in *Intake) commitBatch(batch []*commitRequest) error {
	ctx := context.Background() // not a request's: the batch carries others
	rows := make([][]any, len(batch))
	for i, r := range batch {
		e := r.entry
		deliveries, err := encodeIntakeDeliveries(e.rec)
		if err != nil {
			return fmt.Errorf("encode deliveries: %w", err)
		}
		ev, body := e.ev, e.ev.Body
		if body == nil {
			body = []byte{}
		}
		rows[i] = []any{nil, e.webhookID, ev.ID, ev.EntrypointID, ev.EntrypointKey, ev.Method, ev.Path, ev.Query,
			string(e.rec.headers), body, ev.ContentType, ev.RemoteAddr, ev.ReceivedAt.UnixNano(), ev.Verified, string(deliveries)}
	}
	tx, err := in.file.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	stmt := tx.StmtContext(ctx, in.insert)
	seq := in.seq
	now := time.Now()
	// originals[i] is the event entry i repeats ("" for none): its row is
	// not written. A key claimed earlier in this same transaction is live
	// too, so that two copies in one batch make one event.
	var originals []string
	pruned := in.dedup.pruneAt
	rollback := func(err error) error {
		_ = tx.Rollback()
		in.dedup.pruneAt = pruned
		return err
	}
	if err := in.pruneDedup(ctx, tx, now); err != nil {
		return rollback(err)
	}
	for i, r := range batch {
		if r.entry.ev.Dedup.Key != "" {
			original, err := in.claimDedup(ctx, tx, r.entry, now)
			if err != nil {
				return rollback(err)
			}
			if original != "" {
				if originals == nil {
					originals = make([]string, len(batch))
				}
				originals[i] = original
				continue
			}
		}
		seq++
		r.entry.seq = seq
		rows[i][0] = seq
		if _, err := stmt.ExecContext(ctx, rows[i]...); err != nil {
			return rollback(fmt.Errorf("write: %w", err))
		}
	}
	if err := tx.Commit(); err != nil {
		in.dedup.pruneAt = pruned
		return err
	}
	in.seq = seq
	if moved, err := in.file.replaced(); err != nil || moved {
		// Committed into a file nobody will read again: not durable. The
		// entries are not queued either; their ingests get the error.
		return errors.Join(err, fmt.Errorf("%s was removed or replaced while open", in.file.path))
	}
	entries := make([]*intakeEntry, 0, len(batch))
	for i, r := range batch {
		if originals != nil && originals[i] != "" {
			// A repeat: answered with the event it repeats, nothing queued.
			r.entry.ev.ID, r.entry.ev.Dedup.Repeat = originals[i], true
			in.release(r.entry.size)
			in.deduplicated.Add(1)
			continue
		}
		entries = append(entries, r.entry)
	}
	in.queue(entries)
	return nil
}

// queue hands committed entries, in seq order, to the applier.
func (in *Intake) queue(entries []*intakeEntry) {
	in.mu.Lock()
	for _, e := range entries {
		q := in.queues[e.webhookID]
		if q == nil {
			q = &intakeQueue{}
			in.queues[e.webhookID] = q
		}
		q.entries = append(q.entries, e)
		q.waiting.Add(1)
		in.unapplied.Add(1)
		in.kept++
		// Replayed entries wait for a read of their webhook, or for
		// ReleaseReplayed, unless a fresh one comes along (replay).
		if !q.inReady && q.retry == nil {
			q.inReady = true
			in.ready = append(in.ready, e.webhookID)
		}
	}
	in.mu.Unlock()
	signal(in.wake)
}

// signal wakes whoever waits on c, at most once until it takes the signal.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Close stops taking events, applies every entry it still holds, syncs the
// event DBs, forgets what they now hold and closes the intake. What it
// could not apply stays in the intake for the next start.
func (in *Intake) Close(ctx context.Context) error {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return nil
	}
	in.closed = true
	close(in.space) // ingests waiting for memory give up
	in.space = make(chan struct{})
	in.mu.Unlock()
	close(in.stop)
	in.endStopping()
	done := make(chan struct{})
	go func() {
		in.loops.Wait()
		close(done)
	}()
	var errs []error
	select {
	case <-done:
		// The loops are gone: what is left is applied here, for a quarter
		// of the time ctx leaves at most (the rest of a stop has its
		// share to do); what is not stays in the intake for the next start,
		// which applies it as it goes.
		budget, cancel := context.WithTimeout(ctx, closeApplyBudget(ctx))
		in.applyReadyUntil(budget, false)
		if budget.Err() == nil {
			in.applyRetrying()
		}
		cancel()
		in.syncRound()
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("intake: applier still running: %w", ctx.Err()))
	}
	in.events.intake.CompareAndSwap(in, nil)
	if err := in.file.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// closeApplyBudget is how long Close applies what is left: a quarter of
// what ctx leaves, or two seconds when it sets no deadline.
func closeApplyBudget(ctx context.Context) time.Duration {
	if deadline, ok := ctx.Deadline(); ok {
		return time.Until(deadline) / 4
	}
	return 2 * time.Second
}

// IntakeFigures are what an Intake has done so far.
type IntakeFigures struct {
	Memory    int64 // the bound on Held (IntakeOptions.Memory)
	Held      int64 // bytes of memory the entries not yet applied hold
	Size      int64 // the bound on OnDisk (IntakeOptions.Size)
	OnDisk    int64 // bytes of the entries intake.db holds
	Unapplied int64 // entries not yet applied to their event DB
	// Spilled are the unapplied entries whose events are in intake.db
	// alone (spilled past Memory, or replayed), not being applied now.
	Spilled      int64
	SpilledTotal int64 // entries spilled since open
	Waiting      int64 // entries not yet synced into their event DB (unapplied ones included)
	Applied      int64 // entries applied since open
	// Paused counts the applier's waits after an apply that opened a cold
	// event DB while more webhooks waited (intakeapply.go).
	Paused int64
	// Deduplicated counts the repeats answered with their original event,
	// DedupPruned the expired dedup keys removed (dedup.go).
	Deduplicated, DedupPruned int64
}

// Figures reports what the intake holds and has done.
func (in *Intake) Figures() IntakeFigures {
	in.mu.Lock()
	defer in.mu.Unlock()
	return IntakeFigures{
		Memory: in.opts.Memory, Held: in.held, Size: in.opts.Size, OnDisk: in.onDisk,
		Unapplied: in.unapplied.Load(), Spilled: in.spilledNow, SpilledTotal: in.spilledTotal.Load(),
		Waiting: in.kept, Applied: in.appliedTotal.Load(), Paused: in.pauses.Load(),
		Deduplicated: in.deduplicated.Load(), DedupPruned: in.dedupPruned.Load(),
	}
}
