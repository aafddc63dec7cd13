package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/webhooker/caddy-webhooker/caddymodule"
)

// FuzzCaddyfile feeds the webhooker global option arbitrary blocks through
// Caddy's real Caddyfile adapter, then provisions and validates what it
// accepted, as `caddy validate` would. Nothing may panic; whatever the
// adapter accepts must decode into the app with no unknown field, and
// provisioning touches no file (the storage opens at Start).
func FuzzCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"data_dir /tmp/x\nmax_body_size 1MiB",
		"webhook gh {\n entrypoint k\n target ci http http://127.0.0.1:9/h {\n max_retries 3\n timeout 5s\n backoff 1s 1m\n header X-A b\n breaker 5 30s\n }\n target a database\n target l log disabled\n}",
		"webhook a {\n entrypoint k disabled\n retention_days 999999\n}",
		"target_policy {\n allow 10.0.0.0/8 fd00::/8\n deny 10.1.0.0/16\n}",
		"tenant_quotas {\n webhooks 5\n entrypoints 9\n targets 9\n}",
		"webhook a {\n target t http http://u:p@127.0.0.1:2019/stop {\n header \"X\" \"v\\r\\nY: z\"\n }\n}",
		"max_ingest_memory 1GiB\nbody_timeout 30s\nworkers 0\ntimeout -1s",
		"webhook {\n}\nwebhook a b\nsynchronous off",
	} {
		f.Add(seed)
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	f.Fuzz(func(t *testing.T, block string) {
		cfg := "{\n\tadmin off\n\twebhooker {\n" + block + "\n\t}\n}\n"
		out, _, err := adapter.Adapt([]byte(cfg), nil)
		if err != nil {
			return // a refusal is a fine answer
		}
		var full struct {
			Apps map[string]json.RawMessage `json:"apps"`
		}
		if err := json.Unmarshal(out, &full); err != nil {
			t.Fatalf("the adapter's JSON does not decode: %v\n%s", err, out)
		}
		raw, ok := full.Apps["webhooker"]
		if !ok {
			return
		}
		var app caddymodule.App
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&app); err != nil {
			t.Fatalf("the Caddyfile adapts to JSON the app cannot read: %v\n%s", err, raw)
		}
		dir := t.TempDir()
		app.DataDir = dir // never a path of the input's choosing
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		if err := app.Provision(ctx); err == nil {
			_ = app.Validate()
		}
		_ = app.Cleanup()
		if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
			t.Fatalf("provisioning touched the data_dir: %v %v", entries, err)
		}
	})
}
