package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/webhooker/caddy-webhooker/storage"
)

func mustPolicy(t *testing.T, cfg PolicyConfig) *TargetPolicy {
	t.Helper()
	p, err := NewTargetPolicy(cfg)
	if err != nil {
		t.Fatalf("NewTargetPolicy: %v", err)
	}
	return p
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// checkAddr is CheckAddr of "ip" on port.
func checkAddr(p *TargetPolicy, ip string, port uint16, tenant bool) error {
	return p.CheckAddr(netip.AddrPortFrom(netip.MustParseAddr(ip), port), tenant)
}

// wantRefusal fails unless err is a refusal of the target policy whose text
// contains every one of want.
func wantRefusal(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: allowed, want refused", what)
		return
	}
	if !errors.Is(err, ErrTargetPolicy) || !strings.Contains(err.Error(), "target policy") {
		t.Errorf("%s: %v does not wrap ErrTargetPolicy", what, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %q does not say %q", what, err, w)
		}
	}
}

func TestTargetPolicyTenantsReachPublicAddressesOnly(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, PolicyConfig{})
	for _, c := range []struct {
		ip   string
		what string // in the tenant's refusal; "" = allowed
	}{
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"2606:4700::1111", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of 8.8.8.8: how IPv6-only hosts reach it
		{"2002:808:808::1", ""},  // 6to4 of 8.8.8.8
		{"::ffff:1.1.1.1", ""},
		{"127.0.0.1", "127.0.0.1 is a loopback address (tenants may reach public addresses only)"},
		{"127.255.255.254", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:7f00:2", "loopback"},
		{"::127.0.0.1", "embeds 127.0.0.1, a loopback address"}, // IPv4-compatible
		{"64:ff9b::7f00:1", "embeds 127.0.0.1"},                 // NAT64
		{"64:ff9b::a9fe:a9fe", "embeds 169.254.169.254, a link-local address (cloud metadata"},
		{"2002:7f00:1::", "embeds 127.0.0.1"},      // 6to4
		{"2002:c0a8:101::1", "embeds 192.168.1.1"}, // 6to4
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"::ffff:10.1.2.3", "private"},
		{"fc00::1", "unique-local"},
		{"fd12:3456::1", "unique-local"},
		{"169.254.169.254", "link-local address (cloud metadata"},
		{"fe80::1", "link-local"},
		{"100.64.0.1", "CGNAT"},
		{"100.127.255.255", "CGNAT"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"0.1.2.3", `"this network"`},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"192.0.0.8", "IETF protocol assignment"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"192.0.2.1", "documentation"},
		{"198.51.100.1", "documentation"},
		{"203.0.113.1", "documentation"},
		{"2001:db8::1", "documentation"},
		{"2001::1", "IETF protocol assignment"}, // Teredo
		{"fec0::1", "site-local"},
		{"100::1", "discard-only"},
		{"64:ff9b:1::1", "local-use NAT64"},
		{"4000::1", "not a global unicast address"},
	} {
		err := checkAddr(p, c.ip, 443, true)
		if c.what == "" {
			if err != nil {
				t.Errorf("tenant %s: refused: %v", c.ip, err)
			}
		} else {
			wantRefusal(t, "tenant "+c.ip, err, c.what)
		}
		// The operator reaches every one of them (no admin endpoint here).
		if err := checkAddr(p, c.ip, 443, false); err != nil {
			t.Errorf("operator %s: refused: %v", c.ip, err)
		}
	}
}

func TestTargetPolicyDenyBeatsAllowForEveryone(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, PolicyConfig{
		Allow: prefixes("10.0.0.0/8"),
		Deny:  prefixes("10.1.0.0/16", "8.8.4.0/24"),
	})
	for _, tenant := range []bool{false, true} {
		for _, ip := range []string{"10.1.2.3", "::ffff:10.1.2.3", "64:ff9b::a01:203", "8.8.4.4"} {
			wantRefusal(t, ip, checkAddr(p, ip, 80, tenant), "in the denied range")
		}
	}
	if err := checkAddr(p, "10.2.0.1", 80, true); err != nil {
		t.Errorf("10.2.0.1 (allowed, not denied): %v", err)
	}
}

