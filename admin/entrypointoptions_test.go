package admin_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
	"github.com/webhooker/caddy-webhooker/verify"
)

// GitHub's documented vector ("Validating webhook deliveries").
const (
	githubSecret    = "It's a Secret to Everybody"
	githubSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)

// entrypointOptionsJSON is an entrypoint as the API shows it, with options.
type entrypointOptionsJSON struct {
	ID      string                    `json:"id"`
	Key     string                    `json:"key"`
	Options storage.EntrypointOptions `json:"options"`
}

// routeVerifies builds the verifiers of the entrypoint in force under key,
// as the ingest handler does from the route it looks up, and reports
// whether GitHub's documented vector passes with signature.
func (e *env) routeVerifies(key, signature string) bool {
	e.t.Helper()
	route, ok := e.data.Route(key)
	if !ok {
		e.t.Fatalf("no route for %q", key)
	}
	if route.Entrypoint.OptionsKey() == "" {
		e.t.Fatalf("route %q has no options in force", key)
	}
	for _, rule := range route.Entrypoint.Options.Verify {
		v, err := verify.New(rule.Scheme, rule.Secrets, verify.Options{})
		if err != nil {
			e.t.Fatalf("build the verifier in force: %v", err)
		}
		if v.Verify(verify.Request{Method: http.MethodPost, Header: http.Header{"X-Hub-Signature-256": {signature}}, Body: []byte("Hello, World!")}) == nil {
			return true
		}
	}
	return false
}

func githubOptions(secrets ...string) map[string]any {
	return map[string]any{"verify": []map[string]any{{"scheme": "github", "secrets": secrets}}}
}

func assertMasked(t *testing.T, where string, o storage.EntrypointOptions, secrets int) {
	t.Helper()
	if len(o.Verify) != 1 || o.Verify[0].Scheme != "github" || len(o.Verify[0].Secrets) != secrets {
		t.Fatalf("%s: options = %+v, want one github rule with %d secrets", where, o, secrets)
	}
	for _, s := range o.Verify[0].Secrets {
		if s != storage.RedactedValue {
			t.Errorf("%s: secret shown as %q, want %q", where, s, storage.RedactedValue)
		}
	}
}

func TestEntrypointVerifyThroughAPI(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("gh")
	base := "/webhooker/webhooks/" + w.ID + "/entrypoints"

	var ep entrypointOptionsJSON
	resp := e.must(http.StatusCreated, "POST", base, map[string]any{"key": "gh-push", "options": githubOptions(githubSecret)}, &ep)
	if strings.Contains(resp.String(), "Secret to Everybody") {
		t.Fatalf("POST answer shows the secret: %s", resp)
	}
	assertMasked(t, "POST", ep.Options, 1)

	// In force at once: the route the handler looks up verifies with it.
	if !e.routeVerifies("gh-push", githubSignature) {
		t.Error("GitHub's documented signature is refused by the entrypoint in force")
	}
	if e.routeVerifies("gh-push", githubSignature[:len(githubSignature)-1]+"8") {
		t.Error("a wrong signature passes the entrypoint in force")
	}

	// GET and list answers mask it too.
	for _, path := range []string{"/webhooker/webhooks/" + w.ID, "/webhooker/webhooks"} {
		r := e.must(http.StatusOK, "GET", path, nil, nil)
		if strings.Contains(r.String(), "Secret to Everybody") {
			t.Errorf("GET %s shows the secret: %s", path, r)
		}
		if !strings.Contains(r.String(), `"secrets":["(redacted)"]`) {
			t.Errorf("GET %s does not show the masked rule: %s", path, r)
		}
	}

	// Round trip: the masked options sent back, with a second secret added
	// (a rotation), keep the stored one.
	var patched entrypointOptionsJSON
	resp = e.must(http.StatusOK, "PATCH", base+"/"+ep.ID, map[string]any{"options": githubOptions(storage.RedactedValue, "new secret")}, &patched)
	if strings.Contains(resp.String(), "new secret") {
		t.Errorf("PATCH answer shows the secret: %s", resp)
	}
	assertMasked(t, "PATCH", patched.Options, 2)
	route, _ := e.data.Route("gh-push")
	if got := route.Entrypoint.Options.Verify[0].Secrets; len(got) != 2 || got[0] != githubSecret || got[1] != "new secret" {
		t.Errorf("secrets in force after the round trip = %q", got)
	}

	// A PATCH without options keeps them.
	e.must(http.StatusOK, "PATCH", base+"/"+ep.ID, map[string]any{"active": true}, nil)
	if !e.routeVerifies("gh-push", githubSignature) {
		t.Error("a PATCH without options dropped them")
	}

	// An event verified at the entrypoint shows the scheme in its detail.
	id := e.ingestVerified("gh-push", "github")
	var detail struct {
		Verified string `json:"verified"`
	}
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+w.ID+"/events/"+id, nil, &detail)
	if detail.Verified != "github" {
		t.Errorf("event detail verified = %q, want github", detail.Verified)
	}

	// {} clears them: the route checks nothing.
	var cleared entrypointOptionsJSON
	e.must(http.StatusOK, "PATCH", base+"/"+ep.ID, map[string]any{"options": map[string]any{}}, &cleared)
	if !cleared.Options.IsZero() {
		t.Errorf("options after {} = %+v", cleared.Options)
	}
	if route, _ := e.data.Route("gh-push"); route.Entrypoint.OptionsKey() != "" {
		t.Errorf("options in force after {} = %+v", route.Entrypoint.Options)
	}
}

