package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// The UI's files and headers. The browser tests (caddymodule/ui_test.go)
// drive the page itself.

func uiRequest(h http.Handler, method, path string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://localhost"+Prefix+"/", nil)
	r.URL.Path = path // as sent, not cleaned
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestUIFiles(t *testing.T) {
	for _, tenant := range []bool{false, true} {
		h := NewAdminHandler(&Backend{})
		if tenant {
			h = NewTenantHandler(&Backend{}) // and no API key is sent
		}
		for path, ctype := range map[string]string{
			Prefix + "/ui/":           "text/html; charset=utf-8",
			Prefix + "/ui/index.html": "text/html; charset=utf-8",
			Prefix + "/ui/app.js":     "text/javascript; charset=utf-8",
			Prefix + "/ui/style.css":  "text/css; charset=utf-8",
		} {
			w := uiRequest(h, http.MethodGet, path, nil)
			if w.Code != http.StatusOK {
				t.Errorf("tenant %v: GET %s: %d %s", tenant, path, w.Code, w.Body)
				continue
			}
			for k, want := range map[string]string{
				"Content-Type":            ctype,
				"Cache-Control":           "no-cache",
				"Content-Security-Policy": uiCSP,
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
			} {
				if got := w.Header().Get(k); got != want {
					t.Errorf("tenant %v: GET %s: %s %q, want %q", tenant, path, k, got, want)
				}
			}
			if w.Body.Len() == 0 {
				t.Errorf("GET %s: empty", path)
			}
			etag := w.Header().Get("ETag")
			if w := uiRequest(h, http.MethodGet, path, http.Header{"If-None-Match": {etag}}); etag == "" || w.Code != http.StatusNotModified {
				t.Errorf("GET %s with If-None-Match %s: %d, want 304", path, etag, w.Code)
			}
		}
	}
}

func TestUICSPAllowsOnlyOwnOrigin(t *testing.T) {
	for _, d := range []string{"default-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
		if !strings.Contains(uiCSP, d) {
			t.Errorf("CSP %q lacks %q", uiCSP, d)
		}
	}
	if strings.Contains(uiCSP, "unsafe-inline") || strings.Contains(uiCSP, "unsafe-eval") || strings.Contains(uiCSP, "http") {
		t.Errorf("CSP %q allows inline code or another origin", uiCSP)
	}
	// The CSP forbids inline scripts: the page must not need any.
	page := string(uiAssets["index.html"].body)
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, `src="app.js"`) || !strings.Contains(tag, `type="module"`) {
			t.Errorf("index.html has %s: want only the module script app.js", tag)
		}
	}
	if regexp.MustCompile(`\son[a-z]+=`).MatchString(page) || strings.Contains(page, "style=") {
		t.Error("index.html has an inline event handler or style attribute")
	}
}

func TestUIRefusals(t *testing.T) {
	h := NewTenantHandler(&Backend{})
	cases := []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, Prefix + "/ui/", http.StatusMethodNotAllowed},
		{http.MethodDelete, Prefix + "/ui/app.js", http.StatusMethodNotAllowed},
		{http.MethodGet, Prefix + "/ui/nope.js", http.StatusNotFound},
		{http.MethodGet, Prefix + "/ui/ui/app.js", http.StatusNotFound},
		// Only the UI is open: the API still wants a key, whatever the path.
		{http.MethodGet, Prefix + "/ui/../webhooks", http.StatusUnauthorized},
		{http.MethodGet, Prefix + "/webhooks", http.StatusUnauthorized},
	}
	for _, c := range cases {
		w := uiRequest(h, c.method, c.path, nil)
		if w.Code != c.status {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, w.Code, w.Body, c.status)
		}
		if c.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", c.method, c.path, w.Header().Get("Allow"))
		}
	}
	if w := uiRequest(h, http.MethodGet, Prefix+"/ui", nil); w.Code/100 != 3 || w.Header().Get("Location") != Prefix+"/ui/" {
		t.Errorf("GET %s/ui: %d Location %q, want a redirect to %s/ui/", Prefix, w.Code, w.Header().Get("Location"), Prefix)
	}
}

// uiScript is the page's script, as served.
func uiScript() string { return string(uiAssets["app.js"].body) }

