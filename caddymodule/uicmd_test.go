package caddymodule_test

// `caddy webhooker-ui`, run as Caddy's CLI runs it (its cobra command, with
// flags), in front of a fake admin endpoint that records what it gets, and
// in front of the real in-process Caddy.

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// startWebhookerUI runs `caddy webhooker-ui args...` until ctx is done and
// returns the first line it prints, or the error it ended with before that.
// done receives what the command returns.
func startWebhookerUI(t *testing.T, ctx context.Context, args ...string) (line string, done <-chan error, err error) {
	t.Helper()
	c, ok := caddycmd.Commands()["webhooker-ui"]
	if !ok {
		t.Fatal("the webhooker-ui command is not registered")
	}
	cmd := &cobra.Command{Use: c.Name, SilenceUsage: true}
	c.CobraFunc(cmd)
	cmd.SetArgs(args)
	pr, pw := io.Pipe()
	cmd.SetOut(pw)
	ended := make(chan error, 1)
	go func() {
		err := cmd.ExecuteContext(ctx)
		pw.Close()
		ended <- err
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case line := <-lines:
		return line, ended, nil
	case err := <-ended:
		return "", nil, err
	case <-time.After(10 * time.Second):
		t.Fatal("webhooker-ui printed nothing in 10s")
		return "", nil, nil
	}
}

// runWebhookerUI runs `caddy webhooker-ui args...` for the rest of the test
// and returns the proxy's address (host:port). When the test ends it stops
// it, as a signal would, and checks that it shut down cleanly.
func runWebhookerUI(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	line, done, err := startWebhookerUI(t, ctx, args...)
	if err != nil {
		cancel()
		t.Fatalf("webhooker-ui %s: %v", strings.Join(args, " "), err)
	}
	addr, ok := strings.CutPrefix(line, "webhooker UI: http://")
	addr, ok2 := strings.CutSuffix(addr, "/webhooker/ui/")
	if !ok || !ok2 {
		cancel()
		t.Fatalf("webhooker-ui printed %q, want \"webhooker UI: http://<listen>/webhooker/ui/\"", line)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("webhooker-ui ended with %v, want a clean shutdown", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("webhooker-ui did not shut down within 15s")
		}
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after the shutdown", addr)
		}
	})
	return addr
}

// fakeAdmin is an admin endpoint that records the requests it gets and
// answers 200 JSON, with the CORS header Caddy's admin endpoint adds.
type fakeAdmin struct {
	*httptest.Server
	mu   sync.Mutex
	got  []*http.Request
	body []string
}

func newFakeAdmin(t *testing.T) *fakeAdmin {
	f := &fakeAdmin{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, r)
		f.body = append(f.body, string(b))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "http://"+r.Host)
		w.Write([]byte(`{"fake":"admin"}`))
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAdmin) addr() string { return f.Listener.Addr().String() }

// requests returns the requests received so far and forgets them.
func (f *fakeAdmin) requests() ([]*http.Request, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	got, body := f.got, f.body
	f.got, f.body = nil, nil
	return got, body
}

// uiClient sends each request on a new connection and follows no redirect.
var uiClient = &http.Client{
	Timeout:       30 * time.Second,
	Transport:     &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// uiRequest sends method url with the headers (name, value pairs; "Host"
// sets the Host) and returns the status, headers and body of the answer.
func uiRequest(t *testing.T, method, url, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := uiClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// navigate is what a browser sends when the URL is typed into its address bar.
var navigate = []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "none", "Sec-Fetch-Dest", "document", "Sec-Fetch-User", "?1"}

func errorOf(t *testing.T, body string) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("answer %q is not {\"error\": …}", body)
	}
	return e.Error
}