func TestTargetPolicyAllowWidensTenants(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, PolicyConfig{Allow: prefixes("10.0.0.0/8", "::ffff:172.16.5.0/120")})
	for _, ip := range []string{"10.0.0.5", "::ffff:10.9.9.9", "172.16.5.7"} {
		if err := checkAddr(p, ip, 8080, true); err != nil {
			t.Errorf("tenant %s (allowed): %v", ip, err)
		}
	}
	// The widening is exactly what was written.
	for _, ip := range []string{"192.168.1.1", "127.0.0.1", "172.16.6.1", "64:ff9b::a00:5"} {
		wantRefusal(t, "tenant "+ip, checkAddr(p, ip, 8080, true), "tenants may reach public addresses only")
	}
}

func TestTargetPolicyAdminEndpointIsNeverReachable(t *testing.T) {
	t.Parallel()
	spellings := []string{"127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::"}
	if own := ownNonLoopbackAddress(); own.IsValid() {
		spellings = append(spellings, own.String())
	}
	for _, listen := range []string{":2019", "localhost:2019", "127.0.0.1:2019", "[::1]:2019", "tcp/localhost:2019"} {
		// allow cannot widen it, not even for the operator.
		p := mustPolicy(t, PolicyConfig{
			AdminEndpoints: []string{listen, "unix//run/caddy-admin.sock"},
			Allow:          prefixes("127.0.0.0/8", "::/0", "0.0.0.0/0"),
		})
		for _, ip := range spellings {
			for _, tenant := range []bool{false, true} {
				wantRefusal(t, listen+" reached at "+ip, checkAddr(p, ip, 2019, tenant), "is Caddy's admin endpoint")
			}
		}
		// Another port of this host is the operator's to use.
		if err := checkAddr(p, "127.0.0.1", 2020, false); err != nil {
			t.Errorf("%s: operator to 127.0.0.1:2020: %v", listen, err)
		}
	}
	err := checkAddr(mustPolicy(t, PolicyConfig{AdminEndpoints: []string{"localhost:2019"}}), "127.0.0.1", 2019, false)
	wantRefusal(t, "message", err, "target policy: 127.0.0.1:2019 is Caddy's admin endpoint")

	// Listening on one address that is not loopback: that address is it.
	p := mustPolicy(t, PolicyConfig{AdminEndpoints: []string{"192.0.2.10:2019"}})
	for _, ip := range []string{"192.0.2.10", "::ffff:192.0.2.10"} {
		wantRefusal(t, ip, checkAddr(p, ip, 2019, false), "is Caddy's admin endpoint")
	}
	if err := checkAddr(p, "192.0.2.11", 2019, false); err != nil {
		t.Errorf("192.0.2.11:2019 with the admin endpoint on 192.0.2.10: %v", err)
	}
}

// ownNonLoopbackAddress is an address of one of this host's interfaces that
// is not loopback, if it has one.
func ownNonLoopbackAddress() netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && !ip.Unmap().IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.Unmap()
			}
		}
	}
	return netip.Addr{}
}

