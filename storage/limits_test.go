package storage

import (
	"context"
	"strings"
	"testing"
	"time"
)

func durp(d time.Duration) Duration { return Duration(d) }

// TestTargetLimits checks every bound of the operator's and the tenant's
// limits: each refusal names the option, the value and the bound.
func TestTargetLimits(t *testing.T) {
	base := func(o TargetOptions) Target {
		return Target{Name: "t", Type: TargetHTTP, URL: "https://example.com/hook", Options: o}
	}
	bigHeaders := func(n, valueBytes int) map[string]string {
		h := make(map[string]string, n)
		for i := range n {
			h["X-H"+strings.Repeat("a", i)] = strings.Repeat("v", valueBytes)
		}
		return h
	}
	cases := []struct {
		name     string
		options  TargetOptions
		operator string // "" when accepted, else words the error must hold
		tenant   string
	}{
		{"defaults", TargetOptions{}, "", ""},
		{"retries 20", TargetOptions{MaxRetries: intp(20)}, "", ""},
		{"retries 21", TargetOptions{MaxRetries: intp(21)}, "", "max_retries 21 is over the most allowed, 20 (tenant limits)"},
		{"retries 101", TargetOptions{MaxRetries: intp(101)}, "max_retries 101 is over the most allowed, 100 (operator limits)", "max_retries 101"},
		{"retries huge", TargetOptions{MaxRetries: intp(1 << 40)}, "over the most allowed, 100", "over the most allowed, 20"},
		{"retries negative", TargetOptions{MaxRetries: intp(-1)}, "max_retries -1 is negative", "max_retries -1 is negative"},
		{"timeout 5ms", TargetOptions{Timeout: durp(5 * time.Millisecond)}, "timeout 5ms is under the least allowed, 10ms", "timeout 5ms is under the least allowed, 1s"},
		{"timeout 500ms", TargetOptions{Timeout: durp(500 * time.Millisecond)}, "", "timeout 500ms is under the least allowed, 1s (tenant limits)"},
		{"timeout 60s", TargetOptions{Timeout: durp(time.Minute)}, "", ""},
		{"timeout 61s", TargetOptions{Timeout: durp(61 * time.Second)}, "", "timeout 1m1s is over the most allowed, 1m0s (tenant limits)"},
		{"timeout 1000000h (the tarpit)", TargetOptions{Timeout: durp(1000000 * time.Hour)}, "timeout 1000000h0m0s is over the most allowed, 10m0s (operator limits)", "over the most allowed, 1m0s"},
		{"timeout negative", TargetOptions{Timeout: durp(-2 * time.Second)}, "timeout -2s is negative", "timeout -2s is negative"},
		{"backoff 1ns (the retry storm)", TargetOptions{BackoffInitial: 1}, "backoff_initial 1ns is under the least allowed, 10ms", "backoff_initial 1ns is under the least allowed, 1s"},
		{"backoff 10ms", TargetOptions{BackoffInitial: durp(10 * time.Millisecond)}, "", "under the least allowed, 1s"},
		{"backoff 1s", TargetOptions{BackoffInitial: durp(time.Second)}, "", ""},
		{"backoff_max 24h", TargetOptions{BackoffMax: durp(24 * time.Hour)}, "", ""},
		{"backoff_max 25h", TargetOptions{BackoffMax: durp(25 * time.Hour)}, "", "backoff_max 25h0m0s is over the most allowed, 24h0m0s (tenant limits)"},
		{"backoff_max 8 days", TargetOptions{BackoffMax: durp(8 * 24 * time.Hour)}, "backoff_max 192h0m0s is over the most allowed, 168h0m0s", "over the most allowed"},
		{"backoff_initial over backoff_max", TargetOptions{BackoffInitial: durp(2 * time.Minute), BackoffMax: durp(time.Minute)}, "backoff_initial 2m0s is over backoff_max 1m0s", "backoff_initial 2m0s is over backoff_max 1m0s"},
		{"backoff_initial alone over the most backoff", TargetOptions{BackoffInitial: durp(48 * time.Hour)}, "", "backoff_initial 48h0m0s is over the most allowed, 24h0m0s"},
		{"breaker 1000", TargetOptions{BreakerThreshold: intp(1000)}, "", ""},
		{"breaker 1001", TargetOptions{BreakerThreshold: intp(1001)}, "breaker_threshold 1001 is over the most allowed, 1000", "breaker_threshold 1001"},
		{"cooldown 500ms", TargetOptions{BreakerCooldown: durp(500 * time.Millisecond)}, "", "breaker_cooldown 500ms is under the least allowed, 1s"},
		{"cooldown 5ms", TargetOptions{BreakerCooldown: durp(5 * time.Millisecond)}, "breaker_cooldown 5ms is under the least allowed, 10ms", "breaker_cooldown 5ms"},
		{"cooldown 25h", TargetOptions{BreakerCooldown: durp(25 * time.Hour)}, "breaker_cooldown 25h0m0s is over the most allowed, 24h0m0s", "breaker_cooldown 25h0m0s"},
		{"32 headers", TargetOptions{Headers: bigHeaders(32, 10)}, "", ""},
		{"33 headers", TargetOptions{Headers: bigHeaders(33, 10)}, "headers: 33, at most 32", "headers: 33, at most 32"},
		{"header value 8 KiB", TargetOptions{Headers: map[string]string{"X-Big": strings.Repeat("v", 8<<10)}}, "", ""},
		{"header value over 8 KiB", TargetOptions{Headers: map[string]string{"X-Big": strings.Repeat("v", 8<<10+1)}}, "header X-Big: value of 8193 bytes, at most 8192", "at most 8192"},
		{"headers over 16 KiB in all", TargetOptions{Headers: bigHeaders(3, 6<<10)}, "in all, at most 16384", "in all, at most 16384"},
		{"header name over 256 bytes", TargetOptions{Headers: map[string]string{"X-" + strings.Repeat("n", 255): "v"}}, "257 bytes, at most 256", "257 bytes, at most 256"},
	}
	for _, tc := range cases {
		for _, l := range []struct {
			limits Limits
			want   string
		}{{OperatorLimits(), tc.operator}, {TenantLimits(), tc.tenant}} {
			t.Run(tc.name+"/"+l.limits.Name, func(t *testing.T) {
				err := base(tc.options).ValidateWithin(l.limits)
				switch {
				case l.want == "" && err != nil:
					t.Errorf("refused: %v", err)
				case l.want != "" && err == nil:
					t.Errorf("accepted, want an error holding %q", l.want)
				case l.want != "" && !strings.Contains(err.Error(), l.want):
					t.Errorf("error %q does not hold %q", err, l.want)
				}
			})
		}
	}
}

