package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func mustCreateUser(t *testing.T, db *MainDB, name string) User {
	t.Helper()
	u, err := db.CreateUser(context.Background(), name)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	return u
}

func mustCreateAPIKey(t *testing.T, db *MainDB, userID, name string) (APIKey, string) {
	t.Helper()
	k, secret, err := db.CreateAPIKey(context.Background(), userID, name)
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	return k, secret
}

// fakeClock replaces db's clock; set moves it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

func useClock(db *MainDB, start time.Time) *fakeClock {
	c := &fakeClock{now: start}
	db.now = c.Now
	return c
}

func TestCreateUserTrimsAndValidatesName(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	cases := []struct {
		in, want string
		err      error
	}{
		{in: "Alice", want: "Alice"},
		{in: "  Team Blue \t", want: "Team Blue"},
		{in: "Zoë", want: "Zoë"},
		{in: strings.Repeat("é", maxUserName), want: strings.Repeat("é", maxUserName)},
		{in: "", err: ErrInvalid},
		{in: "   ", err: ErrInvalid},
		{in: strings.Repeat("x", maxUserName+1), err: ErrInvalid},
		{in: "bell\a", err: ErrInvalid},
		{in: "new\nline", err: ErrInvalid},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%q", c.in), func(t *testing.T) {
			u, err := db.CreateUser(ctx, c.in)
			if c.err != nil {
				wantErr(t, "CreateUser", err, c.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.Name != c.want || ValidateID(u.ID) != nil || u.CreatedAt.IsZero() {
				t.Errorf("CreateUser(%q) = %+v, want name %q", c.in, u, c.want)
			}
			got, err := db.User(ctx, u.ID)
			if err != nil || got.Name != c.want || !got.CreatedAt.Equal(u.CreatedAt) {
				t.Errorf("User(%s) = %+v, %v", u.ID, got, err)
			}
		})
	}
}

func TestUsersListsLiveUsersByName(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	if us, err := db.Users(ctx); err != nil || us == nil || len(us) != 0 {
		t.Errorf("Users of an empty DB = %#v, %v, want an empty slice", us, err)
	}
	carol := mustCreateUser(t, db, "carol")
	mustCreateUser(t, db, "alice")
	mustCreateUser(t, db, "bob")
	if err := db.DeleteUser(ctx, carol.ID); err != nil {
		t.Fatal(err)
	}
	us, err := db.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range us {
		names = append(names, u.Name)
	}
	if strings.Join(names, ",") != "alice,bob" {
		t.Errorf("Users = %v, want alice, bob", names)
	}
	_, err = db.User(ctx, carol.ID)
	wantErr(t, "User of a deleted user", err, ErrNotFound)
	_, err = db.User(ctx, uuid.NewString())
	wantErr(t, "User of an unknown id", err, ErrNotFound)
	wantErr(t, "DeleteUser twice", db.DeleteUser(ctx, carol.ID), ErrNotFound)
	wantErr(t, "DeleteUser of an unknown id", db.DeleteUser(ctx, uuid.NewString()), ErrNotFound)
}

