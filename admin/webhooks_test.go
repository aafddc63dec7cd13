package admin_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/webhooker/caddy-webhooker/datadir"
	"github.com/webhooker/caddy-webhooker/storage"
)

func eventDBFile(dir, webhookID string) string {
	return filepath.Join(dir, "events-"+webhookID+".db")
}

func TestCreateWebhook(t *testing.T) {
	e := newEnv(t)
	var w webhookJSON
	resp := e.must(http.StatusCreated, "POST", "/webhooker/webhooks",
		map[string]any{"name": "github", "description": "pushes", "retention_days": 30}, &w)
	if err := storage.ValidateID(w.ID); err != nil {
		t.Errorf("id: %v", err)
	}
	if w.Name != "github" || w.Description != "pushes" || w.RetentionDays != 30 || !w.Active ||
		w.Source != "api" || w.ReadOnly || w.UserID != "" {
		t.Errorf("created webhook = %+v", w)
	}
	if w.CreatedAt.IsZero() || time.Since(w.CreatedAt) > time.Minute {
		t.Errorf("created_at = %v", w.CreatedAt)
	}
	if len(w.Entrypoints) != 1 {
		t.Fatalf("entrypoints = %+v, want the default one", w.Entrypoints)
	}
	ep := w.Entrypoints[0]
	if !generatedKey.MatchString(ep.Key) || !ep.Active || ep.WebhookID != w.ID {
		t.Errorf("default entrypoint = %+v, want an active one with a generated key", ep)
	}
	if w.Targets == nil || len(w.Targets) != 0 {
		t.Errorf("targets = %#v, want []", w.Targets)
	}
	if !strings.Contains(resp.String(), `"targets":[]`) {
		t.Errorf("answer %s: want \"targets\":[] rather than null", resp)
	}
	if _, err := os.Stat(eventDBFile(e.dir, w.ID)); err != nil {
		t.Errorf("event DB of the new webhook: %v", err)
	}
	// In force at once: the configuration routes its entrypoint.
	e.ingest(ep.Key, incoming{body: []byte(`{}`), contentType: "application/json"})

	// A second webhook gets a different key and file.
	w2 := e.createWebhook("stripe")
	if w2.ID == w.ID || w2.Entrypoints[0].Key == ep.Key {
		t.Errorf("second webhook %+v shares an id or key with the first", w2)
	}
	if _, err := os.Stat(eventDBFile(e.dir, w2.ID)); err != nil {
		t.Errorf("event DB of the second webhook: %v", err)
	}

	// Invalid names and fields are 400 and create nothing.
	for _, body := range []map[string]any{
		{"name": ""},
		{"name": "has space"},
		{"name": "../x"},
		{"name": strings.Repeat("a", 129)},
		{"name": "ok", "retention_days": -1},
		{"name": "ok", "description": strings.Repeat("d", 2001)},
		{"name": "ok", "user_id": "not-a-user"},
	} {
		resp := e.call("POST", "/webhooker/webhooks", body)
		if resp.status != http.StatusBadRequest {
			t.Errorf("create %v: %d %s, want 400", body, resp.status, resp)
			continue
		}
		resp.errorMessage(t)
	}
	// An owner that does not exist is 404.
	resp = e.call("POST", "/webhooker/webhooks", map[string]any{"name": "ok", "user_id": uuid.NewString()})
	if resp.status != http.StatusNotFound {
		t.Errorf("create with an unknown user_id: %d %s, want 404", resp.status, resp)
	}
	var list struct{ Webhooks []webhookJSON }
	e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, &list)
	if len(list.Webhooks) != 2 {
		t.Errorf("after the refused creations %d webhooks, want 2", len(list.Webhooks))
	}
	files, _ := filepath.Glob(filepath.Join(e.dir, "events-*.db"))
	if len(files) != 2 {
		t.Errorf("event DB files %v, want 2", files)
	}
}

