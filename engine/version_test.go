package engine

import (
	"runtime/debug"
	"strings"
	"testing"
)

// The version comes from the build info, wherever the module sits in it,
// and always fits a User-Agent token.
func TestModuleVersionFromBuildInfo(t *testing.T) {
	dep := func(m debug.Module) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: "caddy", Version: "(devel)"}, Deps: []*debug.Module{
			{Path: "github.com/caddyserver/caddy/v2", Version: "v2.11.9"}, &m}}
	}
	for _, c := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"xcaddy build --with the module at a tag", dep(debug.Module{Path: ModulePath, Version: "v0.3.0"}), true, "v0.3.0"},
		{"a pseudo-version", dep(debug.Module{Path: ModulePath, Version: "v0.0.0-20261202021500-9772f33abcde"}), true, "v0.0.0-20261202021500-9772f33abcde"},
		{"replaced by a local checkout", dep(debug.Module{Path: ModulePath, Version: "v0.0.0", Replace: &debug.Module{Path: "/src", Version: ""}}), true, "devel"},
		{"replaced by another version", dep(debug.Module{Path: ModulePath, Version: "v0.1.0", Replace: &debug.Module{Path: "example.com/fork", Version: "v0.1.1"}}), true, "v0.1.1"},
		{"the main module, stamped", &debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "v0.0.0-20261202021500-9772f33abcde+dirty"}}, true, "v0.0.0-20261202021500-9772f33abcde+dirty"},
		{"the main module, unstamped", &debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "(devel)"}}, true, "devel"},
		{"the main module, unstamped, its commit recorded", &debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "9772f33abcdef0123456789"}}}, true, "devel+9772f33abcde"},
		{"not in the binary", &debug.BuildInfo{Main: debug.Module{Path: "other"}}, true, "devel"},
		{"no build info", nil, false, "devel"},
	} {
		if got := moduleVersion(c.bi, c.ok); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if !strings.HasPrefix(UserAgent, "caddy-webhooker/"+Version+" (+https://") || strings.Contains(Version, " ") {
		t.Errorf("UserAgent %q, Version %q", UserAgent, Version)
	}
}
