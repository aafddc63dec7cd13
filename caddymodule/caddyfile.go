package caddymodule

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/handshake"
	"github.com/webhooker/caddy-webhooker/storage"
	"github.com/webhooker/caddy-webhooker/verify"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("webhooker", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("webhooker", parseHandlerDirective)
	// Entrypoints answer requests themselves, like respond: no order or
	// route block needed in a site.
	httpcaddyfile.RegisterDirectiveOrder("webhooker", httpcaddyfile.Before, "respond")
}

func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		d.Next() // onto the option's name, so that the error names its line
		return nil, d.Err("the webhooker global option may appear only once: put all its settings in one block")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "webhooker", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Syntax:
//
//	webhooker {
//		data_dir           <path>
//		max_body_size      <size>
//		max_ingest_memory  <size>
//		intake_memory      <size>
//		intake_size        <size>
//		body_timeout       <duration>
//		synchronous        full|normal
//		max_open_event_dbs <n>
//		workers            <n>
//		queue_size         <n>
//		retry_queue_size   <n>
//		stop_grace_period  <duration>
//		target_concurrency <n>
//		target_policy {
//			allow <cidr>...
//			deny  <cidr>...
//		}
//		tenant_quotas {
//			webhooks    <n>
//			entrypoints <n>
//			targets     <n>
//		}
//		public_url          <url>
//		operational_webhook <url> {
//			<the options of an http target: timeout, backoff, signing_secret…>
//		}
//		metrics_per_target  on|off
//		webhook <name> {
//			description    <text>
//			disabled
//			retention_days <n>
//			dedup header <field> [<window>]
//			dedup expression <cel> [<window>]
//			entrypoint <key> [disabled] {
//				verify github|stripe|standard_webhooks|shopify|slack|twilio <secret>...
//				verify hmac <secret>... {
//					header    <name>
//					algorithm sha1|sha256|sha512
//					encoding  hex|base64
//					prefix    <text>
//				}
//				verify basic_auth <user> <password>
//				verify bearer <token>...
//				tolerance <duration>
//				handshake slack|graph|dropbox | meta <token> | zoom <secret>...
//			}
//			target <name> http <url> [disabled] {
//				max_retries <n>
//				timeout     <duration>
//				backoff     <initial> [<max>]
//				header      <name> <value>
//				header_up   [+|-]<field> [<value>]
//				signing_secret          whsec_<base64>
//				signing_secret_previous whsec_<base64> [until <RFC 3339 time>]
//				breaker     <threshold> [<cooldown>]
//				rate_limit  <events> <window>
//				max_in_flight <n>
//				ordered
//				filter      <cel>
//				disabled
//			}
//			target <name> database|log [disabled] {
//				filter   <cel>
//				disabled
//			}
//		}
//	}
//
// Every check of the config is made here, so that each mistake is reported
// with its file and line: an option given twice is refused rather than the
// last one kept, and so is a count or duration of 0 where 0 would only mean
// "the default" (leave the option out for that). Provision repeats the
// checks for JSON configs with the same functions; only the admin endpoint,
// which the target policy keeps declared targets from, is known there alone.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.ArgErr()
	}
	ds := newDeclarations()
	// Where an option was given, for the checks that span options.
	given := make(map[string]caddyfile.Token)
	var httpTargets []declaredAt
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		if option != "webhook" {
			if _, dup := given[option]; dup {
				return d.Errf("%s is set twice: give it once", option)
			}
			given[option] = d.Token()
		}
		switch option {
		case "data_dir":
			if !d.AllArgs(&a.DataDir) {
				return d.ArgErr()
			}
		case "max_body_size", "max_ingest_memory", "intake_memory", "intake_size":
			field := map[string]*int64{"max_body_size": &a.MaxBodySize, "max_ingest_memory": &a.MaxIngestMemory,
				"intake_memory": &a.IntakeMemory, "intake_size": &a.IntakeSize}[option]
			n, err := sizeArg(d)
			if err != nil {
				return err
			}
			check := map[string]func(int64) error{"intake_memory": checkIntakeMemory, "intake_size": checkIntakeSize}[option]
			if check != nil {
				if err := check(n); err != nil {
					return d.Err(err.Error())
				}
			}
			*field = n
		case "body_timeout", "stop_grace_period":
			field := map[string]*caddy.Duration{"body_timeout": &a.BodyTimeout, "stop_grace_period": &a.StopGracePeriod}[option]
			dur, err := durationArgs(d, "", 1, 1)
			if err != nil {
				return err
			}
			*field = caddy.Duration(dur[0])
		case "synchronous":
			if !d.AllArgs(&a.Synchronous) {
				return d.ArgErr()
			}
			if err := storage.Synchronous(a.Synchronous).Validate(); err != nil {
				return d.WrapErr(err)
			}
		case "max_open_event_dbs", "workers", "queue_size", "retry_queue_size", "target_concurrency":
			field := map[string]*int{"max_open_event_dbs": &a.MaxOpenEventDBs, "workers": &a.Workers,
				"queue_size": &a.QueueSize, "retry_queue_size": &a.RetryQueueSize,
				"target_concurrency": &a.TargetConcurrency}[option]
			n, err := intArg(d, 1)
			if err != nil {
				return err
			}
			*field = n
		case "target_policy":
			p, err := unmarshalTargetPolicy(d)
			if err != nil {
				return err
			}
			a.TargetPolicy = p
		case "tenant_quotas":
			q, err := unmarshalTenantQuotas(d)
			if err != nil {
				return err
			}
			a.TenantQuotas = q
		case "public_url":
			if !d.AllArgs(&a.PublicURL) {
				return d.ArgErr()
			}
			if err := checkPublicURL(a.PublicURL); err != nil {
				return d.WrapErr(err)
			}
		case "operational_webhook":
			ow, err := unmarshalOperationalWebhook(d)
			if err != nil {
				return err
			}
			a.OperationalWebhook = ow
		case "metrics_per_target":
			var v string
			if !d.AllArgs(&v) || (v != "on" && v != "off") {
				return d.Errf("metrics_per_target: want on or off")
			}
			on := v == "on"
			a.MetricsPerTarget = &on
		case "cluster":
			o, err := unmarshalCluster(d)
			if err != nil {
				return err
			}
			a.Cluster = o
		case "nats":
			if !d.AllArgs(&a.NATS) {
				return d.Errf("nats takes one URL, e.g. nats://nats.internal:4222")
			}
		case "webhook":
			w, targets, err := unmarshalWebhook(d, ds)
			if err != nil {
				return err
			}
			a.Webhooks = append(a.Webhooks, w)
			httpTargets = append(httpTargets, targets...)
		default:
			return d.Errf("unrecognized webhooker option %q", option)
		}
	}

	if err := checkIngestMemory(a.MaxBodySize, a.MaxIngestMemory); err != nil {
		later := given["max_ingest_memory"]
		if body, ok := given["max_body_size"]; ok && (later.File == "" || body.Line > later.Line) {
			later = body
		}
		return errAt(later, err)
	}
	if _, err := a.clusterOptions(); err != nil {
		at := given["cluster"]
		if at.File == "" {
			at = given["nats"]
		}
		return errAt(at, err)
	}
	// The target policy may come after the webhooks it refuses.
	pc, err := a.TargetPolicy.engineConfig()
	if err != nil {
		return errAt(given["target_policy"], err)
	}
	policy, err := engine.NewTargetPolicy(pc)
	if err != nil {
		return errAt(given["target_policy"], err)
	}
	for _, t := range httpTargets {
		if err := checkDeclaredTarget(policy, t.webhook, t.target.Name, t.target.Type, t.target.URL); err != nil {
			return errAt(t.at, err)
		}
	}
	if err := a.OperationalWebhook.check(policy); err != nil {
		return errAt(given["operational_webhook"], err)
	}
	return nil
}

