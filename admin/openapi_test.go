package admin_test

// The OpenAPI document against the handlers. Every test's requests to the
// env's handlers go through openAPIChecked, which validates each answer
// against the document the handler itself serves (kin-openapi): a status
// the operation does not document, or a body that does not match its
// schema, fails the test that made the request. A successful request must
// match the documented request too. TestMain then counts the documented
// (path, method, status) triples and the documented fields of answers the
// whole run saw, and fails on any never seen.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/google/uuid"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/datadir"
	"github.com/webhooker/caddy-webhooker/storage"
)

func init() {
	// The non-JSON answers: the event stream and the UI's files. Their
	// schema is a string; the decoder only has to hand it over.
	for _, ct := range []string{"text/event-stream", "text/html", "text/javascript", "text/css"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
}

// openAPIDoc is a document as a handler serves it, loaded and routed.
type openAPIDoc struct {
	doc    *openapi3.T
	router routers.Router
}

// triple is one documented answer: a path, a method and a status.
type triple struct {
	path, method string
	status       int
}

func (tr triple) String() string { return fmt.Sprintf("%s %s %d", tr.method, tr.path, tr.status) }

var openAPIState struct {
	mu   sync.Mutex
	docs map[string]*openAPIDoc // by the document's bytes
	seen map[triple]int
	// fields are the response fields seen, as "Schema.field".
	fields map[string]int
}

// loadOpenAPI loads the document h serves at GET /webhooker/openapi.json.
func loadOpenAPI(h http.Handler) (*openAPIDoc, error) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/webhooker/openapi.json", nil))
	if w.Code != http.StatusOK {
		return nil, fmt.Errorf("GET /webhooker/openapi.json: %d %s", w.Code, w.Body)
	}
	body := w.Body.String()
	openAPIState.mu.Lock()
	defer openAPIState.mu.Unlock()
	if d, ok := openAPIState.docs[body]; ok {
		return d, nil
	}
	doc, err := openapi3.NewLoader().LoadFromData([]byte(body))
	if err != nil {
		return nil, fmt.Errorf("load the document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the document is not valid OpenAPI: %w", err)
	}
	// Route by path alone: requests in tests have no real host.
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the document: %w", err)
	}
	d := &openAPIDoc{doc: doc, router: router}
	if openAPIState.docs == nil {
		openAPIState.docs = make(map[string]*openAPIDoc)
		openAPIState.seen = make(map[triple]int)
		openAPIState.fields = make(map[string]int)
	}
	openAPIState.docs[body] = d
	return d, nil
}

// openAPIChecked serves through h and checks each answer against the
// document h serves.
type openAPIChecked struct {
	t    testing.TB
	next http.Handler
	once sync.Once
	doc  *openAPIDoc
}

func newOpenAPIChecked(t testing.TB, h http.Handler) *openAPIChecked {
	return &openAPIChecked{t: t, next: h}
}

