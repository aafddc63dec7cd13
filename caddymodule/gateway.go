package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// gateways holds one gateway per data directory. Caddy provisions and starts
// a new config before it stops the old one, so both share the same storage:
// a reload never closes the databases or opens a second writer on a file.
var gateways = caddy.NewUsagePool()

type gatewayOptions struct {
	synchronous storage.Synchronous
	maxOpen     int
	engine      engineOptions
}

// engineOptions are the comparable settings of the engine.
type engineOptions struct {
	workers, queueSize, retryQueueSize int
	stopGracePeriod                    time.Duration
}

// gateway is the state of one data directory shared by every config that
// uses it: the main DB, the event DBs, the configuration in force, and the
// one delivery engine.
type gateway struct {
	dataDir string
	opts    gatewayOptions
	main    *storage.MainDB
	events  *storage.WebhookDBManager
	engine  *engine.Engine
	pruning *retention

	reloadMu    sync.Mutex // orders loads and swaps of the engine's snapshot
	startEngine sync.Once
	startErr    error
	lock        *os.File // held while the engine runs: one process per data_dir

	apiOnce      sync.Once
	adminAPI     *admin.Handler
	tenantAPIHdl *admin.Handler

	mu sync.Mutex
	// declarers are the started apps, oldest first; the newest one's
	// declared webhooks are in force.
	declarers []*App
}

func acquireGateway(dataDir string, opts gatewayOptions, logger *zap.Logger) (*gateway, error) {
	v, loaded, err := gateways.LoadOrNew(dataDir, func() (caddy.Destructor, error) {
		return openGateway(dataDir, opts, logger)
	})
	if err != nil {
		return nil, err
	}
	g := v.(*gateway)
	if loaded && g.opts != opts {
		logger.Warn("storage settings changed; they take effect when Caddy restarts, since the open storage is kept across reloads",
			zap.String("data_dir", dataDir))
	}
	return g, nil
}

func releaseGateway(dataDir string) error {
	_, err := gateways.Delete(dataDir)
	return err
}

func openGateway(dataDir string, opts gatewayOptions, logger *zap.Logger) (*gateway, error) {
	ctx := context.Background()
	events, err := storage.NewWebhookDBManager(dataDir, storage.ManagerOptions{
		Synchronous: opts.synchronous, MaxOpen: opts.maxOpen,
	})
	if err != nil {
		return nil, err
	}
	main, err := storage.OpenMainDB(ctx, dataDir, opts.synchronous)
	if err != nil {
		return nil, err
	}
	snap, err := main.LoadSnapshot(ctx)
	if err != nil {
		_ = main.Close()
		return nil, err
	}
	g := &gateway{dataDir: dataDir, opts: opts, main: main, events: events,
		pruning: newRetention(events, logger.Named("retention"))}
	g.engine = engine.New(events, engine.Options{
		Workers:        opts.engine.workers,
		QueueSize:      opts.engine.queueSize,
		RetryQueueSize: opts.engine.retryQueueSize,
		Logger:         logger.Named("engine"),
		Recorded:       countAttempt,
	})
	g.engine.SetSnapshot(snap)
	return g, nil
}

// start takes the data directory's lock and starts the engine, once: a
// reload joins the running one. Not done at provisioning, so that `caddy
// validate` next to a running Caddy neither fails on the lock nor delivers.
func (g *gateway) start() error {
	g.startEngine.Do(func() {
		g.lock, g.startErr = lockDataDir(g.dataDir)
		if g.startErr == nil {
			g.engine.Start()
		}
	})
	return g.startErr
}

// Destruct stops the engine, letting attempts in flight finish within the
// grace period, then closes the storage, once no config uses it.
func (g *gateway) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.engine.stopGracePeriod)
	defer cancel()
	g.engine.Stop(ctx)
	g.pruning.wait()
	return errors.Join(g.events.CloseAll(context.Background()), g.main.Close(), unlockDataDir(g.lock))
}

