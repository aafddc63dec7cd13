package caddymodule_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestAPIEntrypointVerifiedThroughCaddy: verification set on an entrypoint
// through the admin API is enforced by the ingest handler at once, with no
// reload: GitHub's documented vector is taken and stored, one changed byte
// is refused with 401 and nothing stored.
func TestAPIEntrypointVerifiedThroughCaddy(t *testing.T) {
	g := startGateway(t, "")
	var wh apiWebhook
	g.admin("POST", "/webhooks", map[string]any{"name": "gh"}).decode(t, http.StatusCreated, &wh)
	var ep struct {
		Key string `json:"key"`
	}
	g.admin("POST", "/webhooks/"+wh.ID+"/entrypoints", map[string]any{"options": map[string]any{
		"verify": []map[string]any{{"scheme": "github", "secrets": []string{"It's a Secret to Everybody"}}},
	}}).decode(t, http.StatusCreated, &ep)

	send := func(body, sig string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodPost, siteURL+"/hooks/"+ep.Key, strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("X-Hub-Signature-256", sig)
		status, _, b := g.do(req)
		return status, b
	}
	const sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	status, body := send("Hello, World!", sig)
	if status != http.StatusOK {
		t.Fatalf("GitHub's documented vector: %d %s, want 200", status, body)
	}
	id := eventIDFrom(t, body)
	if status, body := send("Hello, World?", sig); status != http.StatusUnauthorized || !strings.Contains(string(body), "github") {
		t.Errorf("one byte changed: %d %s, want 401 naming github", status, body)
	}
	var page apiEventPage
	g.admin("GET", "/webhooks/"+wh.ID+"/events", nil).decode(t, http.StatusOK, &page)
	if len(page.Events) != 1 || page.Events[0].ID != id {
		t.Errorf("events stored: %+v, want only the verified one", page.Events)
	}
	var ev struct {
		Verified string `json:"verified"`
	}
	g.admin("GET", "/webhooks/"+wh.ID+"/events/"+id, nil).decode(t, http.StatusOK, &ev)
	if ev.Verified != "github" {
		t.Errorf("event verified = %q, want github", ev.Verified)
	}
}
