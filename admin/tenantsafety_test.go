package admin_test

// The API's side of tenant safety (issue 9): bounds tighter for tenants,
// quotas, write-only secrets, input checks, generated keys, declared keys
// that win, and the target URL policy hook. Each test replays an attack.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// tenantWebhook makes a user with a key and, with it, a webhook.
func (e *env) tenantWebhook(name string) (key string, w webhookJSON) {
	e.t.Helper()
	_, k := e.createUser(name + "-owner")
	expect(e.t, e.as(k.Key, "POST", "/webhooker/webhooks", map[string]any{"name": name}), http.StatusCreated, &w)
	return k.Key, w
}

// Finding 9 and 10: a tarpit timeout, a 1ns backoff, endless retries and an
// overflowing retention are refused to a tenant, each naming the option, the
// value and the bound; the operator, on the same tenant webhook, gets the
// operator's wider limits.
func TestTenantOptionsBounded(t *testing.T) {
	e := newEnv(t)
	key, w := e.tenantWebhook("bounded")
	targets := "/webhooker/webhooks/" + w.ID + "/targets"
	target := func(options map[string]any) map[string]any {
		return map[string]any{"name": "t", "type": "http", "url": "https://receiver.example/hook", "options": options}
	}
	for _, tc := range []struct {
		options map[string]any
		want    string
	}{
		{map[string]any{"timeout": "1000000h"}, "timeout 1000000h0m0s is over the most allowed, 1m0s (tenant limits)"},
		{map[string]any{"backoff_initial": "1ns"}, "backoff_initial 1ns is under the least allowed, 1s (tenant limits)"},
		{map[string]any{"max_retries": 1000000}, "max_retries 1000000 is over the most allowed, 20 (tenant limits)"},
		{map[string]any{"backoff_max": "720h"}, "backoff_max 720h0m0s is over the most allowed, 24h0m0s (tenant limits)"},
		{map[string]any{"timeout": "-1s"}, "timeout -1s is negative"},
	} {
		resp := e.as(key, "POST", targets, target(tc.options))
		if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), tc.want) {
			t.Errorf("tenant target with %v: %d %s, want 400 saying %q", tc.options, resp.status, resp, tc.want)
		}
	}
	resp := e.as(key, "PATCH", "/webhooker/webhooks/"+w.ID, map[string]any{"retention_days": 999999})
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "retention_days 999999 is over the most allowed, 36500") {
		t.Errorf("tenant retention_days 999999: %d %s, want 400 naming the bound", resp.status, resp)
	}

	// The admin endpoint uses the operator's limits, even here.
	var slow targetJSON
	e.must(http.StatusCreated, "POST", targets, target(map[string]any{"timeout": "5m", "max_retries": 50}), &slow)
	resp = e.call("POST", targets, map[string]any{"name": "u", "type": "http", "url": "https://receiver.example/hook",
		"options": map[string]any{"timeout": "1000000h"}})
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "over the most allowed, 10m0s (operator limits)") {
		t.Errorf("operator timeout 1000000h: %d %s, want 400 naming the operator's bound", resp.status, resp)
	}
	// ...and the tenant can still disable what the operator set up wider.
	expect(t, e.as(key, "PATCH", targets+"/"+slow.ID, map[string]any{"active": false}), http.StatusOK, nil)
}

