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

	"github.com/webhooker/caddy-webhooker/cluster"
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

// App is the webhooker app: a durable webhook gateway. It stores every
// request to an entrypoint as an event before answering, then delivers it
// to the targets of its webhook. It owns the storage of one data directory,
// which outlives config reloads, and the webhooks declared in its config.
//
// In the Caddyfile it is the global option `webhooker { … }`. In JSON, as
// in Caddy's own config, a field left out (or 0) takes its default.
type App struct {
	// DataDir is the directory of the databases: webhooker.db (users, keys,
	// webhooks, entrypoints, targets) and one events-<webhook id>.db per
	// webhook. Created with mode 0700 when the app starts. {$ENV}
	// placeholders are replaced. Default: "webhooker" in Caddy's data
	// directory (e.g. ~/.local/share/caddy/webhooker). Example: "/var/lib/webhooker".
	DataDir string `json:"data_dir,omitempty"`

	// MaxBodySize is the largest request body an entrypoint accepts, in
	// bytes; a larger request gets 413 and nothing is stored. Default:
	// 10485760 (10 MiB). Example: 26214400 for GitHub's 25 MB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// MaxIngestMemory bounds the bytes held by the bodies of all requests in
	// flight together, in bytes; a request that would go over gets 503 with
	// Retry-After and nothing is stored. At least MaxBodySize. Default:
	// 268435456 (256 MiB), or MaxBodySize if larger.
	MaxIngestMemory int64 `json:"max_ingest_memory,omitempty"`

	// IntakeMemory bounds the bytes of acknowledged events the shared
	// intake holds in memory until they are applied to their event
	// databases; past it, the events of the webhooks applied last are
	// dropped from memory and read back from intake.db when applied. At
	// least 1 MiB. Default: 67108864 (64 MiB). Takes effect at the next
	// start.
	IntakeMemory int64 `json:"intake_memory,omitempty"`

	// IntakeSize bounds the bytes of acknowledged events intake.db holds
	// until they are in their event databases, synced; past it, ingest
	// waits for the applier. At least 1 MiB. Default: 1073741824 (1 GiB).
	// Takes effect at the next start.
	IntakeSize int64 `json:"intake_size,omitempty"`

	// BodyTimeout is how long a client may take to send a request body,
	// from its first read; a slower one gets 408, its connection is closed
	// and nothing is stored. A duration string such as "30s", or an integer
	// of nanoseconds. Default: "30s".
	BodyTimeout caddy.Duration `json:"body_timeout,omitempty"`

	// Synchronous is SQLite's durability setting: "full" fsyncs every
	// commit, so an acknowledged event survives a power loss; "normal"
	// fsyncs at checkpoints only, so an acknowledged event survives a crash
	// of Caddy but not of the machine. Default: "full".
	Synchronous string `json:"synchronous,omitempty"`

	// MaxOpenEventDBs is the most event databases kept open at once; the
	// least recently used are closed and reopened on demand. Each open one
	// costs about 1 MiB and 6 file descriptors. Default: 256.
	MaxOpenEventDBs int `json:"max_open_event_dbs,omitempty"`

	// Workers is the number of delivery attempts in flight at once (the
	// engine's worker pool). Default: engine.DefaultWorkers (256).
	Workers int `json:"workers,omitempty"`

	// QueueSize is the capacity of the engine's channel of fresh deliveries,
	// from ingest and redelivery. A full channel loses nothing: the delivery
	// is pending in its event database and is read back once there is
	// room. Default: 4096.
	QueueSize int `json:"queue_size,omitempty"`

	// RetryQueueSize is the capacity of the engine's channel of deliveries
	// read back from the event databases: retries that came due, recovery
	// at start, catching up after QueueSize was full. A full channel loses
	// nothing either. Default: 1024.
	RetryQueueSize int `json:"retry_queue_size,omitempty"`

	// StopGracePeriod is how long a stop of Caddy waits for delivery
	// attempts in flight before cutting them short; an attempt cut short is
	// not recorded as delivered and runs again after the restart. A duration
	// string such as "10s", or an integer of nanoseconds. Default: "10s".
	StopGracePeriod caddy.Duration `json:"stop_grace_period,omitempty"`

	// TargetConcurrency is the most attempts in flight to one http target,
	// so that a slow or unanswering target holds no more than its share of
	// the workers; its other deliveries wait their turn. Default: a quarter
	// of Workers, at least 1 (8 with the default Workers).
	TargetConcurrency int `json:"target_concurrency,omitempty"`

	// TargetPolicy widens or narrows the addresses http targets may connect
	// to. Caddy's admin endpoint is never reachable, whatever it says;
	// tenants' targets reach public addresses only unless allowed here.
	// Default: no allow or deny.
	TargetPolicy *TargetPolicyConfig `json:"target_policy,omitempty"`

	// TenantQuotas bound what each user may create through the tenant API
	// (the webhooker_api handler). Default: 100 webhooks, 500 entrypoints
	// and 500 targets per user.
	TenantQuotas *TenantQuotasConfig `json:"tenant_quotas,omitempty"`

	// PublicURL is where providers reach this gateway's entrypoints, for
	// the event-log page, which offers each entrypoint's URL to copy: the
	// prefix an entrypoint key is appended to ("https://hooks.example.com/hooks/"),
	// or an origin alone, to which /hooks/ is added. An absolute http:// or
	// https:// URL without credentials, query or fragment. Default: none
	// (the page uses its own origin + /hooks/, which is wrong behind a proxy
	// or on the admin endpoint).
	PublicURL string `json:"public_url,omitempty"`

	// OperationalWebhook is where the gateway POSTs an alert, signed as an
	// http target's deliveries are, when a delivery gives up, a target's
	// circuit breaker opens or closes, or a target is paused or resumed.
	// The same alerts are Caddy events (webhooker.delivery_exhausted…).
	// Default: none (logs, metrics and Caddy events only).
	OperationalWebhook *OperationalWebhookConfig `json:"operational_webhook,omitempty"`

	// MetricsPerTarget labels the delivery metrics with the webhook and
	// target (names and ids), so that the failing target is named; false
	// folds them to the target type alone, for a gateway with so many
	// targets that a series each would burden Prometheus (see the README).
	// Default: true.
	MetricsPerTarget *bool `json:"metrics_per_target,omitempty"`

	// Cluster runs this gateway as a node of a cluster: ingests go to a
	// replicated NATS JetStream stream, acknowledged once a quorum of
	// nodes holds them, and each webhook's events are applied and
	// delivered by the node that owns its partition (README, "Running a
	// cluster"). Each node embeds a NATS server with JetStream, its files
	// under data_dir/nats. Takes effect at the next start. Default: none
	// (a single node, nothing but SQLite).
	Cluster *cluster.Options `json:"cluster,omitempty"`

	// NATS is the URL of a NATS cluster with JetStream run elsewhere, used
	// instead of the embedded server (Caddyfile `nats <url>`). Example:
	// "nats://nats.internal:4222". Default: none.
	NATS string `json:"nats,omitempty"`

	// Webhooks are the webhooks this config declares. The config owns them:
	// the admin API shows them read-only. A webhook removed from the
	// config is soft-deleted and its event database kept, so declaring it
	// again brings its events back. Default: none (webhooks can still be
	// made through the admin API).
	Webhooks []*WebhookConfig `json:"webhooks,omitempty"`

	declared []*storage.Webhook
	policy   *engine.TargetPolicy
	// gatewayID is this Caddy instance's id: the hop marker its deliveries
	// carry, refused (508) by its entrypoints.
	gatewayID string
	data      *pooledDir
	// declaration is what this config puts in force in its data directory.
	declaration *datadir.Declaration
	// events emits this config's alerts as Caddy events; nil without an
	// events app.
	events *eventEmitter
	logger *zap.Logger
	// started is set once this config's webhooks are in force: until then an
	// unknown entrypoint key may be one about to be declared.
	// (A pointer: Caddy copies module values, and an atomic must not be.)
	started *atomic.Bool
}

