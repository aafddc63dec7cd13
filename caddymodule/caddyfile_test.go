package caddymodule_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/webhooker/caddy-webhooker/caddymodule"
)

// TestCaddyfileMistakesNameTheirLine drives Caddy's real Caddyfile adapter
// (as `caddy adapt` and `caddy validate` do) over configs with one mistake
// each, and checks that each is refused with its message and the file and
// line of the mistake: none waits for Provision, which knows no line.
// Lines count from 1; the webhooker block's first line is line 3.
func TestCaddyfileMistakesNameTheirLine(t *testing.T) {
	checkCaddyfileMistakes(t, []caddyfileMistake{
		{"data_dir twice", "data_dir /a\ndata_dir /b", 4, "data_dir is set twice"},
		{"workers 0", "workers 0", 3, "workers 0: want a whole number, 1 or more (leave the option out for its default)"},
		{"queue_size 0", "workers 4\nqueue_size 0", 4, "queue_size 0: want a whole number, 1 or more"},
		{"stop_grace_period 0", "stop_grace_period 0s", 3, "stop_grace_period: want a duration over 0, not 0s"},
		{"synchronous unknown", "synchronous sometimes", 3, `synchronous must be "full" or "normal", not "sometimes"`},
		{"synchronous twice", "synchronous full\nsynchronous normal", 4, "synchronous is set twice"},
		{"ingest memory under the default max_body_size", "body_timeout 10s\nmax_ingest_memory 1MiB", 4,
			"max_ingest_memory (1048576 bytes) must be at least max_body_size (10485760 bytes)"},
		{"max_body_size over the ingest memory, given later", "max_ingest_memory 1MiB\nmax_body_size 2MiB", 4,
			"max_ingest_memory (1048576 bytes) must be at least max_body_size (2097152 bytes)"},
		{"intake_memory under 1 MiB", "body_timeout 10s\nintake_memory 512KiB", 4, "intake_memory (524288 bytes) must be at least 1MiB"},
		{"intake_memory not a size", "intake_memory lots", 3, `intake_memory "lots": want a size such as 10MB or 512KiB`},
		{"intake_size under 1 MiB", "body_timeout 10s\nintake_size 100KiB", 4, "intake_size (102400 bytes) must be at least 1MiB"},
		{"intake_size twice", "intake_size 1GiB\nintake_size 2GiB", 4, "intake_size is set twice"},
		{"tenant quota 0", "tenant_quotas {\n\twebhooks 0\n}", 4, "tenant_quotas webhooks 0: want 1 to 1000000"},
		{"webhook declared twice", "webhook a {\n}\nwebhook a {\n}", 5, "webhook a is declared twice"},
		{"webhook name", "webhook ../etc {\n}", 3, `webhook name "../etc"`},
		{"description twice", "webhook a {\n\tdescription one\n\tdescription two\n}", 5, "webhook a: description is set twice"},
		{"retention_days over the bound", "webhook a {\n\tretention_days 36501\n}", 4,
			"webhook a: retention_days 36501 is over the most allowed, 36500 (operator limits)"},
		{"entrypoint key of another webhook", "webhook a {\n\tentrypoint k\n}\nwebhook b {\n\tentrypoint k\n}", 7,
			`webhook b: entrypoint key "k" is already used by webhook a`},
		{"entrypoint key twice", "webhook a {\n\tentrypoint k\n\tentrypoint k disabled\n}", 5, `webhook a: entrypoint key "k" is declared twice`},
		{"target declared twice", "webhook a {\n\ttarget t database\n\ttarget t log\n}", 5, "webhook a: target t is declared twice"},
		{"relative url", "webhook a {\n\ttarget t http /hook\n}", 4, `webhook a: target t: url "/hook" must be an absolute http:// or https:// URL`},
		{"url with credentials", "webhook a {\n\ttarget t http https://u:p@example.com/\n}", 4, "holds credentials"},
		{"unknown target type", "webhook a {\n\ttarget t ftp\n}", 4, `webhook a: target t: unknown type "ftp"`},
		{"timeout 0", "webhook a {\n\ttarget t http https://example.com/ {\n\t\tmax_retries 2\n\t\ttimeout 0s\n\t}\n}", 6,
			"webhook a: target t: timeout: want a duration over 0, not 0s"},
		{"timeout under the bound", "webhook a {\n\ttarget t http https://example.com/ {\n\t\ttimeout 1ns\n\t}\n}", 5,
			"webhook a: target t: timeout 1ns is under the least allowed, 10ms (operator limits)"},
		{"timeout twice", "webhook a {\n\ttarget t http https://example.com/ {\n\t\ttimeout 5s\n\t\ttimeout 10s\n\t}\n}", 6,
			"webhook a: target t: timeout is set twice"},
		{"backoff out of order", "webhook a {\n\ttarget t http https://example.com/ {\n\t\tbackoff 2m 1m\n\t}\n}", 5,
			"webhook a: target t: backoff_initial 2m0s is over backoff_max 1m0s"},
		{"max_retries over the bound", "webhook a {\n\ttarget t http https://example.com/ {\n\t\tmax_retries 101\n\t}\n}", 5,
			"max_retries 101 is over the most allowed, 100"},
		{"max_retries twice", "webhook a {\n\ttarget t http https://example.com/ {\n\t\tmax_retries 1\n\t\tmax_retries 2\n\t}\n}", 6,
			"max_retries is set twice"},
		{"header twice", "webhook a {\n\ttarget t http https://example.com/ {\n\t\theader X-Token a\n\t\theader X-Token b\n\t}\n}", 6,
			"header X-Token is set twice"},
		{"header under two spellings", "webhook a {\n\ttarget t http https://example.com/ {\n\t\theader X-Token a\n\t\theader x-token b\n\t}\n}", 6,
			`headers "X-Token" and "x-token" are the same header`},
		{"refused header", "webhook a {\n\ttarget t http https://example.com/ {\n\t\theader Webhooker-Via x\n\t}\n}", 5,
			"header Webhooker-Via cannot be configured"},
		{"breaker twice", "webhook a {\n\ttarget t http https://example.com/ {\n\t\tbreaker 5\n\t\tbreaker 3 1m\n\t}\n}", 6,
			"breaker is set twice"},
		{"breaker cooldown 0", "webhook a {\n\ttarget t http https://example.com/ {\n\t\tbreaker 5 0s\n\t}\n}", 5,
			"breaker cooldown: want a duration over 0"},
		{"disabled on the line and in the block", "webhook a {\n\ttarget t http https://example.com/ disabled {\n\t\tdisabled\n\t}\n}", 5,
			"webhook a: target t: disabled is set twice"},
		{"target_concurrency 0", "target_concurrency 0", 3, "target_concurrency 0: want a whole number, 1 or more"},
		{"target_concurrency not a number", "target_concurrency lots", 3, "target_concurrency lots: want a whole number, 1 or more"},
		{"target policy: not a prefix", "target_policy {\n\tallow 10.0.0.0/33\n}", 4, "is not a CIDR prefix"},
		{"target policy: host bits set", "target_policy {\n\tallow 10.0.0.1/8\n}", 4, "has host bits set: did you mean 10.0.0.0/8?"},
		{"target policy: a name, not an address", "target_policy {\n\tdeny localhost\n}", 4, "is not an IP address or a CIDR prefix"},
		{"target policy: unknown rule", "target_policy {\n\tpermit 10.0.0.0/8\n}", 4, `unrecognized rule "permit"`},
		{"target policy: rule without prefixes", "target_policy {\n\tdeny\n}", 4, "want one or more CIDR prefixes"},
		{"target policy twice", "target_policy {\n}\ntarget_policy {\n}", 5, "target_policy is set twice"},
		{"tenant quota unknown", "tenant_quotas {\n\tusers 5\n}", 4, `unrecognized quota "users"`},
		{"target policy denies a target declared before it", "webhook a {\n\ttarget t http http://10.1.2.3/in\n}\ntarget_policy {\n\tdeny 10.0.0.0/8\n}", 4,
			"webhook a: target t: target policy: 10.1.2.3 is in the denied range 10.0.0.0/8"},
	})
}