func TestGetAndListWebhooks(t *testing.T) {
	e := newEnv(t)
	var list struct {
		Webhooks []webhookJSON `json:"webhooks"`
	}
	resp := e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, &list)
	if !strings.Contains(resp.String(), `"webhooks":[]`) {
		t.Errorf("empty list = %s, want {\"webhooks\":[]}", resp)
	}
	b := e.createWebhook("b-hook")
	a := e.createWebhook("a-hook")
	e.addTarget(a.ID, map[string]any{"name": "keep", "type": "database"})

	e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, &list)
	if len(list.Webhooks) != 2 || list.Webhooks[0].ID != a.ID || list.Webhooks[1].ID != b.ID {
		t.Fatalf("list = %+v, want a-hook then b-hook", list.Webhooks)
	}
	if len(list.Webhooks[0].Targets) != 1 || len(list.Webhooks[0].Entrypoints) != 1 {
		t.Errorf("listed a-hook = %+v, want its entrypoint and target", list.Webhooks[0])
	}

	var got webhookJSON
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+a.ID, nil, &got)
	if got.ID != a.ID || got.Name != "a-hook" || len(got.Targets) != 1 || got.Targets[0].Name != "keep" ||
		len(got.Entrypoints) != 1 || got.Entrypoints[0].Key != a.Entrypoints[0].Key {
		t.Errorf("GET = %+v", got)
	}
	for _, id := range []string{uuid.NewString(), "nope", strings.ToUpper(a.ID), a.ID + "x"} {
		resp := e.call("GET", "/webhooker/webhooks/"+id, nil)
		if resp.status != http.StatusNotFound {
			t.Errorf("GET webhook %q: %d %s, want 404", id, resp.status, resp)
			continue
		}
		resp.errorMessage(t)
	}
}

func TestUpdateWebhook(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("orders")
	path := "/webhooker/webhooks/" + w.ID

	var got webhookJSON
	e.must(http.StatusOK, "PATCH", path, map[string]any{"name": "orders-v2", "description": "new"}, &got)
	if got.Name != "orders-v2" || got.Description != "new" || !got.Active || got.RetentionDays != 0 {
		t.Errorf("after renaming: %+v", got)
	}
	e.must(http.StatusOK, "PATCH", path, map[string]any{"retention_days": 7}, &got)
	if got.Name != "orders-v2" || got.RetentionDays != 7 {
		t.Errorf("after retention_days 7: %+v (the name must stay)", got)
	}
	e.must(http.StatusOK, "PATCH", path, map[string]any{"active": false}, &got)
	if got.Active || got.Description != "new" || got.RetentionDays != 7 {
		t.Errorf("after active false: %+v", got)
	}
	// In force at once: the route now leads to an inactive webhook.
	snapshotWebhook := func() *storage.Webhook {
		s, err := e.main.LoadSnapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		r, ok := s.Route(w.Entrypoints[0].Key)
		if !ok {
			t.Fatal("the entrypoint is no longer routed")
		}
		return r.Webhook
	}
	if snapshotWebhook().Active {
		t.Error("the configuration still has the webhook active")
	}
	e.must(http.StatusOK, "PATCH", path, map[string]any{"active": true, "description": ""}, &got)
	if !got.Active || got.Description != "" {
		t.Errorf("after active true: %+v", got)
	}
	e.must(http.StatusOK, "GET", path, nil, &got)
	if got.Name != "orders-v2" || !got.Active || got.RetentionDays != 7 {
		t.Errorf("GET after updates: %+v", got)
	}

	for _, body := range []map[string]any{{"name": "bad name"}, {"retention_days": -3}} {
		if resp := e.call("PATCH", path, body); resp.status != http.StatusBadRequest {
			t.Errorf("PATCH %v: %d %s, want 400", body, resp.status, resp)
		}
	}
	// A webhook cannot be given to a user by PATCH: user_id is unknown here.
	if resp := e.call("PATCH", path, map[string]any{"user_id": uuid.NewString()}); resp.status != http.StatusBadRequest ||
		!strings.Contains(resp.errorMessage(t), "user_id") {
		t.Errorf("PATCH user_id: %d %s, want 400 naming user_id", resp.status, resp)
	}
	if resp := e.call("PATCH", "/webhooker/webhooks/"+uuid.NewString(), map[string]any{"name": "x"}); resp.status != http.StatusNotFound {
		t.Errorf("PATCH unknown webhook: %d %s, want 404", resp.status, resp)
	}
}

