package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/webhooker/caddy-webhooker/datadir"
)

func init() {
	caddy.RegisterModule(AdminSite{})
	httpcaddyfile.RegisterHandlerDirective("webhooker_admin", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		a := new(AdminSite)
		return a, a.UnmarshalCaddyfile(h.Dispenser)
	})
	// After Caddy's authentication directives, so that a site that writes
	// basic_auth or forward_auth anywhere in its block has run them before
	// the operator's API: their order in the block does not matter.
	// forward_auth comes after basic_auth in Caddy's order.
	httpcaddyfile.RegisterDirectiveOrder("webhooker_admin", httpcaddyfile.After, "forward_auth")
}

// AdminSite serves the operator's webhooker API and event-log page (all
// that the admin endpoint serves under /webhooker/ but backups, which
// write the secrets the API never shows wherever they are told) on an
// ordinary site,
// placed behind Caddy's own authentication (basic_auth, or forward_auth
// with `vars http.auth.user.id …`). It vouches for nobody itself: a request
// under /webhooker that no authentication handler vouched for, that is with
// an empty {http.auth.user.id}, is refused with 401, so a forgotten
// basic_auth is a closed door rather than an open one. Unsafe requests
// (POST, PATCH, DELETE) that a browser marks as cross-origin are refused
// with 403: a browser resends basic_auth credentials to any page that asks,
// and declared webhooks have ids derived from their names. Requests outside
// /webhooker go to the next handler.
type AdminSite struct {
	app      *App
	shutdown *serverShutdown
}

// CaddyModule returns the Caddy module information.
func (AdminSite) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhooker_admin",
		New: func() caddy.Module { return new(AdminSite) },
	}
}

// Provision finds the webhooker app.
func (a *AdminSite) Provision(ctx caddy.Context) error {
	app, err := ctx.App("webhooker")
	if err != nil {
		return fmt.Errorf("loading the webhooker app: %w", err)
	}
	a.app = app.(*App)
	a.shutdown = newServerShutdown(ctx)
	return nil
}

// crossOrigin refuses unsafe cross-origin browser requests (Sec-Fetch-Site,
// else Origin against Host); GET, HEAD and OPTIONS and requests from
// non-browser clients pass.
var crossOrigin = http.NewCrossOriginProtection()

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (a *AdminSite) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !underAPI(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	user := ""
	if repl != nil {
		user, _ = repl.GetString("http.auth.user.id")
	}
	if user == "" {
		refuse(w, http.StatusUnauthorized, "no authentication handler vouched for this request: put basic_auth, or forward_auth with `vars http.auth.user.id {http.request.header.Remote-User}`, before webhooker_admin")
		return nil
	}
	if err := crossOrigin.Check(r); err != nil {
		refuse(w, http.StatusForbidden, "a cross-origin request may not change anything: use the event-log page of this site")
		return nil
	}
	r, done := a.shutdown.bind(r)
	defer done()
	a.app.data.serveAPI(w, r, (*datadir.Dir).AdminAPI)
	return nil
}

// refuse answers with the API's JSON error shape.
func refuse(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": message})
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Syntax:
//
//	webhooker_admin [<matcher>]
func (a *AdminSite) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Err("webhooker_admin takes no block: put basic_auth or forward_auth in the site")
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*AdminSite)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminSite)(nil)
	_ caddyfile.Unmarshaler       = (*AdminSite)(nil)
)