// Validate is what the Caddyfile uses: the operator's limits.
func TestValidateIsOperatorLimits(t *testing.T) {
	tg := Target{Name: "t", Type: TargetHTTP, URL: "https://example.com/", Options: TargetOptions{Timeout: durp(5 * time.Minute)}}
	if err := tg.Validate(); err != nil {
		t.Errorf("Validate refused a 5m timeout, within the operator's limits: %v", err)
	}
	tg.Options.Timeout = durp(11 * time.Minute)
	if err := tg.Validate(); err == nil || !strings.Contains(err.Error(), "operator limits") {
		t.Errorf("Validate of an 11m timeout = %v, want the operator's bound", err)
	}
}

// Headers are checked wherever they come in: values that would split a
// request (CR, LF, NUL), names HTTP does not allow, headers the client owns
// or that would hide the hop marker, and one header under two spellings.
func TestTargetHeaderInput(t *testing.T) {
	cases := []struct {
		name    string
		headers map[string]string
		want    string
	}{
		{"plain", map[string]string{"Authorization": "Bearer x", "X-Token": "y"}, ""},
		{"CRLF in a value", map[string]string{"X": "v\r\nY: z"}, "header X: the value holds a control character"},
		{"LF in a value", map[string]string{"X": "v\nY: z"}, "control character"},
		{"NUL in a value", map[string]string{"X": "v\x00"}, "control character"},
		{"space in a name", map[string]string{"X Y": "v"}, `"X Y" is not a valid header name`},
		{"colon in a name", map[string]string{"X:Y": "v"}, "not a valid header name"},
		{"empty name", map[string]string{"": "v"}, "not a valid header name"},
		{"Host", map[string]string{"host": "admin.internal"}, "header Host cannot be configured: it is set from the target's URL"},
		{"Content-Length", map[string]string{"Content-Length": "0"}, "header Content-Length cannot be configured"},
		{"Connection", map[string]string{"Connection": "close"}, "header Connection cannot be configured: it is a hop-by-hop header"},
		{"Transfer-Encoding", map[string]string{"transfer-encoding": "chunked"}, "hop-by-hop"},
		{"Upgrade", map[string]string{"Upgrade": "websocket"}, "hop-by-hop"},
		{"hop marker", map[string]string{"Webhooker-Via": ""}, "header Webhooker-Via cannot be configured: it is the gateway's hop marker"},
		{"one header twice", map[string]string{"X-Token": "a", "x-token": "b"}, "are the same header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := Target{Name: "t", Type: TargetHTTP, URL: "https://example.com/", Options: TargetOptions{Headers: tc.headers}}
			err := tg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("accepted, want an error holding %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q does not hold %q", err, tc.want)
			}
		})
	}
}

