package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binaryGateway is the built caddy binary set up to run on a Caddyfile of
// its own in dir: a webhooker block over dir/data, served under /hooks/ on
// a free port.
type binaryGateway struct {
	bin, dir, caddyfile string
	dataDir             string
	hooks               string // http://127.0.0.1:<port>/hooks/
	admin               string // http://localhost:<port>
}

// newBinaryGateway writes the Caddyfile: an admin endpoint and a site on
// free ports, and the webhooker block with data_dir, then webhooker (its
// other lines, indented by two tabs).
func newBinaryGateway(t *testing.T, bin, dir, webhooker string) *binaryGateway {
	t.Helper()
	adminPort, sitePort := freePort(t), freePort(t)
	g := &binaryGateway{bin: bin, dir: dir, caddyfile: filepath.Join(dir, "Caddyfile"), dataDir: filepath.Join(dir, "data"),
		hooks: fmt.Sprintf("http://127.0.0.1:%d/hooks/", sitePort), admin: fmt.Sprintf("http://localhost:%d", adminPort)}
	config := fmt.Sprintf("{\n\tadmin localhost:%d\n\twebhooker {\n\t\tdata_dir %s\n%s\t}\n}\n\nhttp://:%d {\n\twebhooker /hooks/*\n}\n",
		adminPort, g.dataDir, webhooker, sitePort)
	if err := os.WriteFile(g.caddyfile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

// start runs the binary on the Caddyfile, with a home of its own in dir,
// its output in logs. The caller waits for it to be ready.
func (g *binaryGateway) start(t *testing.T) (cmd *exec.Cmd, logs *bytes.Buffer) {
	t.Helper()
	cmd = exec.Command(g.bin, "run", "--config", g.caddyfile)
	cmd.Env = append(os.Environ(), "HOME="+g.dir, "XDG_DATA_HOME="+g.dir, "XDG_CONFIG_HOME="+g.dir)
	logs = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, logs
}
