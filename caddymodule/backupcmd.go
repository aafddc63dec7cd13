package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/webhooker/caddy-webhooker/admin"
	"github.com/webhooker/caddy-webhooker/datadir"
	"github.com/webhooker/caddy-webhooker/storage"
)

// `caddy webhooker-backup` asks a running Caddy, through its admin
// endpoint, for a backup of its webhooker data_dir (POST /webhooker/backup)
// and prints what the backup holds.

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "webhooker-backup",
		Usage: "[--admin <addr> | --config <path> [--adapter <name>]] [--pause-targets] <dir>",
		Short: "Backs up the webhooker data_dir of a running Caddy into a directory",
		Long: `
Writes an online, consistent copy of the running webhooker data_dir into
<dir>: the main DB and every event DB, with backup.json, the manifest,
written last. Ingest and delivery go on meanwhile; every event acknowledged
before the backup began is in it. <dir> must be empty or not exist yet, and
be outside the data_dir; a relative <dir> is taken from the current
directory. The files are written by the Caddy process, as its user.

With --pause-targets every target is paused in the copy (not in the running
Caddy): a Caddy started on a restored copy then sends nothing until each
target is resumed, so deliveries made after the backup are not made again
unasked.

The admin endpoint is --admin, else the admin address of --config, else
localhost:2019, as for caddy stop.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ExactArgs(1)
			cmd.Flags().String("admin", "", "Address of Caddy's admin endpoint")
			cmd.Flags().StringP("config", "c", "", "Configuration file to read the admin address from, if --admin is not used")
			cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply (when --config is used)")
			cmd.Flags().Bool("pause-targets", false, "Pause every target in the copy")
			cmd.RunE = func(cmd *cobra.Command, args []string) error {
				return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
					return cmdWebhookerBackup(cmd.OutOrStdout(), fl)
				})(cmd, args)
			}
		},
	})
}

func cmdWebhookerBackup(out io.Writer, fl caddycmd.Flags) (int, error) {
	adminAddr, err := adminAddress(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	// The server resolves nothing against its own working directory: a
	// relative path is this command's.
	dir, err := filepath.Abs(fl.Arg(0))
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("backup directory %s: %v", fl.Arg(0), err)
	}
	body, err := json.Marshal(map[string]any{"dir": dir, "pause_targets": fl.Bool("pause-targets")})
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	// AdminAPIRequest reaches the endpoint as caddy stop does (a unix
	// socket too), and turns an answer of 400 and over into an error that
	// carries the API's {"error": "…"}.
	resp, err := caddycmd.AdminAPIRequest(adminAddr, http.MethodPost, admin.Prefix+"/backup", nil, bytes.NewReader(body))
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("backup into %s: %v", dir, err)
	}
	defer resp.Body.Close()
	var m storage.BackupManifest
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&m); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("backup into %s: reading the manifest: %v", dir, err)
	}
	printBackup(out, &m)
	return caddy.ExitCodeSuccess, nil
}

// printBackup prints what a backup holds, as its manifest says.
func printBackup(out io.Writer, m *storage.BackupManifest) {
	var size int64
	for _, f := range m.Files {
		size += f.Size
	}
	fmt.Fprintf(out, "backup written to %s in %v (caddy-webhooker %s)\n", m.Dir, m.FinishedAt.Sub(m.StartedAt).Round(time.Millisecond), m.Version)
	if len(m.Files) > 0 {
		main := m.Files[0]
		fmt.Fprintf(out, "  %s: %s, %s", main.Name, count(main.Webhooks, "webhook"), count(main.Targets, "target"))
		if m.TargetsPaused {
			fmt.Fprintf(out, ", %d paused in the copy", main.PausedTargets)
		}
		fmt.Fprintln(out)
	}
	var eventDBs int
	var dedup int64
	for _, f := range m.Files {
		if f.WebhookID != "" {
			eventDBs++
		}
		dedup += f.DedupKeys
	}
	fmt.Fprintf(out, "  %s: %s, %s, %d of them open (attempted again by a Caddy started on the copy)\n",
		count(int64(eventDBs), "event DB"), count(m.Events, "event"), count(m.Deliveries, "delivery"), m.OpenDeliveries)
	fmt.Fprintf(out, "  %s: %s\n", storage.IntakeFile, count(dedup, "dedup id"))
	fmt.Fprintf(out, "  %s in %s; manifest: %s\n", count(size, "byte"), count(int64(len(m.Files)), "file"), filepath.Join(m.Dir, datadir.BackupManifestFile))
}

// count says "1 event", "2 events"; "delivery" becomes "deliveries".
func count(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if stem, ok := strings.CutSuffix(noun, "y"); ok {
		return fmt.Sprintf("%d %sies", n, stem)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