func (c *openAPIChecked) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := c.t
	if rt, ok := r.Context().Value(tbKey{}).(testing.TB); ok {
		t = rt
	}
	c.once.Do(func() {
		var err error
		if c.doc, err = loadOpenAPI(c.next); err != nil {
			t.Errorf("openapi: %v", err)
		}
	})
	var reqBody []byte
	if r.Body != nil {
		var err error
		if reqBody, err = io.ReadAll(r.Body); err != nil {
			t.Errorf("openapi: read the request body: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	rec := &recordingWriter{ResponseWriter: w}
	c.next.ServeHTTP(rec, r)
	if c.doc == nil {
		return
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	if err := c.doc.check(r, status, rec.Header(), rec.body.Bytes()); err != nil {
		t.Errorf("openapi: %s %s answered %d: %v\nbody: %.600s", r.Method, r.URL, status, err, rec.body.Bytes())
	}
}

type tbKey struct{}

// withTB has the openAPIChecked handler that serves the request report to
// t, the test that made it (a fuzz target's, not the fuzz test's).
func withTB(ctx context.Context, t testing.TB) context.Context {
	return context.WithValue(ctx, tbKey{}, t)
}

// recordingWriter keeps what is written (flushes and all, through Unwrap).
type recordingWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *recordingWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// check validates one exchange: the answer of a documented operation must
// be one of its documented statuses, with a body of its schema; a request
// that succeeded must be a documented request; a request no operation
// takes must have been answered as the router does (a JSON 404 or 405, or
// the mux's redirect of an unclean path).
func (d *openAPIDoc) check(r *http.Request, status int, header http.Header, body []byte) error {
	if status/100 == 3 && status != http.StatusNotModified && header.Get("Location") != "" &&
		(path.Clean(r.URL.Path) != strings.TrimSuffix(r.URL.Path, "/") || strings.Contains(r.URL.Path, "//")) {
		return nil // the mux's redirect of a path that is not clean: no operation saw it
	}
	route, params, err := d.router.FindRoute(r)
	if err == nil && strings.Count(route.Path, "/") != strings.Count(r.URL.Path, "/") {
		// The router forgives a trailing slash; the mux does not.
		err = fmt.Errorf("%s is not %s", r.URL.Path, route.Path)
	}
	if err != nil {
		switch status {
		case http.StatusUnauthorized:
			// The tenant API asks for the key before it routes.
			if len(d.doc.Security) > 0 {
				return nil
			}
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			var e map[string]string
			if json.Unmarshal(body, &e) != nil || len(e) != 1 || e["error"] == "" {
				return fmt.Errorf("no documented operation (%v), and the answer is not {\"error\": …}", err)
			}
			return nil
		case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			return nil
		}
		return fmt.Errorf("no documented operation (%v), yet not a 404 or 405", err)
	}
	if route.Operation.Responses.Status(status) == nil {
		return fmt.Errorf("status %d is not documented for %s %s", status, route.Method, route.Path)
	}
	openAPIState.mu.Lock()
	openAPIState.seen[triple{route.Path, route.Method, status}]++
	openAPIState.mu.Unlock()
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	if mt := route.Operation.Responses.Status(status).Value.Content.Get(header.Get("Content-Type")); mt != nil &&
		mt.Schema != nil && strings.HasPrefix(header.Get("Content-Type"), "application/json") {
		var v any
		if json.Unmarshal(body, &v) == nil {
			openAPIState.mu.Lock()
			markFields(v, mt.Schema, route.Operation.OperationID+" "+strconv.Itoa(status))
			openAPIState.mu.Unlock()
		}
	}
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}); err != nil {
		return fmt.Errorf("the answer does not match the document: %w", err)
	}
	if status < 300 {
		if r.Header.Get("Content-Type") == "" && r.ContentLength != 0 {
			// The API reads a body sent without a Content-Type as JSON.
			r.Header.Set("Content-Type", "application/json")
		}
		if err := foldRequestKeys(r, route.Operation); err != nil {
			return err
		}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			return fmt.Errorf("a request that succeeded does not match the document: %w", err)
		}
	}
	return nil
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	// The count means something only over every test.
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.skip").Value.String() == "" {
		code = reportOpenAPICoverage()
	}
	os.Exit(code)
}

// reportOpenAPICoverage prints how many documented triples the run saw and
// fails (1) when one not justified was never seen.
func reportOpenAPICoverage() int {
	openAPIState.mu.Lock()
	defer openAPIState.mu.Unlock()
	documented := map[triple]bool{}
	for _, d := range openAPIState.docs {
		for path, item := range d.doc.Paths.Map() {
			for method, op := range item.Operations() {
				for code := range op.Responses.Map() {
					status, err := strconv.Atoi(code)
					if err != nil {
						fmt.Printf("openapi: %s %s documents response %q, not a status\n", method, path, code)
						return 1
					}
					documented[triple{path, method, status}] = true
				}
			}
		}
	}
	var unseen []string
	for tr := range documented {
		if openAPIState.seen[tr] == 0 {
			unseen = append(unseen, tr.String())
		}
	}
	sort.Strings(unseen)
	fmt.Printf("openapi: %d documented (path, method, status) triples over the %d distinct documents served: %d seen, %d unseen\n",
		len(documented), len(openAPIState.docs), len(documented)-len(unseen), len(unseen))
	fields := map[string]bool{}
	for _, d := range openAPIState.docs {
		documentedFields(d.doc, fields)
	}
	var unseenFields []string
	for f := range fields {
		if openAPIState.fields[f] == 0 {
			unseenFields = append(unseenFields, f)
		}
	}
	sort.Strings(unseenFields)
	fmt.Printf("openapi: %d documented fields of answers: %d seen, %d unseen\n", len(fields), len(fields)-len(unseenFields), len(unseenFields))
	if len(unseen) > 0 {
		fmt.Printf("FAIL: openapi: documented answers no test produced:\n  %s\n", strings.Join(unseen, "\n  "))
		return 1
	}
	if len(unseenFields) > 0 {
		fmt.Printf("FAIL: openapi: documented fields no answer had:\n  %s\n", strings.Join(unseenFields, "\n  "))
		return 1
	}
	return 0
}

