// Package stdwebhookstest checks the gateway's outbound signatures with the
// Standard Webhooks reference library
// (github.com/standard-webhooks/standard-webhooks/libraries/go) at a real
// receiver, through a real in-process Caddy with the plugin. It is a module
// of its own so that the library stays out of the plugin's go.mod, which
// every `xcaddy build --with github.com/webhooker/caddy-webhooker` resolves.
package stdwebhookstest