func TestNewTargetPolicyRefusesWhatItCannotRead(t *testing.T) {
	t.Parallel()
	for _, cfg := range []PolicyConfig{
		{AdminEndpoints: []string{"localhost"}},
		{AdminEndpoints: []string{"localhost:admin"}},
		{AdminEndpoints: []string{"localhost:0"}},
		{AdminEndpoints: []string{"localhost:70000"}},
		{AdminEndpoints: []string{"sctp/localhost:2019"}},
		{Allow: []netip.Prefix{{}}},
		{Deny: []netip.Prefix{{}}},
	} {
		if _, err := NewTargetPolicy(cfg); err == nil || !strings.Contains(err.Error(), "target policy") {
			t.Errorf("NewTargetPolicy(%+v) = %v, want an error", cfg, err)
		}
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, PolicyConfig{AdminEndpoints: []string{"localhost:2019"}})
	ctx := context.Background()
	for _, c := range []struct {
		url              string
		tenant, operator string // in the refusal; "" = allowed
	}{
		{"http://8.8.8.8/", "", ""},
		{"https://[2606:4700::1111]:8443/hook?x=1", "", ""},
		{"http://127.0.0.1:8080/", "127.0.0.1 is a loopback address", ""},
		{"http://127.0.0.1:2019/load", "Caddy's admin endpoint", "127.0.0.1:2019 is Caddy's admin endpoint"},
		{"http://[::1]:2019/load", "Caddy's admin endpoint", "Caddy's admin endpoint"},
		{"http://0.0.0.0:2019/", "Caddy's admin endpoint", "Caddy's admin endpoint"},
		{"http://169.254.169.254/latest/meta-data/", "cloud metadata", ""},
		{"http://2130706433:2019/", "dotted-decimal", "dotted-decimal"},
		{"http://0x7f.1/", "dotted-decimal", "dotted-decimal"},
		{"http://0x7F000001/", "dotted-decimal", "dotted-decimal"},
		{"http://0177.0.0.1/", "dotted-decimal", "dotted-decimal"},
		{"http://127.1/", "dotted-decimal", "dotted-decimal"},
		{"http://127.0.0.1./", "dotted-decimal", "dotted-decimal"},
		{"http://[::ffff:7f00:1]/", "loopback", ""},
		{"http://[fe80::1%25eth0]/", "link-local", ""},
		{"http://localhost/", "localhost is loopback", ""},
		{"http://LocalHost.:2019/stop", "Caddy's admin endpoint", "Caddy's admin endpoint"},
		{"http://api.localhost:8080/", "loopback", ""},
		{"http://u:p@8.8.8.8/", "credentials", "credentials"},
		{"http://u@8.8.8.8/", "credentials", "credentials"},
		{"ftp://8.8.8.8/", "scheme must be http or https", "scheme must be http or https"},
		{"file:///etc/passwd", "scheme", "scheme"},
		{"http:///x", "no host", "no host"},
		{"http://8.8.8.8:0/", "not a port number", "not a port number"},
		{"http://8.8.8.8:99999/", "not a port number", "not a port number"},
		{"http://[::1/?token=SECRET", "does not parse", "does not parse"},
	} {
		for _, tenant := range []bool{true, false} {
			want, who := c.operator, "operator"
			if tenant {
				want, who = c.tenant, "tenant"
			}
			err := p.CheckURL(ctx, c.url, tenant)
			if want == "" {
				if err != nil {
					t.Errorf("%s %s: refused: %v", who, c.url, err)
				}
				continue
			}
			wantRefusal(t, who+" "+c.url, err, want)
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("%s %s: the refusal quotes the query string: %v", who, c.url, err)
			}
		}
	}
}

func TestHTTPClientIgnoresProxyEnvironment(t *testing.T) {
	t.Parallel()
	pt, ok := newHTTPClient(fixedPolicy(mustPolicy(t, PolicyConfig{}))).Transport.(*policyTransport)
	if !ok {
		t.Fatal("the client's transport is not the policy's")
	}
	if pt.operator.Proxy != nil || pt.tenant.Proxy != nil {
		t.Error("a proxy would be dialled instead of the target, and checked instead of it")
	}
	if pt.operator == pt.tenant {
		t.Error("tenants share the operator's connection pool")
	}
}

