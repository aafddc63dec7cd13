package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// IntakeFile is the intake's file in a data directory.
const IntakeFile = intakeFileName

// BackupManifest describes a backup: what it holds, as read back from the
// copies, so that a restore can be checked against it.
type BackupManifest struct {
	// Dir is the backup directory.
	Dir string `json:"dir"`
	// Version is the version of caddy-webhooker that took it.
	Version string `json:"version"`
	// StartedAt is when it began: every event acknowledged before then is
	// in it. FinishedAt is when the last copy was made.
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// TargetsPaused says every live target is paused in the copy.
	TargetsPaused bool `json:"targets_paused"`
	// Events, Deliveries and OpenDeliveries add up the event DBs'.
	Events         int64 `json:"events"`
	Deliveries     int64 `json:"deliveries"`
	OpenDeliveries int64 `json:"open_deliveries"`
	// Files are the main DB, the intake (its dedup ids only), then the
	// event DBs.
	Files []BackupFile `json:"files"`
}

// BackupFile is one database of a backup, as read back from the copy: the
// figures a restore is checked against.
type BackupFile struct {
	// Name is the file's name in the backup directory (webhooker.db,
	// events-<webhook uuid>.db).
	Name string `json:"name"`
	// Size is the copy's size in bytes.
	Size int64 `json:"size"`
	// SchemaVersion is the copy's PRAGMA user_version.
	SchemaVersion int `json:"schema_version"`
	// WebhookID is the webhook of an event DB; "" for the main DB.
	WebhookID string `json:"webhook_id,omitempty"`
	// Events and Deliveries count an event DB's rows; OpenDeliveries
	// those pending or retrying, which a restored copy attempts again.
	Events         int64 `json:"events"`
	Deliveries     int64 `json:"deliveries"`
	OpenDeliveries int64 `json:"open_deliveries"`
	// Webhooks and Targets count the main DB's live (not deleted) rows;
	// PausedTargets those paused in the copy.
	Webhooks      int64 `json:"webhooks,omitempty"`
	Targets       int64 `json:"targets,omitempty"`
	PausedTargets int64 `json:"paused_targets,omitempty"`
	// DedupKeys counts the dedup ids of the intake's copy.
	DedupKeys int64 `json:"dedup_keys,omitempty"`
}

// BackupTo writes a consistent copy of the main DB to path, which must not
// exist (see backupFile). With pauseTargets, every live target is paused in
// the copy (not here): a gateway started on it attempts nothing until its
// operator resumes each target.
func (db *MainDB) BackupTo(ctx context.Context, path string, pauseTargets bool) (BackupFile, error) {
	if err := backupFile(ctx, db.file, path); err != nil {
		return BackupFile{}, err
	}
	if pauseTargets {
		if err := pauseCopyTargets(ctx, path); err != nil {
			return BackupFile{}, err
		}
	}
	f := BackupFile{Name: filepath.Base(path)}
	err := readCopy(ctx, path, &f.SchemaVersion, func(conn *sql.DB) error {
		return conn.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM webhooks WHERE deleted_at IS NULL),
			(SELECT count(*) FROM targets WHERE deleted_at IS NULL),
			(SELECT count(*) FROM targets WHERE deleted_at IS NULL AND paused)`).
			Scan(&f.Webhooks, &f.Targets, &f.PausedTargets)
	})
	if err != nil {
		return BackupFile{}, err
	}
	return f, sizeOf(path, &f)
}

// BackupTo writes a consistent copy of this event DB to path, which must
// not exist (see backupFile). It holds what is committed here when the copy
// begins: a caller that wants every acknowledged event in it gets the
// DB through WebhookDBManager.With, which applies the intake's first.
func (db *WebhookDB) BackupTo(ctx context.Context, path string) (BackupFile, error) {
	if err := backupFile(ctx, db.file, path); err != nil {
		return BackupFile{}, err
	}
	f := BackupFile{Name: filepath.Base(path), WebhookID: db.webhookID}
	err := readCopy(ctx, path, &f.SchemaVersion, func(conn *sql.DB) error {
		return conn.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM events),
			(SELECT count(*) FROM deliveries),
			(SELECT count(*) FROM deliveries WHERE status IN ('pending', 'retrying'))`).
			Scan(&f.Events, &f.Deliveries, &f.OpenDeliveries)
	})
	if err != nil {
		return BackupFile{}, err
	}
	return f, sizeOf(path, &f)
}

