package replicator

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// Conflict policies: what a logged row statement that touches no row on a
// slave does (on_conflict in [replicate], per-table overrides).
const (
	PolicyStop   = "stop"   // roll the batch back, stop the slave, wait for a person
	PolicySkip   = "skip"   // drop the statement, apply the rest of its transaction
	PolicyResync = "resync" // make the slave's row the master's current row
	// PolicySkipTransaction marks a source transaction left out by
	// 'goreplica skip'.
	PolicySkipTransaction = "skip_transaction"
)

const (
	// sqlRecordConflict records a conflict in the batch's own transaction.
	sqlRecordConflict = `INSERT INTO replica.conflicts (master, master_name, txid, tbl, key, operation, kind, policy, statement)
 VALUES ($1, $2, $3::xid8, $4, $5, $6, $7, $8, $9)`
	// sqlRecordStop records a conflict that stopped the slave, once: the
	// worker meets it again at every retry.
	sqlRecordStop = `INSERT INTO replica.conflicts (master, master_name, txid, tbl, key, operation, kind, policy, statement)
 SELECT $1, $2, $3::xid8, $4, $5, $6, $7, 'stop', $8
  WHERE NOT EXISTS (SELECT 1 FROM replica.conflicts
                     WHERE master = $1 AND txid = $3::xid8 AND policy = 'stop' AND statement = $8)`
	// sqlRowInsert reads on the master the statement that recreates a
	// row's current version (NULL: the row is gone).
	sqlRowInsert = `SELECT replica.row_insert($1::regclass, $2)`
	// sqlSkips lists the source transactions 'goreplica skip' left out
	// that the slave's position has not passed yet.
	sqlSkips = `SELECT txid::text FROM replica.conflicts
 WHERE master = $1 AND policy = 'skip_transaction' AND txid >= pg_snapshot_xmin($2::pg_snapshot)`
)

// policyFor returns the conflict policy of table (quoted schema.table, as
// logged): the override whose pattern names it exactly, else the longest
// matching pattern, else def (stop when empty).
func policyFor(table, def string, per map[string]string) string {
	name := unquoteQualified(table)
	best, bestLen := "", -1
	for pattern, p := range per {
		if pattern == name {
			return p
		}
		if matchTable(pattern, name) && len(pattern) > bestLen {
			best, bestLen = p, len(pattern)
		}
	}
	switch {
	case bestLen >= 0:
		return best
	case def == "":
		return PolicyStop
	}
	return def
}

// unquoteQualified turns a quoted schema.table ("My Schema".t) into the
// catalog names joined by a dot (My Schema.t), as table patterns are written.
func unquoteQualified(q string) string {
	var b strings.Builder
	quoted := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '"' && quoted && i+1 < len(q) && q[i+1] == '"':
			b.WriteByte('"')
			i++
		case c == '"':
			quoted = !quoted
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// operationOf names a logged statement's kind for replica.conflicts.
func operationOf(op byte) string {
	switch op {
	case 'I':
		return "insert"
	case 'U':
		return "update"
	case 'D':
		return "delete"
	}
	return "truncate"
}

// indexOutside returns the index of the first occurrence of marker in s that
// is outside single- and double-quoted text, or -1. Logged literals double
// their quotes (format's %L), so toggling at each quote is exact.
func indexOutside(s, marker string) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case strings.HasPrefix(s[i:], marker):
			return i
		}
	}
	return -1
}

// splitOutside splits s at every sep outside quoted text and trims spaces.
func splitOutside(s string, sep string) []string {
	var out []string
	for {
		i := indexOutside(s, sep)
		if i < 0 {
			return append(out, strings.TrimSpace(s))
		}
		out = append(out, strings.TrimSpace(s[:i]))
		s = s[i+len(sep):]
	}
}

// keyCondition returns the condition that finds, by primary key, the row a
// logged row statement is about: the WHERE clause of an UPDATE or DELETE
// (which names the key as it was before the change), and for an INSERT
// the key columns of its ON CONFLICT clause equal to their values.
func keyCondition(stmt string) (string, error) {
	if !strings.HasPrefix(stmt, "INSERT INTO ") {
		if i := indexOutside(stmt, " WHERE "); i >= 0 {
			return stmt[i+len(" WHERE "):], nil
		}
		return "", fmt.Errorf("no key condition in %s", shorten(stmt, 200))
	}
	prefix, values, suffix, ok := splitInsert(stmt)
	open := indexOutside(prefix, "(")
	kopen := indexOutside(suffix, "(")
	if !ok || open < 0 || kopen < 0 || len(values) < 2 {
		return "", fmt.Errorf("no key in %s (logged before the conflict target was named?)", shorten(stmt, 200))
	}
	colText := prefix[open+1:]
	colText = colText[:indexOutside(colText, ")")]
	cols := splitOutside(colText, ",")
	vals := splitOutside(values[1:len(values)-1], ",")
	keyText := suffix[kopen+1:]
	keys := splitOutside(keyText[:indexOutside(keyText, ")")], ",")
	if len(cols) != len(vals) {
		return "", fmt.Errorf("cannot read the row of %s", shorten(stmt, 200))
	}
	var conds []string
	for _, k := range keys {
		found := false
		for i, c := range cols {
			if c == k {
				conds = append(conds, k+" = "+vals[i])
				found = true
			}
		}
		if !found {
			return "", fmt.Errorf("key column %s not in %s", k, shorten(stmt, 200))
		}
	}
	return strings.Join(conds, " AND "), nil
}