// Finding 17: one key created 300 webhooks. 20 concurrent creates at a
// quota of 5 end with exactly 5, the others 403 saying which quota.
func TestTenantQuotasHoldUnderConcurrentCreates(t *testing.T) {
	e := newEnvWith(t, func(b *admin.Backend) { b.Quotas = storage.Quotas{Webhooks: 5, Targets: 2} })
	u, k := e.createUser("greedy")

	statuses := make(chan response, 20)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- serve(t, e.tenant, req{method: "POST", path: "/webhooker/webhooks",
				body: map[string]any{"name": fmt.Sprintf("w%d", i)}, key: k.Key})
		}()
	}
	wg.Wait()
	close(statuses)
	created, refused := 0, 0
	want := fmt.Sprintf("quota: user %s has 5 webhooks, the most allowed (tenant_quotas webhooks)", u.ID)
	for resp := range statuses {
		switch resp.status {
		case http.StatusCreated:
			created++
		case http.StatusForbidden:
			refused++
			if msg := resp.errorMessage(t); !strings.Contains(msg, want) {
				t.Errorf("refusal %q, want it to say %q", msg, want)
			}
		default:
			t.Errorf("create: %d %s", resp.status, resp)
		}
	}
	if created != 5 || refused != 15 {
		t.Errorf("created %d, refused %d; want 5 and 15", created, refused)
	}
	var list struct{ Webhooks []webhookJSON }
	expect(t, e.as(k.Key, "GET", "/webhooker/webhooks", nil), http.StatusOK, &list)
	if len(list.Webhooks) != 5 {
		t.Errorf("the tenant has %d webhooks, want 5", len(list.Webhooks))
	}

	// Targets count over all of the user's webhooks.
	for i, w := range list.Webhooks[:2] {
		expect(t, e.as(k.Key, "POST", "/webhooker/webhooks/"+w.ID+"/targets", map[string]any{"name": fmt.Sprint("t", i), "type": "database"}), http.StatusCreated, nil)
	}
	resp := e.as(k.Key, "POST", "/webhooker/webhooks/"+list.Webhooks[2].ID+"/targets", map[string]any{"name": "t3", "type": "database"})
	if resp.status != http.StatusForbidden || !strings.Contains(resp.errorMessage(t), "has 2 targets, the most allowed (tenant_quotas targets)") {
		t.Errorf("third target at quota 2: %d %s, want 403", resp.status, resp)
	}
	// The operator is not held to the tenant's quotas.
	e.must(http.StatusCreated, "POST", "/webhooker/webhooks", map[string]any{"name": "granted", "user_id": u.ID}, nil)
}

// Finding 14: target header values (the receiver's credentials) were shown
// on read. Now they are masked everywhere the API shows a target, and a
// client that only ever saw the mask can change a target without losing
// them: the receiver still gets the stored value, byte for byte.
func TestTargetHeaderValuesAreWriteOnly(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t)
	w := e.createWebhook("crm")
	targets := "/webhooker/webhooks/" + w.ID + "/targets"
	const secret = "Bearer s3cret-for-the-receiver"
	created := e.must(http.StatusCreated, "POST", targets, map[string]any{"name": "crm", "type": "http", "url": rc.URL,
		"options": map[string]any{"max_retries": 0, "headers": map[string]string{"Authorization": secret, "X-Env": "prod"}}}, nil)
	var tg targetJSON
	expect(t, created, http.StatusCreated, &tg)
	reads := []response{created,
		e.call("GET", "/webhooker/webhooks/"+w.ID, nil),
		e.call("GET", "/webhooker/webhooks", nil),
		e.call("GET", "/webhooker/webhooks?stats=true", nil)}
	for _, resp := range reads {
		if strings.Contains(resp.String(), "s3cret") || strings.Contains(resp.String(), "prod") {
			t.Errorf("an answer shows a header value: %s", resp)
		}
	}
	if tg.Options.Headers["Authorization"] != "(redacted)" || len(tg.Options.Headers) != 2 {
		t.Errorf("headers shown as %v, want both names with the mask", tg.Options.Headers)
	}

	delivered := func(body string) hit {
		t.Helper()
		e.ingest(w.Entrypoints[0].Key, incoming{body: []byte(body), contentType: "application/json"})
		eventually(t, "delivery of "+body, func() (bool, string) { return rc.count(body) == 1, fmt.Sprint(rc.received()) })
		for _, h := range rc.received() {
			if h.body == body {
				return h
			}
		}
		panic("unreachable")
	}

	// PATCH options without "headers": kept.
	e.must(http.StatusOK, "PATCH", targets+"/"+tg.ID, map[string]any{"options": map[string]any{"max_retries": 0, "timeout": "5s"}}, nil)
	if h := delivered(`{"n":1}`); h.header.Get("Authorization") != secret || h.header.Get("X-Env") != "prod" {
		t.Errorf("after a PATCH without headers the receiver got %v", h.header)
	}
	// Sending back what GET showed (the UI's edit form does): kept.
	var shown webhookJSON
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+w.ID, nil, &shown)
	e.must(http.StatusOK, "PATCH", targets+"/"+tg.ID, map[string]any{"options": shown.Targets[0].Options}, nil)
	if h := delivered(`{"n":2}`); h.header.Get("Authorization") != secret || h.header.Get("X-Env") != "prod" {
		t.Errorf("after a PATCH with the masked headers the receiver got %v", h.header)
	}
	// The mask for one, a new value for the other.
	e.must(http.StatusOK, "PATCH", targets+"/"+tg.ID, map[string]any{"options": map[string]any{"max_retries": 0,
		"headers": map[string]string{"Authorization": "(redacted)", "X-Env": "staging"}}}, nil)
	if h := delivered(`{"n":3}`); h.header.Get("Authorization") != secret || h.header.Get("X-Env") != "staging" {
		t.Errorf("after a PATCH of one header the receiver got %v", h.header)
	}
	// {} clears them.
	e.must(http.StatusOK, "PATCH", targets+"/"+tg.ID, map[string]any{"options": map[string]any{"max_retries": 0, "headers": map[string]string{}}}, nil)
	if h := delivered(`{"n":4}`); h.header.Get("Authorization") != "" || h.header.Get("X-Env") != "" {
		t.Errorf("after clearing the headers the receiver got %v", h.header)
	}
	// The mask for a header the target does not have is refused.
	resp := e.call("PATCH", targets+"/"+tg.ID, map[string]any{"options": map[string]any{"headers": map[string]string{"Authorization": "(redacted)"}}})
	if resp.status != http.StatusBadRequest {
		t.Errorf("the mask for a header never stored: %d %s, want 400", resp.status, resp)
	}
}