// ingestVerified stores an event as the handler does once a request passed
// scheme at entrypoint key.
func (e *env) ingestVerified(key, scheme string) string {
	e.t.Helper()
	route, ok := e.data.Route(key)
	if !ok {
		e.t.Fatalf("no route for %q", key)
	}
	ev := &storage.Event{EntrypointID: route.Entrypoint.ID, EntrypointKey: key, Method: http.MethodPost,
		Path: "/hooks/" + key, Headers: http.Header{}, Body: []byte("Hello, World!"), Verified: scheme,
		RemoteAddr: "192.0.2.7:41000", ReceivedAt: time.Now()}
	if err := e.data.Ingest(e.t.Context(), route, ev); err != nil {
		e.t.Fatalf("ingest: %v", err)
	}
	return ev.ID
}

func TestEntrypointHandshakeMasked(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("meta")
	base := "/webhooker/webhooks/" + w.ID + "/entrypoints"
	var ep entrypointOptionsJSON
	e.must(http.StatusCreated, "POST", base, map[string]any{"options": map[string]any{
		"handshake": map[string]any{"name": "meta", "args": []string{"meta-verify-token"}}}}, &ep)
	if ep.Options.Handshake == nil || ep.Options.Handshake.Name != "meta" || len(ep.Options.Handshake.Args) != 1 || ep.Options.Handshake.Args[0] != storage.RedactedValue {
		t.Fatalf("handshake shown as %+v", ep.Options.Handshake)
	}
	// The mask sent back keeps the token, with a tolerance-free verify added.
	e.must(http.StatusOK, "PATCH", base+"/"+ep.ID, map[string]any{"options": map[string]any{
		"verify":    []map[string]any{{"scheme": "bearer", "secrets": []string{"tok"}}},
		"handshake": map[string]any{"name": "meta", "args": []string{storage.RedactedValue}}}}, nil)
	route, _ := e.data.Route(ep.Key)
	if hs := route.Entrypoint.Options.Handshake; hs == nil || len(hs.Args) != 1 || hs.Args[0] != "meta-verify-token" {
		t.Errorf("handshake in force = %+v", hs)
	}
	// A mask where nothing of that name is stored is refused.
	resp := e.call("PATCH", base+"/"+ep.ID, map[string]any{"options": map[string]any{
		"handshake": map[string]any{"name": "zoom", "args": []string{storage.RedactedValue}}}})
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "options.handshake") {
		t.Errorf("zoom with a mask: %d %s, want 400 naming options.handshake", resp.status, resp)
	}
}

