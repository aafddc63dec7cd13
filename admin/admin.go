// Package admin is the REST API of caddy-webhooker as plain net/http
// handlers: webhooks, entrypoints, targets, the event log and redelivery,
// users and API keys. It knows nothing of Caddy: caddymodule mounts it on
// Caddy's admin endpoint (every route) and, through the webhooker_api
// directive, on ordinary sites (the webhook routes, scoped to the user of
// an API key).
package admin

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// Backend is what the API acts on: the storage of one data directory and
// its delivery engine.
type Backend struct {
	Main   *storage.MainDB
	Events *storage.WebhookDBManager
	// Redeliver stores a fresh delivery of an event of wh to each of
	// targets and hands them to the engine (datadir.Dir.Redeliver).
	Redeliver func(ctx context.Context, wh *storage.Webhook, eventID string, targets []storage.Target) ([]storage.Delivery, error)
	// ConfigChanged runs after every change of configuration and puts it in
	// force for ingest and delivery before the API answers.
	ConfigChanged func(ctx context.Context) error
	// BreakerState tells a target's circuit breaker state (closed, open,
	// half-open); nil reports none.
	BreakerState func(targetID string) string
	// Line tells where an ordered target's line stands (engine.Line): ok
	// false when it is empty. nil shows none.
	Line func(ctx context.Context, webhookID, targetID string) (l storage.Line, ok bool, err error)
	// Quotas bound what each user may create through the tenant API
	// (Caddyfile: tenant_quotas); 0 in a field means its default.
	Quotas storage.Quotas
	// CheckTargetURL, when not nil, vets the URL of an http target before
	// it is stored, with tenant true when the target belongs to a user's
	// webhook; a refusal is answered 400 with its message. (The same policy
	// is enforced again where deliveries connect.)
	CheckTargetURL func(ctx context.Context, rawURL string, tenant bool) error

	// SetTargetPaused pauses or resumes target targetID of wh: a paused
	// target's deliveries wait, neither attempted nor failed. nil: the
	// pause and resume routes answer 501.
	SetTargetPaused func(ctx context.Context, wh *storage.Webhook, targetID string, paused bool) (storage.Target, error)
	// RetryNow attempts an open delivery now; CancelDelivery fails it.
	// Both answer storage.ErrNotOpen for a delivery that is not pending or
	// retrying and storage.ErrNotFound for an unknown one. nil: 501.
	RetryNow       func(ctx context.Context, webhookID, deliveryID string) error
	CancelDelivery func(ctx context.Context, webhookID, deliveryID string) error
	// Backup writes a consistent copy of the data directory into dir (an
	// absolute path outside it, empty or not there yet) and returns its
	// manifest; with pauseTargets every live target is paused in the copy
	// (datadir.Dir.Backup). Bad input is storage.ErrInvalid (400), a backup
	// already running storage.ErrConflict (409). nil: no backup route, as
	// on a webhooker_admin site: the copy holds the secrets the API never
	// shows, and it is written where the caller says.
	Backup func(ctx context.Context, dir string, pauseTargets bool) (*storage.BackupManifest, error)
	// Changes tells the stream route's clients which webhooks changed.
	// nil: GET /webhooker/stream answers 404.
	Changes *Changes
	// PublicURL is the base URL of the entrypoints, for the UI to show;
	// "" : the page's own origin.
	PublicURL string
	// Background is the lifetime of bulk redelivery jobs: when it ends,
	// they stop. nil: context.Background().
	Background context.Context

	// Cluster, if set, tells this node's part in the cluster, for GET
	// /settings (the admin faces only).
	Cluster func() ClusterState

	// Jobs holds the bulk redelivery jobs, shared by the Backends of one
	// data directory so that a job started before a reload is still seen
	// (and still the one running on its webhook) after it. nil: this
	// Backend's own.
	Jobs *RedeliveryJobs

	ownJobs RedeliveryJobs
}

// Prefix is where the API lives, on the admin endpoint and on sites.
const Prefix = "/webhooker"

// maxRequestBody bounds a JSON request body.
const maxRequestBody = 1 << 20

// Handler serves the API for one Backend.
type Handler struct {
	b      *Backend
	tenant bool
	mux    *http.ServeMux
	// routes are the "METHOD /path" the mux serves, for the test that
	// checks them against the OpenAPI document (export_test.go).
	routes []string
}

// NewAdminHandler serves every route, unauthenticated: mount it only where
// access is already controlled, as on Caddy's admin endpoint.
func NewAdminHandler(b *Backend) *Handler {
	h := &Handler{b: b, mux: http.NewServeMux()}
	h.routeWebhooks()
	h.routeUsers()
	h.routeBackup()
	h.routeUI()
	h.routeOpenAPI()
	h.routeNotFound()
	return h
}

// NewTenantHandler serves the webhook, entrypoint, target and event routes
// to the holder of an API key (Authorization: Bearer whk_…), who sees and
// creates only their own webhooks. Users and keys are not served.
func NewTenantHandler(b *Backend) *Handler {
	h := &Handler{b: b, tenant: true, mux: http.NewServeMux()}
	h.routeWebhooks()
	h.routeUI()
	h.routeOpenAPI()
	h.routeNotFound()
	return h
}

