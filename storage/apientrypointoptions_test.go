package storage

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Options set through the API are stored in the same column as the
// Caddyfile's, so that the snapshot routes with them; masks keep the stored
// secret at their position; a patch without options keeps them.
func TestAPIEntrypointOptionsStored(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	w, err := db.CreateWebhook(ctx, NewWebhook{Name: "api"})
	if err != nil {
		t.Fatal(err)
	}
	opts := EntrypointOptions{
		Verify:    []VerifyRule{{Scheme: "stripe", Secrets: []string{"whsec_one"}}},
		Tolerance: Duration(120e9),
		Handshake: &HandshakeRule{Name: "zoom", Args: []string{"zoom-secret"}},
	}
	e, err := db.AddEntrypoint(ctx, w.ID, NewEntrypoint{Key: "api-stripe", Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := snapshot(t, db).Route("api-stripe")
	if !ok || !reflect.DeepEqual(r.Entrypoint.Options, opts) || r.Entrypoint.OptionsKey() == "" {
		t.Fatalf("route = %+v (ok %v), want options %+v", r.Entrypoint, ok, opts)
	}

	key := "api-stripe-2"
	if _, err := db.UpdateEntrypoint(ctx, w.ID, e.ID, EntrypointPatch{Key: &key}); err != nil {
		t.Fatal(err)
	}
	if r, _ := snapshot(t, db).Route(key); !reflect.DeepEqual(r.Entrypoint.Options, opts) {
		t.Errorf("options after a patch without options = %+v", r.Entrypoint.Options)
	}

	masked := EntrypointOptions{
		Verify:    []VerifyRule{{Scheme: "stripe", Secrets: []string{RedactedValue, "whsec_two"}}},
		Handshake: &HandshakeRule{Name: "zoom", Args: []string{RedactedValue}},
	}
	got, err := db.UpdateEntrypoint(ctx, w.ID, e.ID, EntrypointPatch{Options: &masked})
	if err != nil {
		t.Fatal(err)
	}
	want := EntrypointOptions{
		Verify:    []VerifyRule{{Scheme: "stripe", Secrets: []string{"whsec_one", "whsec_two"}}},
		Handshake: &HandshakeRule{Name: "zoom", Args: []string{"zoom-secret"}},
	}
	if !reflect.DeepEqual(got.Options, want) {
		t.Errorf("answer's options = %+v, want %+v", got.Options, want)
	}
	if r, _ := snapshot(t, db).Route(key); !reflect.DeepEqual(r.Entrypoint.Options, want) {
		t.Errorf("stored options = %+v, want %+v", r.Entrypoint.Options, want)
	}
	if masked.Verify[0].Secrets[0] != RedactedValue {
		t.Error("the patch's options were changed in place")
	}

	// A mask at a rule of another scheme stands for nothing: refused.
	other := EntrypointOptions{Verify: []VerifyRule{{Scheme: "github", Secrets: []string{RedactedValue}}}}
	if _, err := db.UpdateEntrypoint(ctx, w.ID, e.ID, EntrypointPatch{Options: &other}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "options.verify[0]") {
		t.Errorf("mask on another scheme: %v, want ErrInvalid naming options.verify[0]", err)
	}

	// Zero options clear them.
	if _, err := db.UpdateEntrypoint(ctx, w.ID, e.ID, EntrypointPatch{Options: &EntrypointOptions{}}); err != nil {
		t.Fatal(err)
	}
	if r, _ := snapshot(t, db).Route(key); !r.Entrypoint.Options.IsZero() || r.Entrypoint.OptionsKey() != "" {
		t.Errorf("options after clearing = %+v, key %q", r.Entrypoint.Options, r.Entrypoint.OptionsKey())
	}
}

// Webhooker-Verified tells a receiver which scheme the gateway verified: a
// target's configuration must not set or remove it.
func TestVerifiedHeaderNotConfigurable(t *testing.T) {
	for _, o := range []TargetOptions{
		{Headers: map[string]string{"webhooker-verified": "github"}},
		{HeadersAdd: map[string][]string{"Webhooker-Verified": {"github"}}},
		{HeadersRemove: []string{"Webhooker-Verified"}},
	} {
		tg := Target{Name: "t", Type: TargetHTTP, URL: "https://example.com/", Options: o}
		if err := tg.Validate(); err == nil || !strings.Contains(err.Error(), "header Webhooker-Verified cannot be configured") {
			t.Errorf("%+v: %v, want Webhooker-Verified refused", o, err)
		}
	}
}