// declaredAt is a target and the token of its line, for the checks that can
// only be made at the end of the block.
type declaredAt struct {
	webhook string
	target  TargetConfig
	at      caddyfile.Token
}

// errAt reports err at the file and line of tok, as d.Errf does at the
// current token.
func errAt(tok caddyfile.Token, err error) error {
	d := caddyfile.NewDispenser([]caddyfile.Token{tok})
	d.Next()
	return d.WrapErr(err)
}

// unmarshalWebhook reads a webhook <name> { … } block, checking it with ds
// as it goes. It returns the webhook's http targets too, for the target
// policy, which may come later in the block.
func unmarshalWebhook(d *caddyfile.Dispenser, ds *declarations) (*WebhookConfig, []declaredAt, error) {
	w := new(WebhookConfig)
	if !d.AllArgs(&w.Name) {
		return nil, nil, d.Errf("webhook: want exactly one name")
	}
	if err := ds.webhook(w); err != nil {
		return nil, nil, d.WrapErr(err)
	}
	var httpTargets []declaredAt
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		if option != "entrypoint" && option != "target" {
			if seen[option] {
				return nil, nil, d.Errf("webhook %s: %s is set twice: give it once", w.Name, option)
			}
			seen[option] = true
		}
		switch option {
		case "description":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, nil, d.ArgErr()
			}
			w.Description = strings.Join(args, " ")
		case "disabled":
			if d.NextArg() {
				return nil, nil, d.ArgErr()
			}
			w.Disabled = true
		case "retention_days":
			n, err := intArg(d, 0)
			if err != nil {
				return nil, nil, err
			}
			w.RetentionDays = n
			if err := checkRetentionDays(w); err != nil {
				return nil, nil, d.WrapErr(err)
			}
		case "dedup":
			dd, err := dedupArgs(d)
			if err != nil {
				return nil, nil, err
			}
			w.Dedup = dd
			if err := checkDedup(w); err != nil {
				return nil, nil, d.WrapErr(err)
			}
		case "entrypoint":
			ec, err := unmarshalEntrypoint(d, ds, w.Name)
			if err != nil {
				return nil, nil, err
			}
			w.Entrypoints = append(w.Entrypoints, ec)
		case "target":
			at := d.Token()
			t, err := unmarshalTarget(d, ds, w.Name)
			if err != nil {
				return nil, nil, err
			}
			w.Targets = append(w.Targets, t)
			if t.Type == string(storage.TargetHTTP) {
				httpTargets = append(httpTargets, declaredAt{webhook: w.Name, target: t, at: at})
			}
		default:
			return nil, nil, d.Errf("webhook %s: unrecognized option %q", w.Name, option)
		}
	}
	return w, httpTargets, nil
}

