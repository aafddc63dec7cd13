package engine

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/internal/duequeue"
	"github.com/webhooker/caddy-webhooker/storage"
)

// Defaults of Options.
const (
	// DefaultWorkers is sized for attempts that mostly wait: for their
	// in-flight mark's commit (the writer is busy with the intake's applies
	// at full-speed ingest: 10-20 ms on a loaded 2-core machine) and for the
	// target. To keep up, a target answering at once needs about its rate ×
	// that wait attempts in flight: thousands a second need tens. Each
	// target gets a quarter, 64 (at 32 workers, 8: the full-speed delivery
	// check delivered 6-8 % of ingest during the load). An idle worker is a
	// parked goroutine, nothing more; bodies read from the event DB are
	// bounded apart (maxLargeBodiesInFlight).
	DefaultWorkers        = 256
	DefaultQueueSize      = 4096
	DefaultRetryQueueSize = 1024
)

// maxLargeBodiesInFlight bounds the attempts holding a body read from the
// event DB (InlineBodyLimit and over, up to max_body_size each): as many as
// there were workers before DefaultWorkers grew, so that the memory they
// hold stays what it was. Small bodies travel inline in their tasks.
const maxLargeBodiesInFlight = 32

// Options configures an Engine.
type Options struct {
	// Workers is the number of deliveries attempted at once.
	Workers int
	// QueueSize is the capacity of the channel of fresh tasks; RetryQueueSize
	// that of deliveries whose retry is due or that were read back from the
	// event DBs. When either is full nothing is lost: the delivery is pending
	// in its event DB, and the engine reads it back once there is room.
	QueueSize      int
	RetryQueueSize int
	Logger         *zap.Logger
	// Client sends http deliveries; by default one that follows no redirect
	// and enforces Policy on every connection. A client given here enforces
	// what it likes: Policy is not applied to it.
	Client *http.Client
	// Policy decides which addresses http targets may connect to; nil is
	// NewTargetPolicy(PolicyConfig{}): tenants' targets reach public
	// addresses only, and no admin endpoint is known.
	Policy *TargetPolicy
	// GatewayID is this gateway's id in the hop marker of its deliveries
	// (HopHeader); by default a random one (see Engine.GatewayID).
	GatewayID string
	// Recorded, if set, is told of every attempt once it is recorded: the
	// target's type and where the delivery stands after it (for metrics).
	// Observer tells more; Recorded stays for those not moved to it.
	Recorded func(targetType storage.TargetType, status storage.DeliveryStatus)
	// Observer is told of every recorded attempt, of deliveries that give
	// up, and of circuit breakers that open and close (observer.go).
	// Default: NopObserver.
	Observer Observer
	// Recovered, if set, is called once the start-up scans of every
	// webhook have read their event DBs (after Start).
	Recovered func()
	// MaxPerTarget bounds the http attempts in flight to one target, so that
	// a target that answers slowly or never holds no more than its share of
	// the workers. An attempt holds its slot from its in-flight mark to the
	// end of the exchange, not while its outcome is recorded (outcomes.go).
	// Default: max(1, Workers/4).
	MaxPerTarget int
}

