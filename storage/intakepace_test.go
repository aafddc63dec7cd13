package storage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// appliedTotal is how many events the rig was told of.
func (r *intakeRig) appliedTotal() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, evs := range r.applied {
		n += len(evs)
	}
	return n
}

// waitApplied waits until the rig has been told of n events.
func (r *intakeRig) waitApplied(n int) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.appliedTotal() < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("%d events applied after 30 s, want %d", r.appliedTotal(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// queueOneEach holds the applier, ingests one event (of body) into each of
// ids, and lets it go: the applier finds them all ready at once, as under
// load spread over them.
func (r *intakeRig) queueOneEach(ids []string, body string) {
	r.t.Helper()
	_, let := r.holdApplierOn(ids[0]) // ids[0] first, then the others
	for _, id := range ids[1:] {
		r.ingest(id, body, Target{ID: "db", Type: TargetDatabase, Active: true})
	}
	let()
}

func newIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	return ids
}

// With more webhooks waiting than files may be open, the applier waits
// after each apply that had to open a file, and applies every event all
// the same.
func TestApplierPacesColdOpens(t *testing.T) {
	r := newIntakeRigOn(t, t.TempDir(), ManagerOptions{MaxOpen: 2}, IntakeOptions{})
	ids := newIDs(12)
	r.queueOneEach(ids, `{}`)
	r.waitApplied(len(ids) - 1)
	if n := r.intake.pauses.Load(); n < int64(len(ids))/2 {
		t.Errorf("the applier paused %d times over %d cold opens, want one after each but the last few", n, len(ids))
	}
	for _, id := range ids {
		if n := eventCount(t, r.events, id); n != 1 {
			t.Errorf("webhook %s has %d events, want 1", id, n)
		}
	}
}

// Files already open cost the applier nothing to reach: it does not wait
// after applying to them, however many webhooks are ready. Counted by the
// pauses, which the test above shows do happen after cold opens.
func TestApplierDoesNotPaceOpenFiles(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{})
	ids := newIDs(12)
	r.queueOneEach(ids, `{}`) // opens every file: up to 11 pauses
	r.waitApplied(len(ids) - 1)
	before := r.intake.pauses.Load()
	r.queueOneEach(ids, `{}`)
	r.waitApplied(2 * (len(ids) - 1))
	if n := r.intake.pauses.Load() - before; n != 0 {
		t.Errorf("the applier paused %d times applying to files already open, want 0", n)
	}
}

// A file is cold to the one who finds it not yet open, however many wait
// for its open; once open it is warm, whatever the wait for its handle on
// a busy machine (which once made the applier pace open files under -race).
func TestAcquireSaysWhetherTheFileWasCold(t *testing.T) {
	m := newManager(t, ManagerOptions{})
	id := uuid.NewString()
	ctx := context.Background()
	for i, want := range []bool{true, false, false} {
		cold, err := m.withDBCold(ctx, id, func(*WebhookDB) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if cold != want {
			t.Errorf("use %d: cold = %v, want %v", i+1, cold, want)
		}
	}
}

// Once intake.db is half full, the applier no longer waits after cold
// opens: disk room is what every ingest needs.
func TestApplierStopsPacingWhenTheIntakeIsHalfFull(t *testing.T) {
	const size = 256 << 10
	// No sync round within the test: it would forget the entries.
	r := newIntakeRigOn(t, t.TempDir(), ManagerOptions{MaxOpen: 2}, IntakeOptions{Size: size, SyncDelay: time.Hour})
	ids := newIDs(12)
	// 3/4 of the size, which stays on disk until a sync round forgets it.
	r.queueOneEach(ids, `{"pad":"`+strings.Repeat("x", size*3/4/len(ids))+`"}`)
	r.waitApplied(len(ids) - 1)
	if n := r.intake.pauses.Load(); n != 0 {
		t.Errorf("the applier paused %d times with intake.db past half full, want 0", n)
	}
}

// intake.db's -wal is checkpointed every intakeCheckpointPages pages, not
// SQLite's 1,000 (16 MiB of 16 KiB pages): the commit that checkpoints
// holds every ingest waiting behind it while it copies the -wal into the
// file. The -wal file keeps the size it reached, so its size bounds the
// longest checkpoint.
func TestIntakeCheckpointsItsWALOften(t *testing.T) {
	r := newIntakeRig(t, t.TempDir(), IntakeOptions{SyncDelay: time.Hour})
	wh := uuid.NewString()
	body := `{"pad":"` + strings.Repeat("x", 40<<10) + `"}`
	for range 500 { // 20 MiB: past 1,000 pages
		r.ingest(wh, body)
	}
	fi, err := os.Stat(filepath.Join(r.dir, intakeFileName+"-wal"))
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 16 << 10
	if max := int64(intakeCheckpointPages+64) * (pageSize + 24); fi.Size() > max {
		t.Errorf("intake.db-wal grew to %d bytes (%d pages), want at most %d: it is not checkpointed every %d pages",
			fi.Size(), fi.Size()/(pageSize+24), max, intakeCheckpointPages)
	}
}
