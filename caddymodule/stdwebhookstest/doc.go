// Package stdwebhookstest checks signatures against the providers' own
// libraries, through a real in-process Caddy with the plugin: the gateway's
// outbound signatures verified by the Standard Webhooks reference library
// (github.com/standard-webhooks/standard-webhooks/libraries/go) at a real
// receiver, and requests signed by that library and by stripe-go's webhook
// package verified at entrypoints. It is a module of its own so that the
// libraries stay out of the plugin's go.mod, which every
// `xcaddy build --with github.com/webhooker/caddy-webhooker` resolves.
package stdwebhookstest
