package caddymodule_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogTargetFollowsReloads: the engine outlives reloads, and used to keep
// the first config's logger. Caddy closes an unloaded config's log writers,
// so after a reload that changed logging the log target wrote to a closed
// writer while its deliveries were recorded delivered. Now each config's
// logger is put in force with it.
func TestLogTargetFollowsReloads(t *testing.T) {
	g := startGateway(t, "")
	dir := t.TempDir()
	withLog := func(file string) string {
		cfg := caddyfile(g.dataDir, "\t\twebhook logged {\n\t\t\tentrypoint logged-key\n\t\t\ttarget audit log\n\t\t}")
		return strings.Replace(cfg, "\tadmin localhost:2999\n",
			"\tadmin localhost:2999\n\tlog {\n\t\toutput file "+file+"\n\t\tformat json\n\t}\n", 1)
	}
	first, second := filepath.Join(dir, "first.log"), filepath.Join(dir, "second.log")
	for _, file := range []string{first, second} {
		if status, body := loadConfig(t, withLog(file), "text/caddyfile"); status != http.StatusOK {
			t.Fatalf("load with log %s: %d %s", file, status, body)
		}
	}
	id := g.mustIngest("logged-key", `{"after":"the reload"}`)
	logged := func(file string) bool {
		b, _ := os.ReadFile(file)
		return strings.Contains(string(b), `"msg":"webhook event"`) && strings.Contains(string(b), id)
	}
	eventually(t, 20*time.Second, func() bool { return logged(second) }, "the event in the second config's log")
	if logged(first) {
		t.Errorf("the event went to the first config's log as well")
	}
}
