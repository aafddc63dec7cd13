package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// ErrTargetPolicy wraps every refusal; its text contains "target policy".
var ErrTargetPolicy = errors.New("target policy")

// PolicyConfig is what the operator says about the addresses http targets
// may reach.
type PolicyConfig struct {
	// Allow and Deny are the operator's Caddyfile
	// `target_policy { allow …; deny … }`: deny refuses for every target,
	// allow widens what tenants' targets may reach.
	Allow, Deny []netip.Prefix
	// AdminEndpoints are Caddy's admin listen addresses, "host:port" (e.g.
	// "localhost:2019", ":2019", "[::1]:2019"), optionally with Caddy's
	// network prefix ("tcp/localhost:2019"). Unix sockets cannot be dialled
	// by a target and are skipped.
	AdminEndpoints []string
}

// TargetPolicy decides which addresses an http target may connect to. It is
// consulted where the connection is made, on every resolved address (see
// newHTTPClient), so that no DNS name, rebinding or spelling of an address
// gets around it; CheckURL is the same decision ahead of time, for a clear
// refusal when a target is created.
//
// The rules, first match wins:
//  1. Caddy's admin endpoint is never reachable, by anyone; allow cannot widen this.
//  2. A deny prefix refuses, for everyone.
//  3. An allow prefix allows, for everyone.
//  4. Tenants' targets (a webhook owned by a user) reach public unicast addresses only.
//  5. The operator's targets reach anything else.
type TargetPolicy struct {
	allow, deny []netip.Prefix
	admin       []adminEndpoint
}

// adminEndpoint is one address Caddy's admin API listens on.
type adminEndpoint struct {
	port uint16
	// local: it listens on a name, a loopback or an unspecified address,
	// so any loopback, unspecified or own interface address reaches it on
	// this port. Otherwise only ip does.
	local bool
	ip    netip.Addr
}

// NewTargetPolicy checks cfg and makes its policy.
func NewTargetPolicy(cfg PolicyConfig) (*TargetPolicy, error) {
	p := &TargetPolicy{}
	for _, pr := range cfg.Allow {
		n, err := normalPrefix(pr)
		if err != nil {
			return nil, fmt.Errorf("target policy: allow: %w", err)
		}
		p.allow = append(p.allow, n)
	}
	for _, pr := range cfg.Deny {
		n, err := normalPrefix(pr)
		if err != nil {
			return nil, fmt.Errorf("target policy: deny: %w", err)
		}
		p.deny = append(p.deny, n)
	}
	for _, listen := range cfg.AdminEndpoints {
		ep, ok, err := parseAdminEndpoint(listen)
		if err != nil {
			return nil, fmt.Errorf("target policy: admin endpoint %q: %w", listen, err)
		}
		if ok {
			p.admin = append(p.admin, ep)
		}
	}
	return p, nil
}

// normalPrefix masks a prefix and writes an IPv4-mapped one as IPv4, since
// the addresses it is compared with are unmapped.
func normalPrefix(pr netip.Prefix) (netip.Prefix, error) {
	if !pr.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %s", pr)
	}
	if a := pr.Addr(); a.Is4In6() && pr.Bits() >= 96 {
		pr = netip.PrefixFrom(a.Unmap(), pr.Bits()-96)
	}
	return pr.Masked(), nil
}

// parseAdminEndpoint reads a Caddy admin listen address. ok is false for an
// address no target can dial (a unix socket).
func parseAdminEndpoint(listen string) (ep adminEndpoint, ok bool, err error) {
	addr := listen
	if network, rest, found := strings.Cut(listen, "/"); found {
		switch strings.ToLower(network) {
		case "unix", "unixgram", "unixpacket":
			return adminEndpoint{}, false, nil
		case "tcp", "tcp4", "tcp6":
			addr = rest
		default:
			return adminEndpoint{}, false, fmt.Errorf("unknown network %q", network)
		}
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return adminEndpoint{}, false, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return adminEndpoint{}, false, fmt.Errorf("port %q is not a port number", portText)
	}
	ep.port = uint16(port)
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		// A name: Caddy can only listen on it if it is one of this
		// host's addresses, so treat it as all of them.
		ep.local = true
	case ip.Unmap().IsLoopback() || ip.IsUnspecified():
		ep.local = true
	default:
		ep.ip = ip.Unmap().WithZone("")
	}
	return ep, true, nil
}

// CheckAddr reports whether a target may connect to ap; tenant is true for
// the targets of a webhook owned by a user. A refusal wraps ErrTargetPolicy
// and names the rule.
func (p *TargetPolicy) CheckAddr(ap netip.AddrPort, tenant bool) error {
	if reason := p.refusal(ap, tenant); reason != "" {
		return fmt.Errorf("%w: %s", ErrTargetPolicy, reason)
	}
	return nil
}

