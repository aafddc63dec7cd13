package admin_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/webhooker/caddy-webhooker/storage"
)

func TestUsers(t *testing.T) {
	e := newEnv(t)
	var list struct {
		Users []userJSON `json:"users"`
	}
	resp := e.must(http.StatusOK, "GET", "/webhooker/users", nil, &list)
	if !strings.Contains(resp.String(), `"users":[]`) {
		t.Errorf("empty list = %s", resp)
	}
	var bob, alice userJSON
	e.must(http.StatusCreated, "POST", "/webhooker/users", map[string]any{"name": "  bob "}, &bob)
	e.must(http.StatusCreated, "POST", "/webhooker/users", map[string]any{"name": "alice"}, &alice)
	if storage.ValidateID(bob.ID) != nil || bob.Name != "bob" {
		t.Errorf("created user = %+v, want a UUID and the trimmed name", bob)
	}
	e.must(http.StatusOK, "GET", "/webhooker/users", nil, &list)
	if len(list.Users) != 2 || list.Users[0].ID != alice.ID || list.Users[1].ID != bob.ID {
		t.Errorf("users = %+v, want alice then bob", list.Users)
	}
	var got userJSON
	e.must(http.StatusOK, "GET", "/webhooker/users/"+bob.ID, nil, &got)
	if got != bob {
		t.Errorf("GET user = %+v, want %+v", got, bob)
	}
	for _, body := range []any{map[string]any{"name": ""}, map[string]any{"name": "   "},
		map[string]any{"name": strings.Repeat("n", 201)}, map[string]any{"name": "a\x00b"}, map[string]any{}} {
		if resp := e.call("POST", "/webhooker/users", body); resp.status != http.StatusBadRequest {
			t.Errorf("create user %v: %d %s, want 400", body, resp.status, resp)
		}
	}

	// A user who owns a webhook cannot be deleted.
	var w webhookJSON
	e.must(http.StatusCreated, "POST", "/webhooker/webhooks", map[string]any{"name": "bobs", "user_id": bob.ID}, &w)
	if w.UserID != bob.ID {
		t.Errorf("webhook created for bob has user_id %q", w.UserID)
	}
	resp = e.call("DELETE", "/webhooker/users/"+bob.ID, nil)
	if resp.status != http.StatusConflict {
		t.Fatalf("delete a user with webhooks: %d %s, want 409", resp.status, resp)
	}
	if msg := resp.errorMessage(t); !strings.Contains(msg, "webhook") {
		t.Errorf("409 message %q does not say why", msg)
	}
	e.must(http.StatusNoContent, "DELETE", "/webhooker/webhooks/"+w.ID, nil, nil)
	e.must(http.StatusNoContent, "DELETE", "/webhooker/users/"+bob.ID, nil, nil)
	for _, q := range []struct{ method, path string }{
		{"GET", "/webhooker/users/" + bob.ID},
		{"DELETE", "/webhooker/users/" + bob.ID},
		{"GET", "/webhooker/users/" + bob.ID + "/api-keys"},
		{"POST", "/webhooker/users/" + bob.ID + "/api-keys"},
		{"GET", "/webhooker/users/" + uuid.NewString()},
		{"GET", "/webhooker/users/bob"},
	} {
		if resp := e.call(q.method, q.path, nil); resp.status != http.StatusNotFound {
			t.Errorf("%s %s: %d %s, want 404", q.method, q.path, resp.status, resp)
		}
	}
	// A deleted user cannot be given a webhook.
	if resp := e.call("POST", "/webhooker/webhooks", map[string]any{"name": "late", "user_id": bob.ID}); resp.status != http.StatusNotFound {
		t.Errorf("webhook for a deleted user: %d %s, want 404", resp.status, resp)
	}
	e.must(http.StatusOK, "GET", "/webhooker/users", nil, &list)
	if len(list.Users) != 1 || list.Users[0].ID != alice.ID {
		t.Errorf("users after delete = %+v", list.Users)
	}
}