// Engine delivers events to targets. It is event-driven: workers wait on two
// channels (fresh tasks from ingest, and references to deliveries to read
// back from the event DBs), failed attempts wait in their event DBs for the
// schedule (schedule.go: one entry per webhook, one timer) to read them
// back, and nothing runs, wakes or queries while there is nothing to do.
type Engine struct {
	opts Options
	// logger is the logger of the configuration in force, swapped with it:
	// an unloaded config's log writers are closed, and the log target
	// must not write to them.
	logger   atomic.Pointer[zap.Logger]
	client   *http.Client
	events   *storage.WebhookDBManager
	snapshot atomic.Pointer[storage.Snapshot]
	// policy is the target policy in force, read at every dial.
	policy atomic.Pointer[TargetPolicy]

	queue   chan Task
	retries chan deliveryRef
	// slots bounds the attempts in flight per target and parks the rest.
	slots *targetSlots
	// rates paces each target: its rate_limit and its 429s (ratelimit.go).
	rates *targetRates
	// rateHeld counts the deliveries put off for their target's rate.
	rateHeld atomic.Int64
	// lines are the lines of the ordered targets (ordered.go).
	lines *lines

	// owned holds the ids of deliveries the engine has in hand (queued,
	// running, parked for a slot of their target, or waiting out a storage
	// fault), so that a read of an event DB never starts a second attempt
	// of one of them. Bounded by the queues, the workers and the FIFOs: a
	// delivery waiting for its retry time is not in hand.
	owned sync.Map

	timersMu sync.Mutex
	// faultTimers are the deliveries in hand whose event DB failed, each
	// waiting out its storage fault (storageTrouble): delivery id -> timer.
	faultTimers map[string]*time.Timer
	// cancelled are deliveries in hand that the operator cancelled: an
	// attempt recorded just before the cancel must not tell the schedule
	// of them (schedule). Removed when the delivery is let go (release).
	cancelled sync.Map

	breakersMu sync.Mutex
	breakers   map[string]*breaker // target id -> its breaker

	// storageFaults holds the run of storage failures of each delivery in
	// hand that its event DB is failing (delivery id -> storageFault), and
	// storageRetry the waits between its tries (attempt.go).
	storageFaults sync.Map
	storageRetry  struct{ first, max time.Duration }
	// readFaults is the same for the reads of webhooks' due deliveries
	// (webhook id -> storageFault).
	readFaults sync.Map

	// scanMu guards the schedule (schedule.go) and the reader (scan.go).
	scanMu sync.Mutex
	// due holds the time each webhook comes due, earliest first; dueTimer
	// is the one timer, set for the earliest (at dueTimerAt) while the
	// reader is not running.
	due        duequeue.Queue[string] // webhook id -> due time
	dueTimer   *time.Timer
	dueTimerAt time.Time
	scanning   bool // the reader runs
	// recovering are the webhooks whose start-up read is still to come: it
	// alone counts the attempts the previous process died during.
	recovering map[string]bool
	// recovered adds up what the start-up scans found, logged once the
	// last of them is done (recovery.go).
	recovered recoveryCounts

	// cutShort counts the attempts a stop's grace period cut short.
	cutShort atomic.Int64

	// attempts is the context of delivery attempts: cancelled only when a
	// stop's grace period runs out.
	attempts      context.Context
	abortAttempts context.CancelFunc
	stopping      chan struct{}
	stopOnce      sync.Once
	workers       sync.WaitGroup // the workers and the reader (scan.go)
	// recording counts the outcomes of attempts handed to a recorder and
	// not yet committed (outcomes.go); outcomeRoom bounds them.
	recording   sync.WaitGroup
	outcomeRoom chan struct{}
	// largeBodies bounds the attempts holding a body read from the event
	// DB (maxLargeBodiesInFlight).
	largeBodies chan struct{}
}

// deliveryRef names a delivery to read back from its event DB.
type deliveryRef struct {
	webhookID  string
	deliveryID string
	// slot is the target whose slot an ending attempt handed on to this
	// parked delivery: it attempts without taking another.
	slot string
	// task, when set, is the delivery parked whole (targetslots.go): it is
	// attempted from it, with attempts before, instead of read back.
	// taskBytes is what it counts against the bound of such tasks.
	task      *Task
	attempts  int
	taskBytes int
	// line, when set, names an ordered target whose line to check
	// (runLine): deliveryID is then empty.
	line string
}