// refusal is why ap is refused, or "" when it is not.
func (p *TargetPolicy) refusal(ap netip.AddrPort, tenant bool) string {
	ip := ap.Addr().WithZone("").Unmap()
	if !ip.IsValid() {
		return fmt.Sprintf("%s is not an IP address", ap.Addr())
	}
	// Every IPv4 address ip may stand for (IPv4-compatible, NAT64, 6to4):
	// the rules that refuse look at them too.
	embedded, hasEmbedded := embeddedIPv4(ip)
	if p.isAdmin(ip, ap.Port()) || (hasEmbedded && p.isAdmin(embedded, ap.Port())) {
		return fmt.Sprintf("%s is Caddy's admin endpoint", netip.AddrPortFrom(ap.Addr(), ap.Port()))
	}
	for _, pr := range p.deny {
		if pr.Contains(ip) || (hasEmbedded && pr.Contains(embedded)) {
			return fmt.Sprintf("%s is in the denied range %s", ap.Addr(), pr)
		}
	}
	// allow matches the address dialled, not an IPv4 address embedded in
	// an IPv6 one: widening 10.0.0.0/8 does not widen 64:ff9b::a00:1.
	for _, pr := range p.allow {
		if pr.Contains(ip) {
			return ""
		}
	}
	if !tenant {
		return ""
	}
	if what := nonPublic(ip); what != "" {
		return fmt.Sprintf("%s is %s (tenants may reach public addresses only)", ap.Addr(), what)
	}
	if hasEmbedded {
		if what := nonPublic(embedded); what != "" {
			return fmt.Sprintf("%s embeds %s, %s (tenants may reach public addresses only)", ap.Addr(), embedded, what)
		}
	}
	return ""
}

// isAdmin reports whether ip:port reaches Caddy's admin endpoint.
func (p *TargetPolicy) isAdmin(ip netip.Addr, port uint16) bool {
	local := false
	for _, ep := range p.admin {
		if ep.port != port {
			continue
		}
		if ep.local {
			local = true
		} else if ep.ip == ip {
			return true
		}
	}
	if !local {
		return false
	}
	// Connecting to 0.0.0.0 or :: reaches this host (as loopback does).
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	// Looked up only when the port is an admin port: other dials pay
	// nothing for it.
	return isOwnAddress(ip)
}

// isOwnAddress reports whether ip is one of this host's interface addresses.
// When they cannot be listed, the answer is yes: the admin endpoint is
// better refused in error than reached.
func isOwnAddress(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, a := range addrs {
		var own netip.Addr
		switch a := a.(type) {
		case *net.IPNet:
			own, _ = netip.AddrFromSlice(a.IP)
		case *net.IPAddr:
			own, _ = netip.AddrFromSlice(a.IP)
		}
		if own.Unmap() == ip {
			return true
		}
	}
	return false
}

// Special-purpose ranges (the IANA registries), each with what it is called
// in a refusal.
var (
	nat64Prefix      = netip.MustParsePrefix("64:ff9b::/96")
	sixToFourPrefix  = netip.MustParsePrefix("2002::/16")
	v4CompatPrefix   = netip.MustParsePrefix("::/96")
	globalUnicastV6  = netip.MustParsePrefix("2000::/3")
	broadcastAddress = netip.MustParseAddr("255.255.255.255")
)

type namedRange struct {
	prefix netip.Prefix
	what   string
}

func ranges(what string, prefixes ...string) []namedRange {
	out := make([]namedRange, len(prefixes))
	for i, p := range prefixes {
		out[i] = namedRange{netip.MustParsePrefix(p), what}
	}
	return out
}

