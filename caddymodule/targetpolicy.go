package caddymodule

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/webhooker/caddy-webhooker/engine"
	"github.com/webhooker/caddy-webhooker/storage"
)

// TargetPolicyConfig widens or narrows the addresses http targets may
// connect to. Whatever it says, no target reaches Caddy's admin endpoint;
// the targets of webhooks owned by a user (tenants) reach only public
// unicast addresses unless allow says otherwise; the operator's reach the
// rest. The policy is checked on every address a target's host resolves to,
// when the connection is made.
type TargetPolicyConfig struct {
	// Allow lists CIDR prefixes (or single addresses) that every target may
	// reach, tenants' included. Default: none. Example: ["10.0.0.0/8"] for
	// an internal app.
	Allow []string `json:"allow,omitempty"`

	// Deny lists CIDR prefixes (or single addresses) that no target may
	// reach, the operator's included. Deny wins over allow. Default: none.
	// Example: ["169.254.0.0/16", "fd00::/8"].
	Deny []string `json:"deny,omitempty"`
}

// unmarshalTargetPolicy reads the block of the target_policy option:
//
//	target_policy {
//		allow <cidr>...
//		deny  <cidr>...
//	}
//
// allow and deny may be repeated; their prefixes add up.
func unmarshalTargetPolicy(d *caddyfile.Dispenser) (*TargetPolicyConfig, error) {
	if d.NextArg() {
		return nil, d.Errf("target_policy takes a block, not %q", d.Val())
	}
	p := new(TargetPolicyConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		rule := d.Val()
		if rule != "allow" && rule != "deny" {
			return nil, d.Errf("target_policy: unrecognized rule %q (want allow or deny)", rule)
		}
		args := d.RemainingArgs()
		if len(args) == 0 {
			return nil, d.Errf("target_policy %s: want one or more CIDR prefixes such as 10.0.0.0/8", rule)
		}
		for _, a := range args {
			if _, err := parsePrefix(a); err != nil {
				return nil, d.Errf("target_policy %s: %v", rule, err)
			}
		}
		if rule == "allow" {
			p.Allow = append(p.Allow, args...)
		} else {
			p.Deny = append(p.Deny, args...)
		}
	}
	return p, nil
}

// parsePrefix reads a CIDR prefix, or a single address as its own prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix such as 10.0.0.0/8 or fd00::/8", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %s?", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a CIDR prefix such as 10.0.0.0/8", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// policyConfig turns the app's target_policy into the engine's, with the
// admin endpoint of the config being provisioned.
func (a *App) policyConfig(ctx caddy.Context) (engine.PolicyConfig, error) {
	pc, err := a.TargetPolicy.engineConfig()
	if err != nil {
		return pc, err
	}
	pc.AdminEndpoints = adminListenAddresses(ctx)
	return pc, nil
}

// engineConfig is the engine's policy with c's prefixes (none if c is nil)
// and no admin endpoint.
func (c *TargetPolicyConfig) engineConfig() (engine.PolicyConfig, error) {
	var pc engine.PolicyConfig
	if c == nil {
		return pc, nil
	}
	for _, list := range []struct {
		in  []string
		out *[]netip.Prefix
	}{{c.Allow, &pc.Allow}, {c.Deny, &pc.Deny}} {
		for _, s := range list.in {
			p, err := parsePrefix(s)
			if err != nil {
				return pc, fmt.Errorf("target_policy: %w", err)
			}
			*list.out = append(*list.out, p)
		}
	}
	return pc, nil
}

// adminListenAddresses are the addresses Caddy's admin endpoint, and its
// remote endpoint if configured, listen on in the config ctx provisions.
//
// Caddy gives modules no accessor for its admin settings, so they are read
// from the config through reflection (read-only). If a later Caddy moves
// them, the defaults are used (localhost:2019, or $CADDY_ADMIN), and
// TestTargetPolicyAdminEndpointFromConfig fails on the custom port.
func adminListenAddresses(ctx caddy.Context) []string {
	cfg := reflect.ValueOf(ctx).FieldByName("cfg")
	if !cfg.IsValid() || cfg.Kind() != reflect.Pointer || cfg.IsNil() {
		return []string{caddy.DefaultAdminListen}
	}
	admin := cfg.Elem().FieldByName("Admin")
	if !admin.IsValid() || admin.Kind() != reflect.Pointer {
		return []string{caddy.DefaultAdminListen}
	}
	if admin.IsNil() {
		return []string{caddy.DefaultAdminListen}
	}
	listen := func(v reflect.Value, def string) string {
		s := v.FieldByName("Listen")
		if !s.IsValid() || s.Kind() != reflect.String || s.String() == "" {
			return def
		}
		return caddy.NewReplacer().ReplaceKnown(s.String(), "")
	}
	var out []string
	if disabled := admin.Elem().FieldByName("Disabled"); !disabled.IsValid() || !disabled.Bool() {
		out = append(out, listen(admin.Elem(), caddy.DefaultAdminListen))
	}
	if remote := admin.Elem().FieldByName("Remote"); remote.IsValid() && remote.Kind() == reflect.Pointer && !remote.IsNil() {
		out = append(out, listen(remote.Elem(), caddy.DefaultRemoteAdminListen))
	}
	return out
}

// checkDeclaredTargets refuses declared http targets that the policy
// refuses on the face of their URL (checkDeclaredTarget).
func checkDeclaredTargets(p *engine.TargetPolicy, declared []*storage.Webhook) error {
	for _, w := range declared {
		for _, t := range w.Targets {
			if err := checkDeclaredTarget(p, w.Name, t.Name, string(t.Type), t.URL); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkDeclaredTarget refuses an http target of the operator's that the
// policy refuses on the face of its URL: an IP literal or a loopback name
// (the admin endpoint, say). Names are not resolved here: the connection's
// check decides for them. The Caddyfile calls it with the block's own
// target_policy and no admin endpoint, which only the config in force
// knows: Provision checks again with it.
func checkDeclaredTarget(p *engine.TargetPolicy, webhook, target, targetType, rawURL string) error {
	if targetType != string(storage.TargetHTTP) {
		return nil
	}
	if err := checkOperatorURL(p, rawURL); err != nil {
		return fmt.Errorf("webhook %s: target %s: %w", webhook, target, err)
	}
	return nil
}

// checkOperatorURL refuses an operator's URL that the policy refuses on the
// face of it, as checkDeclaredTarget says.
func checkOperatorURL(p *engine.TargetPolicy, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil // checkTarget reported it
	}
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err != nil && host != "localhost" && !strings.HasSuffix(host, ".localhost") {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return p.CheckURL(ctx, rawURL, false)
}
