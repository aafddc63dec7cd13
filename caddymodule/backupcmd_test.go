package caddymodule_test

// `caddy webhooker-backup`, run as Caddy's CLI runs it (its cobra command,
// with flags), against the real in-process Caddy.

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/webhooker/caddy-webhooker/storage"
)

// runWebhookerBackup runs `caddy webhooker-backup args...` and returns what
// it printed and the error it ended with.
func runWebhookerBackup(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c, ok := caddycmd.Commands()["webhooker-backup"]
	if !ok {
		t.Fatal("the webhooker-backup command is not registered")
	}
	cmd := &cobra.Command{Use: c.Name, SilenceUsage: true, SilenceErrors: true}
	c.CobraFunc(cmd)
	cmd.SetArgs(args)
	var out bytes.Buffer
	cmd.SetOut(&out)
	err := cmd.Execute()
	return out.String(), err
}

// TestWebhookerBackupCaddy: the command backs up a running Caddy's
// data_dir into a new directory (a relative one taken from the command's
// working directory), prints what it holds, and the copy holds the events;
// a directory that is not empty is refused, saying why, with an error
// (non-zero exit), and is left as it was.
func TestWebhookerBackupCaddy(t *testing.T) {
	g := startGateway(t, `
		webhook github {
			entrypoint gh-push
			target archive database
		}
`)
	for range 3 {
		g.mustIngest("gh-push", `{"ref":"main"}`)
	}
	t.Chdir(t.TempDir())
	out, err := runWebhookerBackup(t, "--admin", "localhost:2999", "--pause-targets", "backup")
	if err != nil {
		t.Fatalf("webhooker-backup: %v (printed %q)", err, out)
	}
	t.Logf("printed:\n%s", out)
	dir, _ := filepath.Abs("backup")
	for _, want := range []string{"backup written to " + dir, "webhooker.db: 1 webhook, 1 target, 1 paused in the copy",
		"1 event DB: 3 events, 3 deliveries, 0 of them open", "intake.db: 0 dedup ids", " bytes in 3 files;", filepath.Join(dir, "backup.json")} {
		if !strings.Contains(out, want) {
			t.Errorf("webhooker-backup printed %q, want %q in it", out, want)
		}
	}
	var manifest struct {
		Events int64 `json:"events"`
		Files  []struct {
			Name string `json:"name"`
		} `json:"files"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "backup.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &manifest); err != nil || manifest.Events != 3 || len(manifest.Files) != 3 {
		t.Fatalf("backup.json: %s (%v)", data, err)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, manifest.Files[2].Name)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var events int
	if err := db.QueryRow("SELECT count(*) FROM events WHERE body = ?", []byte(`{"ref":"main"}`)).Scan(&events); err != nil || events != 3 {
		t.Errorf("the copied event DB holds %d of the events (%v), want 3", events, err)
	}

	out, err = runWebhookerBackup(t, "--admin", "localhost:2999", dir)
	if err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("a second backup into %s: %v (printed %q), want a 400 saying it is not empty", dir, err, out)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("the refused backup left %d files in %s, want the 4 of the first", len(entries), dir)
	}
}

// TestBackupNotOnAdminSite: an operator signed in on a webhooker_admin site
// gets no backup route (404, nothing written): the copy holds the secrets
// the API never shows, and the site would write it wherever it is told.
// The admin endpoint of the same config takes it.
func TestBackupNotOnAdminSite(t *testing.T) {
	g := startOpsSite(t)
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("ops", "s3cret")
	auth := map[string]string{"Authorization": req.Header.Get("Authorization")}
	dir := filepath.Join(t.TempDir(), "backup")
	body, _ := json.Marshal(map[string]string{"dir": dir})
	if a := g.siteRequest("POST", "/webhooker/backup", string(body), auth); a.status != http.StatusNotFound {
		t.Errorf("backup on the webhooker_admin site: %s, want 404", a)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the site's refusal left %s (%v)", dir, err)
	}
	if out, err := runWebhookerBackup(t, "--admin", "localhost:2999", dir); err != nil || !strings.Contains(out, "webhooker.db: 1 webhook,") {
		t.Errorf("backup on the admin endpoint: %v, printed %q", err, out)
	}
}

// TestBackupRestoredByCaddy: Caddy started on a backup's copy (the same
// Caddyfile, data_dir the copy) holds the events, and sends the deliveries
// that were open when the backup was taken once their target, paused then,
// is resumed.
func TestBackupRestoredByCaddy(t *testing.T) {
	var received atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { received.Add(1) }))
	defer target.Close()
	lines := `
		webhook github {
			entrypoint gh-push
			target ci http ` + target.URL + `
		}
`
	g := startGateway(t, lines)
	wh := storage.DeclaredWebhookID("github")
	pause := "/webhooks/" + wh + "/targets/" + storage.DeclaredTargetID(wh, "ci")
	if a := g.admin("POST", pause+"/pause", nil); a.status != http.StatusOK {
		t.Fatalf("pause: %s", a)
	}
	for range 5 {
		g.mustIngest("gh-push", `{"ref":"main"}`)
	}
	dir := filepath.Join(t.TempDir(), "backup")
	out, err := runWebhookerBackup(t, "--admin", "localhost:2999", dir)
	if err != nil || !strings.Contains(out, "5 events, 5 deliveries, 5 of them open") {
		t.Fatalf("backup: %v, printed %q", err, out)
	}

	// Restore: the same Caddyfile on the copy.
	g.dataDir = dir
	g.reload(lines)
	var list struct {
		Webhooks []struct {
			Stats storage.EventStats `json:"stats"`
		} `json:"webhooks"`
	}
	g.admin("GET", "/webhooks?stats=true", nil).decode(t, http.StatusOK, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].Stats.Events != 5 || list.Webhooks[0].Stats.Deliveries[storage.DeliveryPending] != 5 {
		t.Fatalf("the restored gateway shows %+v, want 5 events with 5 pending deliveries", list.Webhooks)
	}
	if a := g.admin("POST", pause+"/resume", nil); a.status != http.StatusOK {
		t.Fatalf("resume: %s", a)
	}
	deadline := time.Now().Add(15 * time.Second)
	for received.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // waits for the deliveries, proves nothing absent
	}
	if n := received.Load(); n != 5 {
		t.Errorf("the target got %d deliveries from the restored gateway, want the 5 open in the backup", n)
	}
}
