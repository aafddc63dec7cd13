package admin_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// rate_limit and max_in_flight through the API: created, read back,
// changed and removed; out of bounds a 400 naming the option and the bound,
// tighter for a tenant, as the other numeric options.
func TestTargetRateLimitThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	key, w := e.tenantWebhook("paced")
	targets := "/webhooker/webhooks/" + w.ID + "/targets"
	target := func(options map[string]any) map[string]any {
		return map[string]any{"name": "t", "type": "http", "url": "https://receiver.example/hook", "options": options}
	}
	for _, tc := range []struct {
		options map[string]any
		want    string
	}{
		{map[string]any{"rate_limit": map[string]any{"events": 0, "window": "1s"}}, "rate_limit events 0: want 1 to 10000 (tenant limits)"},
		{map[string]any{"rate_limit": map[string]any{"events": 10001, "window": "1s"}}, "rate_limit events 10001: want 1 to 10000 (tenant limits)"},
		{map[string]any{"rate_limit": map[string]any{"events": 5, "window": "10ms"}}, "rate_limit window 10ms: want 1s to 1h0m0s"},
		{map[string]any{"rate_limit": map[string]any{"events": 5}}, "rate_limit window 0s: want 1s to 1h0m0s"},
		{map[string]any{"rate_limit": map[string]any{"events": 5, "window": 5}}, "duration is a string"},
		{map[string]any{"max_in_flight": 0}, "max_in_flight 0: want 1 to 64 (tenant limits)"},
		{map[string]any{"max_in_flight": 65}, "max_in_flight 65: want 1 to 64 (tenant limits)"},
		{map[string]any{"max_in_flight": -1}, "max_in_flight -1: want 1 to 64"},
	} {
		resp := e.as(key, "POST", targets, target(tc.options))
		if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), tc.want) {
			t.Errorf("tenant target with %v: %d %s, want 400 saying %q", tc.options, resp.status, resp, tc.want)
		}
	}

	var tg targetJSON
	expect(t, e.as(key, "POST", targets, target(map[string]any{
		"rate_limit": map[string]any{"events": 5000, "window": "1m"}, "max_in_flight": 4})), http.StatusCreated, &tg)
	var wh webhookJSON
	expect(t, e.as(key, "GET", "/webhooker/webhooks/"+w.ID, nil), http.StatusOK, &wh)
	if len(wh.Targets) != 1 {
		t.Fatalf("webhook read back with %d targets, want 1", len(wh.Targets))
	}
	read := wh.Targets[0]
	if r := read.Options.RateLimit; r == nil || r.Events != 5000 || time.Duration(r.Window) != time.Minute {
		t.Errorf("rate_limit read back as %+v, want 5000 per 1m", r)
	}
	if n := read.Options.MaxInFlight; n == nil || *n != 4 {
		t.Errorf("max_in_flight read back as %v, want 4", n)
	}
	// A change replaces the options; without them the defaults apply.
	expect(t, e.as(key, "PATCH", targets+"/"+tg.ID, map[string]any{"options": map[string]any{
		"rate_limit": map[string]any{"events": 50, "window": "1s"}}}), http.StatusOK, &read)
	if r := read.Options.RateLimit; r == nil || r.Events != 50 || read.Options.MaxInFlight != nil {
		t.Errorf("after the change: rate_limit %+v, max_in_flight %v; want 50 per 1s and none", r, read.Options.MaxInFlight)
	}
	resp := e.as(key, "PATCH", targets+"/"+tg.ID, map[string]any{"options": map[string]any{"max_in_flight": 1000}})
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "max_in_flight 1000: want 1 to 64 (tenant limits)") {
		t.Errorf("tenant max_in_flight 1000 in a change: %d %s, want 400", resp.status, resp)
	}

	// The operator's limits are wider, on the same webhook.
	e.must(http.StatusOK, "PATCH", targets+"/"+tg.ID, map[string]any{"options": map[string]any{
		"rate_limit": map[string]any{"events": 1000000, "window": "1h"}, "max_in_flight": 1000}}, &read)
	resp = e.call("PATCH", targets+"/"+tg.ID, map[string]any{"options": map[string]any{"max_in_flight": 5000}})
	if resp.status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "max_in_flight 5000: want 1 to 4096 (operator limits)") {
		t.Errorf("operator max_in_flight 5000: %d %s, want 400 naming the operator's bound", resp.status, resp)
	}
}
