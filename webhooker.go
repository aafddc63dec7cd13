// Package webhooker is caddy-webhooker, a Caddy plugin that turns Caddy into
// a durable webhook gateway: every request to an entrypoint is stored in
// SQLite before it is acknowledged, then delivered to the webhook's targets.
//
// Importing this package registers every module:
//
//	xcaddy build --with github.com/webhooker/caddy-webhooker
package webhooker

import (
	// The Caddy modules: the webhooker app and its handlers.
	_ "github.com/webhooker/caddy-webhooker/caddymodule"
)
