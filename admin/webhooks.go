package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/webhooker/caddy-webhooker/storage"
)

// webhookView is a webhook as the API shows it.
type webhookView struct {
	*storage.Webhook
	// ReadOnly webhooks are declared in the Caddyfile, which owns them.
	ReadOnly    bool             `json:"read_only"`
	Entrypoints []entrypointView `json:"entrypoints"`
	Targets     []targetView     `json:"targets"`
	// Stats are the webhook's figures, in the list with ?stats=true.
	Stats      *storage.EventStats `json:"stats,omitempty"`
	StatsError string              `json:"stats_error,omitempty"`
}

type targetView struct {
	storage.Target
	// Circuit is the state of the target's circuit breaker.
	Circuit string `json:"circuit,omitempty"`
	// Line is an ordered target's line while it holds open deliveries
	// (lines.go); LineError says why it could not be read.
	Line      *lineView `json:"line,omitempty"`
	LineError string    `json:"line_error,omitempty"`
}

func (h *Handler) view(w *storage.Webhook) webhookView { return h.viewOf(w, true) }

// viewOf is view, with the lines of ordered targets (addLine) if lines:
// not in the list of webhooks, which the UI polls and which reads no event
// DB (see addStats).
func (h *Handler) viewOf(w *storage.Webhook, lines bool) webhookView {
	v := webhookView{Webhook: w, ReadOnly: w.Source == storage.SourceCaddyfile,
		Entrypoints: make([]entrypointView, len(w.Entrypoints)), Targets: make([]targetView, len(w.Targets))}
	for i, e := range w.Entrypoints {
		v.Entrypoints[i] = entrypointViewOf(e)
	}
	for i, t := range w.Targets {
		v.Targets[i] = h.targetViewOf(t, lines)
	}
	return v
}

// targetView shows t with its header values and signing secrets masked:
// they are write-only.
func (h *Handler) targetView(t storage.Target) targetView { return h.targetViewOf(t, true) }

// targetViewOf is targetView, with the target's line if line.
func (h *Handler) targetViewOf(t storage.Target, line bool) targetView {
	t.Options = maskTargetSecrets(t.Options)
	v := targetView{Target: t}
	if h.b.BreakerState != nil && t.Type == storage.TargetHTTP {
		v.Circuit = h.b.BreakerState(t.ID)
	}
	if line {
		h.addLine(&v)
	}
	return v
}

// afterCommit is the context of the work that must follow a committed
// change whether or not its client is still there: putting it in force,
// creating or deleting an event DB, undoing half a create. On the request's
// own context a client that hangs up would leave the old configuration
// routing (a deleted webhook still ingesting) or a file behind; a committed
// change is not taken back because its answer has nowhere to go.
func afterCommit(r *http.Request) context.Context {
	return context.WithoutCancel(r.Context())
}

// changed puts a committed configuration change in force before the API
// answers. ctx is an afterCommit context.
func (h *Handler) changed(ctx context.Context) error {
	if err := h.b.ConfigChanged(ctx); err != nil {
		return fmt.Errorf("the change is saved but could not be put in force: %w", err)
	}
	return nil
}

