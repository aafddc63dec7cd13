package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func tenantDB(t *testing.T, db *MainDB, q Quotas) (*MainDB, User) {
	t.Helper()
	u, err := db.CreateUser(context.Background(), "tenant")
	if err != nil {
		t.Fatal(err)
	}
	return db.WithRules(Rules{Limits: TenantLimits(), Quotas: &q}), u
}

// 20 concurrent creates against a quota of 5 end with exactly 5: the count
// is taken inside the write, so no create can overtake another.
func TestWebhookQuotaHoldsUnderConcurrentCreates(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	tenant, u := tenantDB(t, db, Quotas{Webhooks: 5})

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		refused []error
	)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := tenant.CreateWebhook(ctx, NewWebhook{UserID: u.ID, Name: fmt.Sprintf("w%d", i)})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				created++
			} else {
				refused = append(refused, err)
			}
		}()
	}
	wg.Wait()
	if created != 5 || len(refused) != 15 {
		t.Fatalf("created %d, refused %d; want 5 and 15", created, len(refused))
	}
	want := fmt.Sprintf("quota: user %s has 5 webhooks, the most allowed (tenant_quotas webhooks)", u.ID)
	for _, err := range refused {
		if !errors.Is(err, ErrQuota) || !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %v, want ErrQuota saying %q", err, want)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM webhooks WHERE user_id = ? AND deleted_at IS NULL`, u.ID); n != 5 {
		t.Errorf("live webhooks of the user = %d, want 5", n)
	}

	// A deleted webhook no longer counts.
	ws, err := db.Webhooks(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := tenant.DeleteWebhook(ctx, ws[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tenant.CreateWebhook(ctx, NewWebhook{UserID: u.ID, Name: "again"}); err != nil {
		t.Errorf("a create after a delete, at 4 of 5: %v", err)
	}
}

// Entrypoints and targets count over all of a user's webhooks; a
// webhook's default entrypoint counts too.
func TestEntrypointAndTargetQuotasCountOverAUsersWebhooks(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	tenant, u := tenantDB(t, db, Quotas{Entrypoints: 3, Targets: 2})

	a, err := tenant.CreateWebhook(ctx, NewWebhook{UserID: u.ID, Name: "a"}) // entrypoint 1
	if err != nil {
		t.Fatal(err)
	}
	b, err := tenant.CreateWebhook(ctx, NewWebhook{UserID: u.ID, Name: "b"}) // entrypoint 2
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tenant.AddEntrypoint(ctx, a.ID, NewEntrypoint{}); err != nil { // 3
		t.Fatal(err)
	}
	_, err = tenant.AddEntrypoint(ctx, b.ID, NewEntrypoint{})
	wantErr(t, "a fourth entrypoint at quota 3", err, ErrQuota)
	if err != nil && !strings.Contains(err.Error(), "has 3 entrypoints, the most allowed (tenant_quotas entrypoints)") {
		t.Errorf("error %q does not say which quota", err)
	}
	_, err = tenant.CreateWebhook(ctx, NewWebhook{UserID: u.ID, Name: "c"})
	wantErr(t, "a webhook whose default entrypoint is over quota", err, ErrQuota)

	mustAddTarget(t, tenant, a.ID, httpTarget("one"))
	mustAddTarget(t, tenant, b.ID, httpTarget("two"))
	_, err = tenant.AddTarget(ctx, b.ID, httpTarget("three"))
	wantErr(t, "a third target at quota 2", err, ErrQuota)

	// The operator is not refused, but its creates count.
	mustAddTarget(t, db, b.ID, httpTarget("operators"))
	if n := count(t, db, `SELECT count(*) FROM targets`); n != 3 {
		t.Errorf("targets = %d, want 3", n)
	}
	// Another user's quota is their own.
	other, err := db.CreateUser(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tenant.CreateWebhook(ctx, NewWebhook{UserID: other.ID, Name: "theirs"}); err != nil {
		t.Errorf("another user's first webhook: %v", err)
	}
}

// Quotas left 0 take their defaults.
func TestQuotaDefaults(t *testing.T) {
	got := Quotas{Targets: 7}.withDefaults()
	if got != (Quotas{Webhooks: 100, Entrypoints: 500, Targets: 7}) {
		t.Errorf("defaults = %+v", got)
	}
}
