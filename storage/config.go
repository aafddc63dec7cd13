package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sync"
	"time"

	"github.com/webhooker/caddy-webhooker/filter"
)

// Source says who owns a webhook's configuration.
type Source string

const (
	SourceCaddyfile Source = "caddyfile" // declared in the Caddyfile; read-only elsewhere
	SourceAPI       Source = "api"       // created through the admin or tenant API
)

// TargetType is what a target does with an event.
type TargetType string

const (
	TargetHTTP     TargetType = "http"     // forward over HTTP, with retries
	TargetDatabase TargetType = "database" // keep the event in its event DB only
	TargetLog      TargetType = "log"      // write the event to Caddy's log
)

// Webhook groups entrypoints and targets and owns one event DB.
type Webhook struct {
	ID          string `json:"id"`
	UserID      string `json:"user_id,omitempty"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Source      Source `json:"source"`
	Active      bool   `json:"active"`
	// RetentionDays is how long events are kept, in days; 0 keeps them forever.
	RetentionDays int `json:"retention_days"`
	// Dedup, when set, makes ingest idempotent (dedup.go): an event whose
	// sender's id was seen within the window is answered with the first
	// event's id, and nothing is stored.
	Dedup       *Dedup       `json:"dedup,omitempty"`
	CreatedAt   time.Time    `json:"created_at"`
	Entrypoints []Entrypoint `json:"entrypoints"`
	Targets     []Target     `json:"targets"`
}

// Entrypoint is an inbound URL: the last path segment of a request is its key.
type Entrypoint struct {
	ID        string `json:"id"`
	WebhookID string `json:"webhook_id"`
	Key       string `json:"key"`
	Active    bool   `json:"active"`
	// Displaced entrypoints were made through the API with a key the
	// Caddyfile then declared: the Caddyfile owns every key it declares, so
	// they are inactive and route nothing until given a free key, or enabled
	// again once their key is free.
	Displaced bool      `json:"displaced,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Options are how the entrypoint authenticates its senders and answers
	// their subscription handshakes. They hold secrets, and the API shows
	// entrypoints without them: they are write-only.
	Options EntrypointOptions `json:"-"`
	// optionsKey is the stored JSON of Options, which the handler compares to
	// reuse the verifiers it built for the same options.
	optionsKey string
}

// OptionsKey identifies the entrypoint's Options as loaded: two loads of the
// same options give the same key, so that what is built from them (the
// verifiers of a route) is built once, not per request. "" for none.
func (e Entrypoint) OptionsKey() string { return e.optionsKey }

// EntrypointOptions are an entrypoint's inbound checks, stored as JSON with
// it: the Caddyfile's verify, tolerance and handshake options of an
// entrypoint block, and Caddy's JSON config "options" of an entrypoint.
type EntrypointOptions struct {
	// Verify are the verification rules: a request must pass one of them,
	// or it is refused with 401 and nothing is stored. Default: none (every
	// request is accepted).
	Verify []VerifyRule `json:"verify,omitempty"`
	// Tolerance is how far a signed timestamp may be from now (stripe,
	// slack, standard_webhooks). A duration string. Default: "5m".
	Tolerance Duration `json:"tolerance,omitempty"`
	// Handshake answers a provider's subscription handshake on the
	// entrypoint, storing nothing. Default: none.
	Handshake *HandshakeRule `json:"handshake,omitempty"`
}

// IsZero reports whether the options check nothing.
func (o EntrypointOptions) IsZero() bool {
	return len(o.Verify) == 0 && o.Tolerance == 0 && o.Handshake == nil
}

// VerifyRule is one verification scheme and its secrets (the verify package:
// github, stripe, standard_webhooks, shopify, slack, twilio, hmac,
// basic_auth, bearer).
type VerifyRule struct {
	Scheme string `json:"scheme"`
	// Secrets are the scheme's arguments: signing secrets (several while
	// one is rotated), basic_auth's user and password, or bearer tokens.
	Secrets []string `json:"secrets"`
	// Header, Algorithm, Encoding and Prefix apply to hmac only.
	Header    string `json:"header,omitempty"`
	Algorithm string `json:"algorithm,omitempty"`
	Encoding  string `json:"encoding,omitempty"`
	Prefix    string `json:"prefix,omitempty"`
}

