package caddymodule

import (
	"context"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// serverShutdown ends the requests that a site handler holds open (the
// event log's live-update stream) once the server serving them begins to
// shut down, at a reload or at exit. Go's Server.Shutdown waits for them
// without cancelling their contexts, and Caddy's default grace period is
// eternal: without this, an operator's open tab would keep the old config's
// server running after every reload, and hold `caddy stop` for ever. The
// page reconnects by itself, to the new config's server.
type serverShutdown struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// newServerShutdown ties a signal to the server that a site handler is
// provisioned for (Caddy puts it in the provisioning context), and to the
// handler's own context, which ends when its config is unloaded.
func newServerShutdown(ctx caddy.Context) *serverShutdown {
	s := &serverShutdown{}
	s.ctx, s.cancel = context.WithCancel(ctx)
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil {
		srv.RegisterOnShutdown(s.cancel)
	}
	return s
}

// bind returns r with a context that also ends when the server begins to
// shut down, and the function that lets go of it once r is served.
func (s *serverShutdown) bind(r *http.Request) (*http.Request, func()) {
	if s == nil {
		return r, func() {}
	}
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.ctx, cancel)
	return r.WithContext(ctx), func() { stop(); cancel() }
}
