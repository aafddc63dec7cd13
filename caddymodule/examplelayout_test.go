package caddymodule_test

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// exampleOnTestPorts is the shipped Caddyfile.example with the test's admin
// and site ports instead of 2019 and 8080, and nothing else changed.
func exampleOnTestPorts(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(src)
	for _, r := range []struct{ old, new string }{
		{"admin localhost:2019", "admin localhost:2999\n\thttp_port 9080\n\thttps_port 9443"},
		{"http://localhost:8080 {", "http://localhost:9080 {"},
	} {
		if strings.Count(cfg, r.old) != 1 {
			t.Fatalf("Caddyfile.example has %d %q, want 1: update this test with the example", strings.Count(cfg, r.old), r.old)
		}
		cfg = strings.Replace(cfg, r.old, r.new, 1)
	}
	return cfg
}

// TestExampleLayout loads the shipped Caddyfile.example and replays finding
// 11: POSTs outside the entrypoints' path (which Caddy would answer with an
// empty 200, a provider taking its event for received) get 404 and store
// nothing; an entrypoint still stores; the tenant API is still served.
func TestExampleLayout(t *testing.T) {
	g := startGateway(t, "")
	t.Setenv("WEBHOOKER_DATA_DIR", g.dataDir) // read by the example's data_dir
	if status, body := loadConfig(t, exampleOnTestPorts(t), "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("loading Caddyfile.example: %d %s", status, body)
	}

	for _, path := range []string{
		"/hooks",
		"/hook/github-push",
		"/hooks/%2e%2e/github-push",
		"/github-push",
		"/",
	} {
		req, err := http.NewRequest(http.MethodPost, siteURL+path, strings.NewReader(`{"lost":true}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := req.URL.EscapedPath(); got != path {
			t.Fatalf("the client would send %q, not %q", got, path)
		}
		req.Header.Set("Content-Type", "application/json")
		if status, _, body := g.do(req); status != http.StatusNotFound {
			t.Errorf("POST %s: status %d (%q), want 404", path, status, body)
		}
	}
	if n := g.storedEvents("github"); n != 0 {
		t.Errorf("%d events stored by requests outside the entrypoints, want none", n)
	}

	id := g.mustIngest("github-push", `{"hello":"world"}`)
	if ids := eventIDs(t, g.eventDB("github")); len(ids) != 1 || !ids[id] {
		t.Errorf("github's event DB holds %v, want only %s", ids, id)
	}

	// The tenant API keeps its place: without a key it answers 401, not the
	// fallback's 404.
	req, _ := http.NewRequest(http.MethodGet, siteURL+"/webhooker/webhooks", nil)
	if status, _, body := g.do(req); status != http.StatusUnauthorized {
		t.Errorf("GET /webhooker/webhooks without a key: status %d (%s), want 401", status, body)
	}
}