func TestDeleteWebhook(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("doomed")
	other := e.createWebhook("stays")
	e.addTarget(w.ID, map[string]any{"name": "keep", "type": "database"})
	key := w.Entrypoints[0].Key
	e.ingest(key, incoming{body: []byte(`{"a":1}`), contentType: "application/json"})
	// The event DB is open now: in WAL mode it has its -wal and -shm.
	file := eventDBFile(e.dir, w.ID)
	for _, p := range []string{file, file + "-wal", file + "-shm"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("before delete: %v", err)
		}
	}

	resp := e.call("DELETE", "/webhooker/webhooks/"+w.ID, nil)
	if resp.status != http.StatusNoContent || len(resp.body) != 0 {
		t.Fatalf("DELETE: %d %q, want 204 and no body", resp.status, resp.body)
	}
	for _, p := range []string{file, file + "-wal", file + "-shm"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after delete: %v, want it gone", filepath.Base(p), err)
		}
	}
	if _, err := os.Stat(eventDBFile(e.dir, other.ID)); err != nil {
		t.Errorf("the other webhook's event DB: %v", err)
	}
	for _, q := range []struct{ method, path string }{
		{"GET", "/webhooker/webhooks/" + w.ID},
		{"DELETE", "/webhooker/webhooks/" + w.ID},
		{"GET", "/webhooker/webhooks/" + w.ID + "/events"},
		{"PATCH", "/webhooker/webhooks/" + w.ID},
	} {
		var body any
		if q.method == "PATCH" {
			body = map[string]any{"name": "back"}
		}
		if resp := e.call(q.method, q.path, body); resp.status != http.StatusNotFound {
			t.Errorf("%s %s after delete: %d %s, want 404", q.method, q.path, resp.status, resp)
		}
	}
	// Reading the events of a deleted webhook must not create its file again.
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("event DB after reads of the deleted webhook: %v, want none", err)
	}
	// Its entrypoint routes nowhere, and its key is free again.
	snap, err := e.main.LoadSnapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Route(key); ok {
		t.Error("the deleted webhook's entrypoint is still routed")
	}
	e.must(http.StatusCreated, "POST", "/webhooker/webhooks/"+other.ID+"/entrypoints", map[string]any{"key": key}, nil)

	var list struct{ Webhooks []webhookJSON }
	e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].ID != other.ID {
		t.Errorf("list after delete = %+v", list.Webhooks)
	}
}

