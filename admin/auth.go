package admin

import (
	"context"
	"net/http"
	"strings"

	"github.com/webhooker/caddy-webhooker/storage"
)

type userKey struct{}

func withUser(ctx context.Context, u storage.User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// tenantOf is the user an API key signed in, or false on the admin endpoint.
func tenantOf(r *http.Request) (storage.User, bool) {
	u, ok := r.Context().Value(userKey{}).(storage.User)
	return u, ok
}

// authenticate reads the API key of a tenant request.
func (h *Handler) authenticate(r *http.Request) (storage.User, error) {
	auth := r.Header.Get("Authorization")
	scheme, key, ok := strings.Cut(auth, " ")
	if auth == "" {
		return storage.User{}, errorf(http.StatusUnauthorized, "no API key: send Authorization: Bearer whk_…")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return storage.User{}, errorf(http.StatusUnauthorized, "the Authorization header must be Bearer <API key>")
	}
	u, err := h.b.Main.Authenticate(r.Context(), strings.TrimSpace(key))
	if err != nil {
		return storage.User{}, err
	}
	return u, nil
}

// webhookFor resolves the {id} of a request to a webhook the caller may
// see. To a tenant, another user's webhook does not exist: 404, as for an
// unknown id, so that ids of others cannot be probed.
func (h *Handler) webhookFor(r *http.Request) (*storage.Webhook, error) {
	id, err := pathID(r, "id", "webhook")
	if err != nil {
		return nil, err
	}
	w, err := h.b.Main.Webhook(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if u, ok := tenantOf(r); ok && w.UserID != u.ID {
		return nil, errorf(http.StatusNotFound, "no webhook with id %q", id)
	}
	return w, nil
}

// mainFor is the main DB as the caller of r may write to it: a tenant
// within the tenant's limits and their user's quotas, the operator within
// the operator's limits, even on a tenant's webhook.
func (h *Handler) mainFor(r *http.Request) *storage.MainDB {
	if _, ok := tenantOf(r); !ok {
		return h.b.Main
	}
	quotas := h.b.Quotas
	return h.b.Main.WithRules(storage.Rules{Limits: storage.TenantLimits(), Quotas: &quotas})
}
