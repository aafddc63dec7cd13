package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
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
	workers, queueSize, retryQueueSize, maxPerTarget int
	stopGracePeriod                                  time.Duration
}

// gateway is the state of one data directory shared by every config that
// uses it: the main DB, the event DBs, the configuration in force, and the
// one delivery engine. Acquiring it touches no file: the data directory is
// locked, then opened, when a config first starts (open), so that `caddy
// validate` has no side effect and a second process on the same data_dir is
// refused before it writes anything there.
type gateway struct {
	dataDir string
	opts    gatewayOptions
	logger  *zap.Logger

	openOnce sync.Once
	openErr  error
	// storage is set once open succeeded; nil before (and after a failed
	// open): requests then answer 503.
	storage atomic.Pointer[openStorage]

	reloadMu    sync.Mutex // orders loads and swaps of the engine's snapshot
	startEngine sync.Once

	// apis serve the admin endpoint's API and the tenant API, made anew
	// with each configuration put in force (its quotas); nil until then.
	apis atomic.Pointer[apiHandlers]

	mu sync.Mutex
	// declarers are the started apps, oldest first; the newest one's
	// declared webhooks are in force.
	declarers []*App
}

// openStorage is what open made: the data directory's lock, its databases
// and its engine.
type openStorage struct {
	lock    *os.File // held while open: one process per data_dir
	main    *storage.MainDB
	events  *storage.WebhookDBManager
	engine  *engine.Engine
	pruning *retention
}

