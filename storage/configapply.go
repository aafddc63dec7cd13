package storage

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// configChange is one entry of the cluster's configuration log: the rows
// one write changed, whole, as they are after it.
type configChange struct {
	Node string      `json:"node"`
	Rows []configRow `json:"rows"`
}

type configRow struct {
	Table  string                 `json:"table"`
	Values map[string]configValue `json:"values"`
}

// configValue is one column's value: one of I, S and B, or none for NULL.
// (An integer is not a JSON number alone: a time in Unix nanoseconds is
// over float64's exact range, which some decoders read numbers into.)
type configValue struct {
	I *int64  `json:"i,omitempty"`
	S *string `json:"s,omitempty"`
	B []byte  `json:"b,omitempty"`
}

// configTables are the tables of the configuration, in the order a change
// applies them: a row's references first.
var configTables = []string{"users", "webhooks", "api_keys", "entrypoints", "targets"}

func tableRank(t string) int { return slices.Index(configTables, t) }

// collectChanges reads the rows the transaction changed, whole, in
// configTables order, and empties config_changes.
func collectChanges(ctx context.Context, tx *sql.Tx) ([]configRow, error) {
	type changed struct{ tbl, id string }
	rows, err := tx.QueryContext(ctx, `SELECT tbl, id FROM config_changes`)
	if err != nil {
		return nil, err
	}
	var ids []changed
	for rows.Next() {
		var c changed
		if err := rows.Scan(&c.tbl, &c.id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]configRow, 0, len(ids))
	for _, c := range ids {
		if tableRank(c.tbl) < 0 {
			return nil, fmt.Errorf("config_changes names table %q, which is not configuration", c.tbl)
		}
		row, err := readConfigRow(ctx, tx, c.tbl, c.id)
		if err != nil {
			return nil, err
		}
		out = append(out, row)
	}
	sortConfigRows(out)
	return out, forgetChanges(ctx, tx)
}

func sortConfigRows(rows []configRow) {
	sort.SliceStable(rows, func(i, j int) bool { return tableRank(rows[i].Table) < tableRank(rows[j].Table) })
}

// readConfigRow reads row id of table tbl (one of configTables), every column.
func readConfigRow(ctx context.Context, tx *sql.Tx, tbl, id string) (configRow, error) {
	rows, err := tx.QueryContext(ctx, `SELECT * FROM `+tbl+` WHERE id = ?`, id)
	if err != nil {
		return configRow{}, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return configRow{}, err
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return configRow{}, err
		}
		return configRow{}, fmt.Errorf("changed row %s %s is gone", tbl, id)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return configRow{}, err
	}
	row := configRow{Table: tbl, Values: make(map[string]configValue, len(cols))}
	for i, c := range cols {
		var v configValue
		switch x := vals[i].(type) {
		case nil:
		case int64:
			v.I = &x
		case string:
			v.S = &x
		case []byte:
			v.B = bytes.Clone(x)
		default:
			return configRow{}, fmt.Errorf("column %s.%s holds a %T, which the configuration log does not carry", tbl, c, x)
		}
		row.Values[c] = v
	}
	return row, nil
}

func (v configValue) value() (any, error) {
	set := 0
	var out any
	if v.I != nil {
		set, out = set+1, *v.I
	}
	if v.S != nil {
		set, out = set+1, *v.S
	}
	if v.B != nil {
		set, out = set+1, v.B
	}
	if set > 1 {
		return nil, errors.New("a value of more than one type")
	}
	return out, nil
}

// AppliedChange is what a change from the configuration log did to this
// node's configuration, for it to put in force.
type AppliedChange struct {
	// Node is the node that made the change.
	Node string
	// Already: this DB held the change (this node made it), and nothing
	// was written.
	Already bool
	// Webhooks are the webhooks whose configuration changed (their
	// entrypoints' and targets' included).
	Webhooks []string
	// Deleted are the API webhooks the change deleted: their event DBs go.
	Deleted []string
	// Resumed are the webhooks of which the change resumed a target.
	Resumed []string
	// Clashes are API entrypoints left displaced because their key is
	// declared in this node's Caddyfile, or was held here by API
	// configuration not yet in the log (DeclaredBy is then empty).
	Clashes []KeyClash
}

