package caddymodule

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/webhooker/caddy-webhooker/datadir"
	"github.com/webhooker/caddy-webhooker/storage"
)

// dataDirs holds one running data directory per path. Caddy provisions and
// starts a new config before it stops the old one, so both share it: a
// reload never closes the databases, opens a second writer on a file or
// runs a second engine.
var dataDirs = caddy.NewUsagePool()

// pooledDir is a data directory shared by the configs that use it. Getting
// it touches no file: the directory is locked and opened by the first config
// that starts (open), so that `caddy validate` has no side effect and a
// second process on the same data_dir is refused before it writes anything.
type pooledDir struct {
	path string
	opts datadir.Options

	openOnce sync.Once
	openErr  error
	dir      atomic.Pointer[datadir.Dir] // nil until open succeeded: 503s
}

func acquireDataDir(path string, opts datadir.Options, logger *zap.Logger) (*pooledDir, error) {
	v, loaded, err := dataDirs.LoadOrNew(path, func() (caddy.Destructor, error) {
		return &pooledDir{path: path, opts: opts}, nil
	})
	if err != nil {
		return nil, err
	}
	p := v.(*pooledDir)
	if loaded && !sameSettings(p.opts, opts) {
		logger.Warn("storage settings changed; they take effect when Caddy restarts, since the open storage is kept across reloads",
			zap.String("data_dir", path))
	}
	return p, nil
}

// sameSettings compares the settings that hold while a directory is open.
func sameSettings(a, b datadir.Options) bool {
	return a.Synchronous == b.Synchronous && a.MaxOpenEventDBs == b.MaxOpenEventDBs && a.IntakeMemory == b.IntakeMemory && a.IntakeSize == b.IntakeSize &&
		a.Workers == b.Workers && a.QueueSize == b.QueueSize && a.RetryQueueSize == b.RetryQueueSize &&
		a.MaxPerTarget == b.MaxPerTarget && a.StopGracePeriod == b.StopGracePeriod && a.GatewayID == b.GatewayID &&
		a.MaxEventBytes == b.MaxEventBytes && reflect.DeepEqual(a.Cluster, b.Cluster)
}

func releaseDataDir(path string) error {
	_, err := dataDirs.Delete(path)
	return err
}

// open opens the directory, once: a reload joins what is open.
func (p *pooledDir) open() (*datadir.Dir, error) {
	p.openOnce.Do(func() {
		d, err := datadir.Open(p.path, p.opts)
		if err != nil {
			p.openErr = err
			return
		}
		p.dir.Store(d)
	})
	return p.dir.Load(), p.openErr
}

// Destruct closes the directory once no config uses it, letting attempts in
// flight finish within the stop grace period.
func (p *pooledDir) Destruct() error {
	d := p.dir.Load()
	if d == nil {
		return nil // never opened: nothing was touched
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.StopGracePeriod)
	defer cancel()
	return d.Close(ctx)
}

// route finds the entrypoint with key; none is in force until the
// directory is open.
func (p *pooledDir) route(key string) (storage.Route, bool) {
	if d := p.dir.Load(); d != nil {
		return d.Route(key)
	}
	return storage.Route{}, false
}

// serveAPI serves the face of the API that face picks (the admin
// endpoint's, a webhooker_admin site's, a tenant's: datadir.Dir's
// AdminEndpointAPI, AdminAPI, TenantAPI) once a configuration is in force;
// 503 before.
func (p *pooledDir) serveAPI(w http.ResponseWriter, r *http.Request, face func(*datadir.Dir) http.Handler) {
	var h http.Handler
	if d := p.dir.Load(); d != nil {
		h = face(d)
	}
	if h == nil {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"webhooker is starting: its storage is not open yet"}`+"\n")
		return
	}
	h.ServeHTTP(w, r)
}

var _ caddy.Destructor = (*pooledDir)(nil)