// unmarshalEntrypoint reads an entrypoint line and its block of verify,
// tolerance and handshake options, building the verifiers and handshake
// (checkEntrypointOptions) after each option, so that an error names its
// line. Secrets are kept as written: {env.X} is replaced at provisioning.
func unmarshalEntrypoint(d *caddyfile.Dispenser, ds *declarations, webhook string) (EntrypointConfig, error) {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 || (len(args) == 2 && args[1] != "disabled") {
		return EntrypointConfig{}, d.Errf("webhook %s: entrypoint: want <key> [disabled]", webhook)
	}
	ec := EntrypointConfig{Key: args[0], Disabled: len(args) == 2}
	if err := ds.entrypoint(webhook, ec); err != nil {
		return ec, d.WrapErr(err)
	}
	where := fmt.Sprintf("webhook %s: entrypoint %q: ", webhook, ec.Key)
	seen := make(map[string]bool)
	var toleranceAt caddyfile.Token
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		if option != "verify" {
			if seen[option] {
				return ec, d.Errf("%s%s is set twice: give it once", where, option)
			}
			seen[option] = true
		}
		switch option {
		case "verify":
			rule, err := unmarshalVerify(d, where)
			if err != nil {
				return ec, err
			}
			ec.Options.Verify = append(ec.Options.Verify, rule)
		case "tolerance":
			dur, err := durationArgs(d, where, 1, 1)
			if err != nil {
				return ec, err
			}
			ec.Options.Tolerance = storage.Duration(dur[0])
		case "handshake":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return ec, d.Errf("%shandshake: want %s [<args>...]", where, strings.Join(handshake.Names(), "|"))
			}
			ec.Options.Handshake = &storage.HandshakeRule{Name: args[0], Args: args[1:]}
		default:
			return ec, d.Errf("%sunrecognized option %q (want verify, tolerance or handshake)", where, option)
		}
		// Each line is checked as it is read, except tolerance, checked at
		// the end of the block: it may come before the verify it applies to.
		check := ec
		check.Options.Tolerance = 0
		if _, err := checkEntrypointOptions(webhook, check); err != nil {
			return ec, d.WrapErr(err)
		}
		if option == "tolerance" {
			toleranceAt = d.Token()
		}
	}
	if ec.Options.Tolerance != 0 {
		if _, err := checkEntrypointOptions(webhook, ec); err != nil {
			return ec, errAt(toleranceAt, err)
		}
	}
	return ec, nil
}

