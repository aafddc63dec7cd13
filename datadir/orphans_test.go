package datadir

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

// TestOpenRemovesEventDBsOfDeletedWebhooks: a webhook deleted through the
// API whose event DB file outlived it (the delete was cut short) has it
// removed at the next open; a webhook the Caddyfile stopped declaring keeps
// its file, to find its events when declared again.
func TestOpenRemovesEventDBsOfDeletedWebhooks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() *Dir {
		t.Helper()
		d, err := Open(dir, Options{Synchronous: storage.SynchronousNormal, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	closeDir := func(d *Dir) {
		t.Helper()
		stop, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := d.Close(stop); err != nil {
			t.Fatal(err)
		}
	}

	d := open()
	declared := keptWebhook("declared", 0)
	if err := d.Declare(&Declaration{Webhooks: []*storage.Webhook{declared}}); err != nil {
		t.Fatal(err)
	}
	api, err := d.main.CreateWebhook(ctx, storage.NewWebhook{Name: "api"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{api.ID, declared.ID} {
		if err := d.events.Create(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// The config rows go, the files stay: a delete cut short, and a
	// Caddyfile that no longer declares the webhook.
	if err := d.main.DeleteWebhook(ctx, api.ID); err != nil {
		t.Fatal(err)
	}
	if err := d.Declare(&Declaration{}); err != nil {
		t.Fatal(err)
	}
	closeDir(d)
	for _, id := range []string{api.ID, declared.ID} {
		if path, _ := d.events.EventDBPath(id); !exists(path) {
			t.Fatalf("setup: %s is missing before the reopen", path)
		}
	}

	d = open()
	defer closeDir(d)
	apiPath, _ := d.events.EventDBPath(api.ID)
	declaredPath, _ := d.events.EventDBPath(declared.ID)
	if exists(apiPath) || exists(apiPath+"-wal") || exists(apiPath+"-shm") {
		t.Errorf("the deleted API webhook's event DB is still there after the reopen")
	}
	if !exists(declaredPath) {
		t.Errorf("the undeclared Caddyfile webhook's event DB was removed")
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