// schemaName is the name fields of s are counted under: its component's,
// else (an inline schema) where it is.
func schemaName(s *openapi3.SchemaRef, where string) string {
	if s.Ref != "" {
		return s.Ref[strings.LastIndex(s.Ref, "/")+1:]
	}
	return where
}

// markFields counts the fields of v, an answer of schema s, in
// openAPIState.fields. Call with openAPIState.mu held.
func markFields(v any, s *openapi3.SchemaRef, where string) {
	if s == nil || s.Value == nil {
		return
	}
	name := schemaName(s, where)
	if len(s.Value.AllOf) == 1 {
		s = s.Value.AllOf[0]
		name = schemaName(s, name)
	}
	switch x := v.(type) {
	case []any:
		for _, item := range x {
			markFields(item, s.Value.Items, name+"[]")
		}
	case map[string]any:
		for k, val := range x {
			if prop, ok := s.Value.Properties[k]; ok {
				openAPIState.fields[name+"."+k]++
				markFields(val, prop, name+"."+k)
			} else if ap := s.Value.AdditionalProperties.Schema; ap != nil {
				markFields(val, ap, name+"{}")
			}
		}
	}
}

// documentedFields lists the fields of the answers of doc, as markFields
// names them.
func documentedFields(doc *openapi3.T, into map[string]bool) {
	var walk func(s *openapi3.SchemaRef, where string, depth int)
	walk = func(s *openapi3.SchemaRef, where string, depth int) {
		if s == nil || s.Value == nil || depth > 8 {
			return
		}
		name := schemaName(s, where)
		if len(s.Value.AllOf) == 1 {
			s = s.Value.AllOf[0]
			name = schemaName(s, name)
		}
		walk(s.Value.Items, name+"[]", depth+1)
		if ap := s.Value.AdditionalProperties.Schema; ap != nil {
			walk(ap, name+"{}", depth+1)
		}
		for k, prop := range s.Value.Properties {
			into[name+"."+k] = true
			walk(prop, name+"."+k, depth+1)
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for code, r := range op.Responses.Map() {
				if r.Value == nil {
					continue
				}
				for ct, mt := range r.Value.Content {
					if ct == "application/json" {
						walk(mt.Schema, op.OperationID+" "+code, 0)
					}
				}
			}
		}
	}
}

// documentedRoutes lists the "METHOD /path" of a document's operations.
func documentedRoutes(d *openAPIDoc) []string {
	var out []string
	for path, item := range d.doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// endpointFace is the admin handler as Caddy's admin endpoint has it: with
// backups, here by backup (nil: the data directory's own).
func endpointFace(e *env, backup func(ctx context.Context, dir string, pause bool) (*storage.BackupManifest, error)) (*admin.Handler, http.Handler) {
	b := e.data.Backend(storage.Quotas{})
	b.Backup = backup
	if b.Backup == nil {
		b.Backup = func(ctx context.Context, dir string, pause bool) (*storage.BackupManifest, error) {
			return e.data.Backup(ctx, dir, datadir.BackupOptions{PauseTargets: pause})
		}
	}
	h := admin.NewAdminHandler(b)
	return h, newOpenAPIChecked(e.t, h)
}

// Every route each face of the API routes is in the document it serves,
// and every operation of that document is routed (the document's routes
// come from the router's registrations: a route added without documenting
// it fails here); every operation of admin/openapi.json is routed by some
// face, and marked admin-only exactly when the tenant API lacks it. The
// tenant's document has the bearer scheme and its 401 wherever a key is
// needed.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	e := newEnv(t)
	endpoint, _ := endpointFace(e, nil)
	full, err := openapi3.NewLoader().LoadFromData(admin.OpenAPIDocument())
	if err != nil {
		t.Fatal(err)
	}
	if err := full.Validate(context.Background()); err != nil {
		t.Fatalf("admin/openapi.json is not valid OpenAPI: %v", err)
	}
	routedBySome := map[string]bool{}
	var tenantRoutes []string
	for _, face := range []struct {
		name string
		h    *admin.Handler
	}{{"admin endpoint", endpoint}, {"webhooker_admin site", e.adminHandler}, {"tenant", e.tenantHandler}} {
		d, err := loadOpenAPI(face.h)
		if err != nil {
			t.Fatalf("%s: %v", face.name, err)
		}
		routed := admin.Routes(face.h)
		slices.Sort(routed)
		documented := documentedRoutes(d)
		t.Logf("%s: %d routes routed, %d operations documented", face.name, len(routed), len(documented))
		if !slices.Equal(routed, documented) {
			for _, r := range routed {
				if !slices.Contains(documented, r) {
					t.Errorf("%s: %s is routed but not in the document", face.name, r)
				}
			}
			for _, r := range documented {
				if !slices.Contains(routed, r) {
					t.Errorf("%s: %s is in the document but not routed", face.name, r)
				}
			}
		}
		for _, r := range routed {
			routedBySome[r] = true
		}
		if face.name == "tenant" {
			tenantRoutes = routed
		}
		for _, r := range documented {
			method, path, _ := strings.Cut(r, " ")
			op := d.doc.Paths.Value(path).GetOperation(method)
			public := op.Security != nil && len(*op.Security) == 0
			switch {
			case face.name == "tenant" && !public && op.Responses.Status(http.StatusUnauthorized) == nil:
				t.Errorf("tenant: %s needs a key, and does not document its 401", r)
			case face.name != "tenant" && op.Responses.Status(http.StatusUnauthorized) != nil:
				t.Errorf("%s: %s documents a 401 it never answers", face.name, r)
			}
		}
		if secure := len(d.doc.Security) == 1 && d.doc.Security[0]["apiKey"] != nil; secure != (face.name == "tenant") {
			t.Errorf("%s: security %v", face.name, d.doc.Security)
		}
	}
	n := 0
	for path, item := range full.Paths.Map() {
		for method, op := range item.Operations() {
			n++
			r := method + " " + path
			if !routedBySome[r] {
				t.Errorf("admin/openapi.json: %s is routed by no face of the API", r)
			}
			_, adminOnly := op.Extensions["x-webhooker-admin-only"]
			if adminOnly == slices.Contains(tenantRoutes, r) {
				t.Errorf("admin/openapi.json: %s is marked admin-only %v, and the tenant API routes it %v", r, adminOnly, !adminOnly)
			}
		}
	}
	t.Logf("admin/openapi.json: %d operations; routed by some face: %d", n, len(routedBySome))
}