// ApplyConfigChange applies the change at place seq of the configuration
// log, in one transaction that records seq. A change at or before the last
// applied is not applied again. The rows of webhooks this node's Caddyfile
// declares are this node's own: of them only a target's pause is taken.
func (db *MainDB) ApplyConfigChange(ctx context.Context, seq uint64, data []byte) (AppliedChange, error) {
	var ch configChange
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ch); err != nil {
		return AppliedChange{}, fmt.Errorf("configuration change %d: %w", seq, err)
	}
	out := AppliedChange{Node: ch.Node}
	err := db.writeTx(ctx, func(tx *sql.Tx, now int64) error {
		var applied uint64
		if err := tx.QueryRowContext(ctx, `SELECT applied_seq FROM config_log`).Scan(&applied); err != nil {
			return err
		}
		if seq <= applied {
			out.Already = true
			return nil
		}
		a := configApplier{ctx: ctx, tx: tx, now: now, out: &out, columns: make(map[string]map[string]bool)}
		sortConfigRows(ch.Rows)
		for _, row := range ch.Rows {
			if err := a.apply(row); err != nil {
				return fmt.Errorf("%s row: %w", row.Table, err)
			}
		}
		_, err := tx.ExecContext(ctx, `UPDATE config_log SET applied_seq = ?`, seq)
		return err
	}, nil)
	if err != nil {
		return AppliedChange{}, fmt.Errorf("apply configuration change %d from node %q: %w", seq, ch.Node, err)
	}
	if db.repl != nil {
		db.repl.advance(seq)
	}
	for _, l := range []*[]string{&out.Webhooks, &out.Deleted, &out.Resumed} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
	return out, nil
}

// configApplier applies the rows of one change.
type configApplier struct {
	ctx     context.Context
	tx      *sql.Tx
	now     int64
	out     *AppliedChange
	columns map[string]map[string]bool // the columns of each table here
}

func (a *configApplier) apply(row configRow) error {
	if tableRank(row.Table) < 0 {
		return fmt.Errorf("%q is not a table of the configuration", row.Table)
	}
	known, err := a.columnsOf(row.Table)
	if err != nil {
		return err
	}
	values := make(map[string]any, len(row.Values))
	for name, v := range row.Values {
		if !known[name] {
			return fmt.Errorf("column %q is unknown here: the change comes from a newer version; upgrade this node", name)
		}
		if values[name], err = v.value(); err != nil {
			return fmt.Errorf("column %s: %w", name, err)
		}
	}
	id, ok := values["id"].(string)
	if !ok || id == "" {
		return errors.New("no id")
	}
	keep := []string{"id"} // columns an update leaves as they are here
	switch row.Table {
	case "webhooks":
		if values["source"] != "api" {
			return nil // declared: each node's Caddyfile has its own
		}
		a.out.Webhooks = append(a.out.Webhooks, id)
		if values["deleted_at"] != nil {
			a.out.Deleted = append(a.out.Deleted, id)
		}
	case "api_keys":
		keep = append(keep, "last_used_at") // this node's own
	case "entrypoints", "targets":
		webhookID, _ := values["webhook_id"].(string)
		source, err := a.sourceOf(webhookID)
		if err != nil || source == "" {
			return err // a webhook declared on the node that made the change, not here
		}
		if source == "caddyfile" {
			return a.applyDeclared(row.Table, id, webhookID, values)
		}
		a.out.Webhooks = append(a.out.Webhooks, webhookID)
		if row.Table == "targets" {
			if err := a.noteResume(id, webhookID, values); err != nil {
				return err
			}
		} else if err := a.keyFree(id, webhookID, values); err != nil {
			return err
		}
	}
	return a.upsert(row.Table, values, keep)
}

func (a *configApplier) columnsOf(tbl string) (map[string]bool, error) {
	if cols, ok := a.columns[tbl]; ok {
		return cols, nil
	}
	rows, err := a.tx.QueryContext(a.ctx, `SELECT name FROM pragma_table_info(?)`, tbl)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := make(map[string]bool)
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		cols[name] = true
	}
	a.columns[tbl] = cols
	return cols, rows.Err()
}

