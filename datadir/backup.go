package datadir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// BackupManifestFile is the manifest's name in a backup directory, written
// last: a directory without it holds no finished backup.
const BackupManifestFile = "backup.json"

// BackupOptions are the choices of one backup.
type BackupOptions struct {
	// PauseTargets pauses every live target in the copy (not in this
	// directory): a gateway started on the restored copy sends nothing
	// until its operator resumes each target, so that the deliveries that
	// went out after the backup are not sent again unasked.
	PauseTargets bool
}

// Backup writes an online, consistent copy of this data directory into
// dir, an absolute path outside the data directory, empty or not yet
// there (then made 0700), and returns its manifest, also written there as
// backup.json. Ingest and delivery go on meanwhile.
//
// The intake is applied first, so the event DBs hold every event
// acknowledged before Backup was called, and intake.db is copied with its
// dedup ids only (storage.Intake.BackupDedupTo): a restore replays
// nothing, and catches a provider's repeat of an event it holds. Each
// event DB is copied in one read transaction, the main DB last: its
// configuration rows are only ever soft-deleted, so the copy names every
// webhook and target the event DBs' deliveries refer to. One backup runs at a time
// (storage.ErrConflict for a second); bad input is storage.ErrInvalid.
func (d *Dir) Backup(ctx context.Context, dir string, opts BackupOptions) (m *storage.BackupManifest, err error) {
	if !d.backingUp.TryLock() {
		return nil, fmt.Errorf("%w: a backup is already running", storage.ErrConflict)
	}
	defer d.backingUp.Unlock()
	made, err := d.backupDir(dir)
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	m = &storage.BackupManifest{Dir: dir, Version: engine.Version, StartedAt: time.Now().UTC(), TargetsPaused: opts.PauseTargets}
	// Whatever fails, leave the directory as it was given, so that the
	// backup can be taken again into it.
	written := []string{}
	defer func() {
		if err == nil {
			return
		}
		for _, name := range written {
			_ = os.Remove(filepath.Join(dir, name))
		}
		if made {
			_ = os.Remove(dir)
		}
	}()
	if err = d.ApplyIntake(); err != nil {
		return nil, fmt.Errorf("backup: apply the intake: %w", err)
	}
	// Before the event DBs: every event its dedup ids name is in them.
	intake, err := d.intake.BackupDedupTo(ctx, filepath.Join(dir, storage.IntakeFile))
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	written = append(written, storage.IntakeFile)
	ids, err := d.eventDBs()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		var f storage.BackupFile
		name := "events-" + id + ".db"
		err = d.events.With(ctx, id, func(db *storage.WebhookDB) error {
			var err error
			f, err = db.BackupTo(ctx, filepath.Join(dir, name))
			return err
		})
		if errors.Is(err, storage.ErrNotFound) {
			err = nil // deleted since the listing: it is not in the main DB's copy either
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("backup of webhook %s: %w", id, err)
		}
		written = append(written, name)
		m.Files = append(m.Files, f)
		m.Events += f.Events
		m.Deliveries += f.Deliveries
		m.OpenDeliveries += f.OpenDeliveries
	}
	main, err := d.main.BackupTo(ctx, filepath.Join(dir, storage.MainDBFile), opts.PauseTargets)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	written = append(written, storage.MainDBFile)
	m.Files = append([]storage.BackupFile{main, intake}, m.Files...)
	m.FinishedAt = time.Now().UTC()
	written = append(written, BackupManifestFile)
	if err = writeManifest(dir, m); err != nil {
		return nil, err
	}
	d.logger().Info("backup written", zap.String("dir", dir), zap.Int("files", len(m.Files)),
		zap.Int64("events", m.Events), zap.Int64("open_deliveries", m.OpenDeliveries),
		zap.Bool("targets_paused", m.TargetsPaused), zap.Duration("took", m.FinishedAt.Sub(m.StartedAt)))
	return m, nil
}

// backupDir checks dir as a backup's destination and makes it if it is
// not there (made true).
func (d *Dir) backupDir(dir string) (made bool, err error) {
	if !filepath.IsAbs(dir) {
		return false, fmt.Errorf("%w: backup directory %q: give an absolute path", storage.ErrInvalid, dir)
	}
	dir = filepath.Clean(dir)
	data, err := filepath.Abs(d.path)
	if err != nil {
		return false, fmt.Errorf("backup: resolve the data directory: %w", err)
	}
	if inside(dir, data) || inside(realPath(dir), realPath(data)) {
		return false, fmt.Errorf("%w: backup directory %s is inside the data directory %s: a copy there is lost with it", storage.ErrInvalid, dir, data)
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0o700); err != nil {
			return false, fmt.Errorf("%w: make the backup directory: %v", storage.ErrInvalid, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%w: backup directory: %v", storage.ErrInvalid, err)
	case len(entries) > 0:
		return false, fmt.Errorf("%w: backup directory %s is not empty: give a new or empty directory, so that no backup is mixed with another", storage.ErrInvalid, dir)
	}
	return false, nil
}

// inside reports whether path is dir or below it.
func inside(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// realPath resolves the symbolic links of path, or of its nearest parent
// that exists, so that a link into the data directory is seen for what it
// is.
func realPath(path string) string {
	rest := ""
	for {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			return filepath.Join(real, rest)
		}
		parent := filepath.Dir(path)
		if parent == path {
			return filepath.Join(path, rest)
		}
		rest = filepath.Join(filepath.Base(path), rest)
		path = parent
	}
}

// eventDBs lists the webhooks with an event DB in the data directory, in
// order. The files are what counts, not the main DB's webhooks: a webhook
// removed from the Caddyfile keeps its file, to bring back its events if
// it is declared again.
func (d *Dir) eventDBs() ([]string, error) {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("backup: list the event DBs: %w", err)
	}
	var ids []string
	for _, e := range entries {
		id, ok := strings.CutPrefix(e.Name(), "events-")
		if id, ok = strings.CutSuffix(id, ".db"); !ok || !e.Type().IsRegular() || storage.ValidateID(id) != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// writeManifest writes m as backup.json in dir, durably, then fsyncs dir so
// that the copies' names are durable too.
func writeManifest(dir string, m *storage.BackupManifest) error {
	data, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return fmt.Errorf("backup manifest: %w", err)
	}
	path := filepath.Join(dir, BackupManifestFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // as the copies: it names the webhooks
	if err != nil {
		return fmt.Errorf("backup manifest: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		var dirf *os.File
		if dirf, err = os.Open(dir); err == nil {
			err = errors.Join(dirf.Sync(), dirf.Close())
		}
	}
	if err != nil {
		return fmt.Errorf("backup manifest %s: %w", path, err)
	}
	return nil
}

// backupForAPI is Backup as the admin endpoint's API calls it.
func (d *Dir) backupForAPI(ctx context.Context, dir string, pauseTargets bool) (*storage.BackupManifest, error) {
	return d.Backup(ctx, dir, BackupOptions{PauseTargets: pauseTargets})
}
