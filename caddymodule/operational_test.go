package caddymodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/webhooker/caddy-webhooker/caddymodule"
)

// TestCaddyfileOperationalOptions adapts public_url, operational_webhook
// and metrics_per_target into the app's JSON.
func TestCaddyfileOperationalOptions(t *testing.T) {
	raw, err := adaptWebhooker(t, `{
	webhooker {
		public_url https://hooks.example.com/hooks/
		metrics_per_target off
		operational_webhook https://ops.example.com/alerts {
			signing_secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
			timeout 5s
			max_retries 3
			header X-Team ops
		}
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	var app caddymodule.App
	if err := json.Unmarshal(raw, &app); err != nil {
		t.Fatal(err)
	}
	ow := app.OperationalWebhook
	if app.PublicURL != "https://hooks.example.com/hooks/" || app.MetricsPerTarget == nil || *app.MetricsPerTarget ||
		ow == nil || ow.URL != "https://ops.example.com/alerts" || ow.Options.SigningSecret != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" ||
		time.Duration(ow.Options.Timeout) != 5*time.Second || ow.Options.MaxRetries == nil || *ow.Options.MaxRetries != 3 || ow.Options.Headers["X-Team"] != "ops" {
		t.Fatalf("adapted to %s", raw)
	}
}

// TestCaddyfileOperationalMistakesNameTheirLine: hostile or mistaken
// public_url, operational_webhook and metrics_per_target lines are refused
// at their file and line (the webhooker block's first line is line 3).
func TestCaddyfileOperationalMistakesNameTheirLine(t *testing.T) {
	const ow = "operational_webhook https://ops.example.com/a"
	for _, c := range []struct {
		name  string
		block string
		line  int
		want  string
	}{
		{"public_url without a value", "public_url", 3, "wrong argument count"},
		{"public_url with two values", "public_url https://a.example https://b.example", 3, "wrong argument count"},
		{"public_url twice", "public_url https://a.example\npublic_url https://b.example", 4, "public_url is set twice"},
		{"public_url relative", "public_url /hooks/", 3, "want an absolute http:// or https:// URL"},
		{"public_url another scheme", "public_url javascript:alert(1)", 3, "want an absolute http:// or https:// URL"},
		{"public_url ftp", "public_url ftp://files.example.com/", 3, "want an absolute http:// or https:// URL"},
		{"public_url without a host", "public_url https:///hooks", 3, "want an absolute http:// or https:// URL"},
		{"public_url with a query", "public_url https://a.example/hooks/?key=", 3, "must have no query (?) or fragment (#)"},
		{"public_url with an empty query", "public_url https://a.example/hooks/?", 3, "must have no query (?) or fragment (#)"},
		{"public_url with a fragment", "public_url https://a.example/hooks/#x", 3, "must have no query (?) or fragment (#)"},
		{"public_url with credentials", "public_url https://me:pw@a.example/", 3, "must not hold credentials"},
		{"public_url with a control character", "public_url \"https://a.example/\x7f\"", 3, "invalid control character in URL"},
		{"public_url with a space in the host", "public_url \"https://a b.example/\"", 3, "invalid character"},
		{"operational_webhook without a url", "operational_webhook", 3, "operational_webhook: want <url>"},
		{"operational_webhook with two urls", ow + " https://b.example/", 3, "operational_webhook: want <url>"},
		{"operational_webhook twice", ow + "\n" + ow, 4, "operational_webhook is set twice"},
		{"operational_webhook relative", "operational_webhook /alerts", 3, `operational_webhook: url "/alerts" must be an absolute http:// or https:// URL`},
		{"operational_webhook with credentials", "operational_webhook https://u:p@ops.example.com/", 3, "operational_webhook: url https://u:xxxxx@ops.example.com/ holds credentials"},
		{"operational_webhook too long", "operational_webhook https://ops.example.com/" + strings.Repeat("a", 4100), 3, "operational_webhook: url: 4124 bytes, at most 4096"},
		{"operational_webhook timeout under the bound", ow + " {\n\ttimeout 1ns\n}", 4, "operational_webhook: timeout 1ns is under the least allowed, 10ms (operator limits)"},
		{"operational_webhook timeout twice", ow + " {\n\ttimeout 1s\n\ttimeout 2s\n}", 5, "operational_webhook: timeout is set twice"},
		{"operational_webhook bad signing secret", ow + " {\n\tsigning_secret hunter2\n}", 4, `want "whsec_" and the base64 of a key`},
		{"operational_webhook refused header", ow + " {\n\theader Webhooker-Via x\n}", 4, "header Webhooker-Via cannot be configured"},
		{"operational_webhook disabled", ow + " {\n\tdisabled\n}", 4, "operational_webhook: disabled: leave the operational_webhook out instead"},
		{"operational_webhook unknown option", ow + " {\n\tretry_forever\n}", 4, `operational_webhook: unrecognized option "retry_forever"`},
		{"operational_webhook backoff out of order", ow + " {\n\tbackoff 2m 1m\n}", 4, "backoff_initial 2m0s is over backoff_max 1m0s"},
		{"operational_webhook denied by a policy given after it", "operational_webhook http://10.1.2.3/alerts\ntarget_policy {\n\tdeny 10.0.0.0/8\n}", 3,
			"operational_webhook: target policy: 10.1.2.3 is in the denied range 10.0.0.0/8"},
		{"metrics_per_target unknown", "metrics_per_target sometimes", 3, "metrics_per_target: want on or off"},
		{"metrics_per_target without a value", "metrics_per_target", 3, "metrics_per_target: want on or off"},
		{"metrics_per_target twice", "metrics_per_target on\nmetrics_per_target off", 4, "metrics_per_target is set twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := adaptWebhooker(t, "{\n\twebhooker {\n"+c.block+"\n\t}\n}\n")
			if err == nil {
				t.Fatalf("adapted without an error")
			}
			t.Logf("%s", err)
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) {
				t.Errorf("the error does not say %q", c.want)
			}
			if at := fmt.Sprintf("Caddyfile:%d", c.line); !strings.HasSuffix(err.Error(), ", at "+at) {
				t.Errorf("the error is not at %s", at)
			}
		})
	}
}

