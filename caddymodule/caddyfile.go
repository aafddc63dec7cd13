package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/webhooker/caddy-webhooker/storage"
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
		return nil, d.Err("the webhooker global option may appear only once")
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
//		webhook <name> {
//			description    <text>
//			disabled
//			retention_days <n>
//			entrypoint <key> [disabled]
//			target <name> http <url> [disabled] {
//				max_retries <n>
//				timeout     <duration>
//				backoff     <initial> [<max>]
//				header      <name> <value>
//				breaker     <threshold> [<cooldown>]
//				disabled
//			}
//			target <name> database|log [disabled]
//		}
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "data_dir":
			if !d.AllArgs(&a.DataDir) {
				return d.ArgErr()
			}
		case "max_body_size":
			var size string
			if !d.AllArgs(&size) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(size)
			if err != nil || n == 0 {
				return d.Errf("max_body_size %q: want a size such as 10MB or 512KiB", size)
			}
			a.MaxBodySize = int64(n)
		case "max_ingest_memory":
			n, err := sizeArg(d)
			if err != nil {
				return err
			}
			a.MaxIngestMemory = n
		case "body_timeout":
			dur, err := durationArgs(d, 1, 1)
			if err != nil {
				return err
			}
			if dur[0] == 0 {
				return d.Errf("body_timeout: want a duration over 0, such as 30s")
			}
			a.BodyTimeout = dur[0]
		case "synchronous":
			if !d.AllArgs(&a.Synchronous) {
				return d.ArgErr()
			}
		case "max_open_event_dbs", "workers", "queue_size", "retry_queue_size":
			field := map[string]*int{"max_open_event_dbs": &a.MaxOpenEventDBs, "workers": &a.Workers,
				"queue_size": &a.QueueSize, "retry_queue_size": &a.RetryQueueSize}[d.Val()]
			n, err := intArg(d)
			if err != nil {
				return err
			}
			*field = n
		case "stop_grace_period":
			dur, err := durationArgs(d, 1, 1)
			if err != nil {
				return err
			}
			a.StopGracePeriod = dur[0]
		case "target_concurrency":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			if n == 0 {
				return d.Errf("target_concurrency: want 1 or more attempts in flight per target")
			}
			a.TargetConcurrency = n
		case "target_policy":
			if a.TargetPolicy != nil {
				return d.Errf("target_policy is set twice: put every allow and deny in one block")
			}
			p, err := unmarshalTargetPolicy(d)
			if err != nil {
				return err
			}
			a.TargetPolicy = p
		case "tenant_quotas":
			if a.TenantQuotas != nil {
				return d.Errf("tenant_quotas is set twice")
			}
			q, err := unmarshalTenantQuotas(d)
			if err != nil {
				return err
			}
			a.TenantQuotas = q
		case "webhook":
			w, err := unmarshalWebhook(d)
			if err != nil {
				return err
			}
			a.Webhooks = append(a.Webhooks, w)
		default:
			return d.Errf("unrecognized webhooker option %q", d.Val())
		}
	}
	return nil
}

func unmarshalWebhook(d *caddyfile.Dispenser) (*WebhookConfig, error) {
	w := new(WebhookConfig)
	if !d.AllArgs(&w.Name) {
		return nil, d.Errf("webhook: want exactly one name")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "description":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			w.Description = strings.Join(args, " ")
		case "disabled":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			w.Disabled = true
		case "retention_days":
			n, err := intArg(d)
			if err != nil {
				return nil, err
			}
			w.RetentionDays = n
		case "entrypoint":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 || (len(args) == 2 && args[1] != "disabled") {
				return nil, d.Errf("entrypoint: want <key> [disabled]")
			}
			w.Entrypoints = append(w.Entrypoints, EntrypointConfig{Key: args[0], Disabled: len(args) == 2})
		case "target":
			t, err := unmarshalTarget(d)
			if err != nil {
				return nil, err
			}
			w.Targets = append(w.Targets, t)
		default:
			return nil, d.Errf("webhook %s: unrecognized option %q", w.Name, d.Val())
		}
	}
	return w, nil
}

func unmarshalTarget(d *caddyfile.Dispenser) (TargetConfig, error) {
	var t TargetConfig
	args := d.RemainingArgs()
	if len(args) < 2 {
		return t, d.Errf("target: want <name> http <url>, <name> database or <name> log")
	}
	t.Name, t.Type, args = args[0], args[1], args[2:]
	if t.Type == "http" {
		if len(args) == 0 {
			return t, d.Errf("target %s: an http target needs a url", t.Name)
		}
		t.URL, args = args[0], args[1:]
	}
	switch {
	case len(args) == 1 && args[0] == "disabled":
		t.Disabled = true
	case len(args) > 0:
		return t, d.Errf("target %s: unexpected %q", t.Name, strings.Join(args, " "))
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if t.Type != "http" && d.Val() != "disabled" {
			return t, d.Errf("target %s: %s is an option of http targets, not of %s ones", t.Name, d.Val(), t.Type)
		}
		switch d.Val() {
		case "max_retries":
			n, err := intArg(d)
			if err != nil {
				return t, err
			}
			t.Options.MaxRetries = &n
		case "timeout":
			dur, err := durationArgs(d, 1, 1)
			if err != nil {
				return t, err
			}
			t.Options.Timeout = storage.Duration(dur[0])
		case "backoff":
			dur, err := durationArgs(d, 1, 2)
			if err != nil {
				return t, err
			}
			t.Options.BackoffInitial = storage.Duration(dur[0])
			if len(dur) == 2 {
				t.Options.BackoffMax = storage.Duration(dur[1])
			}
		case "header":
			var name, value string
			if !d.AllArgs(&name, &value) {
				return t, d.Errf("target %s: header: want <name> <value>", t.Name)
			}
			if t.Options.Headers == nil {
				t.Options.Headers = make(map[string]string)
			}
			t.Options.Headers[name] = value
		case "breaker":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return t, d.Errf("target %s: breaker: want <threshold> [<cooldown>]", t.Name)
			}
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 0 {
				return t, d.Errf("target %s: breaker threshold %q: want a whole number, 0 or more", t.Name, args[0])
			}
			t.Options.BreakerThreshold = &n
			if len(args) == 2 {
				cooldown, err := caddy.ParseDuration(args[1])
				if err != nil {
					return t, d.Errf("target %s: breaker cooldown %q: %v", t.Name, args[1], err)
				}
				t.Options.BreakerCooldown = storage.Duration(cooldown)
			}
		case "disabled":
			if d.NextArg() {
				return t, d.ArgErr()
			}
			t.Disabled = true
		default:
			return t, d.Errf("target %s: unrecognized option %q", t.Name, d.Val())
		}
	}
	return t, nil
}

// durationArgs reads between lo and hi durations as the option's arguments.
func durationArgs(d *caddyfile.Dispenser, lo, hi int) ([]caddy.Duration, error) {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) < lo || len(args) > hi {
		return nil, d.ArgErr()
	}
	out := make([]caddy.Duration, len(args))
	for i, a := range args {
		v, err := caddy.ParseDuration(a)
		if err != nil || v < 0 {
			return nil, d.Errf("%s %q: want a duration such as 500ms, 30s or 1h", name, a)
		}
		out[i] = caddy.Duration(v)
	}
	return out, nil
}

func intArg(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, d.Errf("%s %q: want a whole number, 0 or more", name, s)
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