// unmarshalVerify reads `verify <scheme> <secret>...` and, for hmac, its
// block of header, algorithm, encoding and prefix.
func unmarshalVerify(d *caddyfile.Dispenser, where string) (storage.VerifyRule, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return storage.VerifyRule{}, d.Errf("%sverify: want <scheme> <secret>... (schemes: %s)", where, strings.Join(verify.Schemes(), ", "))
	}
	rule := storage.VerifyRule{Scheme: args[0], Secrets: args[1:]}
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		if rule.Scheme != verify.HMAC {
			return rule, d.Errf("%sverify %s takes no block: %s applies to hmac only", where, rule.Scheme, option)
		}
		if seen[option] {
			return rule, d.Errf("%sverify hmac: %s is set twice: give it once", where, option)
		}
		seen[option] = true
		var value string
		if !d.AllArgs(&value) {
			return rule, d.ArgErr()
		}
		switch option {
		case "header":
			rule.Header = value
		case "algorithm":
			rule.Algorithm = value
		case "encoding":
			rule.Encoding = value
		case "prefix":
			rule.Prefix = value
		default:
			return rule, d.Errf("%sverify hmac: unrecognized option %q (want header, algorithm, encoding or prefix)", where, option)
		}
	}
	return rule, nil
}

// unmarshalTarget reads a target line and its block, checking the target
// (checkTarget) at its line and again after each option, so that an error
// names the line that caused it.
func unmarshalTarget(d *caddyfile.Dispenser, ds *declarations, webhook string) (TargetConfig, error) {
	var t TargetConfig
	args := d.RemainingArgs()
	if len(args) < 2 {
		return t, d.Errf("webhook %s: target: want <name> http <url>, <name> database or <name> log", webhook)
	}
	t.Name, t.Type, args = args[0], args[1], args[2:]
	if t.Type == "http" {
		if len(args) == 0 {
			return t, d.Errf("webhook %s: target %s: an http target needs a url", webhook, t.Name)
		}
		t.URL, args = args[0], args[1:]
	}
	seen := make(map[string]bool)
	switch {
	case len(args) == 1 && args[0] == "disabled":
		t.Disabled = true
		seen["disabled"] = true
	case len(args) > 0:
		return t, d.Errf("webhook %s: target %s: unexpected %q", webhook, t.Name, strings.Join(args, " "))
	}
	if err := ds.target(webhook, t); err != nil {
		return t, d.WrapErr(err)
	}
	where := fmt.Sprintf("webhook %s: target %s: ", webhook, t.Name)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		if t.Type != "http" && option != "disabled" && option != "filter" {
			return t, d.Errf("webhook %s: target %s: %s is an option of http targets, not of %s ones", webhook, t.Name, option, t.Type)
		}
		if option != "header" && option != "header_up" {
			if seen[option] {
				return t, d.Errf("webhook %s: target %s: %s is set twice: give it once", webhook, t.Name, option)
			}
			seen[option] = true
		}
		switch option {
		case "disabled":
			if d.NextArg() {
				return t, d.ArgErr()
			}
			t.Disabled = true
		case "filter":
			expr, err := filterArg(d)
			if err != nil {
				return t, err
			}
			t.Filter = expr
		case "rate_limit":
			// Here, not in unmarshalTargetOption: the operational webhook
			// has no delivery engine to pace it.
			r, err := rateLimitArgs(d, where)
			if err != nil {
				return t, err
			}
			t.Options.RateLimit = r
		case "max_in_flight":
			n, err := intArg(d, 1)
			if err != nil {
				return t, err
			}
			t.Options.MaxInFlight = &n
		case "ordered":
			if d.NextArg() {
				return t, d.ArgErr()
			}
			t.Options.Ordered = true
		default:
			if err := unmarshalTargetOption(d, &t.Options, where); err != nil {
				return t, err
			}
		}
		if err := checkTarget(webhook, t); err != nil {
			return t, d.WrapErr(err)
		}
	}
	return t, nil
}