func TestEntrypoints(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("multi")
	other := e.createWebhook("other")
	base := "/webhooker/webhooks/" + w.ID + "/entrypoints"

	var fresh, named entrypointJSON
	// No body at all: a generated key.
	e.must(http.StatusCreated, "POST", base, nil, &fresh)
	if !generatedKey.MatchString(fresh.Key) || !fresh.Active || fresh.WebhookID != w.ID {
		t.Errorf("entrypoint without a body = %+v", fresh)
	}
	e.must(http.StatusCreated, "POST", base, map[string]any{"key": "github-push", "active": false}, &named)
	if named.Key != "github-push" || named.Active {
		t.Errorf("named entrypoint = %+v", named)
	}
	// An empty key is no key: a generated one (as documented).
	var empty entrypointJSON
	e.must(http.StatusCreated, "POST", base, map[string]any{"key": ""}, &empty)
	if !generatedKey.MatchString(empty.Key) {
		t.Errorf("entrypoint with key \"\" = %+v, want a generated key", empty)
	}
	e.must(http.StatusNoContent, "DELETE", base+"/"+empty.ID, nil, nil)
	var got webhookJSON
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+w.ID, nil, &got)
	if len(got.Entrypoints) != 3 {
		t.Errorf("entrypoints = %+v, want 3", got.Entrypoints)
	}

	// Taken keys (on any webhook) are 409; invalid ones 400.
	for _, key := range []string{"github-push", w.Entrypoints[0].Key, other.Entrypoints[0].Key} {
		if resp := e.call("POST", base, map[string]any{"key": key}); resp.status != http.StatusConflict {
			t.Errorf("add taken key %q: %d %s, want 409", key, resp.status, resp)
		}
	}
	for _, key := range []string{"a/b", "..", "sp ace", "%2F", strings.Repeat("k", 129)} {
		if resp := e.call("POST", base, map[string]any{"key": key}); resp.status != http.StatusBadRequest {
			t.Errorf("add key %q: %d %s, want 400", key, resp.status, resp)
		}
	}

	// PATCH: toggle and rename.
	var patched entrypointJSON
	e.must(http.StatusOK, "PATCH", base+"/"+named.ID, map[string]any{"active": true}, &patched)
	if !patched.Active || patched.Key != "github-push" {
		t.Errorf("after active true: %+v", patched)
	}
	e.must(http.StatusOK, "PATCH", base+"/"+named.ID, map[string]any{"key": "github-push-v2"}, &patched)
	if patched.Key != "github-push-v2" || !patched.Active {
		t.Errorf("after rename: %+v", patched)
	}
	snap, err := e.main.LoadSnapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Route("github-push-v2"); !ok {
		t.Error("renamed key not routed")
	}
	if _, ok := snap.Route("github-push"); ok {
		t.Error("old key still routed")
	}
	if resp := e.call("PATCH", base+"/"+named.ID, map[string]any{"key": other.Entrypoints[0].Key}); resp.status != http.StatusConflict {
		t.Errorf("rename to a taken key: %d %s, want 409", resp.status, resp)
	}
	if resp := e.call("PATCH", base+"/"+named.ID, map[string]any{"key": "bad/key"}); resp.status != http.StatusBadRequest {
		t.Errorf("rename to a bad key: %d %s, want 400", resp.status, resp)
	}

	// An entrypoint named with another webhook is not found.
	otherBase := "/webhooker/webhooks/" + other.ID + "/entrypoints/"
	if resp := e.call("PATCH", otherBase+named.ID, map[string]any{"active": false}); resp.status != http.StatusNotFound {
		t.Errorf("PATCH through the wrong webhook: %d %s, want 404", resp.status, resp)
	}
	if resp := e.call("DELETE", otherBase+named.ID, nil); resp.status != http.StatusNotFound {
		t.Errorf("DELETE through the wrong webhook: %d %s, want 404", resp.status, resp)
	}

	// DELETE.
	if resp := e.call("DELETE", base+"/"+named.ID, nil); resp.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s, want 204", resp.status, resp)
	}
	if resp := e.call("DELETE", base+"/"+named.ID, nil); resp.status != http.StatusNotFound {
		t.Errorf("DELETE again: %d %s, want 404", resp.status, resp)
	}
	if resp := e.call("PATCH", base+"/"+uuid.NewString(), map[string]any{"active": false}); resp.status != http.StatusNotFound {
		t.Errorf("PATCH unknown: %d %s, want 404", resp.status, resp)
	}
	if resp := e.call("POST", "/webhooker/webhooks/"+uuid.NewString()+"/entrypoints", nil); resp.status != http.StatusNotFound {
		t.Errorf("add to an unknown webhook: %d %s, want 404", resp.status, resp)
	}
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+w.ID, nil, &got)
	if len(got.Entrypoints) != 2 {
		t.Errorf("entrypoints after delete = %+v, want 2", got.Entrypoints)
	}
	// The deleted key is free again.
	e.must(http.StatusCreated, "POST", otherBase[:len(otherBase)-1], map[string]any{"key": "github-push-v2"}, nil)
}