// A URL with user:password would be shown to anyone who can read the target
// (header values are write-only, URLs are not): refused, without echoing
// the password.
func TestTargetURLWithCredentialsRefused(t *testing.T) {
	for _, raw := range []string{"http://user:pass@127.0.0.1:9/x?token=Q", "https://user@example.com/", "https://:pw@example.com/"} {
		for _, l := range []Limits{OperatorLimits(), TenantLimits()} {
			err := Target{Name: "t", Type: TargetHTTP, URL: raw}.ValidateWithin(l)
			if err == nil || !strings.Contains(err.Error(), "put credentials in a header") {
				t.Errorf("%s (%s) = %v, want a refusal saying to put credentials in a header", raw, l.Name, err)
			} else if strings.Contains(err.Error(), "pass@") || strings.Contains(err.Error(), ":pw@") {
				t.Errorf("the refusal %q echoes the password", err)
			}
		}
	}
	long := "https://example.com/" + strings.Repeat("a", 4096)
	if err := (Target{Name: "t", Type: TargetHTTP, URL: long}).Validate(); err == nil || !strings.Contains(err.Error(), "at most 4096") {
		t.Errorf("a URL of %d bytes = %v, want refused", len(long), err)
	}
}

// retention_days 999999 once overflowed into pruning acknowledged events:
// it is refused, by both limits, at create and on change.
func TestRetentionDaysBounded(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	tenant := db.WithRules(Rules{Limits: TenantLimits()})
	for _, d := range []*MainDB{db, tenant} {
		for _, days := range []int{36501, 999999, 1 << 62} {
			_, err := d.CreateWebhook(ctx, NewWebhook{Name: "w", RetentionDays: days})
			wantErr(t, "create with retention_days over the bound", err, ErrInvalid)
			if err != nil && !strings.Contains(err.Error(), "is over the most allowed, 36500") {
				t.Errorf("error %q does not name the bound", err)
			}
		}
		_, err := d.CreateWebhook(ctx, NewWebhook{Name: "neg", RetentionDays: -1})
		wantErr(t, "create with retention_days -1", err, ErrInvalid)
	}
	w := mustCreateWebhook(t, db, NewWebhook{Name: "w", RetentionDays: 36500})
	_, err := db.UpdateWebhook(ctx, w.ID, WebhookPatch{RetentionDays: intp(999999)})
	wantErr(t, "PATCH retention_days 999999", err, ErrInvalid)
	if got, _ := db.Webhook(ctx, w.ID); got.RetentionDays != 36500 {
		t.Errorf("retention_days after the refused change = %d, want 36500", got.RetentionDays)
	}
}

