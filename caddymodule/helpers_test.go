package caddymodule_test

// Helpers for the integration tests: they run a real Caddy in this process
// (caddytest starts it on admin port 2999), load real Caddyfiles, send real
// HTTP requests, and read the event DBs the gateway wrote, read-only.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/google/uuid"

	// The ncruces SQLite driver, registered as "sqlite3" (storage imports it too).
	_ "github.com/ncruces/go-sqlite3/driver"

	// Registers the webhooker app, the handler and the Caddyfile syntax.
	"github.com/webhooker/caddy-webhooker/caddymodule"
	"github.com/webhooker/caddy-webhooker/storage"
)

const (
	adminURL = "http://localhost:2999"
	siteURL  = "http://localhost:9080"
)

// TestMain keeps Caddy's autosaved config and data directory out of the real
// home directory: the in-process Caddy saves every loaded config.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "webhooker-caddytest-")
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

// caddyfile is a complete Caddyfile: the test ports, the webhooker global
// option with dataDir and the given lines, and one site that serves
// entrypoints under /hooks/.
func caddyfile(dataDir, webhookerLines string) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443

	webhooker {
		data_dir %s
%s
	}
}

http://localhost:9080 {
	webhooker /hooks/*
}
`, dataDir, webhookerLines)
}

// emptyConfig has no webhooker app: loading it closes the storage of the
// previous config.
const emptyConfig = `{
	admin localhost:2999
	http_port 9080
	https_port 9443
}
`

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
	return startGatewayPrepared(t, webhookerLines, nil)
}

// startGatewayPrepared is startGateway with prepare run on the fresh data
// directory before the config loads.
func startGatewayPrepared(t *testing.T, webhookerLines string, prepare func(dataDir string)) *gatewayTest {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts Caddy")
	}
	dataDir := t.TempDir()
	if prepare != nil {
		prepare(dataDir)
	}
	t.Cleanup(func() {
		// Let go of the databases before t.TempDir removes them.
		if status, body := loadConfig(t, emptyConfig, "text/caddyfile"); status != http.StatusOK {
			t.Errorf("unloading the test config: %d %s", status, body)
		}
	})
	if adminStarted.Load() {
		waitForAdmin(t)
	}
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
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
	return &gatewayTest{t: t, dataDir: dataDir, client: newClient(false)}
}

// reload loads a new config with the same data directory through the admin
// API and fails the test unless it is accepted.
func (g *gatewayTest) reload(webhookerLines string) {
	g.t.Helper()
	if status, body := loadConfig(g.t, caddyfile(g.dataDir, webhookerLines), "text/caddyfile"); status != http.StatusOK {
		g.t.Fatalf("reload: %d %s", status, body)
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

// newClient is an HTTP client for the test site. It dials 127.0.0.1 whatever
// "localhost" resolves to, as caddytest's own transport does, so that the
// remote address Caddy sees is known.
func newClient(keepAlive bool) *http.Client {
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
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// do sends req and returns the status, headers and body of the answer. A
// request that fails before any answer is sent again when its body can be
// replayed: on Linux each config's listener is its own SO_REUSEPORT socket,
// and Caddy returns from a config load once the old servers have begun
// shutting down, so a connection may still land on the old socket just
// before it closes and be reset. Such a request never reached a handler; the
// tests that count events would see it if it had.
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
		if resp.StatusCode == http.StatusOK && strings.HasPrefix(req.URL.Path, "/hooks/") {
			// Acknowledged means durable in the intake; the tests read
			// the event DB files, where the applier puts it next. A
			// webhook whose file cannot be written keeps it in the
			// intake: the tests of that look for themselves.
			if err := caddymodule.ApplyIntake(g.dataDir); err != nil {
				g.t.Logf("apply the intake after %s %s: %v", req.Method, req.URL, err)
			}
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
	id, err := parseEventID(body)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func parseEventID(body []byte) (string, error) {
	var ack struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(body, &ack); err != nil {
		return "", fmt.Errorf("ingest answer %q: %w", body, err)
	}
	if _, err := uuid.Parse(ack.EventID); err != nil {
		return "", fmt.Errorf("ingest answer %q: event_id is not a UUID: %w", body, err)
	}
	return ack.EventID, nil
}

// eventDBPath is the event DB file of the declared webhook name.
func (g *gatewayTest) eventDBPath(webhook string) string {
	return filepath.Join(g.dataDir, "events-"+storage.DeclaredWebhookID(webhook)+".db")
}

// eventDB opens the event DB of the declared webhook read-only, on first use. The gateway
// keeps writing it; SQLite's WAL lets this connection read alongside.
func (g *gatewayTest) eventDB(webhook string) *sql.DB {
	g.t.Helper()
	// Opened lazily: a declared webhook's file is created by its first
	// event, which may come after this call.
	path := g.eventDBPath(webhook)
	dsn := "file:" + (&url.URL{Path: filepath.ToSlash(path)}).EscapedPath() + "?mode=ro&_pragma=busy_timeout(10000)"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		g.t.Fatalf("open %s: %v", path, err)
	}
	g.t.Cleanup(func() { db.Close() })
	return db
}

// storedEvent is an events row as the test reads it.
type storedEvent struct {
	ID, EntrypointID, EntrypointKey string
	Method, Path, Query             string
	Headers                         http.Header
	Body                            []byte
	BodySize                        int
	ContentType, RemoteAddr         string
	ReceivedAt                      time.Time
}

func queryEvent(t testing.TB, db *sql.DB, id string) storedEvent {
	t.Helper()
	var (
		ev       storedEvent
		headers  string
		received int64
	)
	err := db.QueryRow(`SELECT id, entrypoint_id, entrypoint_key, method, path, query, headers, body,
		body_size, content_type, remote_addr, received_at FROM events WHERE id = ?`, id).
		Scan(&ev.ID, &ev.EntrypointID, &ev.EntrypointKey, &ev.Method, &ev.Path, &ev.Query, &headers,
			&ev.Body, &ev.BodySize, &ev.ContentType, &ev.RemoteAddr, &received)
	if err != nil {
		t.Fatalf("event %s: %v", id, err)
	}
	if err := json.Unmarshal([]byte(headers), &ev.Headers); err != nil {
		t.Fatalf("event %s: headers %q: %v", id, headers, err)
	}
	ev.ReceivedAt = time.Unix(0, received)
	return ev
}

// eventIDs lists the ids of every event in db.
func eventIDs(t testing.TB, db *sql.DB) map[string]bool {
	t.Helper()
	rows, err := db.Query("SELECT id FROM events")
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	defer rows.Close()
	ids := make(map[string]bool)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func countRows(t testing.TB, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

type storedDelivery struct {
	ID, TargetID, Status string
	Attempts             int
}

func queryDeliveries(t testing.TB, db *sql.DB, eventID string) []storedDelivery {
	t.Helper()
	rows, err := db.Query("SELECT id, target_id, status, attempts FROM deliveries WHERE event_id = ? ORDER BY target_id", eventID)
	if err != nil {
		t.Fatalf("deliveries of %s: %v", eventID, err)
	}
	defer rows.Close()
	var out []storedDelivery
	for rows.Next() {
		var d storedDelivery
		if err := rows.Scan(&d.ID, &d.TargetID, &d.Status, &d.Attempts); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