func TestTargets(t *testing.T) {
	e := newEnv(t)
	w := e.createWebhook("fanout")
	base := "/webhooker/webhooks/" + w.ID + "/targets"

	var ht targetJSON
	resp := e.must(http.StatusCreated, "POST", base, map[string]any{
		"name": "ci", "type": "http", "url": "https://ci.example.com/hook",
		"options": map[string]any{
			"max_retries": 3, "timeout": "2s", "backoff_initial": "250ms", "backoff_max": "1m",
			"headers":           map[string]string{"X-Token": "abc"},
			"breaker_threshold": 4, "breaker_cooldown": "10s",
		},
	}, &ht)
	o := ht.Options
	if ht.Name != "ci" || ht.Type != "http" || ht.URL != "https://ci.example.com/hook" || !ht.Active || ht.WebhookID != w.ID {
		t.Errorf("http target = %+v", ht)
	}
	if o.MaxRetries == nil || *o.MaxRetries != 3 || time.Duration(o.Timeout) != 2*time.Second ||
		time.Duration(o.BackoffInitial) != 250*time.Millisecond || time.Duration(o.BackoffMax) != time.Minute ||
		o.Headers["X-Token"] != "(redacted)" || o.BreakerThreshold == nil || *o.BreakerThreshold != 4 ||
		time.Duration(o.BreakerCooldown) != 10*time.Second {
		t.Errorf("options = %+v", o)
	}
	if !strings.Contains(resp.String(), `"timeout":"2s"`) {
		t.Errorf("answer %s: want durations written as \"2s\"", resp)
	}
	if ht.Circuit != "closed" {
		t.Errorf("circuit = %q, want closed", ht.Circuit)
	}

	var db, lg targetJSON
	e.must(http.StatusCreated, "POST", base, map[string]any{"name": "archive", "type": "database"}, &db)
	e.must(http.StatusCreated, "POST", base, map[string]any{"name": "audit", "type": "log", "active": false}, &lg)
	if db.Type != "database" || db.URL != "" || !db.Active || db.Circuit != "" {
		t.Errorf("database target = %+v", db)
	}
	if lg.Type != "log" || lg.Active {
		t.Errorf("log target = %+v", lg)
	}

	var got webhookJSON
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+w.ID, nil, &got)
	if len(got.Targets) != 3 {
		t.Fatalf("targets = %+v", got.Targets)
	}
	if g := got.Targets[0]; g.ID != ht.ID || g.Options.MaxRetries == nil || *g.Options.MaxRetries != 3 ||
		time.Duration(g.Options.Timeout) != 2*time.Second || g.Options.Headers["X-Token"] != "(redacted)" {
		t.Errorf("GET shows the http target as %+v", g)
	}
	// In force at once: only the active targets get deliveries.
	snap, err := e.main.LoadSnapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	route, _ := snap.Route(w.Entrypoints[0].Key)
	if len(route.Targets) != 2 {
		t.Errorf("active targets in force = %+v, want ci and archive", route.Targets)
	}

	// Bad targets are 400, and name the problem.
	for _, bad := range []map[string]any{
		{"name": "x", "type": "http", "url": "not a url"},
		{"name": "x", "type": "http", "url": "ftp://example.com/"},
		{"name": "x", "type": "http", "url": "/relative"},
		{"name": "x", "type": "http"},
		{"name": "x", "type": "smtp"},
		{"name": "x"},
		{"name": "x", "type": "database", "url": "https://example.com/"},
		{"name": "bad name", "type": "log"},
		{"name": "x", "type": "http", "url": "https://example.com/", "options": map[string]any{"max_retries": -1}},
		{"name": "x", "type": "http", "url": "https://example.com/", "options": map[string]any{"timeout": "-2s"}},
		{"name": "x", "type": "http", "url": "https://example.com/", "options": map[string]any{"headers": map[string]string{"Bad Header": "v"}}},
		{"name": "x", "type": "http", "url": "https://example.com/", "options": map[string]any{"backoff_initial": "2m", "backoff_max": "1m"}},
	} {
		resp := e.call("POST", base, bad)
		if resp.status != http.StatusBadRequest {
			t.Errorf("add %v: %d %s, want 400", bad, resp.status, resp)
			continue
		}
		resp.errorMessage(t)
	}
	if resp := e.call("POST", base, map[string]any{"name": "x", "type": "smtp"}); !strings.Contains(resp.String(), "smtp") {
		t.Errorf("unknown type answer %s: want it named", resp)
	}
	if resp := e.call("POST", base, map[string]any{"name": "x", "type": "http", "url": "ftp://example.com/"}); !strings.Contains(resp.String(), "url") {
		t.Errorf("bad url answer %s: want the url named", resp)
	}
	if resp := e.call("POST", base, map[string]any{"name": "x", "type": "http", "url": "https://example.com/", "options": map[string]any{"timeout": "soon"}}); resp.status != http.StatusBadRequest {
		t.Errorf("timeout \"soon\": %d %s, want 400", resp.status, resp)
	}
	if resp := e.call("POST", base, map[string]any{"name": "x", "type": "http", "url": "https://example.com/", "options": map[string]any{"retries": 1}}); resp.status != http.StatusBadRequest ||
		!strings.Contains(resp.String(), "retries") {
		t.Errorf("unknown option: %d %s, want 400 naming it", resp.status, resp)
	}
	if resp := e.call("POST", base, map[string]any{"name": "archive", "type": "database"}); resp.status != http.StatusConflict {
		t.Errorf("duplicate name: %d %s, want 409", resp.status, resp)
	}

	// PATCH: fields, options as a whole, type changes validated as a whole.
	var patched targetJSON
	e.must(http.StatusOK, "PATCH", base+"/"+ht.ID, map[string]any{"url": "https://ci.example.com/v2", "active": false}, &patched)
	if patched.URL != "https://ci.example.com/v2" || patched.Active || patched.Options.MaxRetries == nil {
		t.Errorf("after PATCH url/active: %+v", patched)
	}
	// (Headers aside: without "headers" the stored ones are kept, since
	// clients cannot read their values.)
	e.must(http.StatusOK, "PATCH", base+"/"+ht.ID, map[string]any{"options": map[string]any{"timeout": "5s"}}, &patched)
	if time.Duration(patched.Options.Timeout) != 5*time.Second || patched.Options.MaxRetries != nil || patched.Options.Headers["X-Token"] != "(redacted)" {
		t.Errorf("after PATCH options: %+v, want them replaced as a whole, headers kept", patched.Options)
	}
	if resp := e.call("PATCH", base+"/"+db.ID, map[string]any{"type": "http"}); resp.status != http.StatusBadRequest {
		t.Errorf("database -> http without url: %d %s, want 400", resp.status, resp)
	}
	e.must(http.StatusOK, "PATCH", base+"/"+db.ID, map[string]any{"type": "http", "url": "http://127.0.0.1:1/"}, &patched)
	if patched.Type != "http" || patched.Name != "archive" {
		t.Errorf("database -> http: %+v", patched)
	}
	if resp := e.call("PATCH", base+"/"+db.ID, map[string]any{"name": "ci"}); resp.status != http.StatusConflict {
		t.Errorf("rename to a taken name: %d %s, want 409", resp.status, resp)
	}
	if resp := e.call("PATCH", base+"/"+db.ID, map[string]any{"url": "gopher://x"}); resp.status != http.StatusBadRequest {
		t.Errorf("PATCH bad url: %d %s, want 400", resp.status, resp)
	}
	if resp := e.call("PATCH", base+"/"+uuid.NewString(), map[string]any{"active": true}); resp.status != http.StatusNotFound {
		t.Errorf("PATCH unknown target: %d %s, want 404", resp.status, resp)
	}

	// DELETE.
	if resp := e.call("DELETE", base+"/"+lg.ID, nil); resp.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s, want 204", resp.status, resp)
	}
	if resp := e.call("DELETE", base+"/"+lg.ID, nil); resp.status != http.StatusNotFound {
		t.Errorf("DELETE again: %d %s, want 404", resp.status, resp)
	}
	other := e.createWebhook("other")
	if resp := e.call("DELETE", "/webhooker/webhooks/"+other.ID+"/targets/"+ht.ID, nil); resp.status != http.StatusNotFound {
		t.Errorf("DELETE through another webhook: %d %s, want 404", resp.status, resp)
	}
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+w.ID, nil, &got)
	if len(got.Targets) != 2 {
		t.Errorf("targets after delete = %+v", got.Targets)
	}
	// The name of a deleted target is free again.
	e.must(http.StatusCreated, "POST", base, map[string]any{"name": "audit", "type": "log"}, nil)
}

