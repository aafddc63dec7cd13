package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
)

// DefaultMaxOpenEventDBs bounds the event DBs a WebhookDBManager keeps open.
// One open file costs about 1 MiB and 6 descriptors (bench/); with thousands of
// webhooks, keeping them all open is not an option.
const DefaultMaxOpenEventDBs = 256

// ManagerOptions configures a WebhookDBManager.
type ManagerOptions struct {
	Synchronous Synchronous // default SynchronousFull
	MaxOpen     int         // default DefaultMaxOpenEventDBs
}

// WebhookDBManager owns the event DBs of a data directory, one file per
// webhook: it creates them, opens them on demand (creating a missing file),
// caches the open ones, closes the least recently used beyond a bound, and
// deletes them. A handle in use is never closed under its user: eviction
// defers the close until the last user has let go.
type WebhookDBManager struct {
	dir  string
	opts ManagerOptions

	handles sync.Map // webhook id -> *eventDBHandle
	// draining holds the handles evicted from handles whose close waits for
	// their last user (*eventDBHandle -> webhook id), so that Close and
	// CloseAll can wait for them too.
	draining sync.Map
	open     atomic.Int64
	clock    atomic.Int64 // logical time for least-recently-used
	evictMu  sync.Mutex

	// deleted holds the ids of webhooks deleted since start, so that a late
	// user (a retry timer, an ingest routed just before the delete) cannot
	// bring a deleted event DB back by lazy creation. lifecycle orders
	// marking one deleted before the files go, after opens under way.
	lifecycle sync.RWMutex
	deleted   map[string]bool

	// gone holds the handle of a webhook dropped because its file was
	// removed or replaced behind our back (webhook id -> *eventDBHandle),
	// until it is closed. A new handle on the path waits for that close:
	// beside it, with only the -wal removed, both would share one -shm that
	// indexes the frames of two different -wal files, and closing the old
	// one would delete the new -wal by name.
	gone sync.Map

	// lifeMu guards life, the context of opening files: a handle is shared
	// by every caller, so no caller's context may cut its open short. It
	// ends with CloseAll (an open under way then gives up instead of holding
	// the close up), and a new one begins for uses after it.
	lifeMu sync.Mutex
	life   lifetime

	// stats holds each webhook's figures, so that a list of webhooks opens
	// no event DB (eventstats.go).
	stats eventStatsCache

	// intake, while open, holds acknowledged events not yet in their event
	// DB: With applies a webhook's before it reads or writes its file.
	intake atomic.Pointer[Intake]
}

// lifetime is a context and its cancel.
type lifetime struct {
	ctx context.Context
	end context.CancelFunc
}

func newLifetime() lifetime {
	ctx, end := context.WithCancel(context.Background())
	return lifetime{ctx: ctx, end: end}
}

// NewWebhookDBManager manages the event DBs in dir, creating dir if needed.
func NewWebhookDBManager(dir string, opts ManagerOptions) (*WebhookDBManager, error) {
	if opts.Synchronous == "" {
		opts.Synchronous = SynchronousFull
	}
	if err := opts.Synchronous.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxOpen <= 0 {
		opts.MaxOpen = DefaultMaxOpenEventDBs
	}
	if err := CreateDataDir(dir); err != nil {
		return nil, err
	}
	return &WebhookDBManager{dir: dir, opts: opts, deleted: make(map[string]bool), life: newLifetime()}, nil
}

// dataDirMode is the mode of a data directory we create: its files hold
// event bodies and the senders' credentials, and whoever may write to it may
// remove or replace them.
const dataDirMode fs.FileMode = 0o700

// CreateDataDir creates dir, with its missing parents, with mode 0700
// whatever the umask. An existing directory keeps the mode its owner gave
// it: DataDirWarning says when that lets others in.
func CreateDataDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, dataDirMode); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if err := os.Chmod(dir, dataDirMode); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	return nil
}