// unmarshalTargetOption reads one option of an http target's block (the
// dispenser is on its name) into o: the options of declared targets and of
// the operational webhook alike. An error starts with where.
func unmarshalTargetOption(d *caddyfile.Dispenser, o *storage.TargetOptions, where string) error {
	option := d.Val()
	switch option {
	case "max_retries":
		n, err := intArg(d, 0)
		if err != nil {
			return err
		}
		o.MaxRetries = &n
	case "timeout":
		dur, err := durationArgs(d, where, 1, 1)
		if err != nil {
			return err
		}
		o.Timeout = storage.Duration(dur[0])
	case "backoff":
		dur, err := durationArgs(d, where, 1, 2)
		if err != nil {
			return err
		}
		o.BackoffInitial = storage.Duration(dur[0])
		if len(dur) == 2 {
			o.BackoffMax = storage.Duration(dur[1])
		}
	case "header":
		var name, value string
		if !d.AllArgs(&name, &value) {
			return d.Errf("%sheader: want <name> <value>", where)
		}
		if _, dup := o.Headers[name]; dup {
			return d.Errf("%sheader %s is set twice: give it once", where, name)
		}
		if o.Headers == nil {
			o.Headers = make(map[string]string)
		}
		o.Headers[name] = value
	case "header_up":
		if err := headerUp(d, o, where); err != nil {
			return err
		}
	case "signing_secret":
		if !d.AllArgs(&o.SigningSecret) {
			return d.Errf("%ssigning_secret: want whsec_<base64>", where)
		}
	case "signing_secret_previous":
		args := d.RemainingArgs()
		if len(args) != 1 && (len(args) != 3 || args[1] != "until") {
			return d.Errf("%ssigning_secret_previous: want whsec_<base64> [until <RFC 3339 time>]", where)
		}
		o.SigningSecretPrevious = args[0]
		if len(args) == 3 {
			until, err := time.Parse(time.RFC3339, args[2])
			if err != nil {
				return d.Errf("%ssigning_secret_previous until %q: want an RFC 3339 time such as 2027-01-31T12:00:00Z", where, args[2])
			}
			o.SigningSecretPreviousUntil = until
		}
	case "breaker":
		args := d.RemainingArgs()
		if len(args) < 1 || len(args) > 2 {
			return d.Errf("%sbreaker: want <threshold> [<cooldown>]", where)
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 {
			return d.Errf("%sbreaker threshold %q: want a whole number, 0 (never open) or more", where, args[0])
		}
		o.BreakerThreshold = &n
		if len(args) == 2 {
			cooldown, err := parseDuration("breaker cooldown", args[1])
			if err != nil {
				return d.WrapErr(fmt.Errorf("%s%w", where, err))
			}
			o.BreakerCooldown = storage.Duration(cooldown)
		}
	default:
		return d.Errf("%sunrecognized option %q", where, option)
	}
	return nil
}

// headerUp reads a header_up rule, as reverse_proxy has them: "-<field>"
// removes the sender's header, "+<field> <value>" adds a value, "<field>
// <value>" sets it (as header does). Each field is given once per kind.
func headerUp(d *caddyfile.Dispenser, o *storage.TargetOptions, where string) error {
	args := d.RemainingArgs()
	if len(args) == 0 || len(args) > 2 {
		return d.Errf("%sheader_up: want -<field>, +<field> <value> or <field> <value>", where)
	}
	field := args[0]
	switch {
	case strings.HasPrefix(field, "-"):
		if len(args) != 1 {
			return d.Errf("%sheader_up %s: a removal takes no value", where, field)
		}
		o.HeadersRemove = append(o.HeadersRemove, field[1:])
	case len(args) != 2:
		return d.Errf("%sheader_up %s: want a value", where, field)
	case strings.HasPrefix(field, "+"):
		if o.HeadersAdd == nil {
			o.HeadersAdd = make(map[string][]string)
		}
		o.HeadersAdd[field[1:]] = append(o.HeadersAdd[field[1:]], args[1])
	default:
		if _, dup := o.Headers[field]; dup {
			return d.Errf("%sheader %s is set twice: give it once", where, field)
		}
		if o.Headers == nil {
			o.Headers = make(map[string]string)
		}
		o.Headers[field] = args[1]
	}
	return nil
}

// filterArg reads a filter's CEL expression: the rest of the line. Written
// as several tokens, it is their source joined by single spaces, quotes
// kept, so that body.action == "opened" reads as written; as one quoted
// token (backticks keep every space and quote inside), that token. checkTarget
// then compiles it at this line.
func filterArg(d *caddyfile.Dispenser) (string, error) {
	if d.CountRemainingArgs() > 1 {
		return strings.Join(d.RemainingArgsRaw(), " "), nil
	}
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	return d.Val(), nil
}

// dedupArgs reads `dedup header <field> [<window>]` or `dedup expression
// <cel> [<window>]`. An expression is the rest of the line, as a filter's
// (filterArg); a last token that reads as a duration is the window (no CEL
// expression ends with one: 24h is not CEL).
func dedupArgs(d *caddyfile.Dispenser) (*storage.Dedup, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	dd := &storage.Dedup{Kind: storage.DedupKind(d.Val())}
	var vals, raws []string
	for d.NextArg() {
		vals, raws = append(vals, d.Val()), append(raws, d.ValRaw())
	}
	if len(vals) > 1 {
		if w, err := caddy.ParseDuration(vals[len(vals)-1]); err == nil {
			if w <= 0 {
				return nil, d.Errf("dedup: window %s: want a duration over 0 (leave it out for 24h)", vals[len(vals)-1])
			}
			dd.Window = storage.Duration(w)
			vals, raws = vals[:len(vals)-1], raws[:len(raws)-1]
		}
	}
	switch {
	case len(vals) == 0:
		return nil, d.ArgErr()
	case dd.Kind == storage.DedupHeader && len(vals) > 1:
		return nil, d.Errf("dedup header: want one header name and an optional window, got %q", strings.Join(vals, " "))
	case len(vals) == 1:
		dd.Source = vals[0]
	default:
		dd.Source = strings.Join(raws, " ")
	}
	return dd, nil
}

// durationArgs reads between lo and hi durations as the option's arguments;
// an error starts with where (the webhook and target, or "").
func durationArgs(d *caddyfile.Dispenser, where string, lo, hi int) ([]time.Duration, error) {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) < lo || len(args) > hi {
		return nil, d.ArgErr()
	}
	out := make([]time.Duration, len(args))
	for i, a := range args {
		v, err := parseDuration(name, a)
		if err != nil {
			return nil, d.WrapErr(fmt.Errorf("%s%w", where, err))
		}
		out[i] = v
	}
	return out, nil
}