func TestAPIKeys(t *testing.T) {
	e := newEnv(t)
	u, first := e.createUser("carol")
	keysURL := "/webhooker/users/" + u.ID + "/api-keys"

	if !strings.HasPrefix(first.Key, storage.APIKeyPrefix) || len(first.Key) < len(storage.APIKeyPrefix)+43 {
		t.Errorf("key %q: want whk_ and 32 random bytes", first.Key)
	}
	if first.UserID != u.ID || first.Name != "ci" || !strings.HasPrefix(first.Key, first.Prefix) ||
		len(first.Prefix) >= len(first.Key) || first.RevokedAt != nil || storage.ValidateID(first.ID) != nil {
		t.Errorf("created key = %+v", first)
	}
	// A key without a name, with no body at all.
	var second apiKeyJSON
	e.must(http.StatusCreated, "POST", keysURL, nil, &second)
	if second.Key == "" || second.Key == first.Key || second.Name != "" {
		t.Errorf("second key = %+v", second)
	}

	var list struct {
		APIKeys []apiKeyJSON `json:"api_keys"`
	}
	resp := e.must(http.StatusOK, "GET", keysURL, nil, &list)
	if len(list.APIKeys) != 2 || list.APIKeys[0].ID != second.ID || list.APIKeys[1].ID != first.ID {
		t.Fatalf("keys = %+v, want newest first", list.APIKeys)
	}
	for _, k := range list.APIKeys {
		if k.Key != "" {
			t.Errorf("listed key %s shows its secret", k.ID)
		}
	}
	if strings.Contains(resp.String(), first.Key) || strings.Contains(resp.String(), second.Key) ||
		strings.Contains(resp.String(), `"key"`) {
		t.Errorf("key list %s holds a secret", resp)
	}

	// Using a key marks it used.
	if resp := serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks", key: first.Key}); resp.status != http.StatusOK {
		t.Fatalf("tenant request with the key: %d %s", resp.status, resp)
	}
	e.must(http.StatusOK, "GET", keysURL, nil, &list)
	if list.APIKeys[1].LastUsedAt == nil || list.APIKeys[0].LastUsedAt != nil {
		t.Errorf("last_used_at after one use of the first key: %+v", list.APIKeys)
	}

	// Revoke.
	e.must(http.StatusNoContent, "DELETE", keysURL+"/"+first.ID, nil, nil)
	e.must(http.StatusOK, "GET", keysURL, nil, &list)
	if list.APIKeys[1].RevokedAt == nil || list.APIKeys[0].RevokedAt != nil {
		t.Errorf("after revoking the first key: %+v", list.APIKeys)
	}
	if resp := serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks", key: first.Key}); resp.status != http.StatusUnauthorized {
		t.Errorf("revoked key: %d %s, want 401", resp.status, resp)
	}
	// Revoking again is harmless; a key of another user or an unknown one is 404.
	e.must(http.StatusNoContent, "DELETE", keysURL+"/"+first.ID, nil, nil)
	other, _ := e.createUser("dave")
	for _, path := range []string{
		"/webhooker/users/" + other.ID + "/api-keys/" + second.ID,
		keysURL + "/" + uuid.NewString(),
		keysURL + "/not-a-key",
		"/webhooker/users/" + uuid.NewString() + "/api-keys/" + second.ID,
	} {
		if resp := e.call("DELETE", path, nil); resp.status != http.StatusNotFound {
			t.Errorf("DELETE %s: %d %s, want 404", path, resp.status, resp)
		}
	}
	if resp := serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks", key: second.Key}); resp.status != http.StatusOK {
		t.Errorf("the second key after the refused revocations: %d %s", resp.status, resp)
	}
	if resp := e.call("POST", keysURL, map[string]any{"name": strings.Repeat("k", 201)}); resp.status != http.StatusBadRequest {
		t.Errorf("key name too long: %d %s, want 400", resp.status, resp)
	}
	if resp := e.call("POST", "/webhooker/users/"+uuid.NewString()+"/api-keys", nil); resp.status != http.StatusNotFound {
		t.Errorf("key for an unknown user: %d %s, want 404", resp.status, resp)
	}

	// Deleting a user revokes their keys.
	e.must(http.StatusNoContent, "DELETE", "/webhooker/users/"+u.ID, nil, nil)
	if resp := serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks", key: second.Key}); resp.status != http.StatusUnauthorized {
		t.Errorf("key of a deleted user: %d %s, want 401", resp.status, resp)
	}
}

// TestSecretsAreShownOnlyOnCreation: no answer but the key's creation holds
// the key, and the main DB on disk holds no key either.
func TestSecretsAreShownOnlyOnCreation(t *testing.T) {
	e := newEnv(t)
	u, k := e.createUser("erin")
	secret := k.Key
	random := strings.TrimPrefix(secret, storage.APIKeyPrefix)

	w := serveOK(t, e.tenant, req{method: "POST", path: "/webhooker/webhooks", body: map[string]any{"name": "erins"}, key: secret})
	var wh webhookJSON
	expect(t, w, http.StatusCreated, &wh)
	answers := []response{
		w,
		e.call("GET", "/webhooker/users", nil),
		e.call("GET", "/webhooker/users/"+u.ID, nil),
		e.call("GET", "/webhooker/users/"+u.ID+"/api-keys", nil),
		e.call("GET", "/webhooker/webhooks", nil),
		e.call("GET", "/webhooker/webhooks/"+wh.ID, nil),
		serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks", key: secret}),
		serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks/" + wh.ID, key: secret}),
		serve(t, e.tenant, req{method: "GET", path: "/webhooker/users", key: secret}),
		serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks", key: secret + "x"}),
		serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks", key: "whk_" + random[:10]}),
	}
	for i, a := range answers {
		if bytes.Contains(a.body, []byte(random)) {
			t.Errorf("answer %d (%d) holds the key: %s", i, a.status, a)
		}
		for name, values := range a.header {
			if strings.Contains(strings.Join(values, " "), random) {
				t.Errorf("answer %d: header %s holds the key", i, name)
			}
		}
	}
	// Revoke it and read everything again.
	e.must(http.StatusNoContent, "DELETE", "/webhooker/users/"+u.ID+"/api-keys/"+k.ID, nil, nil)
	if a := serve(t, e.tenant, req{method: "GET", path: "/webhooker/webhooks", key: secret}); bytes.Contains(a.body, []byte(random)) {
		t.Errorf("the 401 of a revoked key holds it: %s", a)
	}

	// On disk: neither the key nor its random part, in the DB or its WAL.
	files, err := filepath.Glob(filepath.Join(e.dir, storage.MainDBFile+"*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("main DB files: %v %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(random)) {
			t.Errorf("%s holds the API key", filepath.Base(f))
		}
	}
}

func serveOK(t testing.TB, h http.Handler, q req) response {
	t.Helper()
	resp := serve(t, h, q)
	if resp.status >= 300 {
		t.Fatalf("%s %s: %d %s", q.method, q.path, resp.status, resp)
	}
	return resp
}
