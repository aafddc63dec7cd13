package admin

import (
	"context"
	"net/http"

	"github.com/webhooker/caddy-webhooker/storage"
)

// The recovery tools on one target or delivery: pause and resume a target,
// retry a delivery now, cancel it. Bulk redelivery: redeliveryjob.go.

// notWired answers a route whose Backend function the host did not set.
func notWired(what string) error {
	return errorf(http.StatusNotImplemented, "%s is not available on this server", what)
}

func (h *Handler) pauseTarget(w http.ResponseWriter, r *http.Request) error {
	return h.setTargetPaused(w, r, true)
}

func (h *Handler) resumeTarget(w http.ResponseWriter, r *http.Request) error {
	return h.setTargetPaused(w, r, false)
}

// setTargetPaused pauses or resumes a target of the request's webhook. A
// webhook declared in the Caddyfile can be paused too: pausing is runtime
// state, kept across reloads, not configuration.
func (h *Handler) setTargetPaused(w http.ResponseWriter, r *http.Request, paused bool) error {
	if h.b.SetTargetPaused == nil {
		return notWired("pausing a target")
	}
	wh, tid, err := h.childOf(r, "tid", "target")
	if err != nil {
		return err
	}
	if !hasTarget(wh, tid) {
		return errorf(http.StatusNotFound, "webhook %s has no target with id %q", wh.Name, tid)
	}
	// Stored, then put in force: a client that hangs up must not leave the
	// flag saved and the engine unaware (afterCommit).
	t, err := h.b.SetTargetPaused(afterCommit(r), wh, tid, paused)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.targetView(t))
	return nil
}

func hasTarget(wh *storage.Webhook, tid string) bool {
	for _, t := range wh.Targets {
		if t.ID == tid {
			return true
		}
	}
	return false
}

// deliveryOfRequest resolves the webhook and the {did} of a request.
// Whether the delivery is in that webhook's event DB is for the Backend
// function to say (ErrNotFound): it looks only there.
func (h *Handler) deliveryOfRequest(r *http.Request) (*storage.Webhook, string, error) {
	wh, err := h.webhookFor(r)
	if err != nil {
		return nil, "", err
	}
	did, err := pathID(r, "did", "delivery")
	return wh, did, err
}

// retryDelivery has the engine attempt a pending or retrying delivery now
// instead of at its next_attempt_at.
func (h *Handler) retryDelivery(w http.ResponseWriter, r *http.Request) error {
	if h.b.RetryNow == nil {
		return notWired("retrying a delivery now")
	}
	wh, did, err := h.deliveryOfRequest(r)
	if err != nil {
		return err
	}
	if err := h.b.RetryNow(r.Context(), wh.ID, did); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"delivery_id": did})
	return nil
}

// cancelDelivery fails a pending or retrying delivery ("cancelled by the
// operator") and answers it as it now stands.
func (h *Handler) cancelDelivery(w http.ResponseWriter, r *http.Request) error {
	if h.b.CancelDelivery == nil {
		return notWired("cancelling a delivery")
	}
	wh, did, err := h.deliveryOfRequest(r)
	if err != nil {
		return err
	}
	// Once cancelled the delivery stays so: finish even if the client goes.
	ctx := afterCommit(r)
	if err := h.b.CancelDelivery(ctx, wh.ID, did); err != nil {
		return err
	}
	var d storage.Delivery
	err = h.b.Events.With(ctx, wh.ID, func(db *storage.WebhookDB) error {
		d, err = db.Delivery(ctx, did)
		return err
	})
	if err != nil {
		return err
	}
	targets, err := h.b.Main.TargetsOf(ctx, wh.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, deliveryOf(d, targets))
	return nil
}

// settings tells the UI what it cannot know from the page: where
// entrypoints are reached, and whether it talks to the tenant API.
func (h *Handler) settings(w http.ResponseWriter, r *http.Request) error {
	out := map[string]any{"public_url": h.b.PublicURL, "tenant": h.tenant}
	if h.b.Cluster != nil && !h.tenant {
		out["cluster"] = h.b.Cluster()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ClusterState is a node's part in the cluster, for the event-log page
// (GET /settings). JSON names as in the OpenAPI document.
type ClusterState struct {
	Node            string `json:"node"`
	Ready           bool   `json:"ready"`
	Routes          int    `json:"routes"`
	Partitions      int    `json:"partitions"`
	PartitionsOwned int    `json:"partitions_owned"`
	HeldMessages    int    `json:"held_messages"`
	// ConfigApplied is the place in the cluster's configuration log of
	// the last change this node applied: equal on every node once a
	// change has reached them all.
	ConfigApplied uint64 `json:"config_applied"`
}

// jobs are the bulk redelivery jobs this Backend's handlers see.
func (b *Backend) jobs() *RedeliveryJobs {
	if b.Jobs != nil {
		return b.Jobs
	}
	return &b.ownJobs
}

// background is the context bulk redelivery jobs run on.
func (b *Backend) background() context.Context {
	if b.Background == nil {
		return context.Background()
	}
	return b.Background
}
