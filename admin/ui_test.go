package admin

import (
	"net/http"
	"net/http/httptest"
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
		"bulk-count", "bulk-start", "bulk-stop", "bulk-close", "bulk-result", "bulk-job", "bulk-progress", "bulk-job-text", "bulk-error"} {
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