// The page asks the server nothing on a timer: live updates come from the
// stream, and the one timer that makes requests follows a bulk
// redelivery job while it runs (issue 12: each open tab used to poll every
// 3 s). Every setTimeout is listed here with what it is for, so that a new
// one is looked at.
func TestUIHasNoPolling(t *testing.T) {
	js := uiScript()
	for _, banned := range []string{"setInterval", "POLL_MS", "startPolling", "EventSource("} {
		if strings.Contains(js, banned) {
			t.Errorf("app.js contains %q: the page must not poll (live updates come from the stream, read with fetch)", banned)
		}
	}
	allowed := map[string]string{
		"() => (t.hidden = true)": "hides the toast; no request",
		"() => {":                 "clockSoon: rewrites relative times after a render; no request",
		"clock":                   "the clock: rewrites relative times while shown; no request",
		"() => refreshView(v)":    "one refetch per burst of changes the stream reported",
		"startStream":             "reconnects the stream after a backoff",
		"fetchJob":                "reads a bulk redelivery job, only while it runs",
	}
	calls := regexp.MustCompile(`setTimeout\(([^,\n]+)`).FindAllStringSubmatch(js, -1)
	if len(calls) == 0 {
		t.Fatal("no setTimeout found: the test no longer reads app.js right")
	}
	for _, c := range calls {
		if _, ok := allowed[strings.TrimSpace(c[1])]; !ok {
			t.Errorf("app.js: setTimeout(%s, …) is not one of the known timers: if it makes no request on a period, add it to this list with its reason", c[1])
		}
	}
	if !strings.Contains(js, "API + '/stream'") {
		t.Error("app.js does not read the stream (GET /webhooker/stream)")
	}
}

// Every element the script looks up by id is in index.html or made by the
// script; the controls of the bulk redelivery dialog, which the browser
// tests drive, keep their ids and have labels.
func TestUIElementIDs(t *testing.T) {
	page := string(uiAssets["index.html"].body)
	js := uiScript()
	made := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bid: '([a-z0-9-]+)'`).FindAllStringSubmatch(js, -1) {
		made[m[1]] = true
	}
	inPage := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bid="([a-z0-9-]+)"`).FindAllStringSubmatch(page, -1) {
		inPage[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`\$\('([a-z0-9-]+)'\)`).FindAllStringSubmatch(js, -1) {
		if !inPage[m[1]] && !made[m[1]] {
			t.Errorf("app.js looks up #%s, which neither index.html nor app.js makes", m[1])
		}
	}
	for _, id := range []string{"bulk-dialog", "bulk-form", "bulk-status", "bulk-target", "bulk-from", "bulk-to", "bulk-rate",
		"bulk-count", "bulk-start", "bulk-stop", "bulk-close", "bulk-result", "bulk-job", "bulk-progress", "bulk-job-text", "bulk-error", "bulk-warning"} {
		if !inPage[id] {
			t.Errorf("index.html lacks #%s", id)
		}
	}
	for _, id := range []string{"bulk-status", "bulk-target", "bulk-from", "bulk-to", "bulk-rate"} {
		if !strings.Contains(page, `<label for="`+id+`"`) {
			t.Errorf("index.html: #%s has no label", id)
		}
	}
	for _, id := range []string{"event-filter", "event-target", "event-from", "event-to", "event-search", "event-search-go",
		"clear-filters", "bulk-redeliver", "live", "refresh", "entrypoint-base"} {
		if !made[id] {
			t.Errorf("app.js no longer makes #%s (the browser tests use it)", id)
		}
	}
	for _, class := range []string{"pause-target", "retry-delivery", "cancel-delivery", "redeliver-target"} {
		if !strings.Contains(js, "'small "+class+"'") && !strings.Contains(js, "'small danger "+class+"'") {
			t.Errorf("app.js no longer makes buttons of class %s", class)
		}
	}
}

// jsDeclaration returns the text of a top-level function or const of app.js
// (a function ends at the first line that is "}").
func jsDeclaration(t *testing.T, js, name string) string {
	t.Helper()
	if m := regexp.MustCompile(`(?m)^const ` + name + ` = .*;( *//.*)?$`).FindString(js); m != "" {
		return m
	}
	start := strings.Index(js, "\nfunction "+name+"(")
	if start < 0 {
		t.Fatalf("app.js has no function or const %s", name)
	}
	end := strings.Index(js[start:], "\n}\n")
	if end < 0 {
		t.Fatalf("app.js: function %s does not end", name)
	}
	return js[start : start+end+3]
}

// runNode runs src, a module of the page's functions and the calls to
// check, in Node, with env added, and returns what it printed. Skipped
// where Node is not installed (CI installs it: CI=true makes its absence a
// failure).
func runNode(t *testing.T, src string, env ...string) []byte {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node not found: install Node.js (apt-get install nodejs) to test the UI's script")
		}
		t.Skip("node not found: install Node.js to test the UI's script")
	}
	cmd := exec.Command(node, "--input-type=module", "-")
	cmd.Stdin = strings.NewReader(src)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, b)
	}
	return b
}