// HandshakeRule names a provider's handshake (slack, meta, graph, dropbox,
// zoom) and its arguments (meta's verify token, zoom's secret tokens).
type HandshakeRule struct {
	Name string   `json:"name"`
	Args []string `json:"args,omitempty"`
}

// Target is where a webhook's events go.
type Target struct {
	ID        string        `json:"id"`
	WebhookID string        `json:"webhook_id"`
	Name      string        `json:"name"`
	Type      TargetType    `json:"type"`
	URL       string        `json:"url,omitempty"`
	Options   TargetOptions `json:"options"`
	// Filter is a CEL expression over each event (see the filter package):
	// the target gets a delivery only of the events it matches. "" for
	// none: every event. At most 4096 bytes (tenants: 1024).
	Filter string `json:"filter,omitempty"`
	Active bool   `json:"active"`
	// Paused targets are sent nothing: their deliveries wait, pending or
	// retrying, until the target is resumed (unlike a disabled target,
	// whose deliveries fail). Runtime state set through the API
	// (MainDB.SetTargetPaused), not configuration: a reload keeps it.
	Paused    bool      `json:"paused"`
	CreatedAt time.Time `json:"created_at"`
}

// TargetOptions are an http target's delivery settings, the "options" of a
// target in the admin API and in Caddy's JSON config alike; stored as JSON.
// A field left out (0) takes the engine's default. Bounds: Limits.
type TargetOptions struct {
	// MaxRetries is how many times a failed delivery is retried: 0 makes
	// one attempt only. Absent: 10. At most 100 (tenants: 20).
	MaxRetries *int `json:"max_retries,omitempty"`

	// Timeout bounds one attempt, the target's answer included. A duration
	// string such as "5s". Default: "30s". 10ms to 10m (tenants: 1s to 1m).
	Timeout Duration `json:"timeout,omitempty"`

	// BackoffInitial is the wait before the first retry; each further retry
	// waits twice as long as the one before, up to BackoffMax, spread by
	// ±20% jitter (a Retry-After of the target's is honoured). A duration
	// string such as "1s". Default: "5s". At least 10ms (tenants: 1s).
	BackoffInitial Duration `json:"backoff_initial,omitempty"`

	// BackoffMax is the longest wait between two retries, at least
	// BackoffInitial. A duration string such as "10m". Default: "1h". At
	// most 7 days, "168h" (tenants: "24h").
	BackoffMax Duration `json:"backoff_max,omitempty"`

	// Headers are set on every delivery, over the event's own (the
	// Caddyfile's header and header_up <field> <value>). Their values
	// are write-only: the API shows them as "(redacted)". At most 32, 16 KiB
	// in all; hop-by-hop headers, Host, Content-Length and Webhooker-Via are
	// refused. Default: none. Example: {"Authorization": "Bearer …"}.
	Headers map[string]string `json:"headers,omitempty"`

	// HeadersAdd are added to every delivery, after the event's own values
	// of the same header (the Caddyfile's header_up +<field> <value>).
	// Write-only and bounded like Headers, which they count with; a header
	// cannot be both set (Headers) and added. Default: none. Example:
	// {"X-Tag": ["gateway"]}.
	HeadersAdd map[string][]string `json:"headers_add,omitempty"`

	// HeadersRemove are headers of the event that are not forwarded (the
	// Caddyfile's header_up -<field>), such as the sender's Authorization or
	// Cookie; removed before HeadersAdd and Headers apply. Names only,
	// counted with Headers; the headers Headers refuses are refused here too.
	// Default: none. Example: ["Authorization", "Cookie"].
	HeadersRemove []string `json:"headers_remove,omitempty"`

	// SigningSecret makes the target sign every delivery by Standard
	// Webhooks: "whsec_" then the base64 of a 24- to 64-byte key. Each
	// attempt gets a fresh webhook-timestamp and a webhook-signature
	// "v1,<base64 HMAC-SHA256 of id.timestamp.body>", and the gateway's
	// webhook-id, webhook-timestamp and webhook-signature replace the
	// sender's. Write-only: the API shows it as "(redacted)"; the API can
	// generate one ("generate"), shown once. Default: none (not signed).
	SigningSecret string `json:"signing_secret,omitempty"`

	// SigningSecretPrevious is the secret SigningSecret replaced, which
	// signs too (a second v1 signature in the header) until
	// SigningSecretPreviousUntil, so that receivers can move to the new one.
	// Write-only, like SigningSecret. Default: none. Set by the API when a
	// change replaces a signing secret.
	SigningSecretPrevious string `json:"signing_secret_previous,omitempty"`

	// SigningSecretPreviousUntil ends the grace of SigningSecretPrevious, an
	// RFC 3339 time. Default: none, the previous secret signs until it is
	// removed; the API sets 24 hours from the change when it rotates a
	// secret.
	SigningSecretPreviousUntil time.Time `json:"signing_secret_previous_until,omitzero"`

	// BreakerThreshold is how many failed attempts in a row open the
	// target's circuit breaker, which then holds its deliveries back for
	// BreakerCooldown before one probe is let through; 0 never opens it.
	// Absent: 5. At most 1000.
	BreakerThreshold *int `json:"breaker_threshold,omitempty"`

	// BreakerCooldown is how long an open circuit breaker holds deliveries
	// back before a probe. A duration string such as "30s". Default: "30s".
	// 10ms to 24h (tenants: 1s to 24h).
	BreakerCooldown Duration `json:"breaker_cooldown,omitempty"`

	// RateLimit bounds how fast deliveries go to the target: a token
	// bucket of Events tokens refilled at Events per Window, so that a
	// burst of up to Events goes at once and a backlog drains at the rate.
	// A delivery whose turn comes while the bucket is empty waits in its
	// event DB (retrying, no attempt counted) until its token is due.
	// Events 1 to 1,000,000 (tenants: 10,000); Window 1s to 1h. Default:
	// none (as fast as the workers go). Example: {"events": 50, "window": "1s"}.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	// MaxInFlight is the most attempts of the target in flight at once;
	// the deliveries beyond wait in line for a slot. 1 to 4096 (tenants:
	// 64), and never more than the engine's workers. Default: the engine's
	// target_concurrency (a quarter of the workers).
	MaxInFlight *int `json:"max_in_flight,omitempty"`

	// Ordered sends the target's deliveries one at a time, in the order
	// they were written (ingest order; a redelivery joins the end of the
	// line): each goes once the one before it is delivered or has given up
	// (failed, or cancelled by the operator), so a failing head holds the
	// rest back meanwhile. max_in_flight, if set, must be 1. Default: false
	// (up to max_in_flight at once, in no promised order).
	Ordered bool `json:"ordered,omitempty"`
}

