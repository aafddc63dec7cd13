// Command caddy is Caddy with its standard modules and caddy-webhooker, so
// that `go run ./cmd/caddy run --config Caddyfile.example` needs only Go.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules and ours.
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/webhooker/caddy-webhooker"
)

func main() {
	caddycmd.Main()
}