// TestUIFunctions runs the page's own formatting and parsing functions, as
// served, in Node: relative times (issue 12: a retry due in an hour read
// "next just now"), the stream's parser, the filters in the hash and the
// datetime-local conversions. Skipped where Node is not installed (CI
// installs it: CI=true makes its absence a failure).
func TestUIFunctions(t *testing.T) {
	js := uiScript()
	var src strings.Builder
	for _, name := range []string{"STATUSES", "STREAM_LINE_MAX", "enc", "FILTERS", "pad", "fmtTime", "fmtSpan", "fmtRel", "fmtDue",
		"sseParser", "isoToLocalInput", "localInputToISO", "filtersFrom", "filterHash"} {
		src.WriteString(jsDeclaration(t, js, name) + "\n")
	}
	src.WriteString(`
const now = Date.parse('2026-12-01T12:00:00Z');
Date.now = () => now;
const at = (s) => new Date(now + s * 1000).toISOString();
const out = {rel: {}, due: {}};
for (const s of [30, 59, 60, 125, 600, 3600, 3725, 86400 + 3600, -0.4, -1, -5, -59, -61, -3599, -7200, -90000]) out.rel[s] = fmtRel(at(s));
for (const s of [25, 0, -10]) out.due[s] = fmtDue(at(s));
out.events = [];
const parse = sseParser((type, data) => out.events.push([type, data]));
for (const chunk of [': listening\n\n', 'event: chan', 'ge\ndata: {"webhook_id":"a"}\n', '\n: ping\n\nevent: change\r\ndata: {"webhook_id":"b"}\r\n\r\n', 'data: x\ndata: y\n\n']) parse(chunk);
out.toISO = localInputToISO('2026-12-01T10:00');
out.toISOsec = localInputToISO('2026-07-01T10:00:30');
out.toLocal = isoToLocalInput('2026-12-01T09:00:00Z');
out.badLocal = isoToLocalInput('not a time');
out.filters = filtersFrom(new URLSearchParams('status=bogus&target=t1&from=notadate&to=2026-12-01T09:00:00Z&q=hi'));
out.hash = filterHash('w1', {status: 'failed', target: '', from: '2026-12-01T09:00:00Z', to: '', q: 'order 42'});
out.emptyHash = filterHash('w1', {status: '', target: '', from: '', to: '', q: ''});
console.log(JSON.stringify(out));
`)
	b := runNode(t, src.String(), "TZ=Europe/Berlin") // UTC+1 in December, +2 in July
	var got struct {
		Rel, Due          map[string]string
		Events            [][2]string
		ToISO, ToISOsec   string
		ToLocal, BadLocal string
		Filters           map[string]string
		Hash, EmptyHash   string
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("node printed %s: %v", b, err)
	}
	for s, want := range map[string]string{
		"30": "in 30 s", "59": "in 59 s", "60": "in 1 min", "125": "in 2 min 5 s", "600": "in 10 min", "3600": "in 1 h",
		"3725": "in 1 h 2 min", "90000": "in 1 d 1 h",
		"-0.4": "just now", "-1": "just now", "-5": "5 s ago", "-59": "59 s ago", "-61": "1 min ago", "-3599": "59 min ago",
		"-7200": "2 h ago", "-90000": "1 d ago",
	} {
		if got.Rel[s] != want {
			t.Errorf("fmtRel(now %+s s) = %q, want %q", s, got.Rel[s], want)
		}
	}
	for s, want := range map[string]string{"25": "in 25 s", "0": "due now", "-10": "due now"} {
		if got.Due[s] != want {
			t.Errorf("fmtDue(now %+s s) = %q, want %q", s, got.Due[s], want)
		}
	}
	wantEvents := [][2]string{{"change", `{"webhook_id":"a"}`}, {"change", `{"webhook_id":"b"}`}, {"message", "x\ny"}}
	if len(got.Events) != len(wantEvents) {
		t.Errorf("sseParser: events %q, want %q", got.Events, wantEvents)
	} else {
		for i := range wantEvents {
			if got.Events[i] != wantEvents[i] {
				t.Errorf("sseParser: event %d %q, want %q", i, got.Events[i], wantEvents[i])
			}
		}
	}
	for what, c := range map[string][2]string{
		"localInputToISO(2026-12-01T10:00)":     {got.ToISO, "2026-12-01T09:00:00Z"},
		"localInputToISO(2026-07-01T10:00:30)":  {got.ToISOsec, "2026-07-01T08:00:30Z"},
		"isoToLocalInput(2026-12-01T09:00:00Z)": {got.ToLocal, "2026-12-01T10:00:00"},
		"isoToLocalInput(not a time)":           {got.BadLocal, ""},
		"filterHash":                            {got.Hash, "#/webhooks/w1?status=failed&from=2026-12-01T09%3A00%3A00Z&q=order+42"},
		"filterHash, no filter":                 {got.EmptyHash, "#/webhooks/w1"},
	} {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", what, c[0], c[1])
		}
	}
	wantFilters := map[string]string{"status": "", "target": "t1", "from": "", "to": "2026-12-01T09:00:00Z", "q": "hi"}
	for k, want := range wantFilters {
		if got.Filters[k] != want {
			t.Errorf("filtersFrom: %s = %q, want %q (unknown status and bad times dropped)", k, got.Filters[k], want)
		}
	}
}