// Backups answer as documented: the manifest, a refusal of a relative
// directory, a backup already running (409), a backup that failed (500).
func TestOpenAPIBackupAnswers(t *testing.T) {
	e := newEnv(t)
	_, h := endpointFace(e, nil)
	// Something in every file, so that the manifest has every field: a
	// webhook with a target, paused in the copy, and an event with a dedup id.
	wh := e.createWebhook("backed-up")
	e.addTarget(wh.ID, map[string]any{"name": "archive", "type": "database"})
	route, ok := e.data.Route(wh.Entrypoints[0].Key)
	if !ok {
		t.Fatal("no route for the webhook's entrypoint")
	}
	ev := &storage.Event{EntrypointID: route.Entrypoint.ID, EntrypointKey: wh.Entrypoints[0].Key, Method: http.MethodPost,
		Path: "/hooks/" + wh.Entrypoints[0].Key, Body: []byte(`{"id":1}`), ReceivedAt: time.Now(),
		Dedup: storage.NewDedupKey("delivery-1", time.Hour)}
	if err := e.data.Ingest(context.Background(), route, ev); err != nil {
		t.Fatal(err)
	}
	var m struct {
		Events int64 `json:"events"`
		Files  []struct {
			Name          string `json:"name"`
			DedupKeys     int64  `json:"dedup_keys"`
			PausedTargets int64  `json:"paused_targets"`
		} `json:"files"`
	}
	expect(t, serve(t, h, req{method: "POST", path: "/webhooker/backup",
		body: map[string]any{"dir": t.TempDir() + "/b", "pause_targets": true}}), http.StatusOK, &m)
	var dedupKeys, paused int64
	for _, f := range m.Files {
		dedupKeys += f.DedupKeys
		paused += f.PausedTargets
	}
	if len(m.Files) < 3 || m.Files[0].Name != "webhooker.db" || m.Events != 1 || dedupKeys != 1 || paused != 1 {
		t.Errorf("manifest %+v: want webhooker.db first, 3 files, 1 event, 1 dedup id, 1 paused target", m)
	}
	expect(t, serve(t, h, req{method: "POST", path: "/webhooker/backup", body: map[string]any{"dir": "relative"}}),
		http.StatusBadRequest, nil)
	for status, err := range map[int]error{
		http.StatusConflict:            fmt.Errorf("%w: a backup is already running", storage.ErrConflict),
		http.StatusInternalServerError: fmt.Errorf("backup: the disk is full"),
	} {
		_, failing := endpointFace(e, func(context.Context, string, bool) (*storage.BackupManifest, error) { return nil, err })
		expect(t, serve(t, failing, req{method: "POST", path: "/webhooker/backup", body: map[string]any{"dir": t.TempDir()}}),
			status, nil)
	}
}

