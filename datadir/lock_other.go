//go:build !unix

package datadir

import "os"

// Without flock, nothing keeps a second process off the data directory:
// run one Caddy per data_dir.
func lockDataDir(string) (*os.File, error) { return nil, nil }

func unlockDataDir(*os.File) error { return nil }