// BackupDedupTo writes a copy of intake.db to path, which must not exist,
// holding its dedup ids and none of its events: the dedup ids claimed so
// far (dedup.go) live only here, and a restored copy without them would
// store a provider's repeat of an event it already holds. The events are
// left out so that a restore replays nothing: the caller copies the event
// DBs after this, through WebhookDBManager.With, so they hold every event
// the intake held, and every event a dedup id here names.
func (in *Intake) BackupDedupTo(ctx context.Context, path string) (BackupFile, error) {
	if err := backupFile(ctx, in.file, path); err != nil {
		return BackupFile{}, err
	}
	conn, err := sql.Open("sqlite3", copyDSN(path, "rw"))
	if err != nil {
		return BackupFile{}, fmt.Errorf("back up the intake: %w", err)
	}
	defer conn.Close()
	f := BackupFile{Name: filepath.Base(path)}
	// VACUUM gives back the pages of the bodies deleted.
	for _, q := range []string{"DELETE FROM intake", "VACUUM"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return BackupFile{}, fmt.Errorf("back up the intake: %s: %w", q, err)
		}
	}
	err = conn.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM dedup), (SELECT user_version FROM pragma_user_version)").
		Scan(&f.DedupKeys, &f.SchemaVersion)
	if err == nil {
		err = conn.Close()
	}
	if err == nil {
		err = syncFile(path)
	}
	if err != nil {
		return BackupFile{}, fmt.Errorf("back up the intake: %w", err)
	}
	return f, sizeOf(path, &f)
}

// backupFile copies f to path with VACUUM INTO on a reader connection: one
// read transaction, so the copy is the file as of one commit, while the
// writer goes on committing (WAL: readers and the writer do not wait for
// each other). The copy is a single file with no -wal, and it is fsynced,
// which VACUUM INTO does not do. path is created first, empty and
// privateFileMode, for SQLite to fill: VACUUM INTO writes into an empty
// file, and one it created would take the umask's mode.
func backupFile(ctx context.Context, f *sqliteFile, path string) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, privateFileMode)
	if err != nil {
		return fmt.Errorf("back up %s: %w", f.path, err)
	}
	err = out.Chmod(privateFileMode) // exact, whatever the umask
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = vacuumInto(ctx, f, path)
	}
	if err == nil {
		err = syncFile(path)
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("back up %s to %s: %w", f.path, path, err)
	}
	return nil
}

// vacuumInto runs VACUUM INTO path on one of f's reader connections.
// Readers are query_only, which refuses VACUUM INTO (it writes, if to
// another file): the connection lifts it for the copy and puts it back,
// and is thrown away if it could not.
func vacuumInto(ctx context.Context, f *sqliteFile, path string) error {
	conn, err := f.reader.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA query_only = 0"); err != nil {
		return err
	}
	_, err = conn.ExecContext(ctx, "VACUUM INTO ?", path)
	// Not on ctx: the connection goes back to the pool whatever ctx says.
	if _, rerr := conn.ExecContext(context.Background(), "PRAGMA query_only = 1"); rerr != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // the pool drops it
		err = errors.Join(err, rerr)
	}
	return err
}

// pauseCopyTargets pauses every live target in the copy of a main DB at path.
func pauseCopyTargets(ctx context.Context, path string) error {
	conn, err := sql.Open("sqlite3", copyDSN(path, "rw"))
	if err != nil {
		return fmt.Errorf("pause the targets of %s: %w", path, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `UPDATE targets SET paused = 1 WHERE deleted_at IS NULL`); err != nil {
		return fmt.Errorf("pause the targets of %s: %w", path, err)
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("pause the targets of %s: %w", path, err)
	}
	return syncFile(path)
}

// readCopy opens the copy at path read-only, reads its schema version into
// version and runs read: the manifest's figures come from the copy itself.
func readCopy(ctx context.Context, path string, version *int, read func(*sql.DB) error) error {
	conn, err := sql.Open("sqlite3", copyDSN(path, "ro"))
	if err != nil {
		return fmt.Errorf("read the copy %s: %w", path, err)
	}
	defer conn.Close()
	err = conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(version)
	if err == nil {
		err = read(conn)
	}
	if err != nil {
		return fmt.Errorf("read the copy %s: %w", path, err)
	}
	return nil
}

func copyDSN(path, mode string) string {
	return "file:" + (&url.URL{Path: filepath.ToSlash(path)}).EscapedPath() + "?mode=" + mode +
		fmt.Sprintf("&_pragma=busy_timeout(%d)", busyTimeoutMillis)
}

func sizeOf(path string, f *BackupFile) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("read the copy %s: %w", path, err)
	}
	f.Size = info.Size()
	return nil
}
