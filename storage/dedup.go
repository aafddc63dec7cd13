package storage

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/webhooker/caddy-webhooker/filter"
)

// Idempotent ingest. Providers send a delivery again when they did not see
// our answer (a timeout, a dropped connection), and each copy would be a new
// event with a new round of deliveries. A webhook with a Dedup names where
// the sender's id of a delivery is (a header, or a key expression over the
// event); an event whose id was seen within the window is a repeat: nothing
// is stored, and its ingest answers the id of the event first stored.
//
// The ids live in intake.db (table dedup), written in the same transaction
// as the event they name (Intake.commitBatch): an event acknowledged has its
// id recorded, a repeat is caught after a restart as before it, and two
// copies in one group commit make one event. A row outlives the event's
// trip through the intake (the sync round never deletes one); expired rows
// are pruned by the commits that follow, a bounded batch at a time, so that
// nothing polls an idle gateway.

// DedupKind is where a webhook's dedup id comes from.
type DedupKind string

const (
	DedupHeader     DedupKind = "header"     // the first value of a request header
	DedupExpression DedupKind = "expression" // a key expression (filter.CompileKey)
)

const (
	// DefaultDedupWindow is how long an id is remembered when the webhook
	// sets no window: providers retry over hours (GitHub does not, Stripe
	// for three days, most within a day).
	DefaultDedupWindow = 24 * time.Hour
	// MinDedupWindow is the shortest window: anything shorter is a typo.
	MinDedupWindow = time.Second
	// MaxDedupKeyBytes bounds the id stored per event. A longer one (a
	// hostile header, a whole body as the key) is stored as its SHA-256
	// ("sha256:" and 64 hex digits): repeats are still caught, in bounded
	// space.
	MaxDedupKeyBytes = 256
	// maxDedupHeaderBytes bounds the name of a dedup header.
	maxDedupHeaderBytes = 256
	// dedupPruneBatch bounds the expired rows one commit removes, and
	// dedupPruneEvery how often a commit looks for them when the last
	// look left none.
	dedupPruneBatch = 500
	dedupPruneEvery = time.Minute
)

// Dedup is a webhook's idempotent ingest: Caddyfile `dedup header <field>
// [<window>]` or `dedup expression <cel> [<window>]`, JSON
// {"kind": "header"|"expression", "source": …, "window": "24h"}.
type Dedup struct {
	Kind DedupKind `json:"kind"`
	// Source is the header's name, or the key expression.
	Source string `json:"source"`
	// Window is how long an id is remembered, from the event's receipt;
	// 0 for DefaultDedupWindow. Between MinDedupWindow and the limits'
	// DedupWindowMax.
	Window Duration `json:"window,omitempty"`
}

// WindowOrDefault is the window in force.
func (d *Dedup) WindowOrDefault() time.Duration {
	if d.Window == 0 {
		return DefaultDedupWindow
	}
	return time.Duration(d.Window)
}

// Validate checks d within l, compiling an expression: its error is CEL's,
// with line and column.
func (d *Dedup) Validate(l Limits) error {
	switch d.Kind {
	case DedupHeader:
		if len(d.Source) > maxDedupHeaderBytes || !httpguts.ValidHeaderFieldName(d.Source) {
			return fmt.Errorf("dedup header %q: not a header name (at most %d bytes)", d.Source, maxDedupHeaderBytes)
		}
	case DedupExpression:
		if len(d.Source) > l.FilterBytes {
			return fmt.Errorf("dedup expression: %d bytes, at most %d (%s limits)", len(d.Source), l.FilterBytes, l.Name)
		}
		if _, err := filter.CompileKey(d.Source); err != nil {
			return err
		}
	default:
		return fmt.Errorf("dedup: unknown kind %q (want header or expression)", d.Kind)
	}
	if w := time.Duration(d.Window); w != 0 && (w < MinDedupWindow || w > l.DedupWindowMax) {
		return fmt.Errorf("dedup window %s: between %s and %s (%s limits)", w, MinDedupWindow, l.DedupWindowMax, l.Name)
	}
	return nil
}

// DedupKey is an event's dedup id on its way into the intake (Event.Dedup).
// It is not stored in the event DB.
type DedupKey struct {
	// Key is the sender's id of the delivery, "" for none: the event is
	// stored as any other.
	Key string
	// Window is how long Key is remembered from the event's receipt.
	Window time.Duration
	// Repeat is set by Ingest when Key was live: nothing was stored, and
	// the Event's ID is now that of the event first stored with it.
	Repeat bool
}

