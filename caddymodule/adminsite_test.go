package caddymodule_test

// The operator's API and page on a site (webhooker_admin) behind Caddy's
// own authentication, through a real in-process Caddy: behind basic_auth,
// behind forward_auth to a real auth server, and with no authentication at
// all (the forgotten basic_auth), which must be a 401 and not an open door.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"

	"github.com/webhooker/caddy-webhooker/storage"
)

// adminSiteConfig is the test config with a declared webhook and the given
// site block.
func adminSiteConfig(dataDir, site string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443

	webhooker {
		data_dir %s
		public_url https://hooks.example.com/hooks/
		webhook shown {
			entrypoint shown-in
			target keep database
		}
	}
}

http://localhost:9080 {
	webhooker /hooks/*
%s
	respond /elsewhere "the rest of the site" 200
}
`, dataDir, site)
}

// startAdminSite starts the gateway and loads the site block.
// startOpsSite starts a site with webhooker_admin behind basic_auth, for
// the user ops with the password s3cret. webhooker_admin is written before
// basic_auth: the directive order puts the authentication first all the
// same.
func startOpsSite(t *testing.T) *gatewayTest {
	t.Helper()
	hash, err := caddyauth.BcryptHash{}.Hash([]byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	return startAdminSite(t, fmt.Sprintf(`
	webhooker_admin
	basic_auth /webhooker/* {
		ops %s
	}`, hash))
}

func startAdminSite(t *testing.T, site string) *gatewayTest {
	t.Helper()
	g := startGateway(t, "")
	if status, body := loadConfig(t, adminSiteConfig(g.dataDir, site), "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("load the admin site config: %d %s", status, body)
	}
	return g
}

// siteRequest sends method path to the site with the given headers.
func (g *gatewayTest) siteRequest(method, path, body string, header map[string]string) apiAnswer {
	g.t.Helper()
	req, err := http.NewRequest(method, siteURL+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	status, h, b := g.do(req)
	return apiAnswer{status, h, b}
}

// wantWebhookList checks that a is the API's list of webhooks, with the
// declared one.
func wantWebhookList(t *testing.T, a apiAnswer) {
	t.Helper()
	if a.status != http.StatusOK || !json.Valid(a.body) || !strings.Contains(string(a.body), `"shown"`) {
		t.Fatalf("GET /webhooker/webhooks: %s, want 200 with the declared webhook", a)
	}
}

// wantRefusedByWebhooker checks that a is webhooker_admin's own 401: JSON,
// naming the missing authentication, and no basic_auth challenge.
func wantRefusedByWebhooker(t *testing.T, a apiAnswer) {
	t.Helper()
	if a.status != http.StatusUnauthorized || a.header.Get("WWW-Authenticate") != "" ||
		!strings.Contains(a.errorMessage(t), "no authentication handler vouched") {
		t.Fatalf("answer %s (WWW-Authenticate %q), want webhooker_admin's 401", a, a.header.Get("WWW-Authenticate"))
	}
}

func TestAdminSiteBehindBasicAuth(t *testing.T) {
	g := startOpsSite(t)
	auth := func(user, password string) map[string]string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(user, password)
		return map[string]string{"Authorization": req.Header.Get("Authorization")}
	}

	if a := g.siteRequest("GET", "/webhooker/webhooks", "", nil); a.status != http.StatusUnauthorized || a.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no credentials: %s, want basic_auth's 401 with its challenge", a)
	}
	if a := g.siteRequest("GET", "/webhooker/webhooks", "", auth("ops", "wrong")); a.status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %s, want 401", a)
	}
	wantWebhookList(t, g.siteRequest("GET", "/webhooker/webhooks", "", auth("ops", "s3cret")))
	if a := g.siteRequest("GET", "/webhooker/ui/", "", auth("ops", "s3cret")); a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
		t.Fatalf("the event-log page: %d %s", a.status, a.header.Get("Content-Type"))
	}
	var settings struct {
		PublicURL string `json:"public_url"`
		Tenant    bool   `json:"tenant"`
	}
	g.siteRequest("GET", "/webhooker/settings", "", auth("ops", "s3cret")).decode(t, http.StatusOK, &settings)
	if settings.PublicURL != "https://hooks.example.com/hooks/" || settings.Tenant {
		t.Errorf("settings %+v, want the configured public_url, not a tenant", settings)
	}
	if a := g.siteRequest("GET", "/elsewhere", "", nil); a.status != http.StatusOK || string(a.body) != "the rest of the site" {
		t.Fatalf("outside /webhooker: %s, want the rest of the site", a)
	}

	// Live updates reach the page through the site: a change is flushed
	// to the stream as it happens, not when the response ends.
	req, err := http.NewRequest("GET", siteURL+"/webhooker/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("ops", "s3cret")
	resp, err := newClient(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /webhooker/stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	g.mustIngest("shown-in", `{"n":1}`)
	want := `data: {"webhook_id":"` + storage.DeclaredWebhookID("shown") + `"}`
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() == want {
				found <- true
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("the stream ended without %s", want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s on the stream through the site", want)
	}
	resp.Body.Close()

	// A page elsewhere cannot use the browser's remembered credentials to
	// change anything; the operator's own page (same origin) can.
	create := `{"name":"made-on-the-site"}`
	crossSite := auth("ops", "s3cret")
	crossSite["Sec-Fetch-Site"] = "cross-site"
	if a := g.siteRequest("POST", "/webhooker/webhooks", create, crossSite); a.status != http.StatusForbidden {
		t.Fatalf("cross-site POST: %s, want 403", a)
	}
	if a := g.siteRequest("GET", "/webhooker/webhooks", "", auth("ops", "s3cret")); strings.Contains(string(a.body), "made-on-the-site") {
		t.Fatalf("the cross-site POST created a webhook: %s", a)
	}
	sameOrigin := auth("ops", "s3cret")
	sameOrigin["Sec-Fetch-Site"] = "same-origin"
	if a := g.siteRequest("POST", "/webhooker/webhooks", create, sameOrigin); a.status != http.StatusCreated {
		t.Fatalf("same-origin POST: %s, want 201", a)
	}
}

// TestAdminSiteWithoutAuthIsClosed: a site that forgot basic_auth gets a
// 401 from webhooker_admin itself, for reads and writes alike.
func TestAdminSiteWithoutAuthIsClosed(t *testing.T) {
	g := startAdminSite(t, `
	webhooker_admin`)
	wantRefusedByWebhooker(t, g.siteRequest("GET", "/webhooker/webhooks", "", nil))
	wantRefusedByWebhooker(t, g.siteRequest("GET", "/webhooker/ui/", "", nil))
	wantRefusedByWebhooker(t, g.siteRequest("POST", "/webhooker/webhooks", `{"name":"intruder"}`, nil))
	// A client naming itself is no authentication.
	wantRefusedByWebhooker(t, g.siteRequest("GET", "/webhooker/webhooks", "", map[string]string{"Remote-User": "admin"}))
	if a := g.siteRequest("GET", "/elsewhere", "", nil); a.status != http.StatusOK {
		t.Fatalf("outside /webhooker: %s", a)
	}
	if a := g.admin("GET", "/webhooks", nil); strings.Contains(string(a.body), "intruder") {
		t.Fatalf("the refused POST created a webhook: %s", a)
	}
}

// TestAdminSiteBehindForwardAuth: an auth server says who the user is in
// Remote-User; the site copies it into {http.auth.user.id}.
func TestAdminSiteBehindForwardAuth(t *testing.T) {
	// The auth server: "Bearer letmein" is alice; X-Public passes without
	// naming anyone (as an auth server may for public pages); else 401.
	checks := make(chan string, 64)
	authServer := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checks <- r.Header.Get("X-Forwarded-Uri")
		switch {
		case r.Header.Get("Authorization") == "Bearer letmein":
			w.Header().Set("Remote-User", "alice")
		case r.Header.Get("X-Public") != "":
		default:
			http.Error(w, "the auth server says no", http.StatusUnauthorized)
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go authServer.Serve(ln)
	t.Cleanup(func() { authServer.Close() })

	g := startAdminSite(t, fmt.Sprintf(`
	route /webhooker/* {
		forward_auth %s {
			uri /check
			copy_headers Remote-User
		}
		vars http.auth.user.id {http.request.header.Remote-User}
		webhooker_admin
	}`, ln.Addr()))

	wantWebhookList(t, g.siteRequest("GET", "/webhooker/webhooks", "", map[string]string{"Authorization": "Bearer letmein"}))
	if uri := <-checks; uri != "/webhooker/webhooks" {
		t.Fatalf("the auth server was asked about %q", uri)
	}
	a := g.siteRequest("GET", "/webhooker/webhooks", "", map[string]string{"Authorization": "Bearer wrong"})
	if a.status != http.StatusUnauthorized || !strings.Contains(string(a.body), "the auth server says no") {
		t.Fatalf("refused by the auth server: %s, want its 401", a)
	}
	a = g.siteRequest("GET", "/webhooker/webhooks", "", map[string]string{"Remote-User": "alice"})
	if a.status != http.StatusUnauthorized || !strings.Contains(string(a.body), "the auth server says no") {
		t.Fatalf("a client-sent Remote-User: %s, want the auth server's 401", a)
	}
	// The auth server lets the request through without naming a user:
	// forward_auth drops the client's Remote-User, and webhooker_admin
	// refuses a request nobody vouched for.
	wantRefusedByWebhooker(t, g.siteRequest("GET", "/webhooker/webhooks", "", map[string]string{"Remote-User": "alice", "X-Public": "yes"}))
	if n := len(checks); n != 3 {
		t.Fatalf("the auth server was asked %d more times, want 3 (every request under /webhooker)", n)
	}
}

// TestAdminSiteStreamEndsAtReload: an open live-update stream ends when a
// reload replaces the config that serves it, instead of keeping the old
// server running (Caddy waits for open requests without end by default);
// the page then reconnects to the new one.
func TestAdminSiteStreamEndsAtReload(t *testing.T) {
	site := `	basic_auth /webhooker/* {
		ops $2a$04$bjUeClqLBNRshSk5T3PJYOWiygjxUcvSOAIcrcC/SX4V7316rCgd.
	}
	webhooker_admin`
	g := startAdminSite(t, site)
	req, err := http.NewRequest("GET", siteURL+"/webhooker/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("ops", "correct horse")
	resp, err := newClient(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /webhooker/stream: %d", resp.StatusCode)
	}
	lines := make(chan string)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The stream is live: a change arrives on it.
	g.mustIngest("shown-in", `{"n":1}`)
	want := `data: {"webhook_id":"` + storage.DeclaredWebhookID("shown") + `"}`
	for got := ""; got != want; {
		select {
		case got = <-lines:
		case <-ended:
			t.Fatal("the stream ended before the reload")
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s on the stream", want)
		}
	}

	// A reload (a changed config: Caddy skips an identical one).
	reloaded := strings.Replace(adminSiteConfig(g.dataDir, site), "the rest of the site", "the rest of the site, reloaded", 1)
	if status, body := loadConfig(t, reloaded, "text/caddyfile"); status != http.StatusOK {
		t.Fatalf("reload: %d %s", status, body)
	}
	for {
		select {
		case <-lines:
			continue
		case <-ended:
			return
		case <-time.After(20 * time.Second):
			t.Fatal("the stream of the replaced config is still open 20 s after the reload: its server cannot finish shutting down")
		}
	}
}
