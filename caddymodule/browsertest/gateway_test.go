package browsertest_test

// The in-process Caddy the browser tests drive: the part of caddymodule's
// test harness (helpers_test.go there) that they use. It lives in this
// module, with its own ports, because chromedp must stay out of the
// plugin's go.mod, and because `go test ./...` in the workspace runs this
// package's test binary alongside caddymodule's: each binary starts its own
// Caddy, so they must not share an admin endpoint or a site port.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/google/uuid"

	// Registers the webhooker app, the handler and the Caddyfile syntax.
	_ "github.com/webhooker/caddy-webhooker/caddymodule"
	"github.com/webhooker/caddy-webhooker/storage"
)

// The ports of this test binary's Caddy: caddymodule's tests use 2999,
// 9080 and 9443, and the bench harness avoids 2019, 2999, 8080 and 9080.
const (
	adminPort = 2998
	httpPort  = 9082
	httpsPort = 9445
)

var (
	adminURL = fmt.Sprintf("http://localhost:%d", adminPort)
	siteURL  = fmt.Sprintf("http://localhost:%d", httpPort)
)

// TestMain keeps Caddy's autosaved config and data directory out of the real
// home directory: the in-process Caddy saves every loaded config.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "webhooker-browsertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	caddy.ConfigAutosavePath = filepath.Join(dir, "config", "caddy", "autosave.json") // set at init, before the env
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// globalOptions are the first lines of every config this binary loads.
func globalOptions() string {
	return fmt.Sprintf("\tadmin localhost:%d\n\thttp_port %d\n\thttps_port %d\n", adminPort, httpPort, httpsPort)
}

// caddyfile is a complete Caddyfile: the test ports, the webhooker global
// option with dataDir and the given lines, and one site that serves
// entrypoints under /hooks/.
func caddyfile(dataDir, webhookerLines string) string {
	return fmt.Sprintf(`{
%s
	webhooker {
		data_dir %s
%s
	}
}

%s {
	webhooker /hooks/*
}
`, globalOptions(), dataDir, webhookerLines, siteURL)
}

// emptyConfig has no webhooker app: loading it closes the storage of the
// previous config.
func emptyConfig() string {
	return "{\n" + globalOptions() + "}\n"
}

// gatewayTest is a running Caddy with one test's config and data directory.
type gatewayTest struct {
	t       *testing.T
	dataDir string
	client  *http.Client
}

// startGateway loads caddyfile(dataDir, webhookerLines) into the in-process
// Caddy (starting it if needed), with a fresh data directory. When the test
// ends the storage is closed (an empty config is loaded) before the data
// directory is removed.
func startGateway(t *testing.T, webhookerLines string) *gatewayTest {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts Caddy")
	}
	dataDir := t.TempDir()
	t.Cleanup(func() {
		// Let go of the databases before t.TempDir removes them.
		if status, body := loadConfig(t, emptyConfig(), "text/caddyfile"); status != http.StatusOK {
			t.Errorf("unloading the test config: %d %s", status, body)
		}
	})
	if adminStarted.Load() {
		waitForAdmin(t)
	}
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort:          adminPort,
		LoadRequestTimeout: 60 * time.Second,
		TestRequestTimeout: 60 * time.Second,
	})
	tester.InitServer(caddyfile(dataDir, webhookerLines), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	adminStarted.Store(true)
	// A new connection per request: a kept-alive connection may be closed
	// by the server of the previous config just as a request is sent on it.
	return &gatewayTest{t: t, dataDir: dataDir, client: newClient()}
}

// newClient is an HTTP client for the test site, without keep-alive. It
// dials 127.0.0.1 whatever "localhost" resolves to, as caddytest's own
// transport does.
func newClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				_, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				return dialer.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", port))
			},
			DisableKeepAlives: true,
		},
	}
}

// adminStarted says whether caddytest has started the in-process Caddy.
var adminStarted atomic.Bool

