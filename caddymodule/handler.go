package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler ingests webhooks: a POST whose last path segment is the key of an
// entrypoint is stored as an event of its webhook, with one pending delivery
// per active target, and acknowledged with 200 {"event_id": "..."} only once
// committed.
//
// Answers: 405 (with Allow: POST) for other methods, 508 for a request this
// gateway delivered itself, 404 for an unknown key, 410 for a disabled
// entrypoint or webhook, 413 for a body over the app's max_body_size, 408
// for a body not in within body_timeout, 503 when the bodies in flight hold
// max_ingest_memory or when storage fails. In each of these nothing is stored.
type Handler struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhooker",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision finds the webhooker app, loading it with its defaults when the
// config has no webhooker global option.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := ctx.App("webhooker")
	if err != nil {
		return fmt.Errorf("loading the webhooker app: %w", err)
	}
	h.app = app.(*App)
	return nil
}

type ingestResponse struct {
	EventID string `json:"event_id"`
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. It answers every request
// itself; next is never called.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	err := h.ingest(w, r)
	countIngest(err)
	return err
}

func (h *Handler) ingest(w http.ResponseWriter, r *http.Request) error {
	received := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("webhook entrypoints take POST, not %s", r.Method))
	}
	if engine.LoopDetected(r.Header, h.app.gatewayID) {
		// Stored, it would be delivered again to wherever it came back from.
		return caddyhttp.Error(http.StatusLoopDetected,
			errors.New("this gateway delivered this request: a webhook may not feed itself"))
	}
	key := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	g := h.app.data
	route, ok := g.route(key)
	if !ok {
		if !h.app.started.Load() {
			// Caddy starts its apps in no set order: the HTTP server may take
			// requests before this config's webhooks are in force. A 404 could
			// make a provider give up on the URL; a 503 makes it try again.
			return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("webhooker is starting: entrypoint %q is not in force yet", key))
		}
		return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("no entrypoint with key %q", key))
	}
	switch {
	case !route.Webhook.Active:
		return caddyhttp.Error(http.StatusGone, fmt.Errorf("webhook %s is disabled", route.Webhook.Name))
	case !route.Entrypoint.Active:
		return caddyhttp.Error(http.StatusGone, fmt.Errorf("entrypoint %q of webhook %s is disabled", key, route.Webhook.Name))
	}

	body, held, err := readBody(w, r, bodyLimits{
		maxBody: h.app.MaxBodySize, maxMemory: h.app.MaxIngestMemory, timeout: time.Duration(h.app.BodyTimeout),
	})
	defer held.release()
	if err != nil {
		return err
	}
	headers := r.Header.Clone()
	headers.Set("Host", r.Host) // Go moves it out of Header; the event keeps it
	ev := &storage.Event{
		EntrypointID:  route.Entrypoint.ID,
		EntrypointKey: key,
		Method:        r.Method,
		Path:          r.URL.Path,
		Query:         r.URL.RawQuery,
		Headers:       headers,
		Body:          body,
		ContentType:   r.Header.Get("Content-Type"),
		RemoteAddr:    r.RemoteAddr,
		ReceivedAt:    received,
	}
	// route found the route in the open directory.
	if err := g.dir.Load().Ingest(r.Context(), route, ev); err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("webhook %s: %w", route.Webhook.Name, err))
	}

	// Stored: the body is no longer needed, and is given back before the
	// answer so that a client that has its 200 finds the budget free.
	held.release()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	return json.NewEncoder(w).Encode(ingestResponse{EventID: ev.ID})
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
