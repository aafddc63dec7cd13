package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// OperationalWebhookConfig is where the gateway tells the operator, by a
// signed POST, that something needs them: a delivery gave up, a target's
// circuit breaker opened or closed, a target was paused or resumed. Its JSON
// body has the Standard Webhooks shape ({"type", "timestamp", "data"}).
type OperationalWebhookConfig struct {
	// URL is where the alerts are POSTed: an absolute http:// or https://
	// URL without credentials, reached through the target policy as the
	// operator's targets are (never Caddy's admin endpoint). Required.
	// Example: "https://ops.example.com/webhooker-alerts".
	URL string `json:"url"`

	// Options are delivery settings as an http target's (timeout, backoff,
	// max_retries, headers, signing_secret…): with signing_secret the alerts
	// carry Standard Webhooks signatures. Default: each option's own
	// default, and no signature.
	Options storage.TargetOptions `json:"options,omitzero"`
}

// operationalTargetName names the operational webhook in the target checks.
const operationalTargetName = "operational_webhook"

// check checks the URL and options against the operator's limits, and the
// URL against policy (nil: not yet known, the Caddyfile checks it at the end
// of the block).
func (c *OperationalWebhookConfig) check(policy *engine.TargetPolicy) error {
	if c == nil {
		return nil
	}
	t := storage.Target{Name: operationalTargetName, Type: storage.TargetHTTP, URL: c.URL, Options: c.Options, Active: true}
	if err := t.Validate(); err != nil {
		// The target's own name adds nothing to the option's.
		return fmt.Errorf("%s: %s", operationalTargetName, strings.TrimPrefix(err.Error(), "target "+operationalTargetName+": "))
	}
	if policy != nil {
		if err := checkOperatorURL(policy, c.URL); err != nil {
			return fmt.Errorf("%s: %w", operationalTargetName, err)
		}
	}
	return nil
}

// unmarshalOperationalWebhook reads `operational_webhook <url> { <http
// target options> }`, checking it after each line.
func unmarshalOperationalWebhook(d *caddyfile.Dispenser) (*OperationalWebhookConfig, error) {
	c := new(OperationalWebhookConfig)
	if !d.AllArgs(&c.URL) {
		return nil, d.Errf("%s: want <url> [{ <options of an http target> }]", operationalTargetName)
	}
	if err := c.check(nil); err != nil {
		return nil, d.WrapErr(err)
	}
	where := operationalTargetName + ": "
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		if option != "header" && option != "header_up" {
			if seen[option] {
				return nil, d.Errf("%s%s is set twice: give it once", where, option)
			}
			seen[option] = true
		}
		if option == "disabled" {
			return nil, d.Errf("%sdisabled: leave the operational_webhook out instead", where)
		}
		if err := unmarshalTargetOption(d, &c.Options, where); err != nil {
			return nil, err
		}
		if err := c.check(nil); err != nil {
			return nil, d.WrapErr(err)
		}
	}
	return c, nil
}

// checkPublicURL checks the public_url option: an absolute http(s) URL with
// a host, no credentials, query or fragment (the event-log page appends
// entrypoint keys to it).
func checkPublicURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("public_url %q: %v", raw, err)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("public_url %q: want an absolute http:// or https:// URL such as https://hooks.example.com/hooks/", raw)
	case u.User != nil:
		return fmt.Errorf("public_url %s: must not hold credentials (user@)", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(raw, "#"):
		return fmt.Errorf("public_url %q: must have no query (?) or fragment (#): entrypoint keys are appended to it", raw)
	}
	return nil
}