// tenantBlockedAtDial sends one event through a tenant's webhook whose
// target is rawURL, at tg, and checks that it was refused at dial time:
// nothing reached tg, one attempt recorded, not retried, not held against
// the target's circuit breaker.
func tenantBlockedAtDial(t *testing.T, tg *target, rawURL string) {
	env := newEnv(t)
	opts := quick(3)
	opts.BreakerThreshold = intp(1) // one failure held against it would open it
	snap, w, key := env.tenantWebhook("tenant-hook", httpTarget("mine", rawURL, opts))
	e := env.start(snap, Options{})

	in := env.send(e, snap, key, []byte(`{"steal":"config"}`), nil)
	d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryFailed)
	if n := tg.count(); n != 0 {
		t.Fatalf("%d requests reached the loopback server", n)
	}
	if d.Attempts != 1 || !strings.Contains(d.LastError, "target policy") || !strings.Contains(d.LastError, "loopback") {
		t.Errorf("delivery = attempts %d, last_error %q; want 1 attempt refused by the target policy", d.Attempts, d.LastError)
	}
	if strings.Contains(d.LastError, "gave up") {
		t.Errorf("last_error %q: a refusal is not a retry given up", d.LastError)
	}
	rs := env.results(in.webhookID, d.ID)
	if len(rs) != 1 || !strings.Contains(rs[0].Error, "target policy") || rs[0].StatusCode != 0 {
		t.Errorf("results = %+v, want one refused attempt", rs)
	}
	if n := e.PendingTimers(); n != 0 {
		t.Errorf("%d retry timers left", n)
	}
	if st := e.BreakerState(w.Targets[0].ID); st != "closed" {
		t.Errorf("breaker %s: a refusal was held against the target", st)
	}
	env.noErrorLogs()
}

func TestTenantTargetOnLoopbackIsBlockedAtDial(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	tenantBlockedAtDial(t, tg, tg.URL+"/hook")
}

func TestTenantTargetNamedLocalhostIsBlockedAtDial(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	u, err := url.Parse(tg.URL)
	if err != nil {
		t.Fatal(err)
	}
	// A DNS name: nothing in the URL's text says loopback to a check of
	// the text; the dialer sees the address it resolved to.
	tenantBlockedAtDial(t, tg, "http://localhost:"+u.Port()+"/hook")
}

func TestOperatorTargetAtAdminEndpointIsBlockedOthersDelivered(t *testing.T) {
	t.Parallel()
	admin := newTarget(t, nil) // stands in for Caddy's admin endpoint
	app := newTarget(t, nil)   // an app of the operator's on loopback
	env := newEnv(t)
	policy := mustPolicy(t, PolicyConfig{
		AdminEndpoints: []string{admin.Listener.Addr().String()},
		Allow:          prefixes("127.0.0.0/8"),
	})
	snap := env.configure(webhook("ops",
		httpTarget("admin", admin.URL+"/config/apps/http/servers/evil", quick(3)),
		httpTarget("app", app.URL+"/hook", quick(3))))
	e := env.start(snap, Options{Policy: policy})

	in := env.send(e, snap, "ops-in", []byte(`{}`), nil)
	blocked := env.waitStatus(in.webhookID, in.to(t, "admin").ID, storage.DeliveryFailed)
	env.waitStatus(in.webhookID, in.to(t, "app").ID, storage.DeliveryDelivered)
	if n := admin.count(); n != 0 {
		t.Fatalf("%d requests reached the admin endpoint", n)
	}
	if n := app.count(); n != 1 {
		t.Errorf("the operator's app got %d requests, want 1", n)
	}
	if blocked.Attempts != 1 || !strings.Contains(blocked.LastError, "target policy") ||
		!strings.Contains(blocked.LastError, "is Caddy's admin endpoint") {
		t.Errorf("admin delivery: attempts %d, last_error %q", blocked.Attempts, blocked.LastError)
	}
	if n := e.PendingTimers(); n != 0 {
		t.Errorf("%d retry timers left", n)
	}
}