// WebhookConfig declares a webhook: a group of entrypoints and targets that
// owns one event database. Its id is derived from its name, so that its
// event database is found again after a restart or a reload.
type WebhookConfig struct {
	// Name identifies the webhook: 1 to 128 letters, digits, '.', '_' or
	// '-', starting with a letter or digit, unique in the config. Renaming a
	// webhook starts a new, empty event database. Required. Example: "github".
	Name string `json:"name"`

	// Description is free text shown in the admin API and the event log.
	// Default: none.
	Description string `json:"description,omitempty"`

	// Disabled makes every entrypoint of the webhook answer 410 Gone and
	// store nothing. Default: false.
	Disabled bool `json:"disabled,omitempty"`

	// RetentionDays deletes events older than this many days whose
	// deliveries have all finished, when the webhook receives an event, at
	// most once an hour. 0 to 36500; 0 keeps every event. Default: 0.
	RetentionDays int `json:"retention_days,omitempty"`

	// Dedup makes ingest idempotent: a request whose id (a header's
	// first value, or a CEL key expression over the event giving a string
	// or an int) was seen within the window is answered 200 with the
	// event_id of the event first stored with it, and nothing is stored.
	// {"kind": "header"|"expression", "source": "X-GitHub-Delivery"|
	// "body.id", "window": "24h"}; window 1s to 30d, default 24h. A
	// request without an id (header missing, evaluation failed) is stored
	// as any other. Default: none.
	Dedup *storage.Dedup `json:"dedup,omitempty"`

	// Entrypoints are the inbound URLs of the webhook. Default: none.
	Entrypoints []EntrypointConfig `json:"entrypoints,omitempty"`

	// Targets are where the webhook's events go: each event gets one
	// delivery per target in force. Default: none (events are stored only).
	Targets []TargetConfig `json:"targets,omitempty"`
}