// TestJSONOperationalSameChecks: a JSON config gets the same checks from
// Provision.
func TestJSONOperationalSameChecks(t *testing.T) {
	for _, c := range []struct{ name, config, want string }{
		{"public_url relative", `{"public_url":"/hooks/"}`, "want an absolute http:// or https:// URL"},
		{"public_url with a query", `{"public_url":"https://a.example/?x=1"}`, "must have no query"},
		{"operational_webhook without a url", `{"operational_webhook":{}}`, "operational_webhook: url \"\" must be an absolute"},
		{"operational_webhook timeout", `{"operational_webhook":{"url":"https://ops.example.com/","options":{"timeout":"1ns"}}}`,
			"operational_webhook: timeout 1ns is under the least allowed"},
		{"operational_webhook denied", `{"target_policy":{"deny":["10.0.0.0/8"]},"operational_webhook":{"url":"http://10.9.9.9/"}}`,
			"operational_webhook: target policy: 10.9.9.9 is in the denied range 10.0.0.0/8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var app caddymodule.App
			if err := caddy.StrictUnmarshalJSON([]byte(c.config), &app); err != nil {
				t.Fatal(err)
			}
			app.DataDir = t.TempDir()
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := app.Provision(ctx)
			_ = app.Cleanup()
			t.Logf("%v", err)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

// TestOperationalWebhookNeverTheAdminEndpoint: the admin endpoint, known
// only to the config in force, is refused as the operational webhook.
func TestOperationalWebhookNeverTheAdminEndpoint(t *testing.T) {
	g := startGateway(t, "")
	for _, u := range []string{"http://127.0.0.1:2999/load", "http://localhost:2999/stop"} {
		status, body := loadConfig(t, caddyfile(g.dataDir, "\t\toperational_webhook "+u), "text/caddyfile")
		if status != http.StatusBadRequest || !strings.Contains(body, "admin endpoint") || !strings.Contains(body, "operational_webhook") {
			t.Errorf("operational_webhook %s: %d %s, want 400 naming the admin endpoint", u, status, body)
		}
	}
}