// A connection the operator's target opened must not carry a tenant's
// request to the same host:port: pooled connections were checked for the
// operator only.
func TestTenantCannotReuseOperatorConnection(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	env.configure(webhook("ops", httpTarget("app", tg.URL+"/hook", quick(0))))
	snap, _, key := env.tenantWebhook("tenant-hook", httpTarget("mine", tg.URL+"/hook", quick(0)))
	e := env.start(snap, Options{Workers: 1})

	first := env.send(e, snap, "ops-in", []byte(`{}`), nil)
	env.waitStatus(first.webhookID, first.deliveries[0].ID, storage.DeliveryDelivered)
	second := env.send(e, snap, key, []byte(`{}`), nil)
	d := env.waitStatus(second.webhookID, second.deliveries[0].ID, storage.DeliveryFailed)
	if n := tg.count(); n != 1 {
		t.Errorf("server got %d requests, want the operator's 1", n)
	}
	if !strings.Contains(d.LastError, "target policy") {
		t.Errorf("tenant's last_error = %q", d.LastError)
	}
}

func TestDeliveryCarriesHopMarker(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	env := newEnv(t)
	snap := env.configure(webhook("shop", httpTarget("crm", tg.URL, quick(0))))
	e := env.start(snap, Options{GatewayID: "gw-1"})
	if e.GatewayID() != "gw-1" {
		t.Errorf("GatewayID() = %q", e.GatewayID())
	}

	plain := env.send(e, snap, "shop-in", []byte(`{}`), nil)
	env.waitStatus(plain.webhookID, plain.deliveries[0].ID, storage.DeliveryDelivered)
	h := http.Header{}
	h.Set(HopHeader, "other")
	relayed := env.send(e, snap, "shop-in", []byte(`{}`), h)
	env.waitStatus(relayed.webhookID, relayed.deliveries[0].ID, storage.DeliveryDelivered)

	reqs := tg.all()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	for i, want := range []string{"gw-1", "other, gw-1"} {
		if got := reqs[i].header.Values(HopHeader); len(got) != 1 || got[0] != want {
			t.Errorf("request %d: %s = %q, want %q", i+1, HopHeader, got, want)
		}
		if !LoopDetected(reqs[i].header, "gw-1") {
			t.Errorf("request %d would not be caught coming back", i+1)
		}
	}
}

// Validation refuses a configured HopHeader; if one got through all the
// same, the delivery would still carry the gateway's true marker.
func TestConfiguredHeaderCannotReplaceHopMarker(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, nil)
	s := settingsOf(storage.Target{})
	s.headers = map[string]string{"Webhooker-Via": "forged-by-config"}
	h := http.Header{}
	h.Set(HopHeader, "other")
	task := &Task{DeliveryID: "d1", Target: storage.Target{URL: tg.URL}, Event: EventMeta{ID: "e1", Headers: h}}
	res := deliverHTTP(context.Background(), newHTTPClient(fixedPolicy(mustPolicy(t, PolicyConfig{}))), s, task,
		strings.NewReader("{}"), time.Now(), false, "gw-1")
	if res.err != nil {
		t.Fatalf("delivery: %v", res.err)
	}
	reqs := tg.all()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if got := reqs[0].header.Values(HopHeader); len(got) != 1 || got[0] != "other, gw-1" {
		t.Errorf("%s = %q, want [other, gw-1]", HopHeader, got)
	}
}

func TestEngineGatewayIDDefaultsToRandom(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	snap := env.configure()
	a, b := env.engine(snap, Options{}), env.engine(snap, Options{})
	if a.GatewayID() == "" || a.GatewayID() == b.GatewayID() {
		t.Errorf("gateway ids %q and %q", a.GatewayID(), b.GatewayID())
	}
}

