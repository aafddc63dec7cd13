package admin_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/storage"
)

// TestSettingsTellTheClusterNode: in cluster mode GET /settings carries the
// node's state for the event-log page, on the admin faces only.
func TestSettingsTellTheClusterNode(t *testing.T) {
	e := newEnvWith(t, func(b *admin.Backend) {
		b.Cluster = func() admin.ClusterState {
			return admin.ClusterState{Node: "n2", Ready: true, Routes: 2, Partitions: 16, PartitionsOwned: 5, HeldMessages: 3, ConfigApplied: 7}
		}
	})
	var got struct {
		Cluster *admin.ClusterState `json:"cluster"`
	}
	e.must(http.StatusOK, "GET", "/webhooker/settings", nil, &got)
	if c := got.Cluster; c == nil || c.Node != "n2" || !c.Ready || c.Routes != 2 || c.PartitionsOwned != 5 || c.HeldMessages != 3 || c.ConfigApplied != 7 {
		t.Fatalf("settings' cluster: %+v", got.Cluster)
	}
	_, key := e.createUser("tenant")
	resp := serve(t, e.tenant, req{method: "GET", path: "/webhooker/settings", key: key.Key})
	if resp.status != http.StatusOK || strings.Contains(resp.String(), "cluster") {
		t.Fatalf("tenant settings: %d %s", resp.status, resp)
	}
}

// TestEventsBeforeAtIsChecked: before_at, the cursor's time for pages
// merged from several nodes, is an RFC 3339 time in range, else 400.
func TestEventsBeforeAtIsChecked(t *testing.T) {
	e := newEnv(t)
	wh := e.createWebhook("w")
	for _, bad := range []string{"yesterday", "3000-01-01T00:00:00Z", "2026-13-01T00:00:00Z"} {
		resp := e.call("GET", "/webhooker/webhooks/"+wh.ID+"/events?before=01a2359e-e8b7-7ed6-8c47-03a2c0832d56&before_at="+bad, nil)
		if resp.status != http.StatusBadRequest || !strings.Contains(resp.String(), "before_at") {
			t.Errorf("before_at=%s: %d %s, want 400 naming before_at", bad, resp.status, resp)
		}
	}
	// A cursor of another node's event, with its time: an empty page here.
	resp := e.call("GET", "/webhooker/webhooks/"+wh.ID+"/events?before=01a2359e-e8b7-7ed6-8c47-03a2c0832d56&before_at=2026-01-01T00:00:00Z", nil)
	if resp.status != http.StatusOK {
		t.Fatalf("a foreign cursor with its time: %d %s", resp.status, resp)
	}
}

// downLog is a cluster's configuration log out of reach: no quorum.
type downLog struct{}

func (downLog) Head(context.Context) (uint64, error) {
	return 0, errors.New("no quorum: 1 of 3 nodes")
}
func (downLog) Append(context.Context, []byte, uint64) (uint64, error) {
	return 0, errors.New("no quorum: 1 of 3 nodes")
}