// TestCaddyfileWebhooksAreReadOnly: webhooks declared in the Caddyfile are
// listed and readable, but every change is 409 naming the Caddyfile.
func TestCaddyfileWebhooksAreReadOnly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := storage.DeclaredWebhookID("declared")
	declared := &storage.Webhook{
		ID: id, Name: "declared", Source: storage.SourceCaddyfile, Active: true,
		Entrypoints: []storage.Entrypoint{{ID: storage.DeclaredEntrypointID(id, "decl-in"), WebhookID: id, Key: "decl-in", Active: true}},
		Targets:     []storage.Target{{ID: storage.DeclaredTargetID(id, "keep"), WebhookID: id, Name: "keep", Type: storage.TargetDatabase, Active: true}},
	}
	if err := e.data.Declare(&datadir.Declaration{Webhooks: []*storage.Webhook{declared}}); err != nil {
		t.Fatal(err)
	}
	if err := e.events.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.ingest("decl-in", incoming{body: []byte(`{}`), contentType: "application/json"})

	var got webhookJSON
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+id, nil, &got)
	if !got.ReadOnly || got.Source != "caddyfile" || len(got.Targets) != 1 || len(got.Entrypoints) != 1 {
		t.Errorf("declared webhook = %+v", got)
	}
	var list struct{ Webhooks []webhookJSON }
	e.must(http.StatusOK, "GET", "/webhooker/webhooks", nil, &list)
	if len(list.Webhooks) != 1 || !list.Webhooks[0].ReadOnly {
		t.Errorf("list = %+v", list.Webhooks)
	}
	var page eventPage
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+id+"/events", nil, &page)
	if len(page.Events) != 1 {
		t.Errorf("events of the declared webhook = %+v", page.Events)
	}

	base := "/webhooker/webhooks/" + id
	eid, tid := declared.Entrypoints[0].ID, declared.Targets[0].ID
	for _, q := range []struct {
		method, path string
		body         any
	}{
		{"PATCH", base, map[string]any{"name": "renamed"}},
		{"DELETE", base, nil},
		{"POST", base + "/entrypoints", map[string]any{"key": "more"}},
		{"PATCH", base + "/entrypoints/" + eid, map[string]any{"active": false}},
		{"DELETE", base + "/entrypoints/" + eid, nil},
		{"POST", base + "/targets", map[string]any{"name": "log", "type": "log"}},
		{"PATCH", base + "/targets/" + tid, map[string]any{"active": false}},
		{"DELETE", base + "/targets/" + tid, nil},
	} {
		resp := e.call(q.method, q.path, q.body)
		if resp.status != http.StatusConflict {
			t.Errorf("%s %s: %d %s, want 409", q.method, q.path, resp.status, resp)
			continue
		}
		if msg := resp.errorMessage(t); !strings.Contains(msg, "Caddyfile") {
			t.Errorf("%s %s: error %q does not say the Caddyfile owns it", q.method, q.path, msg)
		}
	}
	e.must(http.StatusOK, "GET", base, nil, &got)
	if got.Name != "declared" || len(got.Targets) != 1 || len(got.Entrypoints) != 1 || !got.Entrypoints[0].Active {
		t.Errorf("declared webhook changed: %+v", got)
	}
	if _, err := os.Stat(eventDBFile(e.dir, id)); err != nil {
		t.Errorf("declared event DB: %v", err)
	}
}