// EntrypointConfig declares an entrypoint: a request whose last path segment
// is Key, to a route handled by the webhooker handler, is ingested by the
// webhook.
type EntrypointConfig struct {
	// Key is the last path segment that leads to the webhook: 1 to 128 of
	// A-Z a-z 0-9 . _ ~ - (not "." or ".."), unique across all webhooks.
	// Required. Example: "github-push" for POST /hooks/github-push.
	Key string `json:"key"`

	// Disabled makes the entrypoint answer 410 Gone and store nothing.
	// Default: false.
	Disabled bool `json:"disabled,omitempty"`

	// Options are the entrypoint's inbound checks: "verify" rules (one must
	// pass, else 401 and nothing stored), "tolerance" and "handshake"; see
	// storage.EntrypointOptions. Secrets may be {env.X} placeholders,
	// replaced when the config is provisioned. Default: none.
	Options storage.EntrypointOptions `json:"options,omitzero"`
}

// TargetConfig declares where a webhook's events go. It has the shape of a
// target in the admin API (name, type, url, options with durations as
// strings such as "5s"), except that the API's "active" is written
// "disabled" here, false by default, as for webhooks and entrypoints.
type TargetConfig struct {
	// Name identifies the target in its webhook, with the rule of webhook
	// names, unique in the webhook. Required. Example: "ci".
	Name string `json:"name"`

	// Type is what the target does with an event: "http" forwards it with
	// retries, "database" keeps it in the event database only, "log" writes
	// it to Caddy's log. Required.
	Type string `json:"type"`

	// URL is where an http target POSTs events: an absolute http:// or
	// https:// URL without credentials (put those in a header), at most 4096
	// bytes. Required for http, refused for the other types. Example:
	// "https://ci.example.com/hook".
	URL string `json:"url,omitempty"`

	// Options are an http target's delivery settings, as in the admin API:
	// max_retries, timeout, backoff_initial, backoff_max, headers,
	// breaker_threshold, breaker_cooldown, rate_limit ({"events": 50,
	// "window": "1s"}), max_in_flight and ordered (true: one at a time, in
	// ingest order), durations as strings. Default: each option's own
	// default.
	Options storage.TargetOptions `json:"options,omitzero"`

	// Filter is a CEL expression over each event: the target gets a
	// delivery only of the events it matches (see the README's Filters). At
	// most 4096 bytes; one that does not compile is a config error. Default:
	// none, every event. Example:
	// "body.action == \"opened\" && header[\"X-Github-Event\"] == \"pull_request\"".
	Filter string `json:"filter,omitempty"`

	// Disabled takes the target out of force: new events get no delivery
	// to it. Default: false.
	Disabled bool `json:"disabled,omitempty"`
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
	if a.IntakeMemory == 0 {
		a.IntakeMemory = storage.DefaultIntakeMemory
	}
	if a.IntakeSize == 0 {
		a.IntakeSize = storage.DefaultIntakeSize
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
	if err := checkMaxInFlight(declared, a.Workers); err != nil {
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
	if err := checkPublicURL(a.PublicURL); err != nil {
		return err
	}
	if err := a.OperationalWebhook.check(a.policy); err != nil {
		return err
	}

	// The storage is only acquired here: it is opened by Start, after the
	// data directory's lock, so that provisioning (and `caddy validate`)
	// touches no file. Across a reload the new config joins the storage
	// already open; until then its handlers answer 503.
	if a.events, err = newEventEmitter(ctx, a.logger); err != nil {
		return err
	}
	a.declaration = &datadir.Declaration{
		Webhooks: declared, Policy: a.policy, Quotas: a.TenantQuotas.quotas(), Logger: a.logger,
		PublicURL: a.PublicURL,
	}
	if a.events != nil {
		a.declaration.Alerted = a.events.alerted
	}
	if ow := a.OperationalWebhook; ow != nil {
		a.declaration.OperationalWebhook = &datadir.OperationalWebhook{URL: ow.URL, Options: ow.Options}
	}
	clusterOpts, err := a.clusterOptions()
	if err != nil {
		return err
	}
	data, err := acquireDataDir(a.DataDir, datadir.Options{
		Cluster:         clusterOpts,
		MaxEventBytes:   a.MaxBodySize,
		Synchronous:     storage.Synchronous(a.Synchronous),
		MaxOpenEventDBs: a.MaxOpenEventDBs,
		IntakeMemory:    a.IntakeMemory,
		IntakeSize:      a.IntakeSize,
		Workers:         a.Workers, QueueSize: a.QueueSize, RetryQueueSize: a.RetryQueueSize,
		MaxPerTarget:    a.TargetConcurrency,
		StopGracePeriod: time.Duration(a.StopGracePeriod),
		GatewayID:       a.gatewayID,
		Logger:          a.logger,
		Observer:        deliveryMetrics{},
	}, a.logger)
	if err != nil {
		return fmt.Errorf("webhooker storage in %s: %w", a.DataDir, err)
	}
	a.data = data
	if err := registerMetrics(ctx, data, a.logger); err != nil {
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
	if err := checkIntakeMemory(a.IntakeMemory); err != nil {
		return err
	}
	if err := checkIntakeSize(a.IntakeSize); err != nil {
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
	if _, err := a.clusterOptions(); err != nil {
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
	metricsPerTarget.Store(a.MetricsPerTarget == nil || *a.MetricsPerTarget)
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

// Cleanup stops this config's Caddy events and lets go of the storage,
// which closes when no config uses it.
func (a *App) Cleanup() error {
	if a.events != nil {
		a.events.close()
	}
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

// checkIntakeSize refuses an intake_size under 1 MiB (0 is the default,
// set by Provision).
func checkIntakeSize(n int64) error {
	if n != 0 && n < minIntakeMemory {
		return fmt.Errorf("intake_size (%d bytes) must be at least 1MiB", n)
	}
	return nil
}