// Finding 14, the sender's side: credential headers of received events are
// masked in the event detail, and still stored and forwarded as received.
func TestEventCredentialHeadersAreMasked(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t)
	w := e.createWebhook("inbound")
	e.addTarget(w.ID, map[string]any{"name": "next", "type": "http", "url": rc.URL})
	sent := http.Header{
		"Authorization":          {"Bearer provider-token"},
		"Cookie":                 {"session=abc"},
		"X-Api-Key":              {"k1", "k2"},
		"X-Auth-Token":           {"t"},
		"X-Shopify-Access-Token": {"shpat"},
		"Stripe-Secret":          {"whsec"},
		"X-Github-Event":         {"push"},
		"X-Hub-Signature-256":    {"sha256=ab12"},
	}
	id := e.ingest(w.Entrypoints[0].Key, incoming{body: []byte(`{"ok":1}`), contentType: "application/json", header: sent})

	var ev eventJSON
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+w.ID+"/events/"+id, nil, &ev)
	for name, values := range sent {
		got := ev.Headers[name]
		masked := name != "X-Github-Event" && name != "X-Hub-Signature-256"
		for i, v := range values {
			want := v
			if masked {
				want = "(redacted)"
			}
			if len(got) != len(values) || got[i] != want {
				t.Errorf("event detail shows %s as %q, want %d values like %q", name, got, len(values), want)
				break
			}
		}
	}
	for _, secret := range []string{"provider-token", "session=abc", "shpat", "whsec", `"k1"`} {
		if resp := e.call("GET", "/webhooker/webhooks/"+w.ID+"/events/"+id, nil); strings.Contains(resp.String(), secret) {
			t.Errorf("event detail shows %q", secret)
		}
	}

	// Stored and forwarded byte for byte.
	err := e.events.With(context.Background(), w.ID, func(db *storage.WebhookDB) error {
		stored, err := db.Event(context.Background(), id)
		if err != nil {
			return err
		}
		if stored.Headers.Get("Authorization") != "Bearer provider-token" || len(stored.Headers["X-Api-Key"]) != 2 {
			return errors.New(fmt.Sprint("stored headers changed: ", stored.Headers))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	eventually(t, "forwarded", func() (bool, string) { return len(rc.received()) == 1, fmt.Sprint(rc.received()) })
	if h := rc.received()[0].header; h.Get("Authorization") != "Bearer provider-token" || h.Get("Cookie") != "session=abc" || h.Get("X-Shopify-Access-Token") != "shpat" {
		t.Errorf("the receiver got %v, want the credentials as sent", h)
	}
}

// Findings 15 and 16: CR/LF in a header value, credentials in a URL and
// headers the client owns are refused at the API, tenant or operator.
func TestTargetInputRefused(t *testing.T) {
	e := newEnv(t)
	key, w := e.tenantWebhook("input")
	targets := "/webhooker/webhooks/" + w.ID + "/targets"
	for _, tc := range []struct {
		target map[string]any
		want   string
	}{
		{map[string]any{"name": "x", "type": "http", "url": "https://r.example/", "options": map[string]any{"headers": map[string]string{"X": "v\r\nY: z"}}},
			"header X: the value holds a control character"},
		{map[string]any{"name": "x", "type": "http", "url": "http://u:pw@r.example/x?token=Q"}, "put credentials in a header"},
		{map[string]any{"name": "x", "type": "http", "url": "https://r.example/", "options": map[string]any{"headers": map[string]string{"Host": "127.0.0.1:2019"}}},
			"header Host cannot be configured"},
		{map[string]any{"name": "x", "type": "http", "url": "https://r.example/", "options": map[string]any{"headers": map[string]string{"Webhooker-Via": ""}}},
			"header Webhooker-Via cannot be configured"},
	} {
		for who, resp := range map[string]response{
			"tenant":   e.as(key, "POST", targets, tc.target),
			"operator": e.call("POST", targets, tc.target),
		} {
			if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), tc.want) {
				t.Errorf("%s adds %v: %d %s, want 400 saying %q", who, tc.target, resp.status, resp, tc.want)
			}
			if strings.Contains(resp.String(), "pw@") {
				t.Errorf("the refusal echoes the URL's password: %s", resp)
			}
		}
	}
}

