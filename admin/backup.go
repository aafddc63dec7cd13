package admin

import (
	"net/http"
)

// maxBackupDir bounds the backup directory's path (Linux's PATH_MAX).
const maxBackupDir = 4096

// routeBackup serves POST /webhooker/backup where the Backend can take a
// backup: on Caddy's admin endpoint only (see Backend.Backup).
func (h *Handler) routeBackup() {
	if h.b.Backup == nil || h.tenant {
		return
	}
	h.handle("/backup", methods{"POST": h.backup})
}

// backupRequest is the body of POST /webhooker/backup.
type backupRequest struct {
	// Dir is where the backup goes: an absolute path outside the data
	// directory, empty or not there yet.
	Dir string `json:"dir"`
	// PauseTargets pauses every live target in the copy.
	PauseTargets bool `json:"pause_targets"`
}

// backup takes a backup of the data directory and answers its manifest
// once every copy is durable.
func (h *Handler) backup(w http.ResponseWriter, r *http.Request) error {
	var req backupRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	switch {
	case req.Dir == "":
		return errorf(http.StatusBadRequest, `give the backup directory: {"dir": "/absolute/path"}`)
	case len(req.Dir) > maxBackupDir:
		return errorf(http.StatusBadRequest, "the backup directory's path is over %d bytes", maxBackupDir)
	}
	m, err := h.b.Backup(r.Context(), req.Dir, req.PauseTargets)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}
