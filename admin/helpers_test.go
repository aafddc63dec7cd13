package admin_test

// Helpers for the handler tests: the real Backend of a running data
// directory (datadir: main DB and event DBs in a temporary directory, a
// running delivery engine that ConfigChanged keeps up to date), requests
// through httptest, and ingest through datadir, as the Caddy handler does.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/datadir"
	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// env is one data directory with its storage, engine and both API handlers.
type env struct {
	t      testing.TB
	dir    string
	data   *datadir.Dir
	main   *storage.MainDB
	events *storage.WebhookDBManager
	engine *engine.Engine
	// admin and tenant are the two handlers, each answer checked against
	// the OpenAPI document the handler serves (openapi_test.go).
	admin, tenant               http.Handler
	adminHandler, tenantHandler *admin.Handler
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the Backend's optional settings (quotas, target
// URL policy) set by configure before the handlers are made. The backend is
// the one datadir gives the API in production, on a running data directory.
func newEnvWith(t testing.TB, configure func(*admin.Backend)) *env {
	t.Helper()
	dir := t.TempDir()
	d, err := datadir.Open(dir, datadir.Options{Synchronous: storage.SynchronousNormal, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Declare(&datadir.Declaration{}); err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.Close(stop); err != nil {
			t.Errorf("close the data directory: %v", err)
		}
	})
	b := d.Backend(storage.Quotas{})
	if configure != nil {
		configure(b)
	}
	adminH, tenantH := admin.NewAdminHandler(b), admin.NewTenantHandler(b)
	return &env{t: t, dir: dir, data: d, main: b.Main, events: b.Events, engine: d.Engine(),
		admin: newOpenAPIChecked(t, adminH), tenant: newOpenAPIChecked(t, tenantH),
		adminHandler: adminH, tenantHandler: tenantH}
}

// response is an answer of the API.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return string(r.body) }

// errorMessage is the "error" of a JSON error answer.
func (r response) errorMessage(t testing.TB) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("answer %d %q is not {\"error\": …}: %v", r.status, r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error answer Content-Type %q, want application/json", ct)
	}
	return e.Error
}

// req is a request to send to a handler.
type req struct {
	method, path string
	// body is sent as is when a string or []byte, else as JSON; nil sends none.
	body        any
	contentType string // default application/json when there is a body; "-" for none
	key         string // API key, sent as Authorization: Bearer
	header      http.Header
}

func serve(t testing.TB, h http.Handler, q req) response {
	t.Helper()
	var body io.Reader
	switch b := q.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(data)
	}
	r := httptest.NewRequest(q.method, q.path, body)
	r = r.WithContext(withTB(r.Context(), t)) // the test openAPIChecked reports to
	if q.body != nil {
		ct := q.contentType
		switch ct {
		case "":
			r.Header.Set("Content-Type", "application/json")
		case "-": // none
		default:
			r.Header.Set("Content-Type", ct)
		}
	}
	if q.key != "" {
		r.Header.Set("Authorization", "Bearer "+q.key)
	}
	for k, v := range q.header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

// call sends q to the admin handler.
func (e *env) call(method, path string, body any) response {
	e.t.Helper()
	return serve(e.t, e.admin, req{method: method, path: path, body: body})
}

// must sends q to the admin handler, expects status and decodes the answer
// into out (unless nil).
func (e *env) must(status int, method, path string, body any, out any) response {
	e.t.Helper()
	resp := e.call(method, path, body)
	expect(e.t, resp, status, out)
	return resp
}

func expect(t testing.TB, resp response, status int, out any) {
	t.Helper()
	if resp.status != status {
		t.Fatalf("status %d (%s), want %d", resp.status, resp.body, status)
	}
	if out != nil {
		if ct := resp.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		// Decode into a zero value: fields left out (omitempty) must not
		// keep what an earlier answer said.
		reflect.ValueOf(out).Elem().SetZero()
		if err := json.Unmarshal(resp.body, out); err != nil {
			t.Fatalf("decode %q: %v", resp.body, err)
		}
	}
}

// The API's JSON, as a client reads it.

type webhookJSON struct {
	ID            string           `json:"id"`
	UserID        string           `json:"user_id"`
	Name          string           `json:"name"`
	Description   string           `json:"description"`
	Source        string           `json:"source"`
	Active        bool             `json:"active"`
	RetentionDays int              `json:"retention_days"`
	ReadOnly      bool             `json:"read_only"`
	CreatedAt     time.Time        `json:"created_at"`
	Entrypoints   []entrypointJSON `json:"entrypoints"`
	Targets       []targetJSON     `json:"targets"`
}

type entrypointJSON struct {
	ID        string `json:"id"`
	WebhookID string `json:"webhook_id"`
	Key       string `json:"key"`
	Active    bool   `json:"active"`
}

type targetJSON struct {
	ID        string                `json:"id"`
	WebhookID string                `json:"webhook_id"`
	Name      string                `json:"name"`
	Type      string                `json:"type"`
	URL       string                `json:"url"`
	Options   storage.TargetOptions `json:"options"`
	Active    bool                  `json:"active"`
	Paused    bool                  `json:"paused"`
	Circuit   string                `json:"circuit"`
}

type eventPage struct {
	Events     []eventRowJSON `json:"events"`
	NextBefore string         `json:"next_before"`
}