// New makes an engine for the event DBs of events. Call SetSnapshot, then Start.
func New(events *storage.WebhookDBManager, opts Options) *Engine {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.RetryQueueSize <= 0 {
		opts.RetryQueueSize = DefaultRetryQueueSize
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Policy == nil {
		opts.Policy, _ = NewTargetPolicy(PolicyConfig{}) // nothing in it to refuse
	}
	if opts.GatewayID == "" {
		opts.GatewayID = uuid.NewString()
	}
	if opts.MaxPerTarget <= 0 {
		opts.MaxPerTarget = max(1, opts.Workers/4)
	}
	if opts.Observer == nil {
		opts.Observer = NopObserver{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		opts: opts, client: opts.Client, events: events,
		queue:       make(chan Task, opts.QueueSize),
		retries:     make(chan deliveryRef, opts.RetryQueueSize),
		slots:       newTargetSlots(opts.MaxPerTarget, DefaultMaxParkedPerTarget),
		rates:       newTargetRates(),
		lines:       newLines(),
		faultTimers: make(map[string]*time.Timer),
		breakers:    make(map[string]*breaker),
		attempts:    ctx, abortAttempts: cancel,
		stopping:    make(chan struct{}),
		outcomeRoom: make(chan struct{}, maxOutcomesPending),
		largeBodies: make(chan struct{}, maxLargeBodiesInFlight),
	}
	e.storageRetry.first, e.storageRetry.max = storageRetryFirst, storageRetryMax
	e.policy.Store(opts.Policy)
	e.logger.Store(opts.Logger)
	if e.client == nil {
		e.client = newHTTPClient(e.policy.Load)
	}
	return e
}

// SetLogger puts the logger of a new configuration in force: the log
// target and the engine's own messages write to it from now on.
func (e *Engine) SetLogger(l *zap.Logger) {
	if l != nil {
		e.logger.Store(l)
	}
}

// log is the logger in force.
func (e *Engine) log() *zap.Logger { return e.logger.Load() }

// SetTargetPolicy puts a new target policy in force (a reload): the next
// connection obeys it. Idle connections made under the old one are closed,
// so that none it would refuse stays in use.
func (e *Engine) SetTargetPolicy(p *TargetPolicy) {
	if p == nil || e.policy.Swap(p) == p {
		return
	}
	e.client.CloseIdleConnections()
}

// CheckTargetURL is the target policy in force's verdict on a target URL
// (TargetPolicy.CheckURL), for a clear refusal when a target is created.
func (e *Engine) CheckTargetURL(ctx context.Context, rawURL string, tenant bool) error {
	return e.policy.Load().CheckURL(ctx, rawURL, tenant)
}

// SetSnapshot puts a new configuration in force. Attempts read the target's
// settings from the snapshot when they start, so a changed target applies to
// its next attempt.
func (e *Engine) SetSnapshot(s *storage.Snapshot) {
	e.snapshot.Store(s)
	e.linesUnordered(s)
}

// Snapshot is the configuration in force (nil before SetSnapshot).
func (e *Engine) Snapshot() *storage.Snapshot { return e.snapshot.Load() }

// webhookLive reports whether a webhook is in the configuration in force:
// the engine does not touch the event DB of a deleted one.
func (e *Engine) webhookLive(id string) bool {
	snap := e.snapshot.Load()
	if snap == nil {
		return false
	}
	_, ok := snap.Webhook(id)
	return ok
}

// Start starts the workers and the recovery: every webhook is due at once,
// so that its event DB is read: pending deliveries run at once, retrying
// ones that are due too, and the webhook's entry in the schedule waits for
// the next.
func (e *Engine) Start() {
	var ids []string
	if snap := e.snapshot.Load(); snap != nil {
		for _, w := range snap.Webhooks() {
			ids = append(ids, w.ID)
		}
	}
	// Before any worker runs: no other read of these webhooks may come first.
	e.scanMu.Lock()
	e.recovering = make(map[string]bool, len(ids))
	for _, id := range ids {
		e.recovering[id] = true
	}
	e.recovered.remaining = len(ids)
	e.scanMu.Unlock()
	for range e.opts.Workers {
		e.workers.Add(1)
		go e.work()
	}
	if len(ids) == 0 {
		e.logRecovered()
	}
	e.dueNow(ids...)
}

// Stop stops taking work and waits for attempts in flight (and a scan under
// way) to finish until ctx is done; then it cuts them short. An attempt cut
// short is not recorded: its delivery stays as it was in its event DB, and
// runs again after restart. Nothing undelivered is ever marked delivered.
// Every attempt that ended has its outcome committed when Stop returns.
func (e *Engine) Stop(ctx context.Context) {
	first, onTimers := false, 0
	e.stopOnce.Do(func() {
		first = true
		// Under scanMu: once stopping is closed, no reader starts (and
		// joins the WaitGroup waited for below).
		e.scanMu.Lock()
		close(e.stopping)
		onTimers = e.stopScheduleLocked()
		e.scanMu.Unlock()
		e.timersMu.Lock()
		for id, t := range e.faultTimers {
			if t.Stop() {
				onTimers++
			}
			delete(e.faultTimers, id)
		}
		e.timersMu.Unlock()
	})
	done := make(chan struct{})
	go func() { e.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		e.abortAttempts()
		<-done
	}
	e.abortAttempts()
	// The attempts that ended are recorded before Stop returns, however
	// long their writes take: an outcome is never dropped.
	e.recording.Wait()
	if first {
		// What is left is open in the event DBs, for the next start.
		// on_retry_timers keeps its name; it counts the retry waits as
		// PendingTimers does (webhooks with a due time, storage faults).
		fresh, retry := e.QueueLengths()
		e.log().Info("delivery engine stopped",
			zap.Int("deliveries_queued", fresh+retry), zap.Int("on_retry_timers", onTimers),
			zap.Int("parked", e.ParkedDeliveries()), zap.Int64("attempts_cut_short", e.cutShort.Load()))
	}
}

func (e *Engine) stopped() bool {
	select {
	case <-e.stopping:
		return true
	default:
		return false
	}
}

// Notify implements Notifier. It never blocks: a task that does not fit in
// the queue is left to the event DB, which is scanned once there is room.
func (e *Engine) Notify(tasks []Task) {
	for _, t := range tasks {
		if e.orderedTarget(t.WebhookID, t.Target.ID) {
			// Not taken in hand: it goes when it is the head of its line.
			e.joinedLine(t.WebhookID, t.Target.ID)
			continue
		}
		if _, inHand := e.owned.LoadOrStore(t.DeliveryID, struct{}{}); inHand {
			continue
		}
		select {
		case e.queue <- t:
		default:
			e.owned.Delete(t.DeliveryID)
			e.wantScan(t.WebhookID)
		}
	}
}

func (e *Engine) work() {
	defer e.workers.Done()
	for {
		select {
		case <-e.stopping:
			return
		case t := <-e.queue:
			// select picks at random among ready cases: a stop that began
			// must win over work still queued, or Stop would wait for
			// attempts that were never in flight.
			if e.stopped() {
				e.release(t.DeliveryID)
				return
			}
			e.runOnward(e.runTask(&t, 0, ""))
		case ref := <-e.retries:
			if e.stopped() {
				e.release(ref.deliveryID)
				return
			}
			e.runOnward(e.runRef(ref))
		}
	}
}

// runOnward runs the parked deliveries that ending attempts handed their
// target's slot to, one after the other on this worker: the target keeps
// the workers it had, no more.
func (e *Engine) runOnward(next *deliveryRef) {
	for next != nil {
		if e.stopped() {
			// Left open in its event DB, for the next start.
			e.release(next.deliveryID)
			return
		}
		next = e.runRef(*next)
	}
}

// endSlot ends one use of a slot of targetID (none when it is empty) and
// returns the parked delivery the slot passes to, for the caller to run.
func (e *Engine) endSlot(targetID string) *deliveryRef {
	if targetID == "" {
		return nil
	}
	next, ok, scan := e.slots.done(targetID)
	e.wantScan(scan...)
	if !ok {
		return nil
	}
	return &next
}

// ParkedDeliveries is the number of deliveries waiting for a slot of their
// target.
func (e *Engine) ParkedDeliveries() int { return e.slots.parkedCount() }

// release lets go of a delivery: a later scan may pick it up again. The
// line of an ordered target whose head it was holds nothing now, and waits
// for whatever made its webhook due to read it (releaseDone, when the
// delivery is done with, checks the line at once).
func (e *Engine) release(deliveryID string) {
	e.lines.letGo(deliveryID, false)
	e.owned.Delete(deliveryID)
	e.storageFaults.Delete(deliveryID)
	e.cancelled.Delete(deliveryID)
}

// schedule lets go of a delivery whose next attempt time, at, is recorded
// in its event DB, and tells the schedule of its webhook: it is read back
// from there when due. Nothing is kept for the delivery itself.
func (e *Engine) schedule(ref deliveryRef, at time.Time) {
	if _, cancelled := e.cancelled.Load(ref.deliveryID); cancelled {
		e.releaseDone(ref.webhookID, ref.deliveryID) // failed in its event DB: nothing comes due
		return
	}
	// The head of a line waits for at with its line: what joins meanwhile
	// is behind it.
	e.lines.letGo(ref.deliveryID, true)
	e.release(ref.deliveryID)
	e.dueAt(ref.webhookID, at)
}

// waitOutFault keeps a delivery whose event DB failed in hand until at, on
// a timer of its own, then queues it for reading back. Such deliveries are
// few (those in hand when the fault began: the schedule reads nothing from
// a failing event DB), and the run of failures is theirs (storageFaults).
func (e *Engine) waitOutFault(ref deliveryRef, at time.Time) {
	e.timersMu.Lock()
	defer e.timersMu.Unlock()
	if e.stopped() {
		return
	}
	if _, ok := e.cancelled.Load(ref.deliveryID); ok {
		e.releaseDone(ref.webhookID, ref.deliveryID) // failed in its event DB: nothing to wait for
		return
	}
	e.faultTimers[ref.deliveryID] = time.AfterFunc(time.Until(at), func() {
		e.timersMu.Lock()
		delete(e.faultTimers, ref.deliveryID)
		e.timersMu.Unlock()
		e.requeue(ref)
	})
}

// requeue hands a delivery in hand whose time has come to the workers, or,
// if their channel is full, lets go of it for the reader to find once there
// is room.
func (e *Engine) requeue(ref deliveryRef) {
	select {
	case e.retries <- ref:
	default:
		e.release(ref.deliveryID)
		e.wantScan(ref.webhookID)
	}
}

// releaseHeld makes due now the deliveries an open circuit breaker held
// (until the times in heldUntil), now that a probe found the target well:
// they are brought forward in the event DB, and their webhook is read.
func (e *Engine) releaseHeld(webhookID, targetID string, heldUntil []time.Time) {
	ctx := context.Background()
	for _, until := range heldUntil {
		err := e.events.With(ctx, webhookID, func(db *storage.WebhookDB) error {
			_, err := db.ReleaseHeld(ctx, targetID, until)
			return err
		})
		if err != nil {
			// They go at the time they were held until: late, not lost.
			e.log().Error("releasing the deliveries a circuit breaker held", zap.String("webhook", webhookID),
				zap.String("target", targetID), zap.Time("held_until", until), zap.Error(err))
		}
	}
	e.wantScan(webhookID)
}

// QueueLengths are the numbers of tasks waiting in the channel of fresh
// deliveries and in that of deliveries to read back.
func (e *Engine) QueueLengths() (fresh, retry int) { return len(e.queue), len(e.retries) }

// PendingTimers is the number of retry waits the engine holds: the webhooks
// waiting for a due time still to come (one each, however many of their
// deliveries wait: schedule.go), and the deliveries in hand waiting out a
// storage fault. No retrying delivery has a timer of its own.
func (e *Engine) PendingTimers() int {
	n := e.webhooksWaiting()
	e.timersMu.Lock()
	defer e.timersMu.Unlock()
	return n + len(e.faultTimers)
}

// breaker returns the circuit breaker of a target, with its current settings.
func (e *Engine) breaker(targetID string, s httpSettings) *breaker {
	e.breakersMu.Lock()
	defer e.breakersMu.Unlock()
	b := e.breakers[targetID]
	if b == nil {
		b = &breaker{}
		e.breakers[targetID] = b
	}
	b.mu.Lock()
	b.threshold, b.cooldown = s.breakerThreshold, s.breakerCooldown
	b.mu.Unlock()
	return b
}

// BreakerState is the state of a target's circuit breaker: closed, open or
// half-open.
func (e *Engine) BreakerState(targetID string) string {
	e.breakersMu.Lock()
	b := e.breakers[targetID]
	e.breakersMu.Unlock()
	if b == nil {
		return breakerClosed.String()
	}
	return b.State()
}

var _ Notifier = (*Engine)(nil)