// TestCaddyfileSecondWebhookerOption checks that a second webhooker global
// option is refused at its own line (it had no file and line before).
func TestCaddyfileSecondWebhookerOption(t *testing.T) {
	_, err := adaptWebhooker(t, "{\n\twebhooker {\n\t\tworkers 4\n\t}\n\twebhooker {\n\t}\n}\n")
	t.Logf("%v", err)
	if err == nil || !strings.Contains(err.Error(), "the webhooker global option may appear only once") ||
		!strings.HasSuffix(err.Error(), ", at Caddyfile:5") {
		t.Errorf("a second webhooker option: %v, want it refused at Caddyfile:5", err)
	}
}

// TestCaddyfileMeaningfulZeros checks the zeros the Caddyfile keeps, since
// they say something other than the default: max_retries 0 (one attempt),
// breaker 0 (never open) and retention_days 0 (keep forever).
func TestCaddyfileMeaningfulZeros(t *testing.T) {
	raw, err := adaptWebhooker(t, "{\n\twebhooker {\n\t\twebhook a {\n\t\t\tretention_days 0\n"+
		"\t\t\ttarget t http https://example.com/ {\n\t\t\t\tmax_retries 0\n\t\t\t\tbreaker 0\n\t\t\t}\n\t\t}\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := `"options":{"max_retries":0,"breaker_threshold":0}`; !strings.Contains(string(raw), want) {
		t.Errorf("adapted to %s, want it to hold %s", raw, want)
	}
}

