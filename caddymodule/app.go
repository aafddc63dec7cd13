// Package caddymodule is the Caddy glue of caddy-webhooker, and the only
// package that imports Caddy: the webhooker app, the ingest handler and the
// Caddyfile syntax. The work happens in storage and engine.
package caddymodule

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/datadir"
	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

func init() {
	caddy.RegisterModule(App{})
}

// DefaultMaxBodySize is the largest request body an entrypoint accepts unless
// max_body_size says otherwise: 10 MiB. (GitHub sends up to 25 MB.)
const DefaultMaxBodySize = 10 << 20

// DefaultStopGracePeriod is how long a stop waits for delivery attempts.
const DefaultStopGracePeriod = 10 * time.Second

// App is the webhooker app: it owns the storage of a data directory and the
// webhooks declared in the Caddyfile. Its storage outlives config reloads.
type App struct {
	// DataDir holds webhooker.db and one events-<webhook id>.db per webhook.
	// Default: the "webhooker" folder in Caddy's data directory.
	DataDir string `json:"data_dir,omitempty"`

	// MaxBodySize is the largest request body accepted, in bytes; larger
	// requests get 413 and nothing is stored. Default: 10 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// MaxIngestMemory bounds the body bytes held by ingests in flight, in
	// bytes; beyond it a request gets 503 with Retry-After and nothing is
	// stored. At least MaxBodySize. Default: 256 MiB, or MaxBodySize if larger.
	MaxIngestMemory int64 `json:"max_ingest_memory,omitempty"`

	// BodyTimeout is how long a client may take to send a request body;
	// a slower one gets 408 and nothing is stored. Default: 30s.
	BodyTimeout caddy.Duration `json:"body_timeout,omitempty"`

	// Synchronous is SQLite's durability setting: "full" (default) fsyncs
	// every commit, so an acknowledged event survives a power loss; "normal"
	// survives a crash of Caddy but not of the machine.
	Synchronous string `json:"synchronous,omitempty"`

	// MaxOpenEventDBs bounds the event DBs kept open at once; the least
	// recently used are closed and reopened on demand. Default: 256.
	MaxOpenEventDBs int `json:"max_open_event_dbs,omitempty"`

	// Workers is the number of deliveries attempted at once. Default: 32.
	Workers int `json:"workers,omitempty"`

	// QueueSize and RetryQueueSize are the capacities of the engine's
	// channels of fresh deliveries and of deliveries read back from the event
	// DBs. A full channel loses nothing: the delivery waits in its event DB.
	// Defaults: 4096 and 1024.
	QueueSize      int `json:"queue_size,omitempty"`
	RetryQueueSize int `json:"retry_queue_size,omitempty"`

	// StopGracePeriod is how long Caddy's stop waits for delivery attempts in
	// flight before cutting them short (they are then retried after the
	// restart, never recorded as delivered). Default: 10s.
	StopGracePeriod caddy.Duration `json:"stop_grace_period,omitempty"`

	// TargetConcurrency bounds the attempts in flight to one http target,
	// so that a slow or unanswering target holds no more than its share of
	// the workers. Default: a quarter of Workers (at least 1).
	TargetConcurrency int `json:"target_concurrency,omitempty"`

	// TargetPolicy widens or narrows the addresses http targets may connect
	// to. Caddy's admin endpoint is never reachable; tenants' targets reach
	// public addresses only unless allowed here.
	TargetPolicy *TargetPolicyConfig `json:"target_policy,omitempty"`

	// TenantQuotas bound what each user may create through the tenant API.
	TenantQuotas *TenantQuotasConfig `json:"tenant_quotas,omitempty"`

	// Webhooks are declared here and owned by the config: read-only elsewhere.
	Webhooks []*WebhookConfig `json:"webhooks,omitempty"`

	declared []*storage.Webhook
	policy   *engine.TargetPolicy
	// gatewayID is this Caddy instance's id: the hop marker its deliveries
	// carry, refused (508) by its entrypoints.
	gatewayID string
	data      *pooledDir
	// declaration is what this config puts in force in its data directory.
	declaration *datadir.Declaration
	logger      *zap.Logger
	// started is set once this config's webhooks are in force: until then an
	// unknown entrypoint key may be one about to be declared.
	// (A pointer: Caddy copies module values, and an atomic must not be.)
	started *atomic.Bool
}

