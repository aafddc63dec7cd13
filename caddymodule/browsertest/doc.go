// Package browsertest holds the browser tests of the event-log UI: a real
// headless Chromium, driven with chromedp, against a real in-process Caddy
// with the plugin. It is a module of its own so that chromedp and its
// dependencies stay out of the plugin's go.mod, which every
// `xcaddy build --with github.com/webhooker/caddy-webhooker` resolves.
package browsertest