// sourceOf is the source of webhook id here, "" when there is none.
func (a *configApplier) sourceOf(id string) (string, error) {
	var source string
	err := a.tx.QueryRowContext(a.ctx, `SELECT source FROM webhooks WHERE id = ?`, id).Scan(&source)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return source, err
}

// applyDeclared takes, of a row of a webhook this node's Caddyfile
// declares, what the API may change there: a target's pause.
func (a *configApplier) applyDeclared(tbl, id, webhookID string, values map[string]any) error {
	if tbl != "targets" {
		return nil
	}
	if err := a.noteResume(id, webhookID, values); err != nil {
		return err
	}
	_, err := a.tx.ExecContext(a.ctx, `UPDATE targets SET paused = ?, updated_at = ? WHERE id = ? AND webhook_id = ?`,
		values["paused"], a.now, id, webhookID)
	if err == nil {
		a.out.Webhooks = append(a.out.Webhooks, webhookID)
	}
	return err
}

// noteResume notes webhookID in Resumed when the row resumes a target
// paused here.
func (a *configApplier) noteResume(id, webhookID string, values map[string]any) error {
	if p, _ := values["paused"].(int64); p != 0 {
		return nil
	}
	var paused bool
	err := a.tx.QueryRowContext(a.ctx, `SELECT paused FROM targets WHERE id = ?`, id).Scan(&paused)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err == nil && paused {
		a.out.Resumed = append(a.out.Resumed, webhookID)
	}
	return err
}

// keyFree makes room for an API entrypoint's key, as SyncDeclared does: a
// key this node's Caddyfile declares stays declared, and the incoming
// entrypoint is displaced here; a key held here by API configuration the
// log does not have yet (made before this node joined) goes to the log's.
func (a *configApplier) keyFree(id, webhookID string, values map[string]any) error {
	if values["deleted_at"] != nil || values["displaced_at"] != nil {
		return nil
	}
	key, _ := values["key"].(string)
	var holder, source, name string
	err := a.tx.QueryRowContext(a.ctx, `SELECT e.id, w.source, w.name FROM entrypoints e JOIN webhooks w ON w.id = e.webhook_id
		WHERE e.key = ? AND e.deleted_at IS NULL AND e.displaced_at IS NULL AND e.id != ?`, key, id).Scan(&holder, &source, &name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if source == "caddyfile" {
		values["active"], values["displaced_at"] = int64(0), a.now
		a.out.Clashes = append(a.out.Clashes, KeyClash{Key: key, WebhookID: webhookID, EntrypointID: id, DeclaredBy: name})
		return nil
	}
	var holderWebhook string
	if err := a.tx.QueryRowContext(a.ctx, `UPDATE entrypoints SET active = 0, displaced_at = ?, updated_at = ? WHERE id = ?
		RETURNING webhook_id`, a.now, a.now, holder).Scan(&holderWebhook); err != nil {
		return err
	}
	a.out.Webhooks = append(a.out.Webhooks, holderWebhook)
	a.out.Clashes = append(a.out.Clashes, KeyClash{Key: key, WebhookID: holderWebhook, EntrypointID: holder})
	return nil
}

// upsert inserts the row, or updates every column of it but keep.
func (a *configApplier) upsert(tbl string, values map[string]any, keep []string) error {
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	slices.Sort(names)
	args := make([]any, len(names))
	sets := make([]string, 0, len(names))
	for i, n := range names {
		args[i] = values[n]
		if !slices.Contains(keep, n) {
			sets = append(sets, fmt.Sprintf("%q = excluded.%q", n, n))
		}
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	q := `INSERT INTO ` + tbl + ` (` + strings.Join(quoted, ", ") + `) VALUES (?` + strings.Repeat(", ?", len(names)-1) + `)`
	if len(sets) > 0 {
		q += ` ON CONFLICT (id) DO UPDATE SET ` + strings.Join(sets, ", ")
	}
	_, err := a.tx.ExecContext(a.ctx, q, args...)
	return err
}