// saved puts a committed change in force, then answers v with status, or
// 204 when v is nil.
func (h *Handler) saved(w http.ResponseWriter, r *http.Request, status int, v any) error {
	if err := h.changed(afterCommit(r)); err != nil {
		return err
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(w, status, v)
	return nil
}

// childOf resolves the webhook of a request and the id, in path parameter
// param, of one of its entrypoints or targets.
func (h *Handler) childOf(r *http.Request, param, kind string) (*storage.Webhook, string, error) {
	wh, err := h.webhookFor(r)
	if err != nil {
		return nil, "", err
	}
	id, err := pathID(r, param, kind)
	return wh, id, err
}

func (h *Handler) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	userID := ""
	if u, ok := tenantOf(r); ok {
		userID = u.ID
	}
	ws, err := h.b.Main.Webhooks(r.Context(), userID)
	if err != nil {
		return err
	}
	withStats := r.URL.Query().Get("stats") == "true"
	views := make([]webhookView, len(ws))
	for i, wh := range ws {
		views[i] = h.viewOf(wh, false)
		if withStats {
			h.addStats(r, &views[i])
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": views})
	return nil
}

// addStats adds the event and delivery counts of v. The event DB keeps
// them as it is written and the manager holds them in memory, so that the
// UI's poll of the list costs no query, and opens no file, per webhook. A
// webhook whose figures cannot be read is listed with the error, not left
// out.
func (h *Handler) addStats(r *http.Request, v *webhookView) {
	st, err := h.b.Events.Stats(r.Context(), v.ID)
	if err != nil {
		v.StatsError = err.Error()
		return
	}
	v.Stats = &st
}

type createWebhookRequest struct {
	Name          string `json:"name"`
	Description   string `json:"description"`
	RetentionDays int    `json:"retention_days"`
	// Dedup makes ingest idempotent: {"kind": "header"|"expression",
	// "source": …, "window": "24h"}, checked by storage.Dedup.Validate.
	Dedup *storage.Dedup `json:"dedup"`
	// UserID makes a user the owner (admin endpoint only).
	UserID string `json:"user_id"`
}

func (h *Handler) createWebhook(w http.ResponseWriter, r *http.Request) error {
	var req createWebhookRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if u, ok := tenantOf(r); ok {
		if req.UserID != "" && req.UserID != u.ID {
			return errorf(http.StatusBadRequest, "user_id cannot be set here: webhooks belong to the API key's user")
		}
		req.UserID = u.ID
	} else if req.UserID != "" && storage.ValidateID(req.UserID) != nil {
		return errorf(http.StatusBadRequest, "user_id %q is not a user id", req.UserID)
	}
	wh, err := h.mainFor(r).CreateWebhook(r.Context(), storage.NewWebhook{
		UserID: req.UserID, Name: req.Name, Description: req.Description, RetentionDays: req.RetentionDays,
		Dedup: req.Dedup,
	})
	if err != nil {
		return err
	}
	ctx := afterCommit(r)
	if err := h.b.Events.Create(ctx, wh.ID); err != nil {
		// Without its event DB the webhook could not store anything: undo it.
		return errors.Join(fmt.Errorf("create the event DB of webhook %s: %w", wh.ID, err),
			h.b.Main.DeleteWebhook(ctx, wh.ID))
	}
	return h.saved(w, r, http.StatusCreated, h.view(wh))
}

func (h *Handler) getWebhook(w http.ResponseWriter, r *http.Request) error {
	wh, err := h.webhookFor(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.view(wh))
	return nil
}

type updateWebhookRequest struct {
	Name          *string `json:"name"`
	Description   *string `json:"description"`
	Active        *bool   `json:"active"`
	RetentionDays *int    `json:"retention_days"`
	// Dedup: absent keeps the webhook's dedup, null removes it, an object
	// replaces it.
	Dedup json.RawMessage `json:"dedup"`
}

func (h *Handler) updateWebhook(w http.ResponseWriter, r *http.Request) error {
	wh, err := h.webhookFor(r)
	if err != nil {
		return err
	}
	var req updateWebhookRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	patch := storage.WebhookPatch{Name: req.Name, Description: req.Description, Active: req.Active,
		RetentionDays: req.RetentionDays}
	switch {
	case req.Dedup == nil:
	case string(req.Dedup) == "null":
		patch.ClearDedup = true
	default:
		dec := json.NewDecoder(bytes.NewReader(req.Dedup))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&patch.Dedup); err != nil {
			return errorf(http.StatusBadRequest, "dedup: %v", err)
		}
	}
	updated, err := h.mainFor(r).UpdateWebhook(r.Context(), wh.ID, patch)
	if err != nil {
		return err
	}
	return h.saved(w, r, http.StatusOK, h.view(updated))
}

// deleteWebhook soft-deletes the configuration, takes it out of force (its
// entrypoints answer 404 from now on), then deletes its event DB. Once the
// delete is committed, the event DB goes even if the configuration could not
// be put in force: nothing else would ever remove the file, and the manager
// refuses the id from then on, so an ingest still routed to it fails (503)
// instead of creating the file again.
func (h *Handler) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	wh, err := h.webhookFor(r)
	if err != nil {
		return err
	}
	if err := h.b.Main.DeleteWebhook(r.Context(), wh.ID); err != nil {
		return err
	}
	ctx := afterCommit(r)
	errChanged := h.changed(ctx)
	if err := h.b.Events.Delete(ctx, wh.ID); err != nil {
		return errors.Join(errChanged, fmt.Errorf("webhook %s is deleted, but not its event DB: %w", wh.ID, err))
	}
	if errChanged != nil {
		return errChanged
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// entrypointView is an entrypoint as the API shows it: its options with
// every secret and handshake argument masked (maskEntrypointSecrets).
type entrypointView struct {
	storage.Entrypoint
	Options storage.EntrypointOptions `json:"options"`
}

func entrypointViewOf(e storage.Entrypoint) entrypointView {
	return entrypointView{Entrypoint: e, Options: maskEntrypointSecrets(e.Options)}
}

type entrypointRequest struct {
	Key    *string `json:"key"`
	Active *bool   `json:"active"`
	// Options are checked by storage.ValidateEntrypointOptions. In a PATCH,
	// absent keeps the stored options and {} clears them.
	Options *storage.EntrypointOptions `json:"options"`
}

// refuseChosenKey: a tenant cannot choose an entrypoint key, or they could
// take one a provider or the Caddyfile is about to use.
func refuseChosenKey(r *http.Request, req entrypointRequest) error {
	if _, ok := tenantOf(r); ok && req.Key != nil {
		return errorf(http.StatusBadRequest, "key: entrypoint keys of API-key holders are generated; leave key out")
	}
	return nil
}

func (h *Handler) addEntrypoint(w http.ResponseWriter, r *http.Request) error {
	wh, err := h.webhookFor(r)
	if err != nil {
		return err
	}
	var req entrypointRequest
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	if err := refuseChosenKey(r, req); err != nil {
		return err
	}
	in := storage.NewEntrypoint{Active: req.Active}
	if req.Options != nil {
		in.Options = *req.Options
	}
	if req.Key != nil {
		in.Key = *req.Key
	}
	e, err := h.mainFor(r).AddEntrypoint(r.Context(), wh.ID, in)
	if err != nil {
		return err
	}
	return h.saved(w, r, http.StatusCreated, entrypointViewOf(e))
}

func (h *Handler) updateEntrypoint(w http.ResponseWriter, r *http.Request) error {
	wh, eid, err := h.childOf(r, "eid", "entrypoint")
	if err != nil {
		return err
	}
	var req entrypointRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if err := refuseChosenKey(r, req); err != nil {
		return err
	}
	e, err := h.mainFor(r).UpdateEntrypoint(r.Context(), wh.ID, eid, storage.EntrypointPatch{Key: req.Key, Active: req.Active, Options: req.Options})
	if err != nil {
		return err
	}
	return h.saved(w, r, http.StatusOK, entrypointViewOf(e))
}

func (h *Handler) deleteEntrypoint(w http.ResponseWriter, r *http.Request) error {
	wh, eid, err := h.childOf(r, "eid", "entrypoint")
	if err != nil {
		return err
	}
	if err := h.b.Main.DeleteEntrypoint(r.Context(), wh.ID, eid); err != nil {
		return err
	}
	return h.saved(w, r, http.StatusNoContent, nil)
}

// targetRequest has the fields of a target, as the Caddyfile has them.
type targetRequest struct {
	Name    *string                `json:"name"`
	Type    *storage.TargetType    `json:"type"`
	URL     *string                `json:"url"`
	Options *storage.TargetOptions `json:"options"`
	// Filter is a CEL expression over each event (see the README): a
	// filter that does not compile is a 400 with CEL's message; "" removes it.
	Filter *string `json:"filter"`
	Active *bool   `json:"active"`
}

func (h *Handler) addTarget(w http.ResponseWriter, r *http.Request) error {
	wh, err := h.webhookFor(r)
	if err != nil {
		return err
	}
	var req targetRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	t := storage.Target{Active: true}
	if req.Name != nil {
		t.Name = *req.Name
	}
	if req.Type != nil {
		t.Type = *req.Type
	}
	if req.URL != nil {
		t.URL = *req.URL
	}
	if req.Options != nil {
		t.Options = *req.Options
	}
	if req.Filter != nil {
		t.Filter = *req.Filter
	}
	if req.Active != nil {
		t.Active = *req.Active
	}
	if t.Type == storage.TargetHTTP {
		if err := h.checkTargetURL(r, wh, t.URL); err != nil {
			return err
		}
	}
	generated, err := generateSigningSecret(&t.Options)
	if err != nil {
		return err
	}
	added, err := h.mainFor(r).AddTarget(r.Context(), wh.ID, t)
	if err != nil {
		return err
	}
	return h.saved(w, r, http.StatusCreated, h.targetViewOnce(added, generated))
}

// targetViewOnce is targetView, but for a signing secret the gateway has
// just generated for this request: shown in this answer, and never again.
func (h *Handler) targetViewOnce(t storage.Target, generated string) targetView {
	v := h.targetView(t)
	if generated != "" {
		v.Options.SigningSecret = generated
	}
	return v
}

func (h *Handler) updateTarget(w http.ResponseWriter, r *http.Request) error {
	wh, tid, err := h.childOf(r, "tid", "target")
	if err != nil {
		return err
	}
	var req targetRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.URL != nil && *req.URL != "" && !hasTargetURL(wh, tid, *req.URL) {
		if err := h.checkTargetURL(r, wh, *req.URL); err != nil {
			return err
		}
	}
	generated, err := generateSigningSecret(req.Options)
	if err != nil {
		return err
	}
	t, err := h.mainFor(r).UpdateTarget(r.Context(), wh.ID, tid, storage.TargetPatch(req))
	if err != nil {
		return err
	}
	return h.saved(w, r, http.StatusOK, h.targetViewOnce(t, generated))
}

func (h *Handler) deleteTarget(w http.ResponseWriter, r *http.Request) error {
	wh, tid, err := h.childOf(r, "tid", "target")
	if err != nil {
		return err
	}
	if err := h.b.Main.DeleteTarget(r.Context(), wh.ID, tid); err != nil {
		return err
	}
	return h.saved(w, r, http.StatusNoContent, nil)
}

// checkTargetURL vets the URL of an http target of wh with the Backend's
// policy: a target of a user's webhook obeys the tenant's rules whoever
// makes it, since its user can edit it. A URL that does not validate is
// refused first, with the reason, before the policy looks at it.
func (h *Handler) checkTargetURL(r *http.Request, wh *storage.Webhook, rawURL string) error {
	if h.b.CheckTargetURL == nil {
		return nil
	}
	if err := storage.ValidateTargetURL(rawURL, storage.OperatorLimits()); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if err := h.b.CheckTargetURL(r.Context(), rawURL, wh.UserID != ""); err != nil {
		return errorf(http.StatusBadRequest, "url: %v", err)
	}
	return nil
}

// hasTargetURL tells whether target tid of wh has rawURL already: a change
// that keeps the URL is not checked again.
func hasTargetURL(wh *storage.Webhook, tid, rawURL string) bool {
	for _, t := range wh.Targets {
		if t.ID == tid {
			return t.URL == rawURL
		}
	}
	return false
}