// TestUIProxyForwards: the proxy forwards to the admin endpoint with the
// admin endpoint's Host and Origin, without Referer and Sec-Fetch-*, and
// passes the answer back without Caddy's CORS header.
func TestUIProxyForwards(t *testing.T) {
	admin := newFakeAdmin(t)
	proxy := runWebhookerUI(t, "--listen", "localhost:0", "--admin", admin.addr())
	_, port, _ := net.SplitHostPort(proxy)
	if !strings.HasPrefix(proxy, "localhost:") {
		t.Errorf("printed address %s, want localhost:<port>", proxy)
	}

	cases := []struct {
		name, method, path, body string
		headers                  []string
	}{
		{"typed URL", "GET", "/webhooker/ui/", "", navigate},
		{"script of the page", "GET", "/webhooker/ui/app.js", "", []string{
			"Referer", "http://" + proxy + "/webhooker/ui/", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Dest", "script"}},
		{"API call", "POST", "/webhooker/webhooks?x=1", `{"name":"w"}`, []string{
			"Origin", "http://" + proxy, "Referer", "http://" + proxy + "/webhooker/ui/", "Content-Type", "application/json",
			"Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Dest", "empty"}},
		{"127.0.0.1 for localhost", "GET", "/webhooker/webhooks", "", []string{
			"Host", "127.0.0.1:" + port, "Origin", "http://127.0.0.1:" + port, "Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "same-origin"}},
		{"no browser", "DELETE", "/webhooker/webhooks/1", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, header, body := uiRequest(t, c.method, "http://"+proxy+c.path, c.body, c.headers...)
			if status != http.StatusOK || body != `{"fake":"admin"}` {
				t.Fatalf("%d %s, want the admin endpoint's 200", status, body)
			}
			if v := header.Get("Access-Control-Allow-Origin"); v != "" {
				t.Errorf("Access-Control-Allow-Origin %q passed on", v)
			}
			got, bodies := admin.requests()
			if len(got) != 1 {
				t.Fatalf("the admin endpoint got %d requests, want 1", len(got))
			}
			r := got[0]
			if r.Method != c.method || r.URL.RequestURI() != c.path || bodies[0] != c.body {
				t.Errorf("the admin endpoint got %s %s %q, want %s %s %q", r.Method, r.URL.RequestURI(), bodies[0], c.method, c.path, c.body)
			}
			if r.Host != admin.addr() {
				t.Errorf("Host %q, want %q", r.Host, admin.addr())
			}
			if o := r.Header.Values("Origin"); len(o) != 1 || o[0] != "http://"+admin.addr() {
				t.Errorf("Origin %q, want http://%s", o, admin.addr())
			}
			for name := range r.Header {
				if name == "Referer" || strings.HasPrefix(name, "Sec-Fetch-") || strings.HasPrefix(name, "X-Forwarded-") {
					t.Errorf("%s: %q forwarded", name, r.Header.Values(name))
				}
			}
			if c.method == "POST" && r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q, want application/json", r.Header.Get("Content-Type"))
			}
		})
	}
}

// TestUIProxyRefusals: what Caddy's admin endpoint refuses from another
// site, the proxy refuses with 403 and does not forward; outside
// /webhooker/ nothing is forwarded either.
func TestUIProxyRefusals(t *testing.T) {
	admin := newFakeAdmin(t)
	proxy := runWebhookerUI(t, "--listen", "127.0.0.1:0", "--admin", admin.addr())
	_, port, _ := net.SplitHostPort(proxy)

	cases := []struct {
		name, method, path string
		headers            []string
		status             int
		message            string
	}{
		{"DNS rebinding", "GET", "/webhooker/webhooks", []string{"Host", "attacker.example:" + port}, 403, "host not allowed"},
		{"Host with another port", "GET", "/webhooker/ui/", append([]string{"Host", "localhost:2019"}, navigate...), 403, "host not allowed"},
		{"cross-origin fetch", "GET", "/webhooker/webhooks", []string{
			"Origin", "https://attacker.example", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "cross-site"}, 403, "cross-site"},
		{"cross-origin POST", "POST", "/webhooker/webhooks", []string{
			"Origin", "https://attacker.example", "Content-Type", "application/json"}, 403, "origin"},
		{"another local origin", "DELETE", "/webhooker/webhooks/1", []string{
			"Origin", "http://localhost:8080", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "same-site"}, 403, "origin"},
		{"Origin null", "POST", "/webhooker/webhooks", []string{"Origin", "null"}, 403, "origin"},
		{"Sec-Fetch-Site cross-site", "GET", "/webhooker/ui/", []string{
			"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Dest", "document"}, 403, "cross-site"},
		{"Referer of another site", "GET", "/webhooker/ui/", []string{
			"Referer", "https://attacker.example/page", "Sec-Fetch-Mode", "navigate"}, 403, "referer"},
		{"no-cors", "GET", "/webhooker/webhooks", []string{"Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Site", "same-origin"}, 403, "no-cors"},
		{"Caddy's config", "GET", "/config/", nil, 404, "not found"},
		{"Caddy's load", "POST", "/load", nil, 404, "not found"},
		{"Caddy's stop", "POST", "/stop", nil, 404, "not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, header, body := uiRequest(t, c.method, "http://"+proxy+c.path, "{}", c.headers...)
			if status != c.status {
				t.Fatalf("%d %s, want %d", status, body, c.status)
			}
			if ct := header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if msg := errorOf(t, body); !strings.Contains(strings.ToLower(msg), c.message) {
				t.Errorf("error %q does not say %q", msg, c.message)
			}
			if got, _ := admin.requests(); len(got) != 0 {
				t.Errorf("forwarded to the admin endpoint: %s %s", got[0].Method, got[0].URL)
			}
		})
	}

	// A path that leaves /webhooker/ once cleaned is redirected, not forwarded.
	status, header, _ := uiRequest(t, "GET", "http://"+proxy+"/webhooker/../config/", "")
	if status/100 != 3 || header.Get("Location") != "/config/" {
		t.Errorf("GET /webhooker/../config/: %d Location %q, want a redirect to /config/", status, header.Get("Location"))
	}
	if got, _ := admin.requests(); len(got) != 0 {
		t.Errorf("forwarded to the admin endpoint: %s %s", got[0].Method, got[0].URL)
	}
}

// TestUIProxyRedirect: / is the UI.
func TestUIProxyRedirect(t *testing.T) {
	proxy := runWebhookerUI(t, "--listen", "localhost:0", "--admin", newFakeAdmin(t).addr())
	status, header, _ := uiRequest(t, "GET", "http://"+proxy+"/", "", navigate...)
	if status != http.StatusFound || header.Get("Location") != "/webhooker/ui/" {
		t.Errorf("GET /: %d Location %q, want 302 to /webhooker/ui/", status, header.Get("Location"))
	}
}

// TestUIProxyAdminDown: an admin endpoint that does not answer is a 502
// naming it.
func TestUIProxyAdminDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	proxy := runWebhookerUI(t, "--listen", "localhost:0", "--admin", closed)
	status, _, body := uiRequest(t, "GET", "http://"+proxy+"/webhooker/ui/", "", navigate...)
	if status != http.StatusBadGateway || !strings.Contains(errorOf(t, body), closed) {
		t.Errorf("%d %s, want 502 naming %s", status, body, closed)
	}
}