func acquireGateway(dataDir string, opts gatewayOptions, logger *zap.Logger) (*gateway, error) {
	v, loaded, err := gateways.LoadOrNew(dataDir, func() (caddy.Destructor, error) {
		return &gateway{dataDir: dataDir, opts: opts, logger: logger}, nil
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

// open locks the data directory, then opens its storage and makes its
// engine (not started), once: a reload joins what is open. The lock comes
// first, so that a second process on the same data_dir is refused before it
// creates, migrates or rewrites any file there.
func (g *gateway) open(app *App) error {
	g.openOnce.Do(func() {
		s, err := openDataDir(g.dataDir, g.opts, app, g.logger)
		if err != nil {
			g.openErr = err
			return
		}
		g.storage.Store(s)
	})
	return g.openErr
}

func openDataDir(dataDir string, opts gatewayOptions, app *App, logger *zap.Logger) (s *openStorage, err error) {
	if err := storage.CreateDataDir(dataDir); err != nil {
		return nil, err
	}
	if warning := storage.DataDirWarning(dataDir); warning != "" {
		logger.Warn(warning, zap.String("data_dir", dataDir))
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	s = &openStorage{lock: lock}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.close())
		}
	}()
	ctx := context.Background()
	s.events, err = storage.NewWebhookDBManager(dataDir, storage.ManagerOptions{
		Synchronous: opts.synchronous, MaxOpen: opts.maxOpen,
	})
	if err != nil {
		return nil, err
	}
	s.main, err = storage.OpenMainDB(ctx, dataDir, opts.synchronous)
	if err != nil {
		return nil, err
	}
	snap, err := s.main.LoadSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	s.pruning = newRetention(s.events, logger.Named("retention"))
	s.engine = engine.New(s.events, engine.Options{
		Workers:        opts.engine.workers,
		QueueSize:      opts.engine.queueSize,
		RetryQueueSize: opts.engine.retryQueueSize,
		MaxPerTarget:   opts.engine.maxPerTarget,
		Policy:         app.policy,
		GatewayID:      app.gatewayID,
		Logger:         logger.Named("engine"),
		Recorded:       countAttempt,
	})
	s.engine.SetSnapshot(snap)
	return s, nil
}

// close closes what open opened, the lock last.
func (s *openStorage) close() error {
	var errs []error
	if s.events != nil {
		errs = append(errs, s.events.CloseAll(context.Background()))
	}
	if s.main != nil {
		errs = append(errs, s.main.Close())
	}
	return errors.Join(append(errs, unlockDataDir(s.lock))...)
}

// start starts the engine, once: a reload joins the running one. Its
// recovery scan reads the webhooks declared before it.
func (g *gateway) start() {
	g.startEngine.Do(func() { g.storage.Load().engine.Start() })
}

// Destruct stops the engine, letting attempts in flight finish within the
// grace period, then closes the storage, once no config uses it.
func (g *gateway) Destruct() error {
	s := g.storage.Load()
	if s == nil {
		return nil // never opened: nothing was touched
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.engine.stopGracePeriod)
	defer cancel()
	s.engine.Stop(ctx)
	s.pruning.wait()
	return s.close()
}

// route finds the entrypoint with key in the configuration in force; none
// is in force until the storage is open. The snapshot is the engine's,
// swapped whole when the configuration changes: ingest and delivery never
// see two different ones.
func (g *gateway) route(key string) (storage.Route, bool) {
	s := g.storage.Load()
	if s == nil {
		return storage.Route{}, false
	}
	return s.engine.Snapshot().Route(key)
}

// declare puts app's declared webhooks in force: they are written to the
// main DB and the new snapshot is swapped in. Their event DBs are created by
// their first event, so that declaring thousands costs no thousands of files
// at start.
func (g *gateway) declare(app *App) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.apply(app); err != nil {
		// Leave the previous declaration in force, in the DB and in memory.
		if len(g.declarers) > 0 {
			if rerr := g.apply(g.declarers[len(g.declarers)-1]); rerr != nil {
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
		return g.apply(g.declarers[len(g.declarers)-1])
	}
	return nil
}

// apply puts app's configuration in force: its declared webhooks, its
// target policy and its tenant quotas.
func (g *gateway) apply(app *App) error {
	ctx := context.Background()
	s := g.storage.Load()
	clashes, err := s.main.SyncDeclared(ctx, app.declared)
	if err != nil {
		return err
	}
	for _, c := range clashes {
		g.logger.Warn("a declared entrypoint key was held by an API entrypoint, which is now disabled: the Caddyfile owns the keys it declares",
			zap.String("key", c.Key), zap.String("declared_by", c.DeclaredBy),
			zap.String("api_webhook", c.WebhookID), zap.String("api_entrypoint", c.EntrypointID))
	}
	s.engine.SetTargetPolicy(app.policy)
	g.apis.Store(g.makeAPIs(s, app))
	return g.reload(ctx)
}

// reload reads the configuration from the main DB and swaps it in. Called
// after each change is committed; serialised, so that the snapshot in force
// is never older than the last change.
func (g *gateway) reload(ctx context.Context) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	s := g.storage.Load()
	snap, err := s.main.LoadSnapshot(ctx)
	if err != nil {
		return err
	}
	s.engine.SetSnapshot(snap)
	return nil
}

// ingest stores ev for route and hands its deliveries to the engine. It
// returns only once the event is committed.
func (g *gateway) ingest(ctx context.Context, route storage.Route, ev *storage.Event) error {
	s := g.storage.Load() // open: route found the route in it
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
	err := s.events.With(ctx, route.Webhook.ID, func(db *storage.WebhookDB) error {
		var err error
		deliveries, err = db.IngestKeeping(ev, pendingIDs, keptIDs)
		return err
	})
	if err != nil {
		return err
	}
	if len(deliveries) > 0 {
		s.engine.Notify(engine.TasksForEvent(route.Webhook.ID, ev, deliveries, pendingTargets))
	}
	s.pruning.ingested(route.Webhook)
	return nil
}

// apiHandlers are the two faces of the API on one backend.
type apiHandlers struct {
	admin, tenant *admin.Handler
}

func (g *gateway) makeAPIs(s *openStorage, app *App) *apiHandlers {
	b := &admin.Backend{
		Main: s.main, Events: s.events, Notifier: s.engine,
		ConfigChanged: g.reload, BreakerState: s.engine.BreakerState,
		Quotas:         app.TenantQuotas.quotas(),
		CheckTargetURL: s.engine.CheckTargetURL,
	}
	return &apiHandlers{admin: admin.NewAdminHandler(b), tenant: admin.NewTenantHandler(b)}
}

// serveAPI serves the admin endpoint's API, or with tenant a site's, once
// a configuration is in force; 503 before.
func (g *gateway) serveAPI(w http.ResponseWriter, r *http.Request, tenant bool) {
	apis := g.apis.Load()
	if apis == nil {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"webhooker is starting: its storage is not open yet"}`+"\n")
		return
	}
	if tenant {
		apis.tenant.ServeHTTP(w, r)
		return
	}
	apis.admin.ServeHTTP(w, r)
}

var _ caddy.Destructor = (*gateway)(nil)
