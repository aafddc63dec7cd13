package admin

import (
	"net/http"

	"github.com/webhooker/caddy-webhooker/storage"
)

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) error {
	users, err := h.b.Main.Users(r.Context())
	if err != nil {
		return err
	}
	if users == nil {
		users = []storage.User{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users})
	return nil
}

type createUserRequest struct {
	Name string `json:"name"`
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) error {
	var req createUserRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	u, err := h.b.Main.CreateUser(r.Context(), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, u)
	return nil
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "user")
	if err != nil {
		return err
	}
	u, err := h.b.Main.User(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "user")
	if err != nil {
		return err
	}
	if err := h.b.Main.DeleteUser(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listAPIKeys(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "user")
	if err != nil {
		return err
	}
	if _, err := h.b.Main.User(r.Context(), id); err != nil {
		return err
	}
	keys, err := h.b.Main.APIKeys(r.Context(), id)
	if err != nil {
		return err
	}
	if keys == nil {
		keys = []storage.APIKey{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"api_keys": keys})
	return nil
}

type createAPIKeyRequest struct {
	Name string `json:"name"`
}

// createdAPIKey is the only answer that ever carries the key itself.
type createdAPIKey struct {
	storage.APIKey
	Key string `json:"key"`
}

func (h *Handler) createAPIKey(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "user")
	if err != nil {
		return err
	}
	var req createAPIKeyRequest
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	key, secret, err := h.b.Main.CreateAPIKey(r.Context(), id, req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, createdAPIKey{APIKey: key, Key: secret})
	return nil
}

func (h *Handler) revokeAPIKey(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "user")
	if err != nil {
		return err
	}
	kid, err := pathID(r, "kid", "API key")
	if err != nil {
		return err
	}
	if err := h.b.Main.RevokeAPIKey(r.Context(), id, kid); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