type eventRowJSON struct {
	ID          string         `json:"id"`
	Method      string         `json:"method"`
	Path        string         `json:"path"`
	ContentType string         `json:"content_type"`
	BodySize    int            `json:"body_size"`
	ReceivedAt  time.Time      `json:"received_at"`
	Deliveries  []deliveryJSON `json:"deliveries"`
}

type deliveryJSON struct {
	ID         string       `json:"id"`
	TargetID   string       `json:"target_id"`
	TargetName string       `json:"target_name"`
	TargetType string       `json:"target_type"`
	Status     string       `json:"status"`
	Attempts   int          `json:"attempts"`
	LastError  string       `json:"last_error"`
	Redelivery bool         `json:"redelivery"`
	Results    []resultJSON `json:"results"`
}

type resultJSON struct {
	Attempt              int     `json:"attempt"`
	DurationMS           float64 `json:"duration_ms"`
	StatusCode           int     `json:"status_code"`
	Error                string  `json:"error"`
	ResponseBody         string  `json:"response_body"`
	ResponseBodyEncoding string  `json:"response_body_encoding"`
}

type eventJSON struct {
	ID           string         `json:"id"`
	WebhookID    string         `json:"webhook_id"`
	EntrypointID string         `json:"entrypoint_id"`
	Method       string         `json:"method"`
	Path         string         `json:"path"`
	Query        string         `json:"query"`
	Headers      http.Header    `json:"headers"`
	ContentType  string         `json:"content_type"`
	Body         string         `json:"body"`
	BodyEncoding string         `json:"body_encoding"`
	BodySize     int            `json:"body_size"`
	RemoteAddr   string         `json:"remote_addr"`
	Deliveries   []deliveryJSON `json:"deliveries"`
}

type userJSON struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type apiKeyJSON struct {
	ID         string     `json:"id"`
	UserID     string     `json:"user_id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Key        string     `json:"key"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// createWebhook creates a webhook through the admin API.
func (e *env) createWebhook(name string) webhookJSON {
	e.t.Helper()
	var w webhookJSON
	e.must(http.StatusCreated, "POST", "/webhooker/webhooks", map[string]any{"name": name}, &w)
	return w
}

// addTarget adds a target through the admin API.
func (e *env) addTarget(webhookID string, target map[string]any) targetJSON {
	e.t.Helper()
	var t targetJSON
	e.must(http.StatusCreated, "POST", "/webhooker/webhooks/"+webhookID+"/targets", target, &t)
	return t
}

// createUser creates a user and an API key for them.
func (e *env) createUser(name string) (userJSON, apiKeyJSON) {
	e.t.Helper()
	var u userJSON
	e.must(http.StatusCreated, "POST", "/webhooker/users", map[string]any{"name": name}, &u)
	var k apiKeyJSON
	e.must(http.StatusCreated, "POST", "/webhooker/users/"+u.ID+"/api-keys", map[string]any{"name": "ci"}, &k)
	return u, k
}

// incoming is a request to ingest.
type incoming struct {
	body        []byte
	contentType string
	query       string
	header      http.Header
	receivedAt  time.Time // default now
}

// ingest stores an event for the entrypoint with key as the Caddy handler
// does (event and one delivery per active target of the configuration in
// force, then the engine is notified) and returns its id.
func (e *env) ingest(key string, in incoming) string {
	e.t.Helper()
	ctx := context.Background()
	route, ok := e.data.Route(key)
	if !ok {
		e.t.Fatalf("no entrypoint with key %q", key)
	}
	headers := in.header.Clone()
	if headers == nil {
		headers = http.Header{}
	}
	if in.contentType != "" {
		headers.Set("Content-Type", in.contentType)
	}
	if in.receivedAt.IsZero() {
		in.receivedAt = time.Now()
	}
	ev := &storage.Event{
		EntrypointID: route.Entrypoint.ID, EntrypointKey: key, Method: http.MethodPost,
		Path: "/hooks/" + key, Query: in.query, Headers: headers, Body: in.body,
		ContentType: in.contentType, RemoteAddr: "192.0.2.7:41000", ReceivedAt: in.receivedAt,
	}
	if err := e.data.Ingest(ctx, route, ev); err != nil {
		e.t.Fatalf("ingest: %v", err)
	}
	return ev.ID
}

// eventually polls cond every 10 ms until it holds, failing the test with
// what cond last said after 20 s.
func eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s", what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// receiver is an http target: it records what it receives and answers 500
// to bodies that contain "fail", 200 to the others.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	hits []hit
}

type hit struct {
	body   string
	header http.Header
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.hits = append(rc.hits, hit{string(body), r.Header.Clone()})
		rc.mu.Unlock()
		if strings.Contains(string(body), "fail") {
			http.Error(w, "refused", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "thanks")
	}))
	t.Cleanup(rc.Close)
	return rc
}

// received lists the bodies received so far.
func (rc *receiver) received() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hit(nil), rc.hits...)
}

// count counts the hits with body.
func (rc *receiver) count(body string) int {
	n := 0
	for _, h := range rc.received() {
		if h.body == body {
			n++
		}
	}
	return n
}

// generatedKey is what the API generates for an entrypoint: 128 random bits
// in lowercase hex.
var generatedKey = regexp.MustCompile(`^[0-9a-f]{32}$`)