// RateLimit is a target's rate limit (TargetOptions.RateLimit).
type RateLimit struct {
	// Events is the bucket's size: the burst, and the events per Window.
	Events int `json:"events"`
	// Window is the time in which Events tokens come back, such as "1s".
	Window Duration `json:"window"`
}

// Duration is a time.Duration written in JSON as a Go duration string, such
// as "500ms", "30s" or "1h30m", in the admin API and in Caddy's JSON config
// alike. A bare number is refused: read as nanoseconds, "timeout": 5 would
// be 5ns, a mistake no one means.
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string such as "1m30s". A number is
// refused as a type error, which the JSON decoder completes with the
// field's path, so that the API's 400 names the field. null leaves d as it
// is, as for any other JSON value.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{
			Value: fmt.Sprintf("%s (a duration is a string with a unit, such as \"5s\")", jsonKind(b)),
			Type:  reflect.TypeFor[string](),
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want a Go duration such as \"500ms\", \"30s\" or \"1h\": %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// jsonKind describes a JSON value that is not a string, as encoding/json's
// type errors do ("number 5", "object").
func jsonKind(b []byte) string {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		return "nothing"
	case b[0] == '{':
		return "object"
	case b[0] == '[':
		return "array"
	case b[0] == 't' || b[0] == 'f':
		return "bool"
	case len(b) > 32: // the value is quoted back: not a whole request body
		return "number " + string(b[:32]) + "…"
	default:
		return "number " + string(b)
	}
}

