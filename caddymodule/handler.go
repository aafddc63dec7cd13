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
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
	"github.com/webhooker/caddy-webhooker/verify"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler ingests webhooks: a POST whose last path segment is the key of an
// entrypoint is stored as an event of its webhook, with one pending delivery
// per active target, and acknowledged with 200 {"event_id": "..."} only once
// committed.
//
// An entrypoint may answer a provider's subscription handshake (its answer,
// nothing stored; a GET reaches it only when the handshake uses GET), and
// may verify its senders: a request that passes none of its verify rules is
// refused with 401 {"error": "verification failed: <scheme>: <reason>"},
// counted in caddy_webhooker_verification_failures_total, and not stored.
//
// Answers: 405 (with Allow: POST) for other methods, 508 for a request this
// gateway delivered itself, 404 for an unknown key, 410 for a disabled
// entrypoint or webhook, 413 for a body over the app's max_body_size, 408
// for a body not in within body_timeout, 503 when the bodies in flight hold
// max_ingest_memory or when storage fails. In each of these nothing is stored.
//
// A webhook with a dedup answers a request whose id it saw within its
// window with 200 and the event_id of the event first stored with that id;
// nothing is stored (storage/dedup.go).
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

// answered is the error of an ingest that wrote its own answer (a handshake,
// a 401 of verification): ServeHTTP counts its code and returns nil, so that
// Caddy does not answer again.
type answered struct{ code int }

func (a answered) Error() string { return fmt.Sprintf("answered %d", a.code) }

// ServeHTTP implements caddyhttp.MiddlewareHandler. It answers every request
// itself; next is never called.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	err := h.ingest(w, r)
	var a answered
	if errors.As(err, &a) {
		countIngestCode(a.code)
		return nil
	}
	countIngest(err)
	return err
}

func (h *Handler) ingest(w http.ResponseWriter, r *http.Request) error {
	received := time.Now()
	key := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	g := h.app.data
	route, ok := g.route(key)
	var auth *entrypointAuth
	if ok {
		var err error
		if auth, err = authOf(route.Entrypoint); err != nil {
			// Provision built these options: only a main DB changed behind
			// the config's back gets here. Refuse rather than accept unchecked.
			return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("webhook %s: %w", route.Webhook.Name, err))
		}
	}
	// A GET reaches only an entrypoint whose handshake uses GET (Graph,
	// Meta, Dropbox); to any other, as to an unknown key, it is a 405.
	if r.Method != http.MethodPost && (r.Method != http.MethodGet || !auth.allowsGET()) {
		w.Header().Set("Allow", http.MethodPost)
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("webhook entrypoints take POST, not %s", r.Method))
	}
	if engine.LoopDetected(r.Header, h.app.gatewayID) {
		// Stored, it would be delivered again to wherever it came back from.
		return caddyhttp.Error(http.StatusLoopDetected,
			errors.New("this gateway delivered this request: a webhook may not feed itself"))
	}
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
	if auth != nil && auth.handshake != nil {
		if resp, ok := auth.handshake.Answer(r, body); ok {
			if err := resp.Write(w); err != nil {
				return err
			}
			return answered{code: resp.Status}
		}
	}
	verified, err := auth.verifyRequest(r, body)
	if err != nil {
		return h.refuseUnverified(w, route, err)
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
		Verified:      verified,
	}
	// What a dedup expression and the filters see of the event, built on
	// first use: the body is parsed once for both, and not at all when
	// neither reads it.
	fe := lazyFilterEvent{ev: ev}
	defer fe.close()
	if route.Dedupes() {
		if err := h.setDedupKey(route, ev, fe.get); err != nil {
			return err
		}
	}
	if route.Filtered() {
		// Only the targets whose filter matches get a delivery; the event
		// is stored all the same, with none when no target matched.
		if route, err = h.selectTargets(route, fe.get()); err != nil {
			return err
		}
	}
	// route found the route in the open directory.
	if err := g.dir.Load().Ingest(r.Context(), route, ev); err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("webhook %s: %w", route.Webhook.Name, err))
	}

	if ev.Dedup.Repeat {
		// A repeat within the webhook's dedup window: nothing was stored,
		// and ev.ID is the event first stored with its id.
		countDeduplicated(route.Webhook)
	} else {
		countEvent(route.Webhook)
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

// refuseUnverified answers 401 for a request that no verify rule of its
// entrypoint passed. The answer names the scheme and the reason, never a
// secret nor the signature expected.
func (h *Handler) refuseUnverified(w http.ResponseWriter, route storage.Route, err error) error {
	scheme, reason := "", "error"
	var ve *verify.Error
	if errors.As(err, &ve) {
		scheme, reason = ve.Scheme, string(ve.Reason)
	}
	countVerificationFailure(scheme, reason)
	h.app.logger.Info("verification failed: nothing stored",
		zap.String("webhook", route.Webhook.Name), zap.String("entrypoint", route.Entrypoint.Key),
		zap.String("scheme", scheme), zap.String("reason", reason), zap.Error(err))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	msg := fmt.Sprintf("verification failed: %s: %s", scheme, reason)
	if encErr := json.NewEncoder(w).Encode(map[string]string{"error": msg}); encErr != nil {
		return fmt.Errorf("write the 401 of entrypoint %q: %w", route.Entrypoint.Key, encErr)
	}
	return answered{code: http.StatusUnauthorized}
}
