package storage

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func secretOf(n int) string {
	return SigningSecretPrefix + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n)))
}

// TestSigningSecretChecks: well-formed secrets only, and no error quotes the
// secret, since errors reach API answers and logs.
func TestSigningSecretChecks(t *testing.T) {
	good := secretOf(32)
	later := time.Now().Add(time.Hour)
	cases := []struct {
		name    string
		options TargetOptions
		want    string // "" when accepted, else words the error must hold
	}{
		{"none", TargetOptions{}, ""},
		{"32 bytes", TargetOptions{SigningSecret: good}, ""},
		{"24 bytes", TargetOptions{SigningSecret: secretOf(24)}, ""},
		{"64 bytes", TargetOptions{SigningSecret: secretOf(64)}, ""},
		{"23 bytes", TargetOptions{SigningSecret: secretOf(23)}, "signing_secret: a key of 23 bytes: want 24 to 64"},
		{"65 bytes", TargetOptions{SigningSecret: secretOf(65)}, "a key of 65 bytes"},
		{"no prefix", TargetOptions{SigningSecret: strings.TrimPrefix(good, "whsec_")}, `want "whsec_"`},
		{"not base64", TargetOptions{SigningSecret: "whsec_not*base64*at*all*but*long*enough*"}, "not standard base64"},
		{"the mask on a new target", TargetOptions{SigningSecret: RedactedValue}, "stands for a stored secret"},
		{"generate reaches storage", TargetOptions{SigningSecret: GenerateSigningSecret}, `want "whsec_"`},
		{"previous with current", TargetOptions{SigningSecret: good, SigningSecretPrevious: secretOf(40), SigningSecretPreviousUntil: later}, ""},
		{"previous alone", TargetOptions{SigningSecretPrevious: good}, "signing_secret_previous without a signing_secret"},
		{"previous malformed", TargetOptions{SigningSecret: good, SigningSecretPrevious: "whsec_" + strings.Repeat("A", 8)}, "signing_secret_previous: a key of 6 bytes"},
		{"until alone", TargetOptions{SigningSecret: good, SigningSecretPreviousUntil: later}, "signing_secret_previous_until without"},
	}
	for _, c := range cases {
		tg := Target{Name: "t", Type: TargetHTTP, URL: "https://example.com/hook", Options: c.options}
		err := tg.ValidateWithin(TenantLimits())
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && err == nil:
			t.Errorf("%s: accepted", c.name)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: error %q, want it to hold %q", c.name, err, c.want)
		}
		for _, secret := range []string{c.options.SigningSecret, c.options.SigningSecretPrevious} {
			if len(secret) > 8 && secret != RedactedValue && err != nil && strings.Contains(err.Error(), secret[6:]) {
				t.Errorf("%s: the error quotes the secret: %v", c.name, err)
			}
		}
	}
	s, err := NewSigningSecret()
	if err != nil {
		t.Fatal(err)
	}
	if key, err := DecodeSigningSecret(s); err != nil || len(key) != 32 {
		t.Errorf("NewSigningSecret: %d-byte key, %v", len(key), err)
	}
}

func TestHeaderRuleChecks(t *testing.T) {
	cases := []struct {
		name    string
		options TargetOptions
		want    string
	}{
		{"add and remove", TargetOptions{HeadersAdd: map[string][]string{"X-Tag": {"a", "b"}}, HeadersRemove: []string{"Authorization", "Cookie"}}, ""},
		{"remove and set the same", TargetOptions{Headers: map[string]string{"Authorization": "Bearer x"}, HeadersRemove: []string{"authorization"}}, ""},
		{"add Host", TargetOptions{HeadersAdd: map[string][]string{"host": {"evil"}}}, "header Host cannot be configured"},
		{"remove the hop marker", TargetOptions{HeadersRemove: []string{"Webhooker-Via"}}, "header Webhooker-Via cannot be configured"},
		{"remove a hop-by-hop header", TargetOptions{HeadersRemove: []string{"Transfer-Encoding"}}, "a hop-by-hop header"},
		{"add a CR LF", TargetOptions{HeadersAdd: map[string][]string{"X-A": {"v\r\nX-Smuggled: 1"}}}, "control character"},
		{"add a bad name", TargetOptions{HeadersAdd: map[string][]string{"X A": {"v"}}}, "not a valid header name"},
		{"remove a bad name", TargetOptions{HeadersRemove: []string{"X:A"}}, "not a valid header name"},
		{"remove twice", TargetOptions{HeadersRemove: []string{"Cookie", "cookie"}}, "Cookie is given twice"},
		{"set and add", TargetOptions{Headers: map[string]string{"X-A": "1"}, HeadersAdd: map[string][]string{"x-a": {"2"}}}, "both set (headers) and added"},
		{"add no value", TargetOptions{HeadersAdd: map[string][]string{"X-A": {}}}, "no value to add"},
		{"add the mask", TargetOptions{HeadersAdd: map[string][]string{"X-A": {RedactedValue}}}, "stands for a stored value"},
		{"33 rules in all", TargetOptions{Headers: map[string]string{"X-A": "1"}, HeadersAdd: map[string][]string{"X-B": make32("v")}}, "33 in all, at most 32"},
		{"17 KiB in all", TargetOptions{HeadersAdd: map[string][]string{"X-B": {strings.Repeat("v", 8<<10), strings.Repeat("v", 8<<10), "v"}}}, "bytes in all, at most 16384"},
	}
	for _, c := range cases {
		tg := Target{Name: "t", Type: TargetHTTP, URL: "https://example.com/hook", Options: c.options}
		err := tg.ValidateWithin(TenantLimits())
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && err == nil:
			t.Errorf("%s: accepted", c.name)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: error %q, want it to hold %q", c.name, err, c.want)
		}
	}
}

