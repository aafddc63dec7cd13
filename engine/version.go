package engine

import (
	"runtime/debug"
	"strings"
)

// ModulePath is this module's path, as xcaddy and go.mod name it.
const ModulePath = "github.com/webhooker/caddy-webhooker"

// Version is the version of this module compiled into the binary, as the
// Go toolchain recorded it (runtime/debug.BuildInfo): the tag or
// pseudo-version that `xcaddy build --with` fetched, or, built from a
// checkout (go build ./cmd/caddy, or a replace to a local path), the
// pseudo-version Go stamps from its commit, or "devel" when it stamps
// none. It is what `caddy build-info` and `caddy list-modules --versions`
// print for the module, never a constant to keep up to date by hand.
var Version = moduleVersion(debug.ReadBuildInfo())

// UserAgent names the gateway and its version: in VersionHeader on every
// http delivery, and as the User-Agent of a delivery whose sender sent
// none.
var UserAgent = "caddy-webhooker/" + Version + " (+https://" + ModulePath + ")"

// moduleVersion finds this module in a binary's build info: the main
// module when built from this repository, else a dependency (replaced or
// not).
func moduleVersion(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return "devel"
	}
	if bi.Main.Path == ModulePath {
		v := usable(bi.Main.Version)
		if v == "devel" {
			// Built in a checkout without a version stamped (a go.work
			// workspace): the commit, if the toolchain recorded it.
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					v += "+" + s.Value[:12]
				}
			}
		}
		return v
	}
	for _, m := range bi.Deps {
		if m.Path != ModulePath {
			continue
		}
		if m.Replace != nil {
			return usable(m.Replace.Version)
		}
		return usable(m.Version)
	}
	return "devel"
}

// usable makes a recorded version fit in a User-Agent product token: the
// toolchain writes "(devel)" (or nothing) when it knows none.
func usable(v string) string {
	v = strings.TrimSpace(v)
	if v == "" || v == "(devel)" || strings.ContainsAny(v, " ()/") {
		return "devel"
	}
	return v
}
