package caddymodule

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/datadir"
)

func init() {
	caddy.RegisterModule(TenantAPI{})
	httpcaddyfile.RegisterHandlerDirective("webhooker_api", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		t := new(TenantAPI)
		return t, t.UnmarshalCaddyfile(h.Dispenser)
	})
	httpcaddyfile.RegisterDirectiveOrder("webhooker_api", httpcaddyfile.Before, "respond")
}

// TenantAPI serves the webhook, entrypoint, target and event routes of the
// webhooker API under /webhooker/ on a site, to holders of an API key
// (Authorization: Bearer whk_…), each seeing only their own webhooks.
// Requests outside /webhooker go to the next handler; every request under
// it is answered by the API (401 without a good key, 404 for a route it
// does not serve, such as the users and keys of the admin endpoint).
type TenantAPI struct {
	app      *App
	shutdown *serverShutdown
}

// CaddyModule returns the Caddy module information.
func (TenantAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhooker_api",
		New: func() caddy.Module { return new(TenantAPI) },
	}
}

// Provision finds the webhooker app.
func (t *TenantAPI) Provision(ctx caddy.Context) error {
	app, err := ctx.App("webhooker")
	if err != nil {
		return fmt.Errorf("loading the webhooker app: %w", err)
	}
	t.app = app.(*App)
	t.shutdown = newServerShutdown(ctx)
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (t *TenantAPI) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !underAPI(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	r, done := t.shutdown.bind(r)
	defer done()
	t.app.data.serveAPI(w, r, (*datadir.Dir).TenantAPI)
	return nil
}

// underAPI reports whether path is in the API's namespace. Passing on only
// the paths the API has no route for would hand, say, POST /webhooker/users
// to the rest of the site, whose default answer is an empty 200: a client
// would take the user for created.
func underAPI(path string) bool {
	return path == admin.Prefix || strings.HasPrefix(path, admin.Prefix+"/")
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Syntax:
//
//	webhooker_api [<matcher>]
func (t *TenantAPI) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Err("webhooker_api takes no block")
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*TenantAPI)(nil)
	_ caddyhttp.MiddlewareHandler = (*TenantAPI)(nil)
	_ caddyfile.Unmarshaler       = (*TenantAPI)(nil)
)