var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	// An entrypoint key is one path segment of unreserved URL characters.
	keyPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)
)

// ValidateName checks the name of a webhook or target.
func ValidateName(kind, name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%s name %q: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", kind, name)
	}
	return nil
}

// ValidateEntrypointKey checks that key can be the last segment of a URL path.
func ValidateEntrypointKey(key string) error {
	if !keyPattern.MatchString(key) || key == "." || key == ".." {
		return fmt.Errorf("entrypoint key %q: use 1 to 128 letters, digits, '.', '_', '~' or '-'", key)
	}
	return nil
}

// ValidateRetentionDays checks a webhook's retention_days against l: 0
// (keep forever) to l.RetentionDays. The Caddyfile checks its webhooks with
// it as it reads them, to name the line.
func ValidateRetentionDays(days int, l Limits) error { return validateRetentionDays(days, l) }

// Validate checks a target against the operator's limits, as the Caddyfile
// declares it; see ValidateWithin.
func (t Target) Validate() error { return t.ValidateWithin(OperatorLimits()) }

// Snapshot is the live configuration, read once from the main DB and then
// shared read-only, so that routing an ingest costs a map lookup and no query.
type Snapshot struct {
	webhooks map[string]*Webhook
	routes   map[string]Route
	targets  map[string]Target // by target id
}

// Route is what an entrypoint key leads to.
type Route struct {
	Webhook    *Webhook
	Entrypoint Entrypoint
	// Targets are the webhook's active targets: one delivery each per event,
	// except to those whose filter the event does not match (Select).
	Targets []Target
	// filters[i] is the compiled filter of Targets[i], nil for none; nil
	// when no target has one. Compiled once per snapshot, shared by the
	// webhook's routes.
	filters []*filter.Program
	// filterErr is a stored filter that does not compile (see FilterError).
	filterErr error
	// dedupKey is the webhook's compiled dedup expression, nil for none;
	// dedupErr a stored one that does not compile: the event is then
	// refused (503), as for a filter.
	dedupKey *filter.KeyProgram
	dedupErr error
}

// Filtered reports whether a target of r has a filter: only then has an
// ingest to describe its event to filters and Select.
func (r Route) Filtered() bool { return r.filters != nil || r.filterErr != nil }

// FilterError is the error of a target's filter that is stored but does not
// compile, nil when all do. Every way in compiles a filter before storing
// it: only a main DB changed behind the gateway's back, or a CEL that reads
// an expression differently after an upgrade, gets here, and the ingest
// then refuses the event (503, to be sent again once the filter is fixed)
// rather than send it where the filter would not, or not where it would.
func (r Route) FilterError() error { return r.filterErr }

// Select returns r with only the targets whose filter matches ev (a target
// with no filter always matches), and no filters left to apply. Each target
// left out is passed to rejected, with the error of its evaluation when it
// failed (a key the event lacks, the cost limit): a failed evaluation is
// no match.
func (r Route) Select(ev *filter.Event, rejected func(t Target, err error)) Route {
	if r.filters == nil {
		return r
	}
	selected := make([]Target, 0, len(r.Targets))
	for i, t := range r.Targets {
		if p := r.filters[i]; p != nil {
			if ok, err := p.Match(ev); !ok {
				rejected(t, err)
				continue
			}
		}
		selected = append(selected, t)
	}
	r.Targets, r.filters = selected, nil
	return r
}