func TestEntrypointOptionsRefused(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("hostile")
	base := "/webhooker/webhooks/" + w.ID + "/entrypoints"
	many := make([]map[string]any, 9)
	for i := range many {
		many[i] = map[string]any{"scheme": "bearer", "secrets": []string{"t"}}
	}
	for _, c := range []struct {
		name    string
		options any
		want    string
	}{
		{"options not an object", []any{}, "options"},
		{"unknown scheme", map[string]any{"verify": []map[string]any{{"scheme": "gitlub", "secrets": []string{"s3cr3t-value"}}}}, "options.verify[0]"},
		{"CR LF in a secret", githubOptions("s3cr3t\r\nX-Evil: 1"), "control character"},
		{"huge secret", githubOptions(strings.Repeat("s", 2000)), "options.verify[0]"},
		{"too many secrets", githubOptions("a", "b", "c", "d", "e", "f", "g", "h", "i"), "options.verify[0]"},
		{"too many rules", map[string]any{"verify": many}, "at most 8"},
		{"no secret", githubOptions(), "options.verify[0]"},
		{"mask with nothing stored", githubOptions(storage.RedactedValue), "(redacted)"},
		{"tolerance without a timestamped scheme", map[string]any{"verify": githubOptions("s")["verify"], "tolerance": "5m"}, "options.tolerance"},
		{"negative tolerance", map[string]any{"verify": []map[string]any{{"scheme": "stripe", "secrets": []string{"whsec_x"}}}, "tolerance": "-1m"}, "tolerance must not be negative"},
		{"tolerance not a duration", map[string]any{"tolerance": 5}, "tolerance"},
		{"unknown handshake", map[string]any{"handshake": map[string]any{"name": "myspace"}}, "options.handshake"},
		{"CR LF in a handshake token", map[string]any{"handshake": map[string]any{"name": "meta", "args": []string{"tok\r\nen"}}}, "options.handshake"},
		{"unknown field", map[string]any{"verfiy": []any{}}, "verfiy"},
	} {
		resp := e.call("POST", base, map[string]any{"options": c.options})
		if resp.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", c.name, resp.status, resp)
			continue
		}
		msg := resp.errorMessage(t)
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s: %q, want it to name %q", c.name, msg, c.want)
		}
		for _, secret := range []string{"s3cr3t", "sssssssss", "tok\r"} {
			if strings.Contains(msg, secret) {
				t.Errorf("%s: the error quotes the secret: %q", c.name, msg)
			}
		}
	}
	// Nothing refused was stored: the webhook keeps its default entrypoint only.
	var got webhookJSON
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+w.ID, nil, &got)
	if len(got.Entrypoints) != 1 {
		t.Errorf("entrypoints after the refusals = %+v, want the default one", got.Entrypoints)
	}
}

func TestTenantSetsEntrypointOptions(t *testing.T) {
	e := newEnv(t)
	_, k := e.createUser("alice")
	var w webhookJSON
	expect(t, e.as(k.Key, "POST", "/webhooker/webhooks", map[string]any{"name": "alices"}), http.StatusCreated, &w)
	var ep entrypointOptionsJSON
	expect(t, e.as(k.Key, "POST", "/webhooker/webhooks/"+w.ID+"/entrypoints", map[string]any{"options": githubOptions(githubSecret)}), http.StatusCreated, &ep)
	assertMasked(t, "tenant POST", ep.Options, 1)
	if !e.routeVerifies(ep.Key, githubSignature) {
		t.Error("the tenant's verify rule is not in force")
	}
	resp := e.as(k.Key, "GET", "/webhooker/webhooks/"+w.ID, nil)
	if resp.status != http.StatusOK || strings.Contains(resp.String(), "Secret to Everybody") {
		t.Errorf("tenant GET: %d %s", resp.status, resp)
	}
}
