package caddymodule

import (
	"context"
	"testing"

	"github.com/webhooker/caddy-webhooker/storage"
)

// TestEntrypointAuthBuiltOncePerOptions: the verifiers of an entrypoint are
// built once for its options, however many snapshots load them (each
// reload loads a new one), and built again when the options change.
func TestEntrypointAuthBuiltOncePerOptions(t *testing.T) {
	ctx := context.Background()
	db, err := storage.OpenMainDB(ctx, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	declare := func(secret string) {
		t.Helper()
		w, err := declaredWebhooks([]*WebhookConfig{{Name: "cached", Entrypoints: []EntrypointConfig{{
			Key: "cached-in", Options: storage.EntrypointOptions{Verify: []storage.VerifyRule{{Scheme: "github", Secrets: []string{secret}}}},
		}}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.SyncDeclared(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	auth := func() *entrypointAuth {
		t.Helper()
		s, err := db.LoadSnapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := s.Route("cached-in")
		if !ok {
			t.Fatal("cached-in does not route")
		}
		a, err := authOf(r.Entrypoint)
		if err != nil || a == nil {
			t.Fatalf("authOf: %v, %v", a, err)
		}
		return a
	}
	declare("one")
	first := auth()
	if again := auth(); again != first {
		t.Error("the same options, loaded again, were built again")
	}
	declare("two")
	if changed := auth(); changed == first {
		t.Error("changed options kept the verifiers built from the old ones")
	}
}