// parseDuration reads a duration over 0 in Caddy's syntax (which adds d for
// days to Go's). 0 is refused: written out, it would silently mean the
// default.
func parseDuration(option, s string) (time.Duration, error) {
	v, err := caddy.ParseDuration(s)
	switch {
	case err != nil || v < 0:
		return 0, fmt.Errorf("%s %q: want a duration such as 500ms, 30s or 1h", option, s)
	case v == 0:
		return 0, fmt.Errorf("%s: want a duration over 0, not %s (leave the option out for its default)", option, s)
	}
	return v, nil
}

// rateLimitArgs reads rate_limit <events> <window>.
func rateLimitArgs(d *caddyfile.Dispenser, where string) (*storage.RateLimit, error) {
	var events, window string
	if !d.AllArgs(&events, &window) {
		return nil, d.Errf("%srate_limit: want <events> <window>, such as 50 1s", where)
	}
	n, err := strconv.Atoi(events)
	if err != nil || n < 1 {
		return nil, d.Errf("%srate_limit events %q: want a whole number, 1 or more", where, events)
	}
	w, err := parseDuration("rate_limit window", window)
	if err != nil {
		return nil, d.WrapErr(fmt.Errorf("%s%w", where, err))
	}
	return &storage.RateLimit{Events: n, Window: storage.Duration(w)}, nil
}

// intArg reads the option's one argument, a whole number of at least min.
// Where 0 is refused it could only mean the default: the error says to
// leave the option out instead.
func intArg(d *caddyfile.Dispenser, min int) (int, error) {
	name := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min {
		hint := ""
		if min > 0 {
			hint = " (leave the option out for its default)"
		}
		return 0, d.Errf("%s %s: want a whole number, %d or more%s", name, s, min, hint)
	}
	return n, nil
}

func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Syntax:
//
//	webhooker [<matcher>]
//
// The last path segment of a matched request is the entrypoint key.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("webhooker takes no block: webhooks are declared in the global webhooker option")
	}
	return nil
}

var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
