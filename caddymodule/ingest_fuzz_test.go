package caddymodule

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// ingestHarness is a provisioned and started webhooker app with its ingest
// handler behind a real HTTP server: made once per fuzz process, so that an
// input costs one request, not a Caddy config load.
type ingestHarness struct {
	app    *App
	srv    *httptest.Server
	client *http.Client
	panics atomic.Pointer[string]
	// events reads the fuzzed webhook's event DB file, read-only, as an
	// operator's sqlite3 shell would: not through the gateway under test.
	events *sql.DB
}

func (h *ingestHarness) eventDB(t *testing.T, webhookID string) *sql.DB {
	t.Helper()
	if h.events == nil {
		path := filepath.Join(h.app.DataDir, "events-"+webhookID+".db")
		db, err := sql.Open("sqlite3", "file:"+(&url.URL{Path: filepath.ToSlash(path)}).EscapedPath()+"?mode=ro&_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		h.events = db
	}
	return h.events
}

// fuzzGatewayMarker in a fuzzed header value stands for this gateway's id,
// which the fuzzer cannot guess, so that it reaches the loop refusal.
const fuzzGatewayMarker = "$GATEWAY"

func newIngestHarness(tb testing.TB) *ingestHarness {
	tb.Helper()
	dir, err := os.MkdirTemp("", "webhooker-fuzz-")
	if err != nil {
		tb.Fatal(err)
	}
	app := &App{
		DataDir:         dir,
		Synchronous:     string(storage.SynchronousNormal), // no fsync per input
		MaxBodySize:     4 << 10,
		MaxIngestMemory: 64 << 10,
		BodyTimeout:     caddy.Duration(5 * time.Second),
		Webhooks: []*WebhookConfig{
			{Name: "fuzz", Entrypoints: []EntrypointConfig{{Key: "fuzz-in"}, {Key: "fuzz-off", Disabled: true}},
				Targets: []TargetConfig{{Name: "archive", Type: "database"}}},
			{Name: "paused", Disabled: true, Entrypoints: []EntrypointConfig{{Key: "paused-in"}},
				Targets: []TargetConfig{{Name: "archive", Type: "database"}}},
		},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := app.Provision(ctx); err != nil {
		tb.Fatalf("provision: %v", err)
	}
	if err := app.Validate(); err != nil {
		tb.Fatalf("validate: %v", err)
	}
	if err := app.Start(); err != nil {
		tb.Fatalf("start: %v", err)
	}
	h := &ingestHarness{app: app}
	handler := &Handler{app: app}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				msg := fmt.Sprint(v)
				h.panics.Store(&msg)
				w.WriteHeader(599)
			}
		}()
		// As Caddy's server answers a handler's error: its status, no body.
		if err := handler.ServeHTTP(w, r, nil); err != nil {
			code := http.StatusInternalServerError
			var he caddyhttp.HandlerError
			if errors.As(err, &he) {
				code = he.StatusCode
			}
			w.WriteHeader(code)
		}
	}))
	h.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	tb.Cleanup(func() {
		h.srv.Close()
		if h.events != nil {
			h.events.Close()
		}
		err := errors.Join(app.Stop(), app.Cleanup())
		cancel()
		os.RemoveAll(dir)
		if err != nil {
			tb.Errorf("stopping the app: %v", err)
		}
	})
	return h
}