// WebhookConfig declares a webhook. Its id is derived from its name.
type WebhookConfig struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Disabled    bool   `json:"disabled,omitempty"`
	// RetentionDays prunes finished events older than this many days (0:
	// keep them all), as new events arrive, at most once an hour.
	RetentionDays int                `json:"retention_days,omitempty"`
	Entrypoints   []EntrypointConfig `json:"entrypoints,omitempty"`
	Targets       []TargetConfig     `json:"targets,omitempty"`
}

// EntrypointConfig declares an entrypoint: requests whose last path segment
// is Key are ingested by the webhook.
type EntrypointConfig struct {
	Key      string `json:"key"`
	Disabled bool   `json:"disabled,omitempty"`
}

// TargetConfig declares where a webhook's events go. It has the shape of a
// target in the admin API (name, type, url, options with durations as
// strings such as "5s"), except that the API's "active" is written
// "disabled" here, false by default, as for webhooks and entrypoints.
type TargetConfig struct {
	Name string `json:"name"`
	// Type is "http", "database" or "log".
	Type string `json:"type"`
	// URL is where an http target POSTs events.
	URL string `json:"url,omitempty"`
	// Options are an http target's delivery settings, as in the admin API.
	Options  storage.TargetOptions `json:"options,omitzero"`
	Disabled bool                  `json:"disabled,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "webhooker",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets defaults and turns the declared webhooks into configuration.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.started = new(atomic.Bool)
	if a.DataDir == "" {
		a.DataDir = filepath.Join(caddy.AppDataDir(), "webhooker")
	}
	a.DataDir = caddy.NewReplacer().ReplaceKnown(a.DataDir, "")
	abs, err := filepath.Abs(a.DataDir)
	if err != nil {
		return fmt.Errorf("data_dir %q: %w", a.DataDir, err)
	}
	a.DataDir = abs // the storage pool is keyed by it
	if a.MaxBodySize == 0 {
		a.MaxBodySize = DefaultMaxBodySize
	}
	if a.MaxIngestMemory == 0 {
		a.MaxIngestMemory = max(DefaultMaxIngestMemory, a.MaxBodySize)
	}
	if a.BodyTimeout == 0 {
		a.BodyTimeout = caddy.Duration(DefaultBodyTimeout)
	}
	instance, err := caddy.InstanceID()
	if err != nil {
		return fmt.Errorf("reading this instance's id, the hop marker of deliveries: %w", err)
	}
	a.gatewayID = instance.String()
	if a.Synchronous == "" {
		a.Synchronous = string(storage.SynchronousFull)
	}
	if a.MaxOpenEventDBs == 0 {
		a.MaxOpenEventDBs = storage.DefaultMaxOpenEventDBs
	}
	if a.Workers == 0 {
		a.Workers = engine.DefaultWorkers
	}
	if a.QueueSize == 0 {
		a.QueueSize = engine.DefaultQueueSize
	}
	if a.RetryQueueSize == 0 {
		a.RetryQueueSize = engine.DefaultRetryQueueSize
	}
	if a.StopGracePeriod == 0 {
		a.StopGracePeriod = caddy.Duration(DefaultStopGracePeriod)
	}
	declared, err := declaredWebhooks(a.Webhooks)
	if err != nil {
		return err
	}
	a.declared = declared
	pc, err := a.policyConfig(ctx)
	if err != nil {
		return err
	}
	if a.policy, err = engine.NewTargetPolicy(pc); err != nil {
		return err
	}
	if err := checkDeclaredTargets(a.policy, declared); err != nil {
		return err
	}

	// The storage is only acquired here: it is opened by Start, after the
	// data directory's lock, so that provisioning (and `caddy validate`)
	// touches no file. Across a reload the new config joins the storage
	// already open; until then its handlers answer 503.
	a.declaration = &datadir.Declaration{
		Webhooks: declared, Policy: a.policy, Quotas: a.TenantQuotas.quotas(), Logger: a.logger,
	}
	data, err := acquireDataDir(a.DataDir, datadir.Options{
		Synchronous:     storage.Synchronous(a.Synchronous),
		MaxOpenEventDBs: a.MaxOpenEventDBs,
		Workers:         a.Workers, QueueSize: a.QueueSize, RetryQueueSize: a.RetryQueueSize,
		MaxPerTarget:    a.TargetConcurrency,
		StopGracePeriod: time.Duration(a.StopGracePeriod),
		GatewayID:       a.gatewayID,
		Logger:          a.logger,
		Recorded:        countAttempt,
	}, a.logger)
	if err != nil {
		return fmt.Errorf("webhooker storage in %s: %w", a.DataDir, err)
	}
	a.data = data
	if err := registerMetrics(ctx, data); err != nil {
		return fmt.Errorf("webhooker metrics: %w", err)
	}
	return nil
}

// Validate checks the settings of a JSON config; the Caddyfile has made the
// same checks, with the same functions, at its lines. 0 is the default of
// every count, size and duration here (Provision has set it).
func (a *App) Validate() error {
	if a.MaxBodySize < 0 {
		return fmt.Errorf("max_body_size must be positive, not %d", a.MaxBodySize)
	}
	for name, n := range map[string]int{"max_open_event_dbs": a.MaxOpenEventDBs, "workers": a.Workers,
		"queue_size": a.QueueSize, "retry_queue_size": a.RetryQueueSize, "target_concurrency": a.TargetConcurrency} {
		if n < 0 {
			return fmt.Errorf("%s must be positive, not %d", name, n)
		}
	}
	if err := checkIngestMemory(a.MaxBodySize, a.MaxIngestMemory); err != nil {
		return err
	}
	if a.BodyTimeout < 0 {
		return fmt.Errorf("body_timeout must not be negative")
	}
	if a.StopGracePeriod < 0 {
		return fmt.Errorf("stop_grace_period must not be negative")
	}
	if err := a.TenantQuotas.check(); err != nil {
		return err
	}
	return storage.Synchronous(a.Synchronous).Validate()
}

// checkIngestMemory checks that a body of the largest size fits in the
// ingest memory budget, 0 standing for each one's default (the budget's
// grows with max_body_size).
func checkIngestMemory(maxBodySize, maxIngestMemory int64) error {
	if maxBodySize == 0 {
		maxBodySize = DefaultMaxBodySize
	}
	if maxIngestMemory == 0 {
		maxIngestMemory = max(DefaultMaxIngestMemory, maxBodySize)
	}
	if maxIngestMemory < maxBodySize {
		return fmt.Errorf("max_ingest_memory (%d bytes) must be at least max_body_size (%d bytes): a body of the largest size must fit", maxIngestMemory, maxBodySize)
	}
	return nil
}

// Start puts the declared webhooks in force and, the first time, starts the
// delivery engine, whose recovery scan resumes the work a previous run left.
func (a *App) Start() error {
	d, err := a.data.open()
	if err != nil {
		return fmt.Errorf("webhooker storage in %s: %w", a.DataDir, err)
	}
	if err := d.Declare(a.declaration); err != nil {
		return err
	}
	d.Start()
	a.started.Store(true)
	a.logger.Info("webhooker started",
		zap.String("data_dir", a.DataDir),
		zap.Int("declared_webhooks", len(a.declared)))
	return nil
}

// Stop withdraws this config's declarations. In-flight requests of this
// config still find the storage open: Cleanup lets go of it.
func (a *App) Stop() error {
	if d := a.data.dir.Load(); d != nil {
		return d.Retire(a.declaration)
	}
	return nil
}

// Cleanup lets go of the storage, which closes when no config uses it.
func (a *App) Cleanup() error {
	if a.data == nil {
		return nil
	}
	return releaseDataDir(a.DataDir)
}

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
