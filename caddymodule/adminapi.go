package caddymodule

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/datadir"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves the webhooker API at /webhooker/ on Caddy's admin
// endpoint: webhooks, entrypoints, targets, the event log, users and API
// keys. Admin modules get no config and outlive reloads, so it finds the
// running webhooker app on each request.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.webhooker",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: admin.Prefix + "/", Handler: caddy.AdminHandlerFunc(serveAdmin)}}
}

func serveAdmin(w http.ResponseWriter, r *http.Request) error {
	app, err := caddy.ActiveContext().AppIfConfigured("webhooker")
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, caddy.ErrNotConfigured) {
			status = http.StatusNotFound
		}
		return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf("the webhooker app is not running in this config: %w", err)}
	}
	app.(*App).data.serveAPI(w, r, (*datadir.Dir).AdminEndpointAPI)
	return nil
}

var _ caddy.AdminRouter = (*AdminAPI)(nil)
