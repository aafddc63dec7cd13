package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
//		synchronous        full|normal
//		max_open_event_dbs <n>
//		webhook <name> {
//			description <text>
//			disabled
//			entrypoint <key> [disabled]
//			target <name> http <url> {
//				max_retries <n>
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
		case "synchronous":
			if !d.AllArgs(&a.Synchronous) {
				return d.ArgErr()
			}
		case "max_open_event_dbs":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			a.MaxOpenEventDBs = n
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
		switch d.Val() {
		case "max_retries":
			n, err := intArg(d)
			if err != nil {
				return t, err
			}
			t.MaxRetries = &n
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