// TestJSONConfigSameChecks checks that a JSON config, which has no
// Caddyfile lines, gets the checks of the Caddyfile from Provision and
// Validate, with the same words.
func TestJSONConfigSameChecks(t *testing.T) {
	target := func(options string) string {
		return `{"webhooks":[{"name":"a","targets":[{"name":"t","type":"http","url":"https://example.com/","options":` + options + `}]}]}`
	}
	for _, c := range []struct{ name, config, want string }{
		{"webhook declared twice", `{"webhooks":[{"name":"a"},{"name":"a"}]}`, "webhook a is declared twice"},
		{"entrypoint key of another webhook", `{"webhooks":[{"name":"a","entrypoints":[{"key":"k"}]},{"name":"b","entrypoints":[{"key":"k"}]}]}`,
			`webhook b: entrypoint key "k" is already used by webhook a`},
		{"retention_days over the bound", `{"webhooks":[{"name":"a","retention_days":36501}]}`,
			"webhook a: retention_days 36501 is over the most allowed, 36500 (operator limits)"},
		{"backoff out of order", target(`{"backoff_initial":"2m","backoff_max":"1m"}`),
			"webhook a: target t: backoff_initial 2m0s is over backoff_max 1m0s"},
		{"timeout under the bound", target(`{"timeout":"1ns"}`), "webhook a: target t: timeout 1ns is under the least allowed, 10ms"},
		{"ingest memory", `{"max_body_size":2097152,"max_ingest_memory":1048576}`,
			"max_ingest_memory (1048576 bytes) must be at least max_body_size (2097152 bytes)"},
		{"intake memory", `{"intake_memory":1000}`, "intake_memory (1000 bytes) must be at least 1MiB"},
		{"intake size", `{"intake_size":1000}`, "intake_size (1000 bytes) must be at least 1MiB"},
		{"tenant quota", `{"tenant_quotas":{"targets":2000000}}`, "tenant_quotas targets 2000000: want a whole number from 1 to 1000000"},
		{"synchronous", `{"synchronous":"off"}`, `synchronous must be "full" or "normal", not "off"`},
		{"denied target", `{"target_policy":{"deny":["10.0.0.0/8"]},"webhooks":[{"name":"a","targets":[{"name":"t","type":"http","url":"http://10.1.2.3/"}]}]}`,
			"webhook a: target t: target policy: 10.1.2.3 is in the denied range 10.0.0.0/8"},
	} {
		t.Run(c.name, func(t *testing.T) { checkJSONConfig(t, c.config, c.want) })
	}
}

// caddyfileMistake is a webhooker block with one mistake, and where and
// how it must be refused.
type caddyfileMistake struct {
	name  string
	block string // lines of the webhooker block, from line 3
	line  int
	want  string
}

// checkCaddyfileMistakes adapts each block with Caddy's real Caddyfile
// adapter and checks that it is refused, saying want, at its line.
func checkCaddyfileMistakes(t *testing.T, mistakes []caddyfileMistake) {
	t.Helper()
	for _, c := range mistakes {
		t.Run(c.name, func(t *testing.T) {
			_, err := adaptWebhooker(t, "{\n\twebhooker {\n"+c.block+"\n\t}\n}\n")
			if err == nil {
				t.Fatal("adapted without an error")
			}
			t.Logf("%s", err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("the error does not say %q", c.want)
			}
			if at := fmt.Sprintf("Caddyfile:%d", c.line); !strings.HasSuffix(err.Error(), ", at "+at) {
				t.Errorf("the error is not at %s", at)
			}
		})
	}
}

// checkJSONConfig provisions the app of a JSON config as Caddy would: with
// want empty it must be accepted, else refused (when decoded or when
// provisioned) with an error that says want. Either way provisioning makes
// no file in the data_dir.
func checkJSONConfig(t *testing.T, config, want string) {
	t.Helper()
	var app caddymodule.App
	if err := caddy.StrictUnmarshalJSON([]byte(config), &app); err != nil {
		if want != "" && strings.Contains(err.Error(), want) {
			return
		}
		t.Fatal(err)
	}
	dir := t.TempDir()
	app.DataDir = dir
	err := provisionApp(&app)
	switch {
	case want == "" && err != nil:
		t.Errorf("refused: %v", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("error %v, want one saying %q", err, want)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("provisioning made files in the data_dir: %v", entries)
	}
}

// provisionApp provisions and validates app as Caddy would a JSON config,
// then cleans it up, and returns the first error.
func provisionApp(app *caddymodule.App) error {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := app.Provision(ctx)
	if err == nil {
		err = app.Validate()
	}
	_ = app.Cleanup()
	return err
}