var nonPublicV4 = concat(
	ranges("an unspecified address", "0.0.0.0/32"),
	ranges(`a "this network" address`, "0.0.0.0/8"),
	ranges("a loopback address", "127.0.0.0/8"),
	ranges("a private address", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
	ranges("a shared (CGNAT) address", "100.64.0.0/10"),
	ranges("a link-local address (cloud metadata lives here)", "169.254.0.0/16"),
	ranges("an IETF protocol assignment", "192.0.0.0/24"),
	ranges("a documentation address", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"),
	ranges("a benchmarking address", "198.18.0.0/15"),
	ranges("a deprecated 6to4 relay address", "192.88.99.0/24"),
	ranges("a multicast address", "224.0.0.0/4"),
	ranges("a reserved address", "240.0.0.0/4"),
)

var nonPublicV6 = concat(
	ranges("an unspecified address", "::/128"),
	ranges("a loopback address", "::1/128"),
	ranges("a discard-only address", "100::/64"),
	ranges("a local-use NAT64 address", "64:ff9b:1::/48"),
	ranges("a documentation address", "2001:db8::/32", "3fff::/20"),
	ranges("an IETF protocol assignment (Teredo, ORCHID, benchmarking)", "2001::/23"),
	ranges("a unique-local (private) address", "fc00::/7"),
	ranges("a link-local address", "fe80::/10"),
	ranges("a deprecated site-local address", "fec0::/10"),
	ranges("a multicast address", "ff00::/8"),
)

func concat(lists ...[]namedRange) []namedRange {
	var out []namedRange
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// nonPublic says what ip is when it is not a public unicast address (ip is
// unmapped), or "" when it is one. An IPv6 form that embeds an IPv4 address
// is judged here as IPv6 only; its IPv4 address is the caller's to check.
func nonPublic(ip netip.Addr) string {
	if ip.Is4() {
		if ip == broadcastAddress {
			return "the broadcast address"
		}
		for _, r := range nonPublicV4 {
			if r.prefix.Contains(ip) {
				return r.what
			}
		}
		return ""
	}
	for _, r := range nonPublicV6 {
		if r.prefix.Contains(ip) {
			return r.what
		}
	}
	// These forms live outside 2000::/3 but are as public as the IPv4
	// address they carry (NAT64 is how IPv6-only hosts reach IPv4 ones).
	if v4CompatPrefix.Contains(ip) || nat64Prefix.Contains(ip) {
		return ""
	}
	if !globalUnicastV6.Contains(ip) {
		return "not a global unicast address"
	}
	return ""
}

// embeddedIPv4 is the IPv4 address an IPv6 address carries: IPv4-compatible
// (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4 (2002:aabb:ccdd::). ip is
// unmapped already.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case v4CompatPrefix.Contains(ip), nat64Prefix.Contains(ip):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFourPrefix.Contains(ip):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// CheckURL checks a target URL ahead of time, for a clear refusal when the
// target is created: the scheme, no credentials, an IPv4 address only in
// dotted-decimal, and every address its host resolves to now. A failed
// lookup is not a refusal: the check at dial time decides then.
func (p *TargetPolicy) CheckURL(ctx context.Context, rawURL string, tenant bool) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL, which may hold a secret
		}
		return fmt.Errorf("%w: the URL does not parse: %v", ErrTargetPolicy, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: the URL's scheme must be http or https, not %q", ErrTargetPolicy, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%w: the URL carries credentials (user:password@); send them in a header instead", ErrTargetPolicy)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: the URL has no host", ErrTargetPolicy)
	}
	portText := u.Port()
	if portText == "" {
		portText = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return fmt.Errorf("%w: port %q is not a port number", ErrTargetPolicy, u.Port())
	}
	check := func(ip netip.Addr) error { return p.CheckAddr(netip.AddrPortFrom(ip, uint16(port)), tenant) }

	if ip, err := netip.ParseAddr(host); err == nil {
		return check(ip)
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if numericHost(name) {
		return fmt.Errorf("%w: host %q is a number but not an IPv4 address in dotted-decimal (some resolvers read it as one): write the address as four decimal numbers, e.g. 192.0.2.10",
			ErrTargetPolicy, host)
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		// RFC 6761: loopback, whatever a resolver says.
		for _, ip := range []netip.Addr{netip.IPv6Loopback(), netip.AddrFrom4([4]byte{127, 0, 0, 1})} {
			if reason := p.refusal(netip.AddrPortFrom(ip, uint16(port)), tenant); reason != "" {
				return fmt.Errorf("%w: %s is loopback: %s", ErrTargetPolicy, host, reason)
			}
		}
		return nil
	}
	if !tenant && len(p.deny) == 0 && !p.adminPort(uint16(port)) {
		return nil // nothing could refuse what the name resolves to
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, ip := range ips {
		if reason := p.refusal(netip.AddrPortFrom(ip, uint16(port)), tenant); reason != "" {
			return fmt.Errorf("%w: %s resolves to %s", ErrTargetPolicy, host, reason)
		}
	}
	return nil
}

// adminPort reports whether the admin endpoint listens on port.
func (p *TargetPolicy) adminPort(port uint16) bool {
	for _, ep := range p.admin {
		if ep.port == port {
			return true
		}
	}
	return false
}

// numericHost reports whether a host name (lower case, no trailing dot) is
// an IPv4 address in a spelling other than dotted-decimal: WHATWG URL
// parsing and inet_aton read a host whose last label is a number (decimal,
// 0x hex or 0 octal) as an IPv4 address (2130706433, 0x7f.1, 0177.0.0.1,
// 127.1). No top-level domain is a number, so no real name is refused.
func numericHost(host string) bool {
	labels := strings.Split(host, ".")
	last := labels[len(labels)-1]
	if last == "" {
		return false
	}
	if hex, ok := strings.CutPrefix(last, "0x"); ok {
		for _, c := range hex {
			if !strings.ContainsRune("0123456789abcdef", c) {
				return false
			}
		}
		return true
	}
	for _, c := range last {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// tenantKey is the request context key of the tenant flag, which says the
// request is a delivery to a target of a webhook owned by a user.
type tenantKey struct{}

func withTenant(ctx context.Context, tenant bool) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

func tenantFrom(ctx context.Context) bool {
	tenant, _ := ctx.Value(tenantKey{}).(bool)
	return tenant
}

// tenantOwned reports whether the webhook's targets are held to the tenant
// rules, in the configuration in force. A webhook that is not there (it
// went away between two reads) is: a refusal in error is better than a
// tenant's request let through.
func (e *Engine) tenantOwned(webhookID string) bool {
	snap := e.snapshot.Load()
	if snap == nil {
		return true
	}
	w, ok := snap.Webhook(webhookID)
	return !ok || w.UserID != ""
}