// TestUIProxyListenLoopbackOnly: the proxy has the admin endpoint's access
// to webhooker, so it refuses to listen elsewhere than on loopback.
func TestUIProxyListenLoopbackOnly(t *testing.T) {
	for _, listen := range []string{":2020", "0.0.0.0:0", "[::]:0", "192.0.2.1:2020", "example.com:2020"} {
		_, _, err := startWebhookerUI(t, context.Background(), "--listen", listen, "--admin", "localhost:1")
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("--listen %s: %v, want refused as not a loopback address", listen, err)
		}
	}
}

// TestWebhookerUICaddy: in front of the real admin endpoint, the UI and the
// API answer a typed URL, which Caddy itself refuses.
func TestWebhookerUICaddy(t *testing.T) {
	startGateway(t, `
		webhook github {
			entrypoint gh-push
			target archive database
		}
`)
	proxy := runWebhookerUI(t, "--admin", "localhost:2999", "--listen", "localhost:0")

	for _, path := range []string{"/webhooker/ui/", "/webhooker/webhooks"} {
		status, _, body := uiRequest(t, "GET", adminURL+path, "", navigate...)
		if status != http.StatusForbidden || !strings.Contains(body, "client is not allowed to access from origin ''") {
			t.Errorf("Caddy: GET %s as a typed URL: %d %s, want 403 for the missing origin", path, status, body)
		}
	}

	status, header, body := uiRequest(t, "GET", "http://"+proxy+"/webhooker/ui/", "", navigate...)
	if status != http.StatusOK || !strings.HasPrefix(header.Get("Content-Type"), "text/html") || !strings.Contains(body, "app.js") {
		t.Fatalf("proxy: GET /webhooker/ui/ as a typed URL: %d %s %.200s, want the page", status, header.Get("Content-Type"), body)
	}
	if csp := header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q not passed on", csp)
	}

	status, _, body = uiRequest(t, "GET", "http://"+proxy+"/webhooker/webhooks", "", navigate...)
	if status != http.StatusOK || !strings.Contains(body, `"name":"github"`) {
		t.Fatalf("proxy: GET /webhooker/webhooks as a typed URL: %d %s, want the webhook list", status, body)
	}

	// The page's own API call, as the browser sends it from the proxy's page.
	status, _, body = uiRequest(t, "GET", "http://"+proxy+"/webhooker/webhooks?stats=true", "",
		"Origin", "http://"+proxy, "Referer", "http://"+proxy+"/webhooker/ui/",
		"Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Dest", "empty")
	if status != http.StatusOK || !strings.Contains(body, `"name":"github"`) {
		t.Errorf("proxy: the page's API call: %d %s", status, body)
	}
}