func make32(v string) []string {
	out := make([]string, 32)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestUpdateTargetRotatesAndKeepsSecrets: a change that leaves the secrets
// out or masked keeps them; a new secret moves the stored one to previous
// with 24 hours of grace; "none" removes them; added header values masked
// keep theirs.
func TestUpdateTargetRotatesAndKeepsSecrets(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	w := mustCreateWebhook(t, db, NewWebhook{Name: "w"})
	first, second, third := secretOf(32), secretOf(33), secretOf(34)
	tg := httpTarget("crm")
	tg.Options.SigningSecret = first
	tg.Options.HeadersAdd = map[string][]string{"X-Key": {"k1", "k2"}}
	added := mustAddTarget(t, db, w.ID, tg)

	update := func(name string, o TargetOptions) TargetOptions {
		t.Helper()
		got, err := db.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Options: &o})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		stored, _ := db.Webhook(ctx, w.ID)
		if a, b := got.Options, stored.Targets[0].Options; a.SigningSecret != b.SigningSecret ||
			a.SigningSecretPrevious != b.SigningSecretPrevious || !a.SigningSecretPreviousUntil.Equal(b.SigningSecretPreviousUntil) {
			t.Errorf("%s: answered %+v, stored %+v", name, a, b)
		}
		return stored.Targets[0].Options
	}

	o := update("left out", TargetOptions{MaxRetries: intp(3)})
	if o.SigningSecret != first || o.SigningSecretPrevious != "" || strings.Join(o.HeadersAdd["X-Key"], ",") != "k1,k2" {
		t.Errorf("left out: %+v", o)
	}
	o = update("masked", TargetOptions{SigningSecret: RedactedValue, HeadersAdd: map[string][]string{"x-key": {RedactedValue, "k3"}}})
	if o.SigningSecret != first || strings.Join(o.HeadersAdd["x-key"], ",") != "k1,k3" {
		t.Errorf("masked: %+v", o)
	}
	before := time.Now()
	o = update("rotated", TargetOptions{SigningSecret: second})
	if o.SigningSecret != second || o.SigningSecretPrevious != first {
		t.Errorf("rotated: %+v", o)
	}
	if until := o.SigningSecretPreviousUntil; until.Before(before.Add(SigningSecretGrace-time.Second)) || until.After(time.Now().Add(SigningSecretGrace)) {
		t.Errorf("rotated: grace until %s, want 24h from now", until)
	}
	o = update("masked after rotation", TargetOptions{SigningSecret: RedactedValue, SigningSecretPrevious: RedactedValue})
	if o.SigningSecret != second || o.SigningSecretPrevious != first || o.SigningSecretPreviousUntil.IsZero() {
		t.Errorf("masked after rotation: %+v", o)
	}
	end := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	o = update("grace given", TargetOptions{SigningSecretPreviousUntil: end})
	if o.SigningSecretPrevious != first || !o.SigningSecretPreviousUntil.Equal(end) {
		t.Errorf("grace given: %+v", o)
	}
	o = update("rotated again", TargetOptions{SigningSecret: third})
	if o.SigningSecret != third || o.SigningSecretPrevious != second {
		t.Errorf("rotated again: %+v", o)
	}
	o = update("removed", TargetOptions{SigningSecret: NoSigningSecret})
	if o.SigningSecret != "" || o.SigningSecretPrevious != "" || !o.SigningSecretPreviousUntil.IsZero() {
		t.Errorf("removed: %+v", o)
	}
	_, err := db.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Options: &TargetOptions{SigningSecret: RedactedValue}})
	wantErr(t, "the mask with no stored secret", err, ErrInvalid)
	_, err = db.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Options: &TargetOptions{HeadersAdd: map[string][]string{"X-Key": {"a", "b", "c", RedactedValue}}}})
	wantErr(t, "the mask of an added value never stored", err, ErrInvalid)
}