// routeNotFound answers every path no route takes with a JSON 404.
func (h *Handler) routeNotFound() {
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "no such route: %s", r.URL.Path))
	})
}

func (h *Handler) routeWebhooks() {
	h.handle("/webhooks", methods{"GET": h.listWebhooks, "POST": h.createWebhook})
	h.handle("/webhooks/{id}", methods{"GET": h.getWebhook, "PATCH": h.updateWebhook, "DELETE": h.deleteWebhook})
	h.handle("/webhooks/{id}/entrypoints", methods{"POST": h.addEntrypoint})
	h.handle("/webhooks/{id}/entrypoints/{eid}", methods{"PATCH": h.updateEntrypoint, "DELETE": h.deleteEntrypoint})
	h.handle("/webhooks/{id}/targets", methods{"POST": h.addTarget})
	h.handle("/webhooks/{id}/targets/{tid}", methods{"PATCH": h.updateTarget, "DELETE": h.deleteTarget})
	h.handle("/webhooks/{id}/events", methods{"GET": h.listEvents})
	h.handle("/webhooks/{id}/events/{evid}", methods{"GET": h.getEvent})
	h.handle("/webhooks/{id}/events/{evid}/redeliver", methods{"POST": h.redeliver})
	h.handle("/webhooks/{id}/targets/{tid}/pause", methods{"POST": h.pauseTarget})
	h.handle("/webhooks/{id}/targets/{tid}/resume", methods{"POST": h.resumeTarget})
	h.handle("/webhooks/{id}/deliveries/{did}/retry", methods{"POST": h.retryDelivery})
	h.handle("/webhooks/{id}/deliveries/{did}/cancel", methods{"POST": h.cancelDelivery})
	h.handle("/webhooks/{id}/redeliver", methods{"POST": h.bulkRedeliver})
	h.handle("/webhooks/{id}/redeliver/{job}", methods{"GET": h.getRedeliveryJob, "DELETE": h.cancelRedeliveryJob})
	h.handle("/stream", methods{"GET": h.stream})
	h.handle("/settings", methods{"GET": h.settings})
}

func (h *Handler) routeUsers() {
	h.handle("/users", methods{"GET": h.listUsers, "POST": h.createUser})
	h.handle("/users/{id}", methods{"GET": h.getUser, "DELETE": h.deleteUser})
	h.handle("/users/{id}/api-keys", methods{"GET": h.listAPIKeys, "POST": h.createAPIKey})
	h.handle("/users/{id}/api-keys/{kid}", methods{"DELETE": h.revokeAPIKey})
}

// handlerFunc is an API handler: it writes a success itself and returns an
// error for writeError to answer.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// methods routes one path by method, answering 405 with Allow otherwise.
type methods map[string]handlerFunc

func (h *Handler) handle(path string, m methods) {
	allow := make([]string, 0, len(m))
	for method := range m {
		allow = append(allow, method)
	}
	slices.Sort(allow)
	for _, method := range allow {
		h.routes = append(h.routes, method+" "+Prefix+path)
	}
	h.mux.HandleFunc(Prefix+path, func(w http.ResponseWriter, r *http.Request) {
		fn, ok := m[r.Method]
		if !ok {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, errorf(http.StatusMethodNotAllowed, "%s is not allowed here (allowed: %s)", r.Method, strings.Join(allow, ", ")))
			return
		}
		if err := fn(w, r); err != nil {
			writeError(w, err)
		}
	})
}

// readCatchUp bounds how long a read waits for this node to apply the
// cluster's configuration log: a read is then served from what it has.
const readCatchUp = 2 * time.Second

// catchUp, in cluster mode, lets this node apply every configuration
// change the cluster's log had when the request came, so that a change
// made on one node is seen by the next request to any other (a tenant's
// new API key included). A change waits for it, and is refused (503) when
// the log is out of reach; a read waits a little, then is served anyway.
// A read another node asks (ForPeer) is served at once.
func (h *Handler) catchUp(r *http.Request) (*http.Request, error) {
	if h.b.Main == nil || !h.b.Main.Replicated() || h.isPublic(r) {
		return r, nil
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if r.Context().Value(peerReadKey{}) != nil {
			return r, nil
		}
		ctx, cancel := context.WithTimeout(r.Context(), readCatchUp)
		defer cancel()
		_, _ = h.b.Main.CatchUp(ctx)
		return r, nil
	}
	// The change's write goes on from here, without asking again.
	ctx, err := h.b.Main.CatchUp(r.Context())
	return r.WithContext(ctx), err
}

// peerReadKey marks a read another cluster node asks of this one (ForPeer).
type peerReadKey struct{}

// ForPeer marks a read that another node of the cluster asks of this one,
// having caught up itself: it is answered from what this node has without
// asking the configuration log again. A node holding events of a webhook
// has applied the webhook before them, so the answer lacks nothing.
func ForPeer(ctx context.Context) context.Context { return context.WithValue(ctx, peerReadKey{}, true) }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, err := h.catchUp(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if h.tenant && !h.isPublic(r) { // the UI asks for the key itself; the document is for everyone
		user, err := h.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="webhooker"`)
			writeError(w, err)
			return
		}
		r = r.WithContext(withUser(r.Context(), user))
	}
	h.mux.ServeHTTP(w, r)
}