// A tenant writes within the tenant's limits; options it does not change
// (the operator's, maybe wider) do not stop it from changing the rest.
func TestWithRulesAppliesLimitsToWrites(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	tenant := db.WithRules(Rules{Limits: TenantLimits()})
	w := mustCreateWebhook(t, db, NewWebhook{Name: "w"})

	slow := httpTarget("slow")
	slow.Options.Timeout = durp(5 * time.Minute)
	_, err := tenant.AddTarget(ctx, w.ID, slow)
	wantErr(t, "a tenant's target with a 5m timeout", err, ErrInvalid)
	added := mustAddTarget(t, db, w.ID, slow) // the operator may

	if _, err := tenant.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Active: boolp(false)}); err != nil {
		t.Errorf("a tenant disabling a target with the operator's 5m timeout: %v", err)
	}
	_, err = tenant.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Options: &TargetOptions{Timeout: durp(10 * time.Minute)}})
	wantErr(t, "a tenant setting a 10m timeout", err, ErrInvalid)
	if _, err := db.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Options: &TargetOptions{Timeout: durp(10 * time.Minute)}}); err != nil {
		t.Errorf("the operator setting a 10m timeout: %v", err)
	}
}

// Header values are write-only: a change can keep them without knowing them.
func TestUpdateTargetKeepsStoredHeaders(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	w := mustCreateWebhook(t, db, NewWebhook{Name: "w"})
	tg := httpTarget("crm")
	tg.Options.Headers = map[string]string{"Authorization": "Bearer s3cret", "X-Env": "prod"}
	added := mustAddTarget(t, db, w.ID, tg)

	steps := []struct {
		name    string
		options TargetOptions
		want    map[string]string
	}{
		{"options without headers", TargetOptions{MaxRetries: intp(3)},
			map[string]string{"Authorization": "Bearer s3cret", "X-Env": "prod"}},
		{"the mask keeps a value, matched whatever its case; a new value replaces; a header left out goes",
			TargetOptions{Headers: map[string]string{"authorization": RedactedValue, "X-New": "n"}},
			map[string]string{"authorization": "Bearer s3cret", "X-New": "n"}},
		{"empty headers clear them", TargetOptions{Headers: map[string]string{}}, nil},
	}
	for _, st := range steps {
		got, err := db.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Options: &st.options})
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		stored, _ := db.Webhook(ctx, w.ID)
		for _, h := range []map[string]string{got.Options.Headers, stored.Targets[0].Options.Headers} {
			if len(h) != len(st.want) {
				t.Errorf("%s: headers %v, want %v", st.name, h, st.want)
				continue
			}
			for k, v := range st.want {
				if h[k] != v {
					t.Errorf("%s: headers %v, want %v", st.name, h, st.want)
				}
			}
		}
	}

	// The mask for a header the target does not have is not a value.
	_, err := db.UpdateTarget(ctx, w.ID, added.ID, TargetPatch{Options: &TargetOptions{Headers: map[string]string{"X-Gone": RedactedValue}}})
	wantErr(t, "the mask for a header never stored", err, ErrInvalid)
	mask := httpTarget("masked")
	mask.Options.Headers = map[string]string{"X-Token": RedactedValue}
	_, err = db.AddTarget(ctx, w.ID, mask)
	wantErr(t, "a new target with the mask as a value", err, ErrInvalid)
}

// Generated keys carry 128 random bits and pass ValidateEntrypointKey.
func TestGenerateEntrypointKey(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		k, err := GenerateEntrypointKey()
		if err != nil {
			t.Fatal(err)
		}
		if !generatedKey.MatchString(k) || ValidateEntrypointKey(k) != nil {
			t.Fatalf("generated key %q: want 32 lowercase hex characters that ValidateEntrypointKey accepts", k)
		}
		if seen[k] {
			t.Fatalf("key %q generated twice", k)
		}
		seen[k] = true
	}
}

// The Caddyfile's retention_days is bounded as the API's is: a declaration
// of 999999 days fails the sync, naming the bound, and changes nothing.
func TestSyncDeclaredBoundsRetentionDays(t *testing.T) {
	db := openMain(t)
	w := declare("forever", true, []string{"k"})
	w.RetentionDays = 999999
	_, err := db.SyncDeclared(context.Background(), []*Webhook{w})
	if err == nil || !strings.Contains(err.Error(), "retention_days 999999 is over the most allowed, 36500 (operator limits)") {
		t.Errorf("SyncDeclared with retention_days 999999 = %v, want refused naming the bound", err)
	}
	if n := count(t, db, "SELECT count(*) FROM webhooks"); n != 0 {
		t.Errorf("webhooks after the refused sync = %d, want 0", n)
	}
	w.RetentionDays = 36500
	syncDeclared(t, db, w)
}
