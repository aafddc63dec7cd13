package admin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// uiRoutes are the API routes the UI may use ({} is a path id): those of
// DESIGN.md and of issue 12's contract (pause, resume, retry, cancel, bulk
// redelivery and its job, the stream, the settings).
var uiRoutes = []string{
	"GET /webhooks", "POST /webhooks",
	"GET /webhooks/{}", "PATCH /webhooks/{}", "DELETE /webhooks/{}",
	"POST /webhooks/{}/entrypoints", "PATCH /webhooks/{}/entrypoints/{}", "DELETE /webhooks/{}/entrypoints/{}",
	"POST /webhooks/{}/targets", "PATCH /webhooks/{}/targets/{}", "DELETE /webhooks/{}/targets/{}",
	"POST /webhooks/{}/targets/{}/pause", "POST /webhooks/{}/targets/{}/resume",
	"GET /webhooks/{}/events", "GET /webhooks/{}/events/{}", "POST /webhooks/{}/events/{}/redeliver",
	"POST /webhooks/{}/deliveries/{}/retry", "POST /webhooks/{}/deliveries/{}/cancel",
	"POST /webhooks/{}/redeliver", "GET /webhooks/{}/redeliver/{}", "DELETE /webhooks/{}/redeliver/{}",
	"GET /stream", "GET /settings",
}

// issue12Routes must each be used by the UI: they are its recovery tools
// and live updates.
var issue12Routes = []string{
	"POST /webhooks/{}/targets/{}/pause", "POST /webhooks/{}/targets/{}/resume",
	"POST /webhooks/{}/deliveries/{}/retry", "POST /webhooks/{}/deliveries/{}/cancel",
	"POST /webhooks/{}/redeliver", "GET /webhooks/{}/redeliver/{}", "DELETE /webhooks/{}/redeliver/{}",
	"GET /stream", "GET /settings",
}

// routesOfUI reads the routes app.js calls: api('METHOD', 'path' or
// `path with ${…}`), and the stream it fetches.
func routesOfUI(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("ui/app.js")
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	placeholder := regexp.MustCompile(`\$\{[^}]*\}`)
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile("api\\('([A-Z]+)', ['`]([^'`]*)['`]").FindAllStringSubmatch(js, -1) {
		path, _, _ := strings.Cut(placeholder.ReplaceAllString(m[2], "{}"), "?")
		seen[m[1]+" "+path] = true
	}
	for _, m := range regexp.MustCompile(`fetch\(API \+ '([^']+)'`).FindAllStringSubmatch(js, -1) {
		seen["GET "+m[1]] = true
	}
	if len(seen) < 10 {
		t.Fatalf("found only %d routes in app.js: the test no longer reads it right", len(seen))
	}
	routes := make([]string, 0, len(seen))
	for r := range seen {
		routes = append(routes, r)
	}
	slices.Sort(routes)
	return routes
}

// TestUIUsesOnlyAPIRoutes checks that every route the UI calls is in the
// contract and is served by both handlers (their answer is not "no such
// route" or 405), and that the UI uses issue 12's routes.
func TestUIUsesOnlyAPIRoutes(t *testing.T) {
	e := newEnv(t)
	used := routesOfUI(t)
	for _, r := range used {
		if !slices.Contains(uiRoutes, r) {
			t.Errorf("app.js calls %s, which is not an API route", r)
		}
	}
	for _, r := range issue12Routes {
		if !slices.Contains(used, r) {
			t.Errorf("app.js does not use %s", r)
		}
	}
	_, key := e.createUser("ui")
	for _, r := range used {
		method, path, _ := strings.Cut(r, " ")
		for strings.Contains(path, "{}") {
			path = strings.Replace(path, "{}", uuid.NewString(), 1)
		}
		for _, tenant := range []bool{false, true} {
			var body *strings.Reader
			if method == http.MethodGet || method == http.MethodDelete {
				body = strings.NewReader("")
			} else {
				body = strings.NewReader("{}")
			}
			// The stream stays open while its request lives: this one is
			// over before it starts, which any route answers at once.
			ctx, cancel := context.WithCancel(context.Background())
			if path == "/stream" {
				cancel()
			}
			req := httptest.NewRequestWithContext(ctx, method, "/webhooker"+path, body)
			req.Header.Set("Content-Type", "application/json")
			h := http.Handler(e.admin)
			if tenant {
				req.Header.Set("Authorization", "Bearer "+key.Key)
				h = e.tenant
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			cancel()
			if w.Code == http.StatusMethodNotAllowed || strings.Contains(w.Body.String(), "no such route") {
				t.Errorf("tenant %v: %s %s: %d %s: the API does not serve it", tenant, method, path, w.Code, strings.TrimSpace(w.Body.String()))
			}
		}
	}
}