// compiledFilters are the target filters a snapshot compiled, by source,
// for the next snapshot to reuse: every change through the API loads a new
// snapshot, and compiling a filter takes about 100 µs, so that thousands of
// filtered targets would make each change take a second. It holds the
// filters of the last snapshot only.
type compiledFilters struct {
	mu       sync.Mutex
	bySource map[string]*filter.Program
	// keys are the dedup expressions, by source, kept the same way.
	keys map[string]*filter.KeyProgram
}

// newSnapshot builds the snapshot of webhooks, compiling the filters that
// cache (nil: none) does not have from the snapshot before.
func newSnapshot(webhooks []*Webhook, cache *compiledFilters) *Snapshot {
	s := &Snapshot{webhooks: make(map[string]*Webhook, len(webhooks)),
		routes: make(map[string]Route), targets: make(map[string]Target)}
	var (
		previous     map[string]*filter.Program
		previousKeys map[string]*filter.KeyProgram
	)
	if cache != nil {
		cache.mu.Lock()
		defer cache.mu.Unlock()
		previous, previousKeys = cache.bySource, cache.keys
	}
	keys := make(map[string]*filter.KeyProgram)
	compileKey := func(source string) (*filter.KeyProgram, error) {
		p := keys[source]
		if p == nil {
			p = previousKeys[source]
		}
		if p == nil {
			var err error
			if p, err = filter.CompileKey(source); err != nil {
				return nil, err
			}
		}
		keys[source] = p
		return p, nil
	}
	compiled := make(map[string]*filter.Program)
	compile := func(source string) (*filter.Program, error) {
		if p := compiled[source]; p != nil {
			return p, nil
		}
		p := previous[source]
		if p == nil {
			var err error
			if p, err = filter.Compile(source); err != nil {
				return nil, err
			}
		}
		compiled[source] = p
		return p, nil
	}
	for _, w := range webhooks {
		s.webhooks[w.ID] = w
		var (
			active    []Target
			filters   []*filter.Program
			filterErr error
		)
		for _, t := range w.Targets {
			s.targets[t.ID] = t
			if !t.Active {
				continue
			}
			active = append(active, t)
			var p *filter.Program
			if t.Filter != "" {
				var err error
				if p, err = compile(t.Filter); err != nil && filterErr == nil {
					filterErr = fmt.Errorf("target %s: stored %w", t.Name, err)
				}
				if filters == nil {
					filters = make([]*filter.Program, len(active)-1, len(w.Targets))
				}
			}
			if filters != nil {
				filters = append(filters, p)
			}
		}
		var (
			dedupKey *filter.KeyProgram
			dedupErr error
		)
		if d := w.Dedup; d != nil && d.Kind == DedupExpression {
			if dedupKey, dedupErr = compileKey(d.Source); dedupErr != nil {
				dedupErr = fmt.Errorf("stored %w", dedupErr)
			}
		}
		for _, e := range w.Entrypoints {
			if e.Displaced { // its key routes to the declared webhook that took it
				continue
			}
			s.routes[e.Key] = Route{Webhook: w, Entrypoint: e, Targets: active, filters: filters, filterErr: filterErr,
				dedupKey: dedupKey, dedupErr: dedupErr}
		}
	}
	if cache != nil {
		cache.bySource, cache.keys = compiled, keys
	}
	return s
}

// Route finds the entrypoint with key.
func (s *Snapshot) Route(key string) (Route, bool) {
	r, ok := s.routes[key]
	return r, ok
}

// Target finds a target of a webhook by id.
func (s *Snapshot) Target(webhookID, targetID string) (Target, bool) {
	t, ok := s.targets[targetID]
	return t, ok && t.WebhookID == webhookID
}

// Webhook finds a webhook by id.
func (s *Snapshot) Webhook(id string) (*Webhook, bool) {
	w, ok := s.webhooks[id]
	return w, ok
}

// Webhooks lists every webhook; the caller must not modify them.
func (s *Snapshot) Webhooks() []*Webhook {
	out := make([]*Webhook, 0, len(s.webhooks))
	for _, w := range s.webhooks {
		out = append(out, w)
	}
	sortWebhooks(out)
	return out
}
