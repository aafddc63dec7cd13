package storage

import (
	"errors"
	"fmt"
	"path/filepath"
)

// ErrEventDBGone: an event DB's file (or its -wal) was removed or replaced
// while it was open, so a write that committed into it is lost with it.
// Ingest answers 503, and the provider sends the event again.
var ErrEventDBGone = errors.New("removed or replaced while open")

// verifyFile runs after each committed batch (one stat of the file and one
// of its -wal, not one per write): a commit into a file that no longer has
// a name would be acknowledged and then lost at the next start.
func (db *WebhookDB) verifyFile() error {
	gone, err := db.file.replaced()
	if err != nil {
		return err
	}
	if !gone {
		return nil
	}
	if db.onGone != nil {
		db.onGone()
	}
	return fmt.Errorf("event DB %s was %w; the write is lost with it", filepath.Base(db.file.path), ErrEventDBGone)
}