// TestConfigWritesWithoutTheLogAnswer503: in cluster mode, a change to the
// configuration while the cluster's configuration log is out of reach
// answers 503 with the reason, and writes nothing; reads are served.
func TestConfigWritesWithoutTheLogAnswer503(t *testing.T) {
	e := newEnv(t)
	wh := e.createWebhook("before")
	tg := e.addTarget(wh.ID, map[string]any{"name": "db", "type": "database"})
	user, key := e.createUser("alice")
	if err := e.main.Replicate(context.Background(), downLog{}, "n1"); err != nil {
		t.Fatal(err)
	}
	ep := wh.Entrypoints[0].ID
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/webhooker/webhooks", map[string]any{"name": "after"}},
		{"PATCH", "/webhooker/webhooks/" + wh.ID, map[string]any{"description": "x"}},
		{"DELETE", "/webhooker/webhooks/" + wh.ID, nil},
		{"POST", "/webhooker/webhooks/" + wh.ID + "/entrypoints", map[string]any{}},
		{"PATCH", "/webhooker/webhooks/" + wh.ID + "/entrypoints/" + ep, map[string]any{"active": false}},
		{"DELETE", "/webhooker/webhooks/" + wh.ID + "/entrypoints/" + ep, nil},
		{"POST", "/webhooker/webhooks/" + wh.ID + "/targets", map[string]any{"name": "log", "type": "log"}},
		{"PATCH", "/webhooker/webhooks/" + wh.ID + "/targets/" + tg.ID, map[string]any{"active": false}},
		{"DELETE", "/webhooker/webhooks/" + wh.ID + "/targets/" + tg.ID, nil},
		{"POST", "/webhooker/webhooks/" + wh.ID + "/targets/" + tg.ID + "/pause", nil},
		{"POST", "/webhooker/webhooks/" + wh.ID + "/targets/" + tg.ID + "/resume", nil},
		{"POST", "/webhooker/users", map[string]any{"name": "bob"}},
		{"DELETE", "/webhooker/users/" + user.ID, nil},
		{"POST", "/webhooker/users/" + user.ID + "/api-keys", map[string]any{"name": "k"}},
		{"DELETE", "/webhooker/users/" + user.ID + "/api-keys/" + key.ID, nil},
	} {
		resp := e.call(c.method, c.path, c.body)
		if resp.status != http.StatusServiceUnavailable || !strings.Contains(resp.String(), "no quorum") {
			t.Errorf("%s %s: %d %s, want 503 with the log's error", c.method, c.path, resp.status, resp)
		}
	}
	var got webhookJSON
	e.must(http.StatusOK, "GET", "/webhooker/webhooks/"+wh.ID, nil, &got)
	if got.Description != "" || len(got.Targets) != 1 || got.Targets[0].Paused || !got.Targets[0].Active || len(got.Entrypoints) != 1 {
		t.Fatalf("the webhook after the refused writes: %+v", got)
	}
	var users struct {
		Users []userJSON `json:"users"`
	}
	e.must(http.StatusOK, "GET", "/webhooker/users", nil, &users)
	if len(users.Users) != 1 {
		t.Fatalf("users after the refused writes: %+v", users.Users)
	}
}

// oneChangeLog is a configuration log holding one change; headAsked is
// closed when a node first asks for its head.
type oneChangeLog struct {
	change    []byte
	once      sync.Once
	headAsked chan struct{}
}

func (l *oneChangeLog) Head(context.Context) (uint64, error) {
	l.once.Do(func() { close(l.headAsked) })
	return 1, nil
}

func (l *oneChangeLog) Append(_ context.Context, change []byte, after uint64) (uint64, error) {
	if after != 1 {
		return 0, storage.ErrConfigConflict
	}
	return 2, nil
}

// capturingLog takes every change (a node alone in its cluster).
type capturingLog struct{ changes [][]byte }

func (l *capturingLog) Head(context.Context) (uint64, error) { return uint64(len(l.changes)), nil }
func (l *capturingLog) Append(_ context.Context, change []byte, after uint64) (uint64, error) {
	l.changes = append(l.changes, change)
	return uint64(len(l.changes)), nil
}

