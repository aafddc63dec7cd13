package caddymodule_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/webhooker/caddy-webhooker/caddymodule"
	"github.com/webhooker/caddy-webhooker/storage"
)

// adaptWebhooker adapts a Caddyfile whose global options hold block, as
// `caddy adapt` does, and returns the webhooker app's JSON, or the error.
func adaptWebhooker(t *testing.T, block string) (json.RawMessage, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(block), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("adapted config: %v\n%s", err, out)
	}
	return cfg.Apps["webhooker"], nil
}

const shapeTargets = `
		webhook shaped {
			entrypoint shaped-in
			target ci http http://127.0.0.1:9/hook disabled {
				max_retries 3
				timeout     5s
				backoff     250ms 1m
				header      X-Token s3cret
				breaker     4 30s
			}
			target archive database
		}`

// TestTargetJSONShape checks that a target has one shape in Caddy's JSON
// config and in the admin API: the Caddyfile adapts to name, type, url and
// options with durations as strings; that JSON is what the API shows for
// the declared target (header values aside, and "disabled" for "active");
// it creates an API target as is; and a bare number as a duration is
// refused by both, naming the field.
func TestTargetJSONShape(t *testing.T) {
	raw, err := adaptWebhooker(t, "{\n\twebhooker {\n"+shapeTargets+"\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	var app struct {
		Webhooks []struct {
			Targets []json.RawMessage `json:"targets"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(raw, &app); err != nil || len(app.Webhooks) != 1 || len(app.Webhooks[0].Targets) != 2 {
		t.Fatalf("adapted app %s: %v", raw, err)
	}
	ci, archive := app.Webhooks[0].Targets[0], app.Webhooks[0].Targets[1]
	wantCI := `{"name":"ci","type":"http","url":"http://127.0.0.1:9/hook","options":{"max_retries":3,"timeout":"5s",` +
		`"backoff_initial":"250ms","backoff_max":"1m0s","headers":{"X-Token":"s3cret"},"breaker_threshold":4,` +
		`"breaker_cooldown":"30s"},"disabled":true}`
	if string(ci) != wantCI {
		t.Errorf("ci adapts to\n%s\nwant\n%s", ci, wantCI)
	}
	if want := `{"name":"archive","type":"database"}`; string(archive) != want {
		t.Errorf("archive adapts to %s, want %s", archive, want)
	}
	t.Logf("Caddy JSON of a target: %s", ci)

	// The app reads its own adapted JSON, strictly as Caddy does.
	var decoded caddymodule.App
	if err := caddy.StrictUnmarshalJSON(raw, &decoded); err != nil {
		t.Fatalf("the app does not read its adapted JSON: %v", err)
	}

	g := startGateway(t, shapeTargets)
	var list struct {
		Webhooks []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"webhooks"`
	}
	g.admin("GET", "/webhooks", nil).decode(t, http.StatusOK, &list)
	var declaredID string
	for _, w := range list.Webhooks {
		if w.Name == "shaped" {
			declaredID = w.ID
		}
	}
	var shown struct {
		Targets []map[string]json.RawMessage `json:"targets"`
	}
	g.admin("GET", "/webhooks/"+declaredID, nil).decode(t, http.StatusOK, &shown)
	var caddyJSON map[string]json.RawMessage
	if err := json.Unmarshal(ci, &caddyJSON); err != nil {
		t.Fatal(err)
	}
	var apiCI map[string]json.RawMessage
	for _, tg := range shown.Targets {
		if string(tg["name"]) == `"ci"` {
			apiCI = tg
		}
	}
	if apiCI == nil {
		t.Fatalf("the API shows no target ci: %+v", shown)
	}
	for _, field := range []string{"name", "type", "url"} {
		if string(apiCI[field]) != string(caddyJSON[field]) {
			t.Errorf("%s: API %s, Caddy JSON %s", field, apiCI[field], caddyJSON[field])
		}
	}
	redacted := strings.Replace(string(caddyJSON["options"]), "s3cret", storage.RedactedValue, 1)
	if string(apiCI["options"]) != redacted {
		t.Errorf("options: API %s, Caddy JSON (header value redacted) %s", apiCI["options"], redacted)
	}
	if string(apiCI["active"]) != "false" {
		t.Errorf("active %s for a target declared disabled", apiCI["active"])
	}

	// The Caddy JSON of a target, without "disabled", creates an API target.
	var created struct {
		ID string `json:"id"`
	}
	g.admin("POST", "/webhooks", map[string]any{"name": "by-api"}).decode(t, http.StatusCreated, &created)
	body := strings.Replace(string(ci), `,"disabled":true`, "", 1)
	var target storage.Target
	g.admin("POST", "/webhooks/"+created.ID+"/targets", body).decode(t, http.StatusCreated, &target)
	if !target.Active || time.Duration(target.Options.Timeout) != 5*time.Second ||
		time.Duration(target.Options.BackoffMax) != time.Minute || !reflect.DeepEqual(target.Options.Headers, map[string]string{"X-Token": storage.RedactedValue}) {
		t.Errorf("created from the Caddy JSON: %+v", target)
	}

	// A bare number is refused by both: a 400 naming the field, and a
	// config Caddy cannot load.
	numeric := strings.Replace(body, `"timeout":"5s"`, `"timeout":5000000000`, 1)
	numeric = strings.Replace(numeric, `"name":"ci"`, `"name":"ci2"`, 1)
	answer := g.admin("POST", "/webhooks/"+created.ID+"/targets", numeric)
	if answer.status != http.StatusBadRequest {
		t.Fatalf("a number as timeout: %s, want 400", answer)
	}
	msg := answer.errorMessage(t)
	if !strings.Contains(msg, `field "options.timeout"`) || !strings.Contains(msg, `such as "5s"`) {
		t.Errorf("a number as timeout: %q", msg)
	}
	t.Logf("API, a number as timeout: 400 %s", msg)
	err = caddy.StrictUnmarshalJSON([]byte(`{"webhooks":[{"name":"w","targets":[{"name":"t","type":"http",`+
		`"url":"https://example.com/","options":{"backoff_max":3600000000000}}]}]}`), new(caddymodule.App))
	if err == nil || !strings.Contains(err.Error(), "webhooks.targets.options.backoff_max") || !strings.Contains(err.Error(), `such as "5s"`) {
		t.Errorf("Caddy JSON, a number as backoff_max: %v", err)
	}
	t.Logf("Caddy JSON, a number as backoff_max: %v", err)
	// The flat shape of before is refused, not read without its options.
	err = caddy.StrictUnmarshalJSON([]byte(`{"webhooks":[{"name":"w","targets":[{"name":"t","type":"http",`+
		`"url":"https://example.com/","timeout":"5s"}]}]}`), new(caddymodule.App))
	if err == nil || !strings.Contains(err.Error(), `unknown field "timeout"`) {
		t.Errorf("Caddy JSON, the flat shape: %v", err)
	}
}