func TestDeleteUserIsRefusedWhileTheyOwnWebhooksAndRevokesTheirKeys(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	u := mustCreateUser(t, db, "owner")
	w1 := mustCreateWebhook(t, db, NewWebhook{UserID: u.ID, Name: "one"})
	w2 := mustCreateWebhook(t, db, NewWebhook{UserID: u.ID, Name: "two"})
	_, secret := mustCreateAPIKey(t, db, u.ID, "ci")

	err := db.DeleteUser(ctx, u.ID)
	wantErr(t, "DeleteUser of an owner", err, ErrConflict)
	if err == nil || !strings.Contains(err.Error(), "user owns 2 webhooks: delete them first") {
		t.Errorf("message %q", err)
	}
	if _, err := db.Authenticate(ctx, secret); err != nil {
		t.Errorf("a refused delete revoked the key: %v", err)
	}

	for _, w := range []*Webhook{w1, w2} {
		if err := db.DeleteWebhook(ctx, w.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.DeleteUser(ctx, u.ID); err != nil {
		t.Fatalf("DeleteUser once their webhooks are gone: %v", err)
	}
	if d := deletedAt(t, db, "users", u.ID); !d.Valid {
		t.Error("the user is not soft-deleted")
	}
	if n := count(t, db, "SELECT count(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL", u.ID); n != 0 {
		t.Errorf("%d keys of the deleted user are not revoked", n)
	}
	_, err = db.Authenticate(ctx, secret)
	wantErr(t, "Authenticate with a deleted user's key", err, ErrUnauthorized)
	_, err = db.CreateWebhook(ctx, NewWebhook{UserID: u.ID, Name: "three"})
	wantErr(t, "CreateWebhook for a deleted user", err, ErrNotFound)
}

func TestAPIKeySecretIsReturnedOnceAndOnlyItsHashIsStored(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	u := mustCreateUser(t, db, "alice")
	k, secret := mustCreateAPIKey(t, db, u.ID, "  deploy bot ")

	if !strings.HasPrefix(secret, "whk_") {
		t.Errorf("secret %q lacks the whk_ prefix", secret)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(secret, "whk_"))
	if err != nil || len(raw) != 32 {
		t.Errorf("secret body decodes to %d bytes, %v; want 32 random bytes", len(raw), err)
	}
	if k.Prefix != secret[:12] || k.Name != "deploy bot" || k.UserID != u.ID || ValidateID(k.ID) != nil ||
		k.CreatedAt.IsZero() || k.LastUsedAt != nil || k.RevokedAt != nil {
		t.Errorf("key = %+v", k)
	}
	_, other := mustCreateAPIKey(t, db, u.ID, "")
	if other == secret {
		t.Error("two keys share a secret")
	}

	// What is listed never holds the secret.
	keys, err := db.APIKeys(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	listed, _ := json.Marshal(keys)
	if strings.Contains(string(listed), secret) || strings.Contains(string(listed), secret[12:]) {
		t.Errorf("APIKeys JSON %s holds the secret", listed)
	}

	// No column of the raw table holds the secret, or any more of it than the prefix.
	rows, err := rawDB(t, db.file.path).Query("SELECT * FROM api_keys")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var hash []byte
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			var s string
			switch v := v.(type) {
			case []byte:
				s = string(v)
			default:
				s = fmt.Sprint(v)
			}
			if strings.Contains(s, secret) || strings.Contains(s, secret[12:]) {
				t.Errorf("column %s holds the secret", cols[i])
			}
			if cols[i] == "hash" && vals[0] == k.ID {
				hash, _ = v.([]byte)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256([]byte(secret)); !bytes.Equal(hash, sum[:]) {
		t.Errorf("stored hash %x, want sha256 of the secret %x", hash, sum)
	}
}

func TestCreateAPIKeyNeedsALiveUserAndAValidName(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	gone := mustCreateUser(t, db, "gone")
	if err := db.DeleteUser(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	live := mustCreateUser(t, db, "live")
	for name, c := range map[string]struct {
		user, key string
		want      error
	}{
		"unknown user":  {uuid.NewString(), "k", ErrNotFound},
		"deleted user":  {gone.ID, "k", ErrNotFound},
		"name too long": {live.ID, strings.Repeat("k", maxUserName+1), ErrInvalid},
		"control char":  {live.ID, "tab\there", ErrInvalid},
	} {
		_, secret, err := db.CreateAPIKey(ctx, c.user, c.key)
		wantErr(t, name, err, c.want)
		if secret != "" {
			t.Errorf("%s: a secret was returned with the error", name)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM api_keys"); n != 0 {
		t.Errorf("%d keys stored by failed creates", n)
	}
	_, err := db.APIKeys(ctx, gone.ID)
	wantErr(t, "APIKeys of a deleted user", err, ErrNotFound)
	if ks, err := db.APIKeys(ctx, live.ID); err != nil || ks == nil || len(ks) != 0 {
		t.Errorf("APIKeys of a user with none = %#v, %v, want an empty slice", ks, err)
	}
}

func TestAPIKeysListsRevokedToo(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	clock := useClock(db, time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC))
	u := mustCreateUser(t, db, "alice")
	first, _ := mustCreateAPIKey(t, db, u.ID, "first")
	clock.set(clock.Now().Add(time.Hour))
	second, _ := mustCreateAPIKey(t, db, u.ID, "second")
	clock.set(clock.Now().Add(time.Hour))
	if err := db.RevokeAPIKey(ctx, u.ID, first.ID); err != nil {
		t.Fatal(err)
	}
	other := mustCreateUser(t, db, "bob")
	mustCreateAPIKey(t, db, other.ID, "bobs")

	keys, err := db.APIKeys(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != second.ID || keys[1].ID != first.ID {
		t.Fatalf("APIKeys = %+v, want second then first", keys)
	}
	if keys[0].RevokedAt != nil || keys[1].RevokedAt == nil || !keys[1].RevokedAt.Equal(clock.Now()) {
		t.Errorf("revoked_at = %v, %v", keys[0].RevokedAt, keys[1].RevokedAt)
	}
}

func TestRevokeAPIKey(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	clock := useClock(db, time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC))
	alice := mustCreateUser(t, db, "alice")
	bob := mustCreateUser(t, db, "bob")
	k, secret := mustCreateAPIKey(t, db, alice.ID, "")
	_, bobSecret := mustCreateAPIKey(t, db, bob.ID, "")

	wantErr(t, "RevokeAPIKey of another user's key", db.RevokeAPIKey(ctx, bob.ID, k.ID), ErrNotFound)
	wantErr(t, "RevokeAPIKey of an unknown key", db.RevokeAPIKey(ctx, alice.ID, uuid.NewString()), ErrNotFound)
	if _, err := db.Authenticate(ctx, secret); err != nil {
		t.Fatalf("a refused revoke revoked the key: %v", err)
	}

	revokedAt := clock.Now()
	if err := db.RevokeAPIKey(ctx, alice.ID, k.ID); err != nil {
		t.Fatalf("RevokeAPIKey: %v", err)
	}
	clock.set(revokedAt.Add(time.Hour))
	if err := db.RevokeAPIKey(ctx, alice.ID, k.ID); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	keys, _ := db.APIKeys(ctx, alice.ID)
	if keys[0].RevokedAt == nil || !keys[0].RevokedAt.Equal(revokedAt) {
		t.Errorf("revoked_at = %v, want the first revocation %v", keys[0].RevokedAt, revokedAt)
	}
	_, err := db.Authenticate(ctx, secret)
	wantErr(t, "Authenticate with a revoked key", err, ErrUnauthorized)
	if u, err := db.Authenticate(ctx, bobSecret); err != nil || u.ID != bob.ID {
		t.Errorf("another user's key after a revoke = %+v, %v", u, err)
	}
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	alice := mustCreateUser(t, db, "alice")
	_, secret := mustCreateAPIKey(t, db, alice.ID, "")

	u, err := db.Authenticate(ctx, secret)
	if err != nil || u.ID != alice.ID || u.Name != "alice" || !u.CreatedAt.Equal(alice.CreatedAt) {
		t.Fatalf("Authenticate = %+v, %v, want alice", u, err)
	}
	for name, bad := range map[string]string{
		"empty":             "",
		"no prefix":         strings.TrimPrefix(secret, "whk_"),
		"bearer included":   "Bearer " + secret,
		"unknown key":       "whk_" + base64.RawURLEncoding.EncodeToString(make([]byte, 32)),
		"one char off":      secret[:len(secret)-1] + string(secret[len(secret)-1]^1),
		"prefix only":       secret[:12],
		"trailing newline":  secret + "\n",
		"very long":         "whk_" + strings.Repeat("a", 10000),
		"different case":    "WHK_" + strings.TrimPrefix(secret, "whk_"),
		"just the prefix":   "whk_",
		"secret with space": " " + secret,
	} {
		_, err := db.Authenticate(ctx, bad)
		wantErr(t, name, err, ErrUnauthorized)
	}
}

func lastUsed(t *testing.T, db *MainDB, keyID string) *time.Time {
	t.Helper()
	keys, err := db.APIKeys(context.Background(), mustKeyOwner(t, db, keyID))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.ID == keyID {
			return k.LastUsedAt
		}
	}
	t.Fatalf("key %s not listed", keyID)
	return nil
}

func mustKeyOwner(t *testing.T, db *MainDB, keyID string) string {
	t.Helper()
	var owner string
	if err := db.file.reader.QueryRow("SELECT user_id FROM api_keys WHERE id = ?", keyID).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	return owner
}

func TestAuthenticateWritesLastUsedAtMostOnceAMinute(t *testing.T) {
	ctx := context.Background()
	db := openMain(t)
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	clock := useClock(db, t0)
	u := mustCreateUser(t, db, "alice")
	k, secret := mustCreateAPIKey(t, db, u.ID, "")

	auth := func(at time.Time) {
		t.Helper()
		clock.set(at)
		if _, err := db.Authenticate(ctx, secret); err != nil {
			t.Fatalf("Authenticate at %v: %v", at, err)
		}
	}
	if got := lastUsed(t, db, k.ID); got != nil {
		t.Errorf("last_used_at of an unused key = %v", got)
	}
	steps := []struct {
		at   time.Duration // after t0
		want time.Duration // last_used_at after t0
	}{
		{0, 0},
		{time.Second, 0},
		{30 * time.Second, 0},
		{59 * time.Second, 0},
		{time.Minute, time.Minute},
		{time.Minute + 59*time.Second, time.Minute},
		{5 * time.Minute, 5 * time.Minute},
	}
	for _, s := range steps {
		auth(t0.Add(s.at))
		if got := lastUsed(t, db, k.ID); got == nil || !got.Equal(t0.Add(s.want)) {
			t.Errorf("after a request at +%v: last_used_at = %v, want +%v", s.at, got, s.want)
		}
	}

	// Many requests within the minute: no write at all. PRAGMA data_version,
	// read on one connection, changes when any other connection commits.
	conn, err := db.file.reader.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dataVersion := func() int {
		var v int
		if err := conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	v0 := dataVersion()
	for i := 0; i < 50; i++ {
		auth(t0.Add(5*time.Minute + time.Duration(i)*time.Second))
	}
	if v := dataVersion(); v != v0 {
		t.Errorf("50 requests within a minute committed writes (data_version %d -> %d)", v0, v)
	}
	auth(t0.Add(6 * time.Minute))
	if v := dataVersion(); v == v0 {
		t.Error("the request a minute later wrote nothing (data_version unchanged)")
	}
}