// adminClient talks to the admin endpoint on a new connection each time.
// Every config load replaces the admin server and stops the old one a
// moment later, asynchronously: a kept-alive connection to it may be closed
// just as a request is sent on it.
var adminClient = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// waitForAdmin returns once the admin endpoint has answered a few times in a
// row, so that the admin server a previous load replaced is gone. caddytest's
// InitServer would otherwise take a failed request for a Caddy not running
// and start another one in this process.
func waitForAdmin(t testing.TB) {
	t.Helper()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections() // caddytest's client uses it
	deadline := time.Now().Add(20 * time.Second)
	for ok := 0; ok < 3; time.Sleep(50 * time.Millisecond) {
		resp, err := adminClient.Get(adminURL + "/config/")
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("the admin endpoint does not answer: %v", err)
			}
			ok = 0
			continue
		}
		resp.Body.Close()
		ok++
	}
}

// loadConfig POSTs cfg to Caddy's /load and returns the answer. A request
// that fails before an answer (the admin server being replaced, see
// adminClient) is sent again: loading the same config twice is harmless.
func loadConfig(t testing.TB, cfg, contentType string) (int, string) {
	t.Helper()
	var lastErr error
	for attempt := 1; attempt <= 5; attempt++ {
		req, err := http.NewRequest(http.MethodPost, adminURL+"/load", strings.NewReader(cfg))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := adminClient.Do(req)
		if err != nil {
			lastErr = err
			t.Logf("POST /load, attempt %d: %v", attempt, err)
			time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("POST /load: reading the answer: %v", err)
		}
		return resp.StatusCode, string(body)
	}
	t.Fatalf("POST /load: %v", lastErr)
	return 0, ""
}

// do sends req and returns the status, headers and body of the answer. A
// request that fails before any answer is sent again when its body can be
// replayed: a connection may land on the listener of a config being
// replaced just before it closes and be reset. Such a request never reached
// a handler.
func (g *gatewayTest) do(req *http.Request) (int, http.Header, []byte) {
	g.t.Helper()
	for attempt := 1; ; attempt++ {
		resp, err := g.client.Do(req)
		if err != nil {
			if attempt == 5 || (req.Body != nil && req.GetBody == nil) {
				g.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
			}
			g.t.Logf("%s %s, attempt %d: %v", req.Method, req.URL, attempt, err)
			time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
			if req.GetBody != nil {
				if req.Body, err = req.GetBody(); err != nil {
					g.t.Fatal(err)
				}
			}
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			g.t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
		}
		return resp.StatusCode, resp.Header, body
	}
}

// post POSTs body to the entrypoint with key and returns the status and body.
func (g *gatewayTest) post(key, body string) (int, []byte) {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodPost, siteURL+"/hooks/"+key, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	status, _, respBody := g.do(req)
	return status, respBody
}

// mustIngest POSTs body to key, expects 200 {"event_id": <uuid>} and returns the id.
func (g *gatewayTest) mustIngest(key, body string) string {
	g.t.Helper()
	status, respBody := g.post(key, body)
	if status != http.StatusOK {
		g.t.Fatalf("POST /hooks/%s: status %d (%s), want 200", key, status, respBody)
	}
	return eventIDFrom(g.t, respBody)
}

// eventIDFrom decodes an ingest answer and checks that its id is a UUID.
func eventIDFrom(t testing.TB, body []byte) string {
	t.Helper()
	var ack struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(body, &ack); err != nil {
		t.Fatalf("ingest answer %q: %v", body, err)
	}
	if _, err := uuid.Parse(ack.EventID); err != nil {
		t.Fatalf("ingest answer %q: event_id is not a UUID: %v", body, err)
	}
	return ack.EventID
}

// eventDBPath is the event DB file of the declared webhook name.
func (g *gatewayTest) eventDBPath(webhook string) string {
	return filepath.Join(g.dataDir, "events-"+storage.DeclaredWebhookID(webhook)+".db")
}
