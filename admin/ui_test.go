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
