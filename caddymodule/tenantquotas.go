package caddymodule

import (
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/webhooker/caddy-webhooker/storage"
)

// TenantQuotasConfig bounds what one user may own through the tenant API
// (webhooker_api), counted over all their webhooks. A create over a quota
// is refused with 403. 0 or absent means the default.
type TenantQuotasConfig struct {
	// Webhooks is the most webhooks a user may have. 1 to 1000000.
	// Default: 100.
	Webhooks int `json:"webhooks,omitempty"`

	// Entrypoints is the most entrypoints a user may have, over all their
	// webhooks. 1 to 1000000. Default: 500.
	Entrypoints int `json:"entrypoints,omitempty"`

	// Targets is the most targets a user may have, over all their
	// webhooks. 1 to 1000000. Default: 500.
	Targets int `json:"targets,omitempty"`
}

// maxQuota is the most any tenant quota may be.
const maxQuota = 1_000_000

// check checks the quotas of a JSON config (0: the default).
func (q *TenantQuotasConfig) check() error {
	if q == nil {
		return nil
	}
	for _, c := range []struct {
		name string
		n    int
	}{{"webhooks", q.Webhooks}, {"entrypoints", q.Entrypoints}, {"targets", q.Targets}} {
		if err := checkQuota(c.name, c.n); err != nil {
			return err
		}
	}
	return nil
}

// checkQuota checks one tenant quota: 0 (the default) to maxQuota.
func checkQuota(name string, n int) error {
	if n < 0 || n > maxQuota {
		return fmt.Errorf("tenant_quotas %s %d: want a whole number from 1 to %d", name, n, maxQuota)
	}
	return nil
}

func (q *TenantQuotasConfig) quotas() storage.Quotas {
	if q == nil {
		return storage.Quotas{}
	}
	return storage.Quotas{Webhooks: q.Webhooks, Entrypoints: q.Entrypoints, Targets: q.Targets}
}

// unmarshalTenantQuotas reads the block of the tenant_quotas option:
//
//	tenant_quotas {
//		webhooks    <n>
//		entrypoints <n>
//		targets     <n>
//	}
func unmarshalTenantQuotas(d *caddyfile.Dispenser) (*TenantQuotasConfig, error) {
	if d.NextArg() {
		return nil, d.Errf("tenant_quotas takes a block, not %q", d.Val())
	}
	q := new(TenantQuotasConfig)
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		field := map[string]*int{"webhooks": &q.Webhooks, "entrypoints": &q.Entrypoints, "targets": &q.Targets}[name]
		if field == nil {
			return nil, d.Errf("tenant_quotas: unrecognized quota %q (want webhooks, entrypoints or targets)", name)
		}
		if seen[name] {
			return nil, d.Errf("tenant_quotas: %s is set twice", name)
		}
		seen[name] = true
		var s string
		if !d.AllArgs(&s) {
			return nil, d.Errf("tenant_quotas %s: want one number", name)
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, d.Errf("tenant_quotas %s %q: want a whole number from 1 to %d", name, s, maxQuota)
		}
		if n == 0 {
			return nil, d.Errf("tenant_quotas %s 0: want 1 to %d (leave the quota out for its default)", name, maxQuota)
		}
		if err := checkQuota(name, n); err != nil {
			return nil, d.WrapErr(err)
		}
		*field = n
	}
	return q, nil
}