// resolveConflict applies the table's policy to a conflict met in the
// per-event path of a batch (w.conn is inside the batch's transaction). It
// returns ce for stop (the batch is rolled back), nil when the batch goes
// on. Every conflict is recorded in the slave's replica.conflicts.
func (w *worker) resolveConflict(ctx context.Context, ce *ConflictError, ev event) error {
	ce.Policy = policyFor(ev.table, w.r.opts.OnConflict, w.r.opts.OnConflictTables)
	master := w.r.opts.Master.Name
	op := operationOf(ev.op)
	if ce.Policy == PolicyStop {
		// Outside the batch, which is rolled back; best effort.
		if _, err := w.slaveDB.ExecContext(ctx, sqlRecordStop, w.masterID, master, ev.txid, ev.table, ce.Key, op, string(ce.Kind), ev.sql); err != nil {
			w.log.Warn("record conflict in replica.conflicts", keyError, err)
		}
		return ce
	}
	if ce.Policy == PolicyResync {
		if err := w.resync(ctx, ev); err != nil {
			return err
		}
	}
	if _, err := w.conn.ExecContext(ctx, sqlRecordConflict, w.masterID, master, ev.txid, ev.table, ce.Key, op, string(ce.Kind), ce.Policy, ev.sql); err != nil {
		return w.slaveErr("record conflict", err)
	}
	w.log.Warn("conflict", keyTable, ev.table, keyTxID, ev.txid, "kind", string(ce.Kind), "policy", ce.Policy, "key", ce.Key)
	w.conflicts = append(w.conflicts, ce)
	return nil
}

// resync makes the slave's row the master's current row, found by the key
// of the conflicting statement: deleted on the slave, then inserted again
// as the master has it now (not at all when the master has none). Both run
// through replica.apply, with the statement's origin and the settings the
// values were rendered with.
func (w *worker) resync(ctx context.Context, ev event) error {
	cond, err := keyCondition(ev.sql)
	if err != nil {
		return fmt.Errorf("resync on slave %s: table %s, txid %s: %w", w.slave.Name, ev.table, ev.txid, err)
	}
	var row sql.NullString
	if err := w.r.master.QueryRowContext(ctx, sqlRowInsert, ev.table, cond).Scan(&row); err != nil {
		return w.masterErr(fmt.Sprintf("read the current row of %s where %s for a resync", ev.table, plainOperators(cond)), err)
	}
	origins := []string{ev.origin}
	ops := []string{"D"}
	stmts := []string{"DELETE FROM ONLY " + ev.table + " WHERE " + cond}
	nrows := []int32{-1}
	if row.Valid {
		origins, ops, stmts, nrows = append(origins, ev.origin), append(ops, "I"), append(stmts, row.String), append(nrows, -1)
	}
	var failed int
	var affected int64
	if err := w.conn.QueryRowContext(ctx, sqlApply, pq.Array(origins), pq.Array(ops), pq.Array(stmts), pq.Array(nrows)).Scan(&failed, &affected); err != nil {
		return &ApplyError{Slave: w.slave.Name, Table: ev.table, Key: keyOf(ev.sql), TxID: ev.txid, SQL: strings.Join(stmts, ";\n"), Err: err}
	}
	return nil
}

// alertConflicts raises a conflict alert for each conflict the committed
// batch resolved by its table's policy (the mailer throttles and counts
// them).
func (w *worker) alertConflicts() {
	cs := w.conflicts
	w.conflicts = nil
	a := w.r.opts.Alerter
	if a == nil {
		return
	}
	for _, ce := range cs {
		a.Alert(Alert{Kind: AlertConflict, Slave: w.slave.Name, Err: ce,
			Summary: fmt.Sprintf("slave %s: conflict %s in %s, resolved by policy %s", w.slave.Name, ce.Kind, ce.Table, ce.Policy),
			Body:    ce.Error()})
	}
}

// loadSkips reads the source transactions 'goreplica skip' left out that
// the slave's position has not passed yet.
func (w *worker) loadSkips(ctx context.Context) error {
	rows, err := w.conn.QueryContext(ctx, sqlSkips, w.masterID, w.pos.snapshot)
	if err != nil {
		return w.slaveErr("read skipped transactions", err)
	}
	defer rows.Close()
	w.skips = map[string]bool{}
	for rows.Next() {
		var x string
		if err := rows.Scan(&x); err != nil {
			return w.slaveErr("read skipped transactions", err)
		}
		w.skips[x] = true
	}
	return rows.Err()
}