func TestTransportErrorsDoNotQuoteQueryString(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	const url = "http://127.0.0.1:1/x?token=SECRET#frag-SECRET" // nothing listens on port 1
	env.configure(webhook("ops", httpTarget("gone", url, quick(0))))
	// A tenant's too: its refusal wraps the same *url.Error.
	snap, _, key := env.tenantWebhook("tenant-hook", httpTarget("gone", url, quick(0)))
	e := env.start(snap, Options{})

	for _, k := range []string{"ops-in", key} {
		in := env.send(e, snap, k, []byte(`{}`), nil)
		d := env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryFailed)
		rs := env.results(in.webhookID, d.ID)
		if len(rs) != 1 {
			t.Fatalf("%d results, want 1", len(rs))
		}
		for _, text := range []string{d.LastError, rs[0].Error} {
			if strings.Contains(text, "SECRET") || !strings.Contains(text, `"http://127.0.0.1:1/x?REDACTED`) {
				t.Errorf("%s: error %q, want the URL with its query redacted", k, text)
			}
		}
	}
	for _, entry := range env.logs.All() {
		if strings.Contains(entry.Message, "SECRET") {
			t.Errorf("logged: %s", entry.Message)
		}
		for k, v := range entry.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "SECRET") {
				t.Errorf("logged %s=%q", k, s)
			}
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"http://host:8080/x?token=SECRET":     "http://host:8080/x?REDACTED",
		"http://user:SECRET@host/x":           "http://REDACTED@host/x",
		"https://SECRET@host/":                "https://REDACTED@host/",
		"http://host/x#SECRET":                "http://host/x#REDACTED",
		"http://host/x":                       "http://host/x",
		"http://host:bad/?token=SECRET":       "http://REDACTED",
		"http://[::1/?token=SECRET":           "http://REDACTED",
		"SECRET?:://\x7f":                     "REDACTED",
		"http://***:***@host/p?SECRET=SECRET": "http://REDACTED@host/p?REDACTED",
	} {
		if got := redactURL(raw); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", raw, got, want)
		}
	}
	// A request that cannot even be built is described without the URL.
	res := deliverHTTP(context.Background(), http.DefaultClient, settingsOf(storage.Target{}),
		&Task{Target: storage.Target{URL: "http://host:bad/?token=SECRET"}}, io.MultiReader(), time.Now(), false, "gw")
	if res.err == nil || strings.Contains(res.err.Error(), "SECRET") {
		t.Errorf("build error = %v", res.err)
	}
}

// A refusal says nothing of the target's health either way: it neither
// counts as a failure nor resets the failures counted before it.
func TestPolicyRefusalLeavesBreakerAlone(t *testing.T) {
	t.Parallel()
	down := newTarget(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	})
	admin := newTarget(t, nil)
	env := newEnv(t)
	opts := quick(0)
	opts.BreakerThreshold = intp(2)
	declare := func(url string) *storage.Snapshot {
		return env.configure(webhook("ops", httpTarget("app", url, opts)))
	}
	snap := declare(down.URL)
	e := env.start(snap, Options{Policy: mustPolicy(t, PolicyConfig{AdminEndpoints: []string{admin.Listener.Addr().String()}})})
	send := func(snap *storage.Snapshot) storage.Delivery {
		e.SetSnapshot(snap)
		in := env.send(e, snap, "ops-in", []byte(`{}`), nil)
		return env.waitStatus(in.webhookID, in.deliveries[0].ID, storage.DeliveryFailed)
	}
	targetID := snap.Webhooks()[0].Targets[0].ID

	send(snap) // failure 1 of 2
	if d := send(declare(admin.URL)); !strings.Contains(d.LastError, "target policy") {
		t.Fatalf("to the admin endpoint: last_error %q", d.LastError)
	}
	if st := e.BreakerState(targetID); st != "closed" {
		t.Fatalf("breaker %s after one failure and one refusal (threshold 2)", st)
	}
	send(declare(down.URL)) // failure 2 of 2, if the refusal reset nothing
	if st := e.BreakerState(targetID); st != "open" {
		t.Errorf("breaker %s after two failures around a refusal, want open", st)
	}
	if n := admin.count(); n != 0 {
		t.Errorf("%d requests reached the admin endpoint", n)
	}
}

// fixedPolicy is a policy source that never changes.
func fixedPolicy(p *TargetPolicy) func() *TargetPolicy { return func() *TargetPolicy { return p } }