// NewDedupKey bounds key: one over MaxDedupKeyBytes becomes its SHA-256.
func NewDedupKey(key string, window time.Duration) DedupKey {
	if len(key) > MaxDedupKeyBytes {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	return DedupKey{Key: key, Window: window}
}

// DedupKey computes the dedup id of an event of r's webhook, with ev (built
// lazily by event) for an expression. ok is false when the webhook has no
// dedup, the header is missing or the expression gives no key (err says
// why): the event is then stored as any other.
func (r Route) DedupKey(header http.Header, event func() *filter.Event) (key DedupKey, ok bool, err error) {
	d := r.Webhook.Dedup
	if d == nil {
		return DedupKey{}, false, nil
	}
	var raw string
	switch d.Kind {
	case DedupHeader:
		if raw = header.Get(d.Source); raw == "" {
			return DedupKey{}, false, nil
		}
	case DedupExpression:
		if r.dedupKey == nil { // see DedupError
			return DedupKey{}, false, nil
		}
		if raw, err = r.dedupKey.Key(event()); err != nil {
			return DedupKey{}, false, err
		}
	default:
		return DedupKey{}, false, nil
	}
	return NewDedupKey(raw, d.WindowOrDefault()), true, nil
}

// DedupError is the error of a stored dedup expression that does not
// compile, nil otherwise. As for a filter (FilterError), only a main DB
// changed behind the gateway's back gets here; the ingest then refuses the
// event (503) rather than store a repeat it was told to catch.
func (r Route) DedupError() error { return r.dedupErr }

// Dedupes reports whether r's webhook has a dedup, the only case in which an
// ingest has a key to compute.
func (r Route) Dedupes() bool { return r.Webhook != nil && r.Webhook.Dedup != nil }

// intakeDedup are the intake's statements on its dedup table, prepared on
// the writer and used inside commitBatch's transaction.
type intakeDedup struct {
	claim, original, prune *sql.Stmt
	// pruneAt is when a commit next looks for expired rows; the
	// group-commit leader's alone, as Intake.seq.
	pruneAt time.Time
}

const (
	// sqlDedupClaim records a key for an event, unless a live row holds
	// it: then it changes nothing, and the event is a repeat. An expired
	// row is taken over.
	sqlDedupClaim = `INSERT INTO dedup (webhook_id, key, event_id, expires_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (webhook_id, key) DO UPDATE SET event_id = excluded.event_id, expires_at = excluded.expires_at
		WHERE dedup.expires_at <= ?`
	sqlDedupOriginal = `SELECT event_id FROM dedup WHERE webhook_id = ? AND key = ?`
	sqlDedupPrune    = `DELETE FROM dedup WHERE rowid IN (SELECT rowid FROM dedup WHERE expires_at <= ? LIMIT ?)`
)

func (in *Intake) prepareDedup(ctx context.Context) error {
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{{&in.dedup.claim, sqlDedupClaim}, {&in.dedup.original, sqlDedupOriginal}, {&in.dedup.prune, sqlDedupPrune}} {
		stmt, err := in.file.writer.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare dedup: %w", err)
		}
		*p.stmt = stmt
	}
	return nil
}

// claimDedup records e's key in tx, or finds it live: then it returns the
// id of the event first stored with it ("" when e is not a repeat).
func (in *Intake) claimDedup(ctx context.Context, tx *sql.Tx, e *intakeEntry, now time.Time) (string, error) {
	k := e.ev.Dedup
	expires := e.ev.ReceivedAt.Add(k.Window).UnixNano()
	res, err := tx.StmtContext(ctx, in.dedup.claim).ExecContext(ctx, e.webhookID, k.Key, e.ev.ID, expires, now.UnixNano())
	if err != nil {
		return "", fmt.Errorf("dedup key of webhook %s: %w", e.webhookID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return "", err
	}
	var original string
	if err := tx.StmtContext(ctx, in.dedup.original).QueryRowContext(ctx, e.webhookID, k.Key).Scan(&original); err != nil {
		return "", fmt.Errorf("dedup key of webhook %s: read the original event: %w", e.webhookID, err)
	}
	return original, nil
}

// pruneDedup removes up to dedupPruneBatch expired rows in tx, when due:
// every dedupPruneEvery, or at the next commit while a batch came back full.
func (in *Intake) pruneDedup(ctx context.Context, tx *sql.Tx, now time.Time) error {
	if now.Before(in.dedup.pruneAt) {
		return nil
	}
	res, err := tx.StmtContext(ctx, in.dedup.prune).ExecContext(ctx, now.UnixNano(), dedupPruneBatch)
	if err != nil {
		return fmt.Errorf("prune expired dedup keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("prune expired dedup keys: %w", err)
	}
	if n < dedupPruneBatch {
		in.dedup.pruneAt = now.Add(dedupPruneEvery)
	}
	in.dedupPruned.Add(n)
	return nil
}

// DedupKeys counts the keys intake.db holds, expired ones not yet pruned
// included: for tests and operators.
func (in *Intake) DedupKeys(ctx context.Context) (int, error) {
	var n int
	if err := in.file.reader.QueryRowContext(ctx, "SELECT count(*) FROM dedup").Scan(&n); err != nil {
		return 0, fmt.Errorf("count dedup keys: %w", err)
	}
	return n, nil
}

// dedupColumns are d as the webhooks table stores it: an empty kind for none.
func dedupColumns(d *Dedup) (kind, source string, window int64) {
	if d == nil {
		return "", "", 0
	}
	return string(d.Kind), d.Source, int64(d.Window)
}

// dedupOf reads the webhooks table's dedup columns back.
func dedupOf(kind, source string, window int64) *Dedup {
	if kind == "" {
		return nil
	}
	return &Dedup{Kind: DedupKind(kind), Source: source, Window: Duration(window)}
}
