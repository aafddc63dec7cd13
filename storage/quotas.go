package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrQuota: a create would take a user over one of their quotas.
var ErrQuota = errors.New("quota")

// Default quotas of a user.
const (
	DefaultQuotaWebhooks    = 100
	DefaultQuotaEntrypoints = 500
	DefaultQuotaTargets     = 500
)

// Quotas bound how much live configuration one user may own, counted over
// all their webhooks. 0 in a field means its default.
type Quotas struct {
	Webhooks, Entrypoints, Targets int
}

// withDefaults fills the fields left 0.
func (q Quotas) withDefaults() Quotas {
	if q.Webhooks == 0 {
		q.Webhooks = DefaultQuotaWebhooks
	}
	if q.Entrypoints == 0 {
		q.Entrypoints = DefaultQuotaEntrypoints
	}
	if q.Targets == 0 {
		q.Targets = DefaultQuotaTargets
	}
	return q
}

// Rules are what the writes of one caller obey: the limits of the options
// they set and, for a tenant, the quotas of the user they act for.
type Rules struct {
	Limits Limits
	// Quotas, when not nil, bound the live webhooks, entrypoints and
	// targets of the user who owns the webhook written to. Nil: no quota
	// (the operator's own writes are not refused, but they count).
	Quotas *Quotas
}

// WithRules is db for a caller whose writes obey r. The MainDB itself
// applies OperatorLimits and no quota.
func (db *MainDB) WithRules(r Rules) *MainDB {
	scoped := *db
	scoped.rules = &r
	return &scoped
}

// rulesOf are the rules db's writes obey.
func (db *MainDB) rulesOf() Rules {
	if db.rules == nil {
		return Rules{Limits: OperatorLimits()}
	}
	return *db.rules
}

// quota names one of a user's quotas, the rows it counts and the Caddyfile
// option that sets it.
type quota struct {
	what  string // webhooks, entrypoints, targets
	count string // SQL counting the user's live rows, with one parameter: the user id
	max   func(Quotas) int
}

var (
	webhookQuota = quota{"webhooks",
		`SELECT count(*) FROM webhooks WHERE user_id = ? AND deleted_at IS NULL`,
		func(q Quotas) int { return q.Webhooks }}
	entrypointQuota = quota{"entrypoints",
		`SELECT count(*) FROM entrypoints e JOIN webhooks w ON w.id = e.webhook_id
			WHERE w.user_id = ? AND w.deleted_at IS NULL AND e.deleted_at IS NULL`,
		func(q Quotas) int { return q.Entrypoints }}
	targetQuota = quota{"targets",
		`SELECT count(*) FROM targets t JOIN webhooks w ON w.id = t.webhook_id
			WHERE w.user_id = ? AND w.deleted_at IS NULL AND t.deleted_at IS NULL`,
		func(q Quotas) int { return q.Targets }}
)

// checkQuota refuses, inside a write, one more row of kind qu for userID
// when rules have quotas. Run in the writer's transaction, the count cannot
// be overtaken by a concurrent create: writes to the main DB are serial.
func checkQuota(ctx context.Context, tx *sql.Tx, rules Rules, userID string, qu quota) error {
	if rules.Quotas == nil || userID == "" {
		return nil
	}
	max := qu.max(rules.Quotas.withDefaults())
	var n int
	if err := tx.QueryRowContext(ctx, qu.count, userID).Scan(&n); err != nil {
		return fmt.Errorf("count the %s of user %s: %w", qu.what, userID, err)
	}
	if n >= max {
		return fmt.Errorf("%w: user %s has %d %s, the most allowed (tenant_quotas %s)", ErrQuota, userID, n, qu.what, qu.what)
	}
	return nil
}

// ownerOf reads, inside a transaction, the user who owns webhook id ("" for none).
func ownerOf(ctx context.Context, tx *sql.Tx, id string) (string, error) {
	var owner string
	err := tx.QueryRowContext(ctx, `SELECT coalesce(user_id, '') FROM webhooks WHERE id = ? AND deleted_at IS NULL`, id).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("webhook %s: %w", id, ErrNotFound)
	}
	return owner, err
}
