package engine

import (
	"context"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
)

// fuzzPolicy has an admin endpoint and both kinds of ranges, so that every
// rule is in play.
func fuzzPolicy(f *testing.F) *TargetPolicy {
	p, err := NewTargetPolicy(PolicyConfig{
		AdminEndpoints: []string{"localhost:2019", "192.0.2.10:2020"},
		Allow:          prefixes("10.0.0.0/8", "fd00::/8"),
		Deny:           prefixes("10.1.0.0/16", "8.8.4.0/24"),
	})
	if err != nil {
		f.Fatal(err)
	}
	return p
}

func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"http://8.8.8.8/", "https://[2606:4700::1111]:8443/x?y=1", "http://127.1/", "http://2130706433:2019/",
		"http://0x7f.1/", "http://0177.0.0.1/", "http://[::ffff:7f00:1]/", "http://localhost:2019/stop",
		"http://u:p@8.8.8.8/", "http://[fe80::1%25eth0]:80/", "http://169.254.169.254/latest", "ftp://x/",
		"http://a.localhost./", "http://[64:ff9b::7f00:1]/", "http://10.1.2.3:99999/", "http://example.com/",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	p := fuzzPolicy(f)
	// A cancelled context: a name's lookup fails at once (and a failed
	// lookup is not a refusal), so the run is hermetic and fast.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.Fuzz(func(t *testing.T, raw string, tenant bool) {
		if err := p.CheckURL(ctx, raw, tenant); err != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse: %v", raw, err)
		}
		if u.User != nil || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("accepted %q: credentials or scheme %q", raw, u.Scheme)
		}
		ip, err := netip.ParseAddr(u.Hostname())
		if err != nil || !tenant {
			return
		}
		port, err := strconv.ParseUint(u.Port(), 10, 16)
		if err != nil {
			port = map[string]uint64{"http": 80, "https": 443}[u.Scheme]
		}
		if err := p.CheckAddr(netip.AddrPortFrom(ip, uint16(port)), true); err != nil {
			t.Fatalf("accepted %q for a tenant, but its address %s is refused: %v", raw, ip, err)
		}
	})
}

func FuzzCheckAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.1", "::1", "0.0.0.0", "8.8.8.8", "10.1.2.3",
		"64:ff9b::a01:203", "2002:c0a8:101::", "::7f00:1", "fe80::1", "2606:4700::1111", "192.0.2.10"} {
		b := netip.MustParseAddr(s).As16()
		f.Add(b[:], uint16(2019))
		f.Add(b[:], uint16(443))
	}
	p := fuzzPolicy(f)
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		var a [16]byte
		copy(a[:], b)
		ip := netip.AddrFrom16(a)
		v4 := netip.AddrFrom4([4]byte{a[12], a[13], a[14], a[15]})
		mapped := netip.AddrFrom16(netip.AddrFrom4([4]byte(a[12:16])).As16())
		for _, tenant := range []bool{false, true} {
			_ = p.CheckAddr(netip.AddrPortFrom(ip, port), tenant) // never panics
			e4 := p.CheckAddr(netip.AddrPortFrom(v4, port), tenant)
			e6 := p.CheckAddr(netip.AddrPortFrom(mapped, port), tenant)
			if (e4 == nil) != (e6 == nil) {
				t.Fatalf("tenant %v: %s says %v, its IPv4-mapped form %s says %v", tenant, v4, e4, mapped, e6)
			}
		}
	})
}