// snapshot is the configuration in force, read by every ingest. It is the
// engine's, swapped whole when the configuration changes: ingest and
// delivery never see two different ones.
func (g *gateway) snapshot() *storage.Snapshot { return g.engine.Snapshot() }

// declare puts app's declared webhooks in force: they are written to the
// main DB and the new snapshot is swapped in. Their event DBs are created by
// their first event, so that declaring thousands costs no thousands of files
// at start.
func (g *gateway) declare(app *App, declared []*storage.Webhook) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.apply(declared); err != nil {
		// Leave the previous declaration in force, in the DB and in memory.
		if len(g.declarers) > 0 {
			if rerr := g.apply(g.declarers[len(g.declarers)-1].declared); rerr != nil {
				err = errors.Join(err, fmt.Errorf("restore previous declarations: %w", rerr))
			}
		}
		return err
	}
	g.declarers = append(g.declarers, app)
	return nil
}

// retire withdraws app. If its declarations were in force (a newer config
// failed to start, say), the newest remaining app's are put back.
func (g *gateway) retire(app *App) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.Index(g.declarers, app)
	if i < 0 {
		return nil
	}
	wasCurrent := i == len(g.declarers)-1
	g.declarers = slices.Delete(g.declarers, i, i+1)
	if wasCurrent && len(g.declarers) > 0 {
		return g.apply(g.declarers[len(g.declarers)-1].declared)
	}
	return nil
}

func (g *gateway) apply(declared []*storage.Webhook) error {
	ctx := context.Background()
	if _, err := g.main.SyncDeclared(ctx, declared); err != nil {
		return err
	}
	return g.reload(ctx)
}

// reload reads the configuration from the main DB and swaps it in. Called
// after each change is committed; serialised, so that the snapshot in force
// is never older than the last change.
func (g *gateway) reload(ctx context.Context) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	snap, err := g.main.LoadSnapshot(ctx)
	if err != nil {
		return err
	}
	g.engine.SetSnapshot(snap)
	return nil
}

// ingest stores ev for route and hands its deliveries to the engine. It
// returns only once the event is committed.
func (g *gateway) ingest(ctx context.Context, route storage.Route, ev *storage.Event) error {
	// A database target's destination is the event DB itself: its delivery
	// is stored delivered in the ingest transaction. The others go pending to
	// the engine.
	var pendingIDs, keptIDs []string
	var pendingTargets []storage.Target
	for _, t := range route.Targets {
		if t.Type == storage.TargetDatabase {
			keptIDs = append(keptIDs, t.ID)
			continue
		}
		pendingIDs = append(pendingIDs, t.ID)
		pendingTargets = append(pendingTargets, t)
	}
	var deliveries []storage.Delivery
	err := g.events.With(ctx, route.Webhook.ID, func(db *storage.WebhookDB) error {
		var err error
		deliveries, err = db.IngestKeeping(ev, pendingIDs, keptIDs)
		return err
	})
	if err != nil {
		return err
	}
	if len(deliveries) > 0 {
		g.engine.Notify(engine.TasksForEvent(route.Webhook.ID, ev, deliveries, pendingTargets))
	}
	g.pruning.ingested(route.Webhook)
	return nil
}

func (g *gateway) makeAPIs() {
	b := &admin.Backend{
		Main: g.main, Events: g.events, Notifier: g.engine,
		ConfigChanged: g.reload, BreakerState: g.engine.BreakerState,
	}
	g.adminAPI, g.tenantAPIHdl = admin.NewAdminHandler(b), admin.NewTenantHandler(b)
}

// adminHandler serves the API on Caddy's admin endpoint.
func (g *gateway) adminHandler() *admin.Handler {
	g.apiOnce.Do(g.makeAPIs)
	return g.adminAPI
}

// tenantHandler serves the API on sites, to API key holders.
func (g *gateway) tenantHandler() *admin.Handler {
	g.apiOnce.Do(g.makeAPIs)
	return g.tenantAPIHdl
}

var _ caddy.Destructor = (*gateway)(nil)
