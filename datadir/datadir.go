// Package datadir owns a running gateway, one per data directory: its lock,
// main DB and event DBs, its one delivery engine, the configuration in force
// (declared webhooks, target policy, tenant quotas, logger), ingest with its
// fan-out to the engine, redelivery and retention. It knows nothing of
// Caddy: caddymodule keeps one Dir per data_dir across config reloads and
// hands it each config's Declaration.
package datadir

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/cluster"
	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// Options are a Dir's settings that hold for as long as it is open.
type Options struct {
	// Synchronous is SQLite's durability setting of every file.
	Synchronous storage.Synchronous
	// MaxOpenEventDBs bounds the event DBs kept open at once.
	MaxOpenEventDBs int
	// IntakeMemory bounds the acknowledged events the intake holds in
	// memory until applied (storage.DefaultIntakeMemory when zero).
	IntakeMemory int64
	// IntakeSize bounds the acknowledged events intake.db holds until
	// they are synced into their event DBs (storage.DefaultIntakeSize
	// when zero).
	IntakeSize int64
	// Workers, QueueSize, RetryQueueSize and MaxPerTarget size the engine
	// (see engine.Options); zero values mean the engine's defaults.
	Workers, QueueSize, RetryQueueSize, MaxPerTarget int
	// StopGracePeriod bounds how long Close waits for attempts in flight and
	// prunings under way.
	StopGracePeriod time.Duration
	// GatewayID is this gateway's id in the hop marker of its deliveries.
	GatewayID string
	// Logger is the logger of the storage's own events; each Declaration
	// brings the logger of its config, which the engine then uses.
	Logger *zap.Logger
	// Recorded, if set, is told of every recorded attempt (for metrics).
	Recorded func(storage.TargetType, storage.DeliveryStatus)
	// Observer, if set, is told what the engine does (for metrics), along
	// with the alerts and the live updates the Dir makes of it.
	Observer engine.Observer
	// Cluster, if set, puts the Dir in cluster mode: its ingests go to the
	// replicated intake stream (cluster.go), not to intake.db.
	Cluster *cluster.Options
	// MaxEventBytes bounds an event's body (max_body_size), which bounds a
	// message of the cluster's intake stream.
	MaxEventBytes int64
}

// Declaration is what one configuration puts in force: its declared
// webhooks, the target policy and tenant quotas that apply, the logger
// the engine writes to (the log target's destination), and where alerts
// go.
type Declaration struct {
	Webhooks []*storage.Webhook
	Policy   *engine.TargetPolicy
	Quotas   storage.Quotas
	Logger   *zap.Logger
	// OperationalWebhook, if set, is POSTed every Alert, signed like an
	// http target with its options.
	OperationalWebhook *OperationalWebhook
	// PublicURL is the base URL of the entrypoints, for the UI ("": the
	// page's own origin).
	PublicURL string
	// Alerted, if set, is told of every Alert (Caddy events). It must not
	// block: it is called on the engine's goroutines.
	Alerted func(Alert)
}

// Dir is the running gateway of one data directory.
type Dir struct {
	path string
	opts Options

	lock   *os.File // held while open: one process per data directory
	main   *storage.MainDB
	events *storage.WebhookDBManager
	intake *storage.Intake
	// cluster is this node's part in the cluster, nil when not in
	// cluster mode (Options.Cluster).
	cluster *cluster.Cluster
	// ingesting counts each webhook's ingests in flight (ingestRoute).
	ingesting sync.Map // webhook id -> *atomic.Int64
	engine    *engine.Engine
	retention *retention
	alerts    *alertSender
	// changes tells the event log's live updates which webhooks changed.
	changes *admin.Changes
	// background is the lifetime of the API's bulk redelivery jobs, ended
	// by Close, which then waits for the jobs of every Backend made.
	background     context.Context
	stopBackground context.CancelFunc
	// jobs are the bulk redelivery jobs of every Backend made here, kept
	// across reloads.
	jobs admin.RedeliveryJobs
	// seeding is the publishing of this node's configuration to the
	// cluster's log (clusterconfig.go), which the end of background stops.
	seeding sync.WaitGroup

	reloadMu sync.Mutex // orders loads and swaps of the engine's snapshot
	pauseMu  sync.Mutex // one pause or resume at a time (SetTargetPaused)
	start    sync.Once

	backingUp sync.Mutex // one Backup at a time

	mu sync.Mutex
	// declarations are those of the configs started, oldest first; the
	// newest is in force.
	declarations []*Declaration
	// current is the declaration in force, for the engine's goroutines
	// (alerts), which must not wait for d.mu.
	current atomic.Pointer[Declaration]
	// apis serve the admin API and the tenant API, made anew with each
	// declaration put in force (its quotas); nil until the first.
	apis atomic.Pointer[apiHandlers]
}