// The tenant API serves its document without an API key, as it does the
// UI; every other route of it still needs one.
func TestOpenAPIServedWithoutKey(t *testing.T) {
	e := newEnv(t)
	resp := serve(t, e.tenant, req{method: "GET", path: "/webhooker/openapi.json"})
	if resp.status != http.StatusOK || resp.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET openapi.json without a key: %d %s %.200s", resp.status, resp.header.Get("Content-Type"), resp.body)
	}
	var doc struct {
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(resp.body, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc.Paths["/webhooker/users"]; ok {
		t.Errorf("the tenant's document lists /webhooker/users, which the tenant API does not serve")
	}
	if _, ok := doc.Paths["/webhooker/webhooks"]; !ok {
		t.Errorf("the tenant's document lacks /webhooker/webhooks")
	}
	for _, path := range []string{"/webhooker/openapi.json/", "/webhooker/openapi.json/../webhooks", "/webhooker/webhooks"} {
		if resp := serve(t, e.tenant, req{method: "GET", path: path}); resp.status != http.StatusUnauthorized &&
			resp.status != http.StatusMovedPermanently {
			t.Errorf("GET %s without a key: %d %s, want 401 (or the mux's redirect)", path, resp.status, resp.body)
		}
	}
	for _, h := range []http.Handler{e.admin, e.tenant} {
		if resp := serve(t, h, req{method: "POST", path: "/webhooker/openapi.json"}); resp.status != http.StatusMethodNotAllowed {
			t.Errorf("POST openapi.json: %d %s, want 405", resp.status, resp.body)
		}
	}
}

// openAPIFixture has one of everything an operation's path names, so that
// each documented operation can be called for real.
type openAPIFixture struct {
	*env
	endpoint http.Handler // the admin handler with backups
	webhook  webhookJSON
	user     userJSON
	key      apiKeyJSON
	tenantW  webhookJSON // the key's user's webhook
}

func newOpenAPIFixture(t *testing.T) *openAPIFixture {
	e := newEnv(t)
	f := &openAPIFixture{env: e, webhook: e.createWebhook("doc")}
	_, f.endpoint = endpointFace(e, nil)
	f.user, f.key = e.createUser("doc-user")
	expect(t, serve(t, e.tenant, req{method: "POST", path: "/webhooker/webhooks", key: f.key.Key,
		body: map[string]any{"name": "theirs"}}), http.StatusCreated, &f.tenantW)
	return f
}

// operations lists the document's operations but the UI's and the
// document's own, with their path filled: {id} the fixture's webhook (the
// user on /users), every other parameter bad when bad, else a fresh UUID.
func (f *openAPIFixture) operations(t *testing.T, h http.Handler, tenant bool, bad string) []struct {
	method, path string
	op           *openapi3.Operation
} {
	d, err := loadOpenAPI(h)
	if err != nil {
		t.Fatal(err)
	}
	var out []struct {
		method, path string
		op           *openapi3.Operation
	}
	for _, r := range documentedRoutes(d) {
		method, path, _ := strings.Cut(r, " ")
		if strings.HasPrefix(path, "/webhooker/ui/") || path == "/webhooker/openapi.json" {
			continue
		}
		op := d.doc.Paths.Value(path).GetOperation(method)
		filled := path
		for _, p := range op.Parameters {
			if p.Value.In != "path" {
				continue
			}
			v := uuid.NewString()
			switch {
			case bad != "":
				v = bad
			case p.Value.Name == "id" && strings.HasPrefix(path, "/webhooker/users/"):
				v = f.user.ID
			case p.Value.Name == "id" && tenant:
				v = f.tenantW.ID
			case p.Value.Name == "id":
				v = f.webhook.ID
			}
			filled = strings.Replace(filled, "{"+p.Value.Name+"}", v, 1)
		}
		out = append(out, struct {
			method, path string
			op           *openapi3.Operation
		}{method, filled, op})
	}
	return out
}

// Every operation refuses what every operation must: a body that is not
// JSON (415), a body over 1 MiB (413), an id that is not one (404), a
// method it does not take (405, with Allow naming the documented methods),
// and on the tenant API a request without a key (401). Each answer is
// checked against the document by the env's handlers.
func TestOpenAPIEveryOperationRefusesBadRequests(t *testing.T) {
	f := newOpenAPIFixture(t)
	huge := `{"name": "` + strings.Repeat("a", 1<<20) + `"}`
	for _, face := range []struct {
		name   string
		h      http.Handler
		key    string
		tenant bool
	}{{"admin", f.admin, "", false}, {"admin endpoint", f.endpoint, "", false}, {"tenant", f.tenant, f.key.Key, true}} {
		for _, o := range f.operations(t, face.h, face.tenant, "") {
			what := face.name + ": " + o.method + " " + o.path
			if o.op.RequestBody != nil {
				resp := serve(t, face.h, req{method: o.method, path: o.path, key: face.key, body: "name=x", contentType: "text/plain"})
				if resp.status != http.StatusUnsupportedMediaType {
					t.Errorf("%s, text/plain: %d %s, want 415", what, resp.status, resp.body)
				}
				resp = serve(t, face.h, req{method: o.method, path: o.path, key: face.key, body: huge})
				if resp.status != http.StatusRequestEntityTooLarge {
					t.Errorf("%s, 1 MiB: %d %.200s, want 413", what, resp.status, resp.body)
				}
			}
			if face.tenant {
				if resp := serve(t, face.h, req{method: o.method, path: o.path}); resp.status != http.StatusUnauthorized {
					t.Errorf("%s without a key: %d %s, want 401", what, resp.status, resp.body)
				}
			}
		}
		for _, o := range f.operations(t, face.h, face.tenant, "not-an-id") {
			if !strings.Contains(o.path, "not-an-id") {
				continue
			}
			if resp := serve(t, face.h, req{method: o.method, path: o.path, key: face.key}); resp.status != http.StatusNotFound {
				t.Errorf("%s: %s %s: %d %s, want 404", face.name, o.method, o.path, resp.status, resp.body)
			}
		}
		d, err := loadOpenAPI(face.h)
		if err != nil {
			t.Fatal(err)
		}
		for path, item := range d.doc.Paths.Map() {
			var documented []string
			for method := range item.Operations() {
				documented = append(documented, method)
			}
			slices.Sort(documented)
			if strings.HasPrefix(path, "/webhooker/ui/") {
				continue // the UI's files: see TestUI…
			}
			filled := strings.NewReplacer("{id}", f.webhook.ID, "{eid}", uuid.NewString(), "{tid}", uuid.NewString(),
				"{evid}", uuid.NewString(), "{did}", uuid.NewString(), "{job}", uuid.NewString(), "{kid}", uuid.NewString()).Replace(path)
			resp := serve(t, face.h, req{method: "PUT", path: filled, key: face.key})
			if resp.status != http.StatusMethodNotAllowed || resp.header.Get("Allow") != strings.Join(documented, ", ") {
				t.Errorf("%s: PUT %s: %d Allow %q, want 405 Allow %q", face.name, path, resp.status, resp.header.Get("Allow"), strings.Join(documented, ", "))
			}
		}
	}
}

// A main DB that fails answers 500 with a JSON error, as documented, on
// every operation that reads it first.
func TestOpenAPIStorageFailureIs500(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	events, err := storage.NewWebhookDBManager(dir, storage.ManagerOptions{Synchronous: storage.SynchronousNormal})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = events.CloseAll(ctx) })
	main, err := storage.OpenMainDB(ctx, dir, storage.SynchronousNormal)
	if err != nil {
		t.Fatal(err)
	}
	u, err := main.CreateUser(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := main.CreateAPIKey(ctx, u.ID, "k")
	if err != nil {
		t.Fatal(err)
	}
	b := &admin.Backend{Main: main, Events: events, ConfigChanged: func(context.Context) error { return nil },
		SetTargetPaused: func(context.Context, *storage.Webhook, string, bool) (storage.Target, error) {
			return storage.Target{}, nil
		},
		RetryNow:       func(context.Context, string, string) error { return nil },
		CancelDelivery: func(context.Context, string, string) error { return nil }}
	f := &openAPIFixture{env: &env{t: t}, webhook: webhookJSON{ID: uuid.NewString()}, user: userJSON{ID: u.ID},
		tenantW: webhookJSON{ID: uuid.NewString()}}
	adminH, tenantH := newOpenAPIChecked(t, admin.NewAdminHandler(b)), newOpenAPIChecked(t, admin.NewTenantHandler(b))
	// Load the documents before the DB goes.
	for _, h := range []http.Handler{adminH, tenantH} {
		serve(t, h, req{method: "GET", path: "/webhooker/settings", key: key})
	}
	admins, tenants := f.operations(t, adminH, false, ""), f.operations(t, tenantH, true, "")
	if err := main.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, face := range []struct {
		h   http.Handler
		key string
		ops []struct {
			method, path string
			op           *openapi3.Operation
		}
	}{{adminH, "", admins}, {tenantH, key, tenants}} {
		for _, o := range face.ops {
			var body any
			if o.op.RequestBody != nil {
				body = minimalBody(o.op.RequestBody.Value.Content.Get("application/json").Schema.Value)
			}
			resp := serve(t, face.h, req{method: o.method, path: o.path, key: face.key, body: body})
			if resp.status == http.StatusInternalServerError {
				n++
				continue
			}
			if face.key != "" && resp.status == http.StatusUnauthorized {
				continue // the key is read from the closed DB: refused before the route
			}
			if strings.Contains(o.path, "/settings") || strings.Contains(o.path, "/stream") {
				continue // read nothing from storage
			}
			t.Logf("%s %s with the main DB closed: %d %s", o.method, o.path, resp.status, resp.body)
		}
	}
	if n == 0 {
		t.Fatal("no operation answered 500 with the main DB closed: the test did not fail storage")
	}
}