// DataDirWarning returns a sentence to log when dir is open to other users
// of the machine (any permission bit for group or others), "" when it is not
// or cannot be read. The files in it are 0600 whatever the directory's mode,
// but a readable directory lists the webhooks and a writable one lets others
// remove or replace their event DBs.
func DataDirWarning(dir string) string {
	fi, err := os.Stat(dir)
	if err != nil {
		return ""
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("data_dir %s has mode %04o: other users of this machine can %s; "+
		"its database files are private (0600), but restrict the directory to the user Caddy runs as: chmod 700 %s",
		dir, perm, strings.Join(openTo(perm), ", "), dir)
}

// openTo says what group and others may do in a directory of mode perm.
func openTo(perm fs.FileMode) []string {
	var can []string
	if perm&0o044 != 0 {
		can = append(can, "list its files")
	}
	if perm&0o022 != 0 {
		can = append(can, "remove or replace its files")
	}
	if perm&0o011 != 0 {
		can = append(can, "reach files in it by name")
	}
	return can
}

// eventDBHandle is a cache entry. refs counts users; -1 means closed.
type eventDBHandle struct {
	opening  sync.Once
	opened   chan struct{} // closed once db or err is set
	db       *WebhookDB
	err      error
	refs     atomic.Int64
	ready    atomic.Bool // db is open; set once, after db
	evicted  atomic.Bool
	used     atomic.Int64
	closed   chan struct{}
	closeErr error // set before closed is closed
}

func (h *eventDBHandle) acquire() bool {
	for {
		n := h.refs.Load()
		if n < 0 {
			return false
		}
		if h.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (h *eventDBHandle) release(m *WebhookDBManager) {
	if h.refs.Add(-1) == 0 && h.evicted.Load() {
		m.closeHandle(h)
	}
}

// closeHandle closes h if nobody holds it; the last release does otherwise.
func (m *WebhookDBManager) closeHandle(h *eventDBHandle) {
	if !h.refs.CompareAndSwap(0, -1) {
		return
	}
	if h.ready.Load() {
		h.closeErr = h.db.close()
		m.open.Add(-1)
	}
	close(h.closed)
	m.draining.Delete(h)
}

// EventDBPath is the file of a webhook's event DB. id must be a canonical UUID.
func (m *WebhookDBManager) EventDBPath(id string) (string, error) {
	if err := ValidateID(id); err != nil {
		return "", fmt.Errorf("webhook id: %w", err)
	}
	return filepath.Join(m.dir, "events-"+id+".db"), nil
}

// ValidateID accepts only a UUID in its canonical form (lowercase, hyphens),
// the only strings that ever become part of a file name.
func ValidateID(id string) error {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return fmt.Errorf("%q is not a canonical UUID", id)
	}
	return nil
}

// Exists reports whether the event DB file of webhook id exists: a webhook
// without one has no events, and nothing to recover.
//
// Events the intake holds for the webhook count: its file is made when
// they are applied.
func (m *WebhookDBManager) Exists(id string) bool {
	if in := m.intake.Load(); in != nil && in.holds(id) {
		return true
	}
	return m.fileExists(id)
}

// fileExists reports whether the event DB file of webhook id exists.
func (m *WebhookDBManager) fileExists(id string) bool {
	path, err := m.EventDBPath(id)
	if err != nil {
		return false
	}
	_, err = os.Stat(path)
	return err == nil
}

// Create creates the event DB of a new webhook with its schema. It is
// idempotent: an existing file is migrated and kept. The file is not left
// open; the first use opens it.
func (m *WebhookDBManager) Create(ctx context.Context, id string) error {
	path, err := m.EventDBPath(id)
	if err != nil {
		return err
	}
	m.lifecycle.Lock()
	delete(m.deleted, id)
	m.lifecycle.Unlock()
	// Through the cache, like every other use: a first event arriving at the
	// same moment shares this handle instead of opening a second writer on
	// the fresh file (both would run its first migration).
	if err := m.With(ctx, id, func(*WebhookDB) error { return nil }); err != nil {
		return fmt.Errorf("create event db %s: %w", path, err)
	}
	return nil
}

// With runs fn with the open event DB of webhook id, opening it (and creating
// the file when missing) if needed. The DB stays open at least until fn returns.
//
// When an intake is open, the events it holds for the webhook are applied
// first: fn sees every event acknowledged before With was called.
func (m *WebhookDBManager) With(ctx context.Context, id string, fn func(*WebhookDB) error) error {
	if in := m.intake.Load(); in != nil {
		if err := in.flush(id); err != nil {
			return err
		}
	}
	return m.withDB(ctx, id, fn)
}

func (m *WebhookDBManager) acquire(ctx context.Context, id string) (*eventDBHandle, error) {
	h, _, err := m.acquireCold(ctx, id)
	return h, err
}

// acquireCold is acquire, and also reports whether the file was cold: its
// handle not yet open when found, so that this call waited for the open.
func (m *WebhookDBManager) acquireCold(ctx context.Context, id string) (h *eventDBHandle, cold bool, err error) {
	path, err := m.EventDBPath(id)
	if err != nil {
		return nil, false, err
	}
	m.lifecycle.RLock()
	defer m.lifecycle.RUnlock()
	if m.deleted[id] {
		return nil, false, fmt.Errorf("event db %s: the webhook was deleted: %w", id, ErrNotFound)
	}
	for {
		v, ok := m.handles.Load(id)
		if !ok {
			v, _ = m.handles.LoadOrStore(id, &eventDBHandle{opened: make(chan struct{}), closed: make(chan struct{})})
		}
		h = v.(*eventDBHandle)
		if !h.acquire() {
			continue // closed since we loaded it; it is gone from the map
		}
		cold = !h.ready.Load()
		h.opening.Do(func() {
			h.acquire() // the open's own ref: it cannot fail while ours is held
			go m.openHandle(h, id, path)
		})
		select {
		case <-h.opened:
		case <-ctx.Done():
			// The open goes on, for the others waiting and for the cache.
			h.release(m)
			return nil, cold, fmt.Errorf("open event db %s: %w", id, ctx.Err())
		}
		if h.err != nil {
			h.release(m)
			return nil, cold, fmt.Errorf("open event db: %w", h.err)
		}
		h.used.Store(m.clock.Add(1))
		return h, cold, nil
	}
}

// openHandle opens the file of h, holding a ref of its own, on the manager's
// lifetime rather than on the context of whichever caller came first: one
// caller hanging up must not fail the others waiting for the same handle,
// each of whom waits on their own context. A failed open takes h out of the
// cache, so that the next use tries again.
func (m *WebhookDBManager) openHandle(h *eventDBHandle, id, path string) {
	defer h.release(m)
	ctx := m.lifetime()
	if h.err = m.waitGone(ctx, id); h.err == nil {
		h.db, h.err = openWebhookDB(ctx, id, path, m.opts.Synchronous)
	}
	if h.err != nil {
		m.handles.CompareAndDelete(id, h)
		h.evicted.Store(true) // the last release closes it, with nothing open
		close(h.opened)
		return
	}
	h.db.onGone = func() { m.dropGone(id, h) }
	m.stats.follow(ctx, h.db)
	h.used.Store(m.clock.Add(1))
	h.ready.Store(true)
	// Before the waiters go on: when they have the handle, the bound on
	// open files holds again.
	if m.open.Add(1) > int64(m.opts.MaxOpen) {
		m.evictLeastRecentlyUsed(h)
	}
	close(h.opened)
}

// lifetime is the context opens run on, until the next CloseAll.
func (m *WebhookDBManager) lifetime() context.Context {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	return m.life.ctx
}

// dropGone evicts h, whose file was removed or replaced while open: its
// users finish with it (their writes fail), the next use opens the path again
// through the usual lazy path (which a Delete still refuses), once h is closed.
func (m *WebhookDBManager) dropGone(id string, h *eventDBHandle) {
	m.gone.Store(id, h) // before evict: a handle opened after it must see it
	m.evict(id, h)
}

// waitGone waits until the dropped handle of webhook id, if any, is closed.
// Its users hold it only for single reads and writes, and its writes fail.
func (m *WebhookDBManager) waitGone(ctx context.Context, id string) error {
	v, ok := m.gone.Load(id)
	if !ok {
		return nil
	}
	old := v.(*eventDBHandle)
	select {
	case <-old.closed:
		m.gone.CompareAndDelete(id, old)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("event db %s: waiting for the users of its removed file: %w", id, ctx.Err())
	}
}

// evictLeastRecentlyUsed evicts open handles, least recently used first, until
// the bound holds again for the handles not yet evicted. It never picks keep,
// the handle just opened. A handle evicted while in use stays open (and
// counted by OpenCount) until its last user lets go; it is not made up for by
// closing more handles.
func (m *WebhookDBManager) evictLeastRecentlyUsed(keep *eventDBHandle) {
	m.evictMu.Lock()
	defer m.evictMu.Unlock()
	for {
		var (
			live     int
			oldestID string
			oldest   *eventDBHandle
		)
		m.handles.Range(func(k, v any) bool {
			h := v.(*eventDBHandle)
			if !h.ready.Load() || h.evicted.Load() {
				return true
			}
			live++
			if h == keep {
				return true
			}
			if oldest == nil || h.used.Load() < oldest.used.Load() {
				oldestID, oldest = k.(string), h
			}
			return true
		})
		if live <= m.opts.MaxOpen || oldest == nil {
			return
		}
		m.evict(oldestID, oldest)
	}
}

// evict removes h from the cache and closes it once unused. A later With
// opens the file again.
func (m *WebhookDBManager) evict(id string, h *eventDBHandle) {
	m.handles.CompareAndDelete(id, h)
	m.draining.Store(h, id) // before evicted is set: closeHandle then removes it
	if !h.evicted.Swap(true) {
		m.closeHandle(h) // or, while it is in use, its last release does
	}
	select {
	case <-h.closed: // closed already, maybe before it was stored above
		m.draining.Delete(h)
	default:
	}
}

// Close closes the event DB of webhook id if it is open, waiting for its
// users to finish (also of a handle evicted while in use).
func (m *WebhookDBManager) Close(ctx context.Context, id string) error {
	return m.closeWhere(ctx, func(hid string) bool { return hid == id })
}

// closeWhere evicts the cached handles of the webhooks match accepts and waits
// until they, and those already evicted but still in use, are closed.
func (m *WebhookDBManager) closeWhere(ctx context.Context, match func(id string) bool) error {
	wait := make(map[*eventDBHandle]string)
	m.handles.Range(func(k, v any) bool {
		if id := k.(string); match(id) {
			h := v.(*eventDBHandle)
			m.evict(id, h)
			wait[h] = id
		}
		return true
	})
	m.draining.Range(func(k, v any) bool {
		if id := v.(string); match(id) {
			wait[k.(*eventDBHandle)] = id
		}
		return true
	})
	var errs []error
	for h, id := range wait {
		errs = append(errs, waitClosed(ctx, h, id))
	}
	return errors.Join(errs...)
}

// waitClosed waits until h is closed, or ctx is done. A handle closed
// already counts as closed whatever ctx says: a select would pick at random
// between the two, and a shutdown whose grace period is spent would report
// handles that were in fact closed, and stop waiting for the rest.
func waitClosed(ctx context.Context, h *eventDBHandle, id string) error {
	select {
	case <-h.closed:
		return h.closeErr
	default:
	}
	select {
	case <-h.closed:
		return h.closeErr
	case <-ctx.Done():
		return fmt.Errorf("close event db %s: still in use: %w", id, ctx.Err())
	}
}

// Delete closes and removes the event DB of webhook id, with its -wal and
// -shm files. Stop routing to the webhook before deleting it. From then on
// With refuses the id (ErrNotFound) rather than create the file again, until
// Create.
func (m *WebhookDBManager) Delete(ctx context.Context, id string) error {
	path, err := m.EventDBPath(id)
	if err != nil {
		return err
	}
	// From here on no one opens it. Callers waiting for an open let go of
	// the lock first; an open under way holds a ref, so Close below waits
	// for it to finish and closes what it opened.
	m.lifecycle.Lock()
	m.deleted[id] = true
	m.lifecycle.Unlock()
	if err := m.Close(ctx, id); err != nil {
		return err
	}
	m.stats.forget(id)
	var errs []error
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete event db %s: %w", id, err)
	}
	return nil
}

// CloseAll closes every open event DB, waiting for their users to finish.
// Opens under way give up (their callers get an error) rather than hold the
// close up; uses after CloseAll open files again.
func (m *WebhookDBManager) CloseAll(ctx context.Context) error {
	m.lifeMu.Lock()
	m.life.end()
	m.life = newLifetime()
	m.lifeMu.Unlock()
	return m.closeWhere(ctx, func(string) bool { return true })
}

// IsOpen reports whether the event DB of webhook id is open now: using it
// opens no file.
func (m *WebhookDBManager) IsOpen(id string) bool {
	v, ok := m.handles.Load(id)
	if !ok {
		return false
	}
	h := v.(*eventDBHandle)
	return h.ready.Load() && !h.evicted.Load()
}

// OpenCount is the number of event DBs open now.
func (m *WebhookDBManager) OpenCount() int { return int(m.open.Load()) }