// Finding 7: a tenant chose the key the operator was about to declare. A
// tenant's keys are generated, never chosen.
func TestTenantEntrypointKeysAreGenerated(t *testing.T) {
	e := newEnv(t)
	key, w := e.tenantWebhook("keys")
	if !generatedKey.MatchString(w.Entrypoints[0].Key) {
		t.Errorf("default entrypoint key %q, want a generated one", w.Entrypoints[0].Key)
	}
	base := "/webhooker/webhooks/" + w.ID + "/entrypoints"
	const want = "entrypoint keys of API-key holders are generated"
	for _, body := range []map[string]any{{"key": "future-key"}, {"key": ""}} {
		if resp := e.as(key, "POST", base, body); resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), want) {
			t.Errorf("tenant POST %v: %d %s, want 400 saying %q", body, resp.status, resp, want)
		}
	}
	if resp := e.as(key, "PATCH", base+"/"+w.Entrypoints[0].ID, map[string]any{"key": "future-key"}); resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), want) {
		t.Errorf("tenant PATCH key: %d %s, want 400 saying %q", resp.status, resp, want)
	}
	var ep entrypointJSON
	expect(t, e.as(key, "POST", base, nil), http.StatusCreated, &ep)
	if !generatedKey.MatchString(ep.Key) {
		t.Errorf("tenant entrypoint key %q, want a generated one", ep.Key)
	}
	// The operator still chooses keys, on any webhook.
	e.must(http.StatusCreated, "POST", base, map[string]any{"key": "operator-chosen"}, nil)
}