// FuzzIngest sends requests with fuzzed method, path, headers ("Name: value"
// lines) and body to the ingest handler. Whatever they are: it never panics,
// never answers 2xx unless the event is stored with the body sent, answers
// 508 to a POST with this gateway's hop marker and to nothing else, no other
// 5xx but 503, and holds no ingest memory once it has answered.
func FuzzIngest(f *testing.F) {
	for _, seed := range []struct {
		method, path, headers string
		body                  []byte
	}{
		{"POST", "/hooks/fuzz-in", "Content-Type: application/json", []byte(`{"ref":"main"}`)},
		{"POST", "/hooks/fuzz-in?a=1&b=%20", "X-GitHub-Event: push\nX-Multi: one\nX-Multi: two", []byte("\x00\xff binary")},
		{"POST", "/hooks/fuzz-in", "", nil},
		{"POST", "/hooks/fuzz-in", "", bytes.Repeat([]byte("x"), 4<<10)},
		{"POST", "/hooks/fuzz-in", "", bytes.Repeat([]byte("y"), 4<<10+1)},
		{"POST", "/hooks/fuzz-in", engine.HopHeader + ": " + fuzzGatewayMarker, []byte("{}")},
		{"POST", "/hooks/fuzz-in", engine.HopHeader + ": other-gw, " + fuzzGatewayMarker, []byte("{}")},
		{"POST", "/hooks/fuzz-in", engine.HopHeader + ": other-gw", []byte("{}")},
		{"GET", "/hooks/fuzz-in", "", nil},
		{"PUT", "/hooks/fuzz-in", "", []byte("{}")},
		{"POST", "/hooks/fuzz-off", "", []byte("{}")},
		{"POST", "/hooks/paused-in", "", []byte("{}")},
		{"POST", "/hooks/", "", []byte("{}")},
		{"POST", "/hooks/%2e%2e/fuzz-in", "", []byte("{}")},
		{"POST", "/", "", []byte("{}")},
	} {
		f.Add(seed.method, seed.path, seed.headers, seed.body)
	}
	h := newIngestHarness(f)
	gatewayID := h.app.gatewayID
	webhookID := storage.DeclaredWebhookID("fuzz")

	f.Fuzz(func(t *testing.T, method, path, headers string, body []byte) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		u, err := url.Parse(h.srv.URL + path)
		if err != nil || u.Host != strings.TrimPrefix(h.srv.URL, "http://") {
			return // not a request path
		}
		req, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
		if err != nil {
			return // not a method the client sends
		}
		for _, line := range strings.Split(headers, "\n") {
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			req.Header.Add(strings.TrimSpace(name), strings.ReplaceAll(strings.TrimSpace(value), fuzzGatewayMarker, gatewayID))
		}
		resp, err := h.client.Do(req)
		if p := h.panics.Swap(nil); p != nil {
			t.Fatalf("the handler panicked: %s", *p)
		}
		if err != nil {
			return // refused by the client (a header it will not send) or the server's HTTP parser
		}
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		status := resp.StatusCode
		if n := ingestMemory.inUse.Load(); n != 0 {
			t.Errorf("%d bytes of ingest memory held after the answer %d", n, status)
		}
		looped := method == http.MethodPost && engine.LoopDetected(req.Header, gatewayID)
		switch {
		case looped != (status == http.StatusLoopDetected):
			t.Fatalf("%s %s with %s %q: status %d; 508 is the answer to this gateway's marker, and to nothing else",
				method, path, engine.HopHeader, req.Header.Values(engine.HopHeader), status)
		case status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusLoopDetected:
			t.Fatalf("%s %s: status %d; the only 5xx are 503 (storage, memory) and 508 (loop)", method, path, status)
		case status >= 200 && status < 300:
			checkStored(t, h, webhookID, status, answer, body)
		}
	})
}

// checkStored fails t unless a 2xx answer is a 200 naming an event stored
// with body.
func checkStored(t *testing.T, h *ingestHarness, webhookID string, status int, answer, body []byte) {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status %d: the only 2xx is 200", status)
	}
	var ack ingestResponse
	if err := json.Unmarshal(answer, &ack); err != nil || ack.EventID == "" {
		t.Fatalf("200 with %q: want {\"event_id\":...} (%v)", answer, err)
	}
	if err := ApplyIntake(h.app.DataDir); err != nil {
		t.Fatalf("apply the intake: %v", err)
	}
	var stored []byte
	if err := h.eventDB(t, webhookID).QueryRow("SELECT body FROM events WHERE id = ?", ack.EventID).Scan(&stored); err != nil {
		t.Fatalf("200 for event %s, which is not stored: %v", ack.EventID, err)
	}
	if !bytes.Equal(stored, body) {
		t.Fatalf("event %s stored %d body bytes, want the %d sent", ack.EventID, len(stored), len(body))
	}
}