// minimalBody is a request body of schema with its required properties
// only: the first value of an enum, else "x".
func minimalBody(schema *openapi3.Schema) map[string]any {
	body := map[string]any{}
	for _, name := range schema.Required {
		prop := schema.Properties[name].Value
		if len(prop.Enum) > 0 {
			body[name] = prop.Enum[0]
		} else {
			body[name] = "x"
		}
	}
	return body
}

// foldRequestKeys rewrites the JSON body of r with each field name spelled
// as documented: encoding/json matches names case-insensitively (a field
// "nAme" sets name), which a schema cannot say.
func foldRequestKeys(r *http.Request, op *openapi3.Operation) error {
	if op.RequestBody == nil || r.Body == nil {
		return nil
	}
	mt := op.RequestBody.Value.Content.Get("application/json")
	if mt == nil || mt.Schema == nil {
		return nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var v any
	if len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &v) == nil {
		if folded, err := json.Marshal(foldKeys(v, mt.Schema.Value)); err == nil {
			body = folded
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return nil
}

func foldKeys(v any, s *openapi3.Schema) any {
	if s == nil {
		return v
	}
	if len(s.AllOf) == 1 {
		s = s.AllOf[0].Value
	}
	switch x := v.(type) {
	case []any:
		if s.Items != nil {
			for i := range x {
				x[i] = foldKeys(x[i], s.Items.Value)
			}
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			name := k
			if _, ok := s.Properties[k]; !ok {
				for p := range s.Properties {
					if strings.EqualFold(p, k) {
						name = p
					}
				}
			}
			var sub *openapi3.Schema
			if ref, ok := s.Properties[name]; ok {
				sub = ref.Value
			} else if s.AdditionalProperties.Schema != nil {
				sub = s.AdditionalProperties.Schema.Value
			}
			out[name] = foldKeys(val, sub)
		}
		return out
	}
	return v
}

// The UI's files, on both handlers and without a key on the tenant API,
// answer as documented: the page and its assets, 304 to their ETag, 404 to
// a file the UI does not have.
func TestOpenAPIUIAnswers(t *testing.T) {
	e := newEnv(t)
	for _, h := range []http.Handler{e.admin, e.tenant} {
		for _, method := range []string{"GET", "HEAD"} {
			for _, path := range []string{"/webhooker/ui/", "/webhooker/ui/app.js"} {
				resp := serve(t, h, req{method: method, path: path})
				if resp.status != http.StatusOK || resp.header.Get("ETag") == "" {
					t.Fatalf("%s %s: %d ETag %q", method, path, resp.status, resp.header.Get("ETag"))
				}
				again := serve(t, h, req{method: method, path: path, header: http.Header{"If-None-Match": {resp.header.Get("ETag")}}})
				if again.status != http.StatusNotModified {
					t.Errorf("%s %s with its ETag: %d, want 304", method, path, again.status)
				}
			}
			if resp := serve(t, h, req{method: method, path: "/webhooker/ui/nope.js"}); resp.status != http.StatusNotFound {
				t.Errorf("%s /webhooker/ui/nope.js: %d, want 404", method, resp.status)
			}
		}
	}
}

// A tenant's entrypoint over their quota is the documented 403.
func TestOpenAPIEntrypointQuotaIs403(t *testing.T) {
	e := newEnvWith(t, func(b *admin.Backend) { b.Quotas = storage.Quotas{Entrypoints: 1} })
	_, key := e.createUser("small")
	var wh webhookJSON // its default entrypoint is the one allowed
	expect(t, serve(t, e.tenant, req{method: "POST", path: "/webhooker/webhooks", key: key.Key, body: map[string]any{"name": "w"}}),
		http.StatusCreated, &wh)
	resp := serve(t, e.tenant, req{method: "POST", path: "/webhooker/webhooks/" + wh.ID + "/entrypoints", key: key.Key})
	if resp.status != http.StatusForbidden || !strings.Contains(resp.errorMessage(t), "quota") {
		t.Errorf("a second entrypoint over a quota of 1: %d %s, want 403 naming the quota", resp.status, resp.body)
	}
}

// The fields of answers that only some states have: a verify rule's hmac
// settings and a tolerance, an ordered target whose line cannot be read, a
// webhook's figures with its last event and when they cannot be read.
func TestOpenAPIRareFields(t *testing.T) {
	e := newEnv(t)
	wh := e.createWebhook("rare")
	var ep struct {
		Options struct {
			Tolerance string `json:"tolerance"`
			Verify    []struct {
				Header, Algorithm, Encoding, Prefix string
			} `json:"verify"`
		} `json:"options"`
	}
	e.must(http.StatusCreated, "POST", "/webhooker/webhooks/"+wh.ID+"/entrypoints", map[string]any{"options": map[string]any{
		"verify": []map[string]any{
			{"scheme": "stripe", "secrets": []string{"whsec_c2VjcmV0"}},
			{"scheme": "hmac", "secrets": []string{"s3cret"}, "header": "X-Signature", "algorithm": "sha256", "encoding": "hex", "prefix": "sha256="},
		},
		"tolerance": "10m",
	}}, &ep)
	if ep.Options.Tolerance != "10m0s" || len(ep.Options.Verify) != 2 || ep.Options.Verify[1].Prefix != "sha256=" {
		t.Errorf("entrypoint options %+v", ep.Options)
	}
	e.ingest(wh.Entrypoints[0].Key, incoming{body: []byte(`{}`)})
	var list struct {
		Webhooks []struct {
			Stats struct {
				LastEventAt *time.Time `json:"last_event_at"`
			} `json:"stats"`
		} `json:"webhooks"`
	}
	e.must(http.StatusOK, "GET", "/webhooker/webhooks?stats=true", nil, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].Stats.LastEventAt == nil {
		t.Errorf("webhooks with stats %+v, want the last event's time", list)
	}

	// A backend whose lines and figures cannot be read.
	ctx := context.Background()
	dir := t.TempDir()
	events, err := storage.NewWebhookDBManager(dir, storage.ManagerOptions{Synchronous: storage.SynchronousNormal})
	if err != nil {
		t.Fatal(err)
	}
	main, err := storage.OpenMainDB(ctx, dir, storage.SynchronousNormal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = events.CloseAll(ctx)
		_ = main.Close()
	})
	h := newOpenAPIChecked(t, admin.NewAdminHandler(&admin.Backend{Main: main, Events: events,
		ConfigChanged: func(context.Context) error { return nil },
		Line: func(context.Context, string, string) (storage.Line, bool, error) {
			return storage.Line{}, false, fmt.Errorf("the event DB is locked")
		}}))
	broken, err := main.CreateWebhook(ctx, storage.NewWebhook{Name: "broken"})
	if err != nil {
		t.Fatal(err)
	}
	path, err := events.EventDBPath(broken.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("not a database, not at all: the header is wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	var target struct {
		LineError string `json:"line_error"`
	}
	expect(t, serve(t, h, req{method: "POST", path: "/webhooker/webhooks/" + broken.ID + "/targets",
		body: map[string]any{"name": "in-order", "type": "http", "url": "https://example.com/hook", "options": map[string]any{"ordered": true}}}),
		http.StatusCreated, &target)
	if target.LineError != "the event DB is locked" {
		t.Errorf("an ordered target whose line cannot be read: line_error %q", target.LineError)
	}
	var brokenList struct {
		Webhooks []struct {
			StatsError string `json:"stats_error"`
		} `json:"webhooks"`
	}
	expect(t, serve(t, h, req{method: "GET", path: "/webhooker/webhooks?stats=true"}), http.StatusOK, &brokenList)
	if len(brokenList.Webhooks) != 1 || brokenList.Webhooks[0].StatsError == "" {
		t.Errorf("a webhook whose event DB is not one: %+v, want its stats_error", brokenList)
	}
}