// Finding 7, the other half: the Caddyfile declares a key an API
// entrypoint holds. The declaration wins; the tenant sees their entrypoint
// disabled and displaced, and cannot enable it while the key is declared.
func TestDeclaredKeyDisplacesTenantEntrypoint(t *testing.T) {
	e := newEnv(t)
	key, w := e.tenantWebhook("squatter")
	var squat entrypointJSON
	e.must(http.StatusCreated, "POST", "/webhooker/webhooks/"+w.ID+"/entrypoints", map[string]any{"key": "future-key"}, &squat)

	id := storage.DeclaredWebhookID("owner")
	declared := &storage.Webhook{ID: id, Name: "owner", Source: storage.SourceCaddyfile, Active: true,
		Entrypoints: []storage.Entrypoint{{ID: storage.DeclaredEntrypointID(id, "future-key"), WebhookID: id, Key: "future-key", Active: true}},
		Targets:     []storage.Target{}}
	clashes, err := e.main.SyncDeclared(context.Background(), []*storage.Webhook{declared})
	if err != nil || len(clashes) != 1 || clashes[0].EntrypointID != squat.ID {
		t.Fatalf("SyncDeclared = %+v, %v; want one clash naming the tenant's entrypoint", clashes, err)
	}
	var got struct {
		Entrypoints []struct {
			ID        string `json:"id"`
			Key       string `json:"key"`
			Active    bool   `json:"active"`
			Displaced bool   `json:"displaced"`
		} `json:"entrypoints"`
	}
	expect(t, e.as(key, "GET", "/webhooker/webhooks/"+w.ID, nil), http.StatusOK, &got)
	for _, ep := range got.Entrypoints {
		if ep.ID == squat.ID && (ep.Active || !ep.Displaced || ep.Key != "future-key") {
			t.Errorf("the tenant sees %+v, want it disabled and displaced", ep)
		}
	}
	resp := e.as(key, "PATCH", "/webhooker/webhooks/"+w.ID+"/entrypoints/"+squat.ID, map[string]any{"active": true})
	if resp.status != http.StatusConflict {
		t.Errorf("tenant enabling the displaced entrypoint: %d %s, want 409", resp.status, resp)
	}
	snap, err := e.main.LoadSnapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := snap.Route("future-key"); !ok || r.Webhook.ID != id {
		t.Errorf("future-key routes to %+v, want the declared webhook", r.Webhook)
	}
}

