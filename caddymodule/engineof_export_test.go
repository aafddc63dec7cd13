package caddymodule

import (
	"fmt"
	"path/filepath"

	"github.com/webhooker/caddy-webhooker/engine"
)

// EngineOf is the engine of the data directory open at path, or nil when
// none is open there: the test of reloads checks with it that a reload
// keeps the one engine, and that this engine has nothing left in hand.
func EngineOf(path string) *engine.Engine {
	var e *engine.Engine
	dataDirs.Range(func(key, value any) bool {
		if key != filepath.Clean(path) {
			return true
		}
		if d := value.(*pooledDir).dir.Load(); d != nil {
			e = d.Engine()
		}
		return false
	})
	return e
}

// ApplyIntake applies what the intake of the data directory open at path
// holds to the event DBs, for tests that read those files directly.
func ApplyIntake(path string) error {
	err := fmt.Errorf("no data directory open at %s", path)
	dataDirs.Range(func(key, value any) bool {
		if key != filepath.Clean(path) {
			return true
		}
		if d := value.(*pooledDir).dir.Load(); d != nil {
			err = d.ApplyIntake()
		}
		return false
	})
	return err
}