// Open locks the data directory, creating it (0700) if needed, then opens
// its storage and makes its engine, not started. The lock comes first, so
// that a second process on the same directory is refused before it
// creates, migrates or rewrites any file there.
func Open(path string, opts Options) (d *Dir, err error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if err := storage.CreateDataDir(path); err != nil {
		return nil, err
	}
	if warning := storage.DataDirWarning(path); warning != "" {
		opts.Logger.Warn(warning, zap.String("data_dir", path))
	}
	lock, err := lockDataDir(path)
	if err != nil {
		return nil, err
	}
	d = &Dir{path: path, opts: opts, lock: lock, changes: admin.NewChanges()}
	d.background, d.stopBackground = context.WithCancel(context.Background())
	// Not d: a failed return sets it to nil before this runs.
	opened := d
	defer func() {
		if err != nil {
			err = errors.Join(err, opened.closeStorage(context.Background()))
		}
	}()
	ctx := context.Background()
	d.events, err = storage.NewWebhookDBManager(path, storage.ManagerOptions{
		Synchronous: opts.Synchronous, MaxOpen: opts.MaxOpenEventDBs,
	})
	if err != nil {
		return nil, err
	}
	d.main, err = storage.OpenMainDB(ctx, path, opts.Synchronous)
	if err != nil {
		return nil, err
	}
	snap, err := d.main.LoadSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	// Before removeOrphans: a webhook deleted before a crash may have events
	// left in the intake; removeOrphans deletes its file, and the applier
	// then drops them.
	if err := d.openIntake(ctx); err != nil {
		return nil, err
	}
	d.removeOrphans(ctx)
	d.retention = newRetention(d.events, opts.Logger.Named("retention"))
	d.retention.configure(snap.Webhooks())
	extra := opts.Observer
	if extra == nil {
		extra = engine.NopObserver{}
	}
	d.engine = engine.New(d.events, engine.Options{
		Workers:        opts.Workers,
		QueueSize:      opts.QueueSize,
		RetryQueueSize: opts.RetryQueueSize,
		MaxPerTarget:   opts.MaxPerTarget,
		GatewayID:      opts.GatewayID,
		Logger:         opts.Logger.Named("engine"),
		Recorded:       opts.Recorded,
		Observer:       dirObserver{d: d, extra: extra},
		// Its start-up scan has applied the replayed events of every webhook
		// it knows: the intake's applier takes what is left.
		Recovered: d.intake.ReleaseReplayed,
	})
	d.alerts = newAlertSender(d.engine.PostSigned, opts.Logger.Named("alerts"))
	d.engine.SetSnapshot(snap)
	if opts.Cluster != nil {
		if err := d.startCluster(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// removeOrphans deletes the event DBs left by webhooks deleted through the
// API whose file outlived them (a delete cut short by a crash, or by a
// version that ran the delete on the request's context). A failure is
// logged, not fatal: the files only cost disk.
func (d *Dir) removeOrphans(ctx context.Context) {
	ids, err := d.main.DeletedAPIWebhooks(ctx)
	if err != nil {
		d.opts.Logger.Error("listing deleted webhooks to remove their event DBs", zap.Error(err))
		return
	}
	for _, id := range ids {
		if !d.events.Exists(id) {
			continue
		}
		if err := d.events.Delete(ctx, id); err != nil {
			d.opts.Logger.Error("removing the event DB of a deleted webhook", zap.String("webhook", id), zap.Error(err))
			continue
		}
		d.opts.Logger.Info("removed the event DB of a deleted webhook", zap.String("webhook", id))
	}
}

// Start starts the engine, once, with its recovery scan of every event DB:
// call it after the first Declare, so that the scan sees the declared
// webhooks.
func (d *Dir) Start() {
	d.start.Do(func() {
		d.engine.Start()
		d.retention.start()
		if d.cluster != nil {
			// After the first Declare: the partitions' messages find
			// their webhooks, and the configuration log's changes the
			// webhooks declared here.
			d.cluster.Consume()
			d.followConfigLog()
		}
	})
}

// Close ends the bulk redelivery jobs and waits for them, stops the
// engine, letting attempts in flight finish within ctx, cuts prunings
// under way short, stops the alerts, then closes the storage and lets go
// of the lock. It waits for nothing beyond ctx: an event DB still in use
// then is closed by its last user, and the error says which.
func (d *Dir) Close(ctx context.Context) error {
	d.stopBackground()
	// First, while the engine still takes the deliveries it applies: no
	// more messages from the cluster's stream, then the intake.
	leave := d.closeCluster()
	d.seeding.Wait()
	intake := d.intake.Close(ctx)
	pruned := make(chan error, 1)
	go func() { pruned <- d.retention.close(ctx) }() // at once: nothing waits for a pruning
	jobs := d.waitJobs(ctx)
	d.engine.Stop(ctx)
	// After the engine: the alerts of its last attempts are counted as
	// not sent, not lost silently.
	alerts := d.alerts.close(ctx)
	return errors.Join(leave, intake, jobs, <-pruned, alerts, d.closeStorage(ctx))
}

// waitJobs waits until ctx is done for the bulk redelivery jobs, which
// the end of d.background stops.
func (d *Dir) waitJobs(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		d.jobs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bulk redelivery jobs still running: %w", ctx.Err())
	}
}

// closeStorage closes what Open opened, the lock last.
func (d *Dir) closeStorage(ctx context.Context) error {
	var errs []error
	if d.intake != nil {
		errs = append(errs, d.intake.Close(ctx))
	}
	if d.events != nil {
		errs = append(errs, d.events.CloseAll(ctx))
	}
	if d.main != nil {
		errs = append(errs, d.main.Close())
	}
	return errors.Join(append(errs, unlockDataDir(d.lock))...)
}

// Declare puts decl in force: its webhooks are written to the main DB (an
// API entrypoint holding a declared key is displaced, with a warning), its
// policy, quotas and logger take over, and the new snapshot is swapped in.
// If that fails, the declaration in force so far stays in force.
func (d *Dir) Declare(decl *Declaration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.apply(decl); err != nil {
		if len(d.declarations) > 0 {
			if rerr := d.apply(d.declarations[len(d.declarations)-1]); rerr != nil {
				err = errors.Join(err, fmt.Errorf("restore previous declarations: %w", rerr))
			}
		}
		return err
	}
	d.declarations = append(d.declarations, decl)
	d.current.Store(decl)
	return nil
}

// Retire withdraws decl. If it was in force (a newer config failed to
// start, say), the newest remaining declaration is put back.
func (d *Dir) Retire(decl *Declaration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := slices.Index(d.declarations, decl)
	if i < 0 {
		return nil
	}
	wasCurrent := i == len(d.declarations)-1
	d.declarations = slices.Delete(d.declarations, i, i+1)
	if wasCurrent && len(d.declarations) > 0 {
		newest := d.declarations[len(d.declarations)-1]
		d.current.Store(newest)
		return d.apply(newest)
	}
	if len(d.declarations) == 0 {
		d.current.Store(nil)
	}
	return nil
}

func (d *Dir) apply(decl *Declaration) error {
	ctx := context.Background()
	clashes, err := d.main.SyncDeclared(ctx, decl.Webhooks)
	if err != nil {
		return err
	}
	logger := decl.Logger
	if logger == nil {
		logger = d.opts.Logger
	}
	// The engine writes to this configuration's log from now on: Caddy
	// closes the writers of a config it unloads.
	d.engine.SetLogger(logger.Named("engine"))
	d.alerts.logger.Store(logger.Named("alerts"))
	for _, c := range clashes {
		logger.Warn("a declared entrypoint key was held by an API entrypoint, which is now disabled: the Caddyfile owns the keys it declares",
			zap.String("key", c.Key), zap.String("declared_by", c.DeclaredBy),
			zap.String("api_webhook", c.WebhookID), zap.String("api_entrypoint", c.EntrypointID))
	}
	if decl.Policy != nil {
		d.engine.SetTargetPolicy(decl.Policy)
	}
	d.apis.Store(d.makeAPIs(decl))
	return d.Reload(ctx)
}

// Reload reads the configuration from the main DB and swaps it in. It runs
// after each change is committed, on a context the change's requester
// cannot cancel; serialised, so that the snapshot in force is never older
// than the last change.
func (d *Dir) Reload(ctx context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	snap, err := d.main.LoadSnapshot(ctx)
	if err != nil {
		return err
	}
	d.engine.SetSnapshot(snap)
	d.retention.configure(snap.Webhooks())
	return nil
}

// Route finds the entrypoint with key in the configuration in force.
func (d *Dir) Route(key string) (storage.Route, bool) {
	return d.engine.Snapshot().Route(key)
}

// Ingest stores ev for route and returns once it is durable: the caller
// may acknowledge it. It goes through the shared intake, or straight into
// its webhook's event DB while that webhook is busy (see ingestRoute).
func (d *Dir) Ingest(ctx context.Context, route storage.Route, ev *storage.Event) error {
	if d.cluster != nil {
		return d.clusterIngest(ctx, route, ev)
	}
	direct, done := d.ingestRoute(route.Webhook.ID)
	defer done()
	// A dedup key is claimed in the intake's transaction: never direct.
	if direct && ev.Dedup.Key == "" {
		return d.ingestDirect(ctx, route, ev)
	}
	if err := d.intake.Ingest(ctx, route.Webhook.ID, ev, route.Targets); err != nil {
		return err
	}
	d.retention.ingested(route.Webhook, ev.ReceivedAt)
	return nil
}

// Redeliver stores a fresh delivery of event eventID of webhook wh to each
// of targets and hands them to the engine.
func (d *Dir) Redeliver(ctx context.Context, wh *storage.Webhook, eventID string, targets []storage.Target) ([]storage.Delivery, error) {
	ids := make([]string, len(targets))
	for i, t := range targets {
		ids[i] = t.ID
	}
	var deliveries []storage.Delivery
	err := d.events.With(ctx, wh.ID, func(db *storage.WebhookDB) error {
		ev, err := db.Event(ctx, eventID)
		if err != nil {
			return err
		}
		if deliveries, err = db.Redeliver(ctx, eventID, ids); err != nil {
			return fmt.Errorf("redeliver event %s: %w", eventID, err)
		}
		d.engine.Notify(engine.TasksForEvent(wh.ID, ev, deliveries, targets))
		return nil
	})
	if err == nil {
		d.changes.Publish(wh.ID)
	}
	return deliveries, err
}

// Engine is the delivery engine, for its gauges.
func (d *Dir) Engine() *engine.Engine { return d.engine }

// OpenEventDBs is the number of event DBs open now (bounded by
// MaxOpenEventDBs), for a gauge.
func (d *Dir) OpenEventDBs() int { return d.events.OpenCount() }

// apiHandlers are the faces of the API on one backend: Caddy's admin
// endpoint's, which alone takes backups, a webhooker_admin site's, and a
// tenant's.
type apiHandlers struct {
	endpoint, admin, tenant *admin.Handler
	// endpointServed, adminServed and tenantServed are the faces as
	// served: in cluster mode their event-log reads are answered by every
	// node (clusterreads.go).
	endpointServed, adminServed, tenantServed http.Handler
}

func (d *Dir) makeAPIs(decl *Declaration) *apiHandlers {
	b, e := d.Backend(decl.Quotas), d.Backend(decl.Quotas)
	b.PublicURL, e.PublicURL = decl.PublicURL, decl.PublicURL
	e.Backup = d.backupForAPI
	a := &apiHandlers{endpoint: admin.NewAdminHandler(e), admin: admin.NewAdminHandler(b), tenant: admin.NewTenantHandler(b)}
	a.endpointServed, a.adminServed, a.tenantServed = a.endpoint, a.admin, a.tenant
	if d.cluster != nil {
		a.endpointServed, a.adminServed = clusterReads{d: d, local: a.endpoint}, clusterReads{d: d, local: a.admin}
		a.tenantServed = clusterReads{d: d, local: a.tenant, tenant: true}
	}
	return a
}

// Backend is what the API acts on in this directory, with quotas for its
// tenants: AdminAPI and TenantAPI serve it. Its bulk redelivery jobs run
// until Close, which waits for them.
func (d *Dir) Backend(quotas storage.Quotas) *admin.Backend {
	b := &admin.Backend{
		Main: d.main, Events: d.events, Redeliver: d.Redeliver,
		ConfigChanged: d.Reload, BreakerState: d.engine.BreakerState,
		Line:            d.engine.Line,
		Quotas:          quotas,
		CheckTargetURL:  d.engine.CheckTargetURL,
		SetTargetPaused: d.SetTargetPaused,
		RetryNow:        d.RetryNow,
		CancelDelivery:  d.CancelDelivery,
		Changes:         d.changes,
		Background:      d.background,
		Jobs:            &d.jobs,
	}
	if d.cluster != nil {
		b.Cluster = d.clusterState
	}
	return b
}

// AdminAPI serves every route of the API but backups (mount it where
// access is already controlled); AdminEndpointAPI serves them all, for
// Caddy's admin endpoint; TenantAPI serves a tenant's routes to API key
// holders. They are nil until a declaration is in force.
func (d *Dir) AdminAPI() http.Handler {
	return d.api(func(a *apiHandlers) http.Handler { return a.adminServed })
}

// AdminEndpointAPI: see AdminAPI.
func (d *Dir) AdminEndpointAPI() http.Handler {
	return d.api(func(a *apiHandlers) http.Handler { return a.endpointServed })
}

// TenantAPI: see AdminAPI.
func (d *Dir) TenantAPI() http.Handler {
	return d.api(func(a *apiHandlers) http.Handler { return a.tenantServed })
}

func (d *Dir) api(pick func(*apiHandlers) http.Handler) http.Handler {
	apis := d.apis.Load()
	if apis == nil {
		return nil
	}
	return pick(apis)
}