// Finding 1: targets aimed at the admin endpoint or metadata. The API asks
// the Backend's policy on create and on a URL change, as a tenant for any
// target of a user's webhook (whoever makes it), and answers its refusal 400.
func TestCheckTargetURLOnCreateAndURLChange(t *testing.T) {
	type call struct {
		url    string
		tenant bool
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	e := newEnvWith(t, func(b *admin.Backend) {
		b.CheckTargetURL = func(_ context.Context, rawURL string, tenant bool) error {
			mu.Lock()
			calls = append(calls, call{rawURL, tenant})
			mu.Unlock()
			if strings.Contains(rawURL, "169.254.169.254") || (tenant && strings.Contains(rawURL, "127.0.0.1")) {
				return errors.New("target policy: refused")
			}
			return nil
		}
	})
	taken := func() []call {
		mu.Lock()
		defer mu.Unlock()
		out := calls
		calls = nil
		return out
	}
	key, tw := e.tenantWebhook("tenants")
	ow := e.createWebhook("operators")
	tBase, oBase := "/webhooker/webhooks/"+tw.ID+"/targets", "/webhooker/webhooks/"+ow.ID+"/targets"

	resp := e.as(key, "POST", tBase, map[string]any{"name": "meta", "type": "http", "url": "http://169.254.169.254/latest/meta-data/"})
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "target policy: refused") {
		t.Errorf("tenant target on the metadata address: %d %s, want 400 with the policy's reason", resp.status, resp)
	}
	// The operator on a tenant's webhook is held to the tenant's rules.
	if resp := e.call("POST", tBase, map[string]any{"name": "lo", "type": "http", "url": "http://127.0.0.1:2019/load"}); resp.status != http.StatusBadRequest {
		t.Errorf("operator target on loopback, on a tenant's webhook: %d %s, want 400", resp.status, resp)
	}
	var ot targetJSON
	e.must(http.StatusCreated, "POST", oBase, map[string]any{"name": "lo", "type": "http", "url": "http://127.0.0.1:9/in"}, &ot)
	var tt targetJSON
	expect(t, e.as(key, "POST", tBase, map[string]any{"name": "ok", "type": "http", "url": "https://receiver.example/in"}), http.StatusCreated, &tt)
	e.must(http.StatusCreated, "POST", oBase, map[string]any{"name": "keep", "type": "database"}, nil)
	want := []call{{"http://169.254.169.254/latest/meta-data/", true}, {"http://127.0.0.1:2019/load", true},
		{"http://127.0.0.1:9/in", false}, {"https://receiver.example/in", true}}
	if got := taken(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("checks on create = %v, want %v (none for a database target)", got, want)
	}

	// A PATCH that keeps the URL is not checked; one that changes it is.
	expect(t, e.as(key, "PATCH", tBase+"/"+tt.ID, map[string]any{"url": "https://receiver.example/in", "active": false}), http.StatusOK, nil)
	expect(t, e.as(key, "PATCH", tBase+"/"+tt.ID, map[string]any{"active": true}), http.StatusOK, nil)
	resp = e.as(key, "PATCH", tBase+"/"+tt.ID, map[string]any{"url": "http://127.0.0.1:2019/stop"})
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "target policy") {
		t.Errorf("tenant PATCH to loopback: %d %s, want 400", resp.status, resp)
	}
	want = []call{{"http://127.0.0.1:2019/stop", true}}
	if got := taken(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("checks on PATCH = %v, want %v", got, want)
	}
	var got webhookJSON
	expect(t, e.as(key, "GET", "/webhooker/webhooks/"+tw.ID, nil), http.StatusOK, &got)
	if len(got.Targets) != 1 || got.Targets[0].URL != "https://receiver.example/in" {
		t.Errorf("targets after the refusals = %+v", got.Targets)
	}
}

// Finding 1 with the gateway's real policy: each URL the probe got accepted
// (201) is refused at creation to a tenant, and the admin endpoint to the
// operator too.
func TestTargetPolicyRefusesTheProbesURLs(t *testing.T) {
	policy, err := engine.NewTargetPolicy(engine.PolicyConfig{AdminEndpoints: []string{"localhost:2019"}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(b *admin.Backend) { b.CheckTargetURL = policy.CheckURL })
	key, tw := e.tenantWebhook("prober")
	for _, u := range []string{
		"http://169.254.169.254/latest/meta-data/",
		"http://[::1]:2019/load",
		"http://0.0.0.0:2019/",
		"http://localhost:2019/stop",
		"http://2130706433:2019/",
		"http://10.0.0.5/internal",
	} {
		resp := e.as(key, "POST", "/webhooker/webhooks/"+tw.ID+"/targets", map[string]any{"name": "probe", "type": "http", "url": u})
		if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "target policy") {
			t.Errorf("tenant target %s: %d %s, want 400 from the target policy", u, resp.status, resp)
		}
	}
	ow := e.createWebhook("operators")
	resp := e.call("POST", "/webhooker/webhooks/"+ow.ID+"/targets", map[string]any{"name": "admin", "type": "http", "url": "http://127.0.0.1:2019/config/"})
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "target policy") {
		t.Errorf("operator target on the admin endpoint: %d %s, want 400", resp.status, resp)
	}
	e.must(http.StatusCreated, "POST", "/webhooker/webhooks/"+ow.ID+"/targets", map[string]any{"name": "app", "type": "http", "url": "http://10.0.0.5:8080/in"}, nil)
	var got webhookJSON
	expect(t, e.as(key, "GET", "/webhooker/webhooks/"+tw.ID, nil), http.StatusOK, &got)
	if len(got.Targets) != 0 {
		t.Errorf("the tenant's webhook has targets %+v, want none", got.Targets)
	}
}