// TestRequestSeesChangesMadeOnOtherNodes: in cluster mode a request waits
// until this node has applied the configuration log as it stood when the
// request came, so that a webhook just made on another node is found by
// the next request here, not answered 404.
func TestRequestSeesChangesMadeOnOtherNodes(t *testing.T) {
	ctx := context.Background()
	// The webhook made on the other node, as its change in the log.
	other, err := storage.OpenMainDB(ctx, t.TempDir(), storage.SynchronousNormal)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	made := &capturingLog{}
	if err := other.Replicate(ctx, made, "other"); err != nil {
		t.Fatal(err)
	}
	wh, err := other.CreateWebhook(ctx, storage.NewWebhook{Name: "made-elsewhere"})
	if err != nil {
		t.Fatal(err)
	}

	e := newEnv(t)
	log := &oneChangeLog{change: made.changes[0], headAsked: make(chan struct{})}
	if err := e.main.Replicate(ctx, log, "here"); err != nil {
		t.Fatal(err)
	}
	// This node's follower applies the change only once the request has
	// asked for the log's head: had the request not waited for it, it
	// would have looked the webhook up before it was here.
	applied := make(chan error, 1)
	go func() {
		<-log.headAsked
		_, err := e.main.ApplyConfigChange(ctx, 1, log.change)
		if err == nil {
			err = e.data.Reload(ctx)
		}
		applied <- err
	}()
	resp := e.call("POST", "/webhooker/webhooks/"+wh.ID+"/targets", map[string]any{"name": "log", "type": "log"})
	if resp.status != http.StatusCreated {
		t.Fatalf("add a target to the webhook made on another node: %d %s", resp.status, resp)
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
}

// countingLog counts the heads asked of it; with appends set, it takes
// every append (a log of one node).
type countingLog struct {
	heads   atomic.Int32
	appends bool
	last    atomic.Uint64
}

func (l *countingLog) Head(context.Context) (uint64, error) {
	l.heads.Add(1)
	return l.last.Load(), nil
}
func (l *countingLog) Append(_ context.Context, _ []byte, after uint64) (uint64, error) {
	if !l.appends {
		return 0, errors.New("not for this test")
	}
	if !l.last.CompareAndSwap(after, after+1) {
		return 0, storage.ErrConfigConflict
	}
	return after + 1, nil
}

// TestConfigChangeAsksTheLogOnce: a configuration change through the API
// asks the log's head once, when its request catches up, and its write
// goes on from there; a write made without the handler asks for itself.
func TestConfigChangeAsksTheLogOnce(t *testing.T) {
	e := newEnv(t)
	log := &countingLog{appends: true}
	if err := e.main.Replicate(context.Background(), log, "here"); err != nil {
		t.Fatal(err)
	}
	if resp := e.call("POST", "/webhooker/webhooks", map[string]any{"name": "asked-once"}); resp.status != http.StatusCreated {
		t.Fatalf("create a webhook: %d %s", resp.status, resp)
	}
	if n := log.heads.Load(); n != 1 || log.last.Load() != 1 {
		t.Fatalf("a change through the API asked the head %d times and appended %d changes; want 1 and 1", n, log.last.Load())
	}
	if _, err := e.main.CreateWebhook(context.Background(), storage.NewWebhook{Name: "without-the-handler"}); err != nil {
		t.Fatal(err)
	}
	if n := log.heads.Load(); n != 2 || log.last.Load() != 2 {
		t.Fatalf("a write without the handler: %d heads asked in all, %d changes; want 2 and 2", n, log.last.Load())
	}
}

// TestReadForAPeerAsksNotTheLog: a read another node asks of this one
// (it caught up itself) does not ask the configuration log again; a read
// of this node's own client does.
func TestReadForAPeerAsksNotTheLog(t *testing.T) {
	e := newEnv(t)
	wh := e.createWebhook("w")
	log := &countingLog{}
	if err := e.main.Replicate(context.Background(), log, "here"); err != nil {
		t.Fatal(err)
	}
	path := "/webhooker/webhooks/" + wh.ID + "/events"
	peer := httptest.NewRequest("GET", path, nil).WithContext(admin.ForPeer(context.Background()))
	rec := httptest.NewRecorder()
	e.adminHandler.ServeHTTP(rec, peer)
	if rec.Code != http.StatusOK || log.heads.Load() != 0 {
		t.Fatalf("a peer's read: %d, %d heads asked; want 200 and none", rec.Code, log.heads.Load())
	}
	if resp := e.call("GET", path, nil); resp.status != http.StatusOK || log.heads.Load() != 1 {
		t.Fatalf("a client's read: %d, %d heads asked; want 200 and one", resp.status, log.heads.Load())
	}
}
