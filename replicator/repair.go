package replicator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// Repair: the rows of a table that differ between the master and a slave,
// read at the same logical point (compare.go), found by narrowing the key
// ranges whose checksums differ down to ranges of a few hundred rows, which
// are then read row by row. Each difference becomes the statement that
// makes the slave's row the master's, rendered on the server as the log
// trigger renders its statements (replica.format_expr: format's %L, the
// type's own output, under the same settings) and found by key with the
// same condition (replica.key_condition): a missing row is INSERTed, a
// differing row UPDATEd (every column), an extra row DELETEd.

// repairLeafRows is the size of the key ranges read row by row.
const repairLeafRows = 256

// repairChunk is how many statements go to replica.apply at once.
const repairChunk = 1000

// RepairSettings are the settings the repair statements are to be run
// with, as replica.apply runs the logged statements: a printed repair
// script sets them first.
var RepairSettings = []string{
	"SET LOCAL DateStyle = 'ISO, YMD'", "SET LOCAL IntervalStyle = 'postgres'", "SET LOCAL extra_float_digits = 3",
	"SET LOCAL lc_monetary = 'C'", "SET LOCAL xmloption = content", "SET LOCAL array_nulls = on",
	"SET LOCAL standard_conforming_strings = on",
}

// RepairOptions chooses the table, the slave and what Repair does.
type RepairOptions struct {
	Slave string // required
	Table string // schema.table
	// Apply runs the statements on the slave, in one transaction, instead
	// of only returning them.
	Apply          bool
	CompareOptions // ChunkRows, LockTimeout, CatchUpTimeout, Progress
}

// RepairStatement is one statement that repairs one row.
type RepairStatement struct {
	Kind string // "insert" (missing on the slave), "update" (differs), "delete" (extra on the slave)
	SQL  string
}

// RepairReport says what Repair found and did.
type RepairReport struct {
	Slave     string  `json:"slave"`
	Table     string  `json:"table"`
	Missing   int64   `json:"missing"`   // rows on the master only: inserted
	Different int64   `json:"different"` // rows whose columns differ: updated
	Extra     int64   `json:"extra"`     // rows on the slave only: deleted
	Applied   bool    `json:"applied"`
	LockMs    float64 `json:"lock_ms"`
}

// Repair finds the rows of one table that differ on one slave and hands
// each statement that repairs one to emit, in key order by range (within a
// range: deletes, then updates, then inserts, so that a row moving from
// one key to another does not trip on another unique column). With Apply
// the statements also run on the slave, in the transaction whose snapshot
// was compared, committed at the end: a row the daemon changes meanwhile
// makes it fail (a serialization failure) rather than undo the change.
func Repair(ctx context.Context, opts Options, ro RepairOptions, emit func(RepairStatement) error) (*RepairReport, error) {
	ro.defaults()
	if ro.Slave == "" {
		return nil, errors.New("repair: name the slave")
	}
	c, err := openComparer(ctx, opts, ro.Slave)
	if err != nil {
		return nil, err
	}
	defer c.close()
	tables, err := c.chosenTables(ctx, []string{ro.Table})
	if err != nil {
		return nil, err
	}
	if len(tables) != 1 {
		return nil, fmt.Errorf("repair: %q names %d tables: name one", ro.Table, len(tables))
	}
	t := tables[0]
	s := c.slaves[0]
	p, err := c.openPoint(ctx, s, t, ro.CompareOptions, ro.Apply)
	if err != nil {
		return nil, err
	}
	defer p.close()
	rep := &RepairReport{Slave: s.node.Name, Table: t.name, LockMs: float64(p.lockHeld.Microseconds()) / 1000}
	rs, err := p.renderers(ctx)
	if err != nil {
		return nil, err
	}
	var pending []RepairStatement
	flush := func() error {
		if !ro.Apply || len(pending) == 0 {
			pending = pending[:0]
			return nil
		}
		err := p.applyRepair(ctx, pending)
		pending = pending[:0]
		return err
	}
	out := func(st RepairStatement) error {
		switch st.Kind {
		case "insert":
			rep.Missing++
		case "update":
			rep.Different++
		case "delete":
			rep.Extra++
		}
		if err := emit(st); err != nil {
			return err
		}
		pending = append(pending, st)
		if len(pending) >= repairChunk {
			return flush()
		}
		return nil
	}
	err = p.walk(ctx, ro.ChunkRows, func(r keyRange, m, sl chunkSum) error {
		return p.narrow(ctx, rs, r, m, sl, out)
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	if ro.Apply {
		if _, err := p.s.ExecContext(ctx, "COMMIT"); err != nil {
			return nil, repairApplyErr(t, s.node.Name, err)
		}
		rep.Applied = true
	}
	return rep, nil
}

// renderers are the SQL expressions that render the repair statements of
// a row: on the master its INSERT and UPDATE, on the slave its DELETE.
type renderers struct {
	insert, update, delete string
}

// sqlFormatExpr builds a format() expression as the log trigger does.
const sqlFormatExpr = `SELECT replica.format_expr($1::text[], $2::text[], $3)`

func (p *point) renderers(ctx context.Context) (*renderers, error) {
	t := p.t
	expr := func(pieces, args []string, sep string) (string, error) {
		var e string
		err := p.m.QueryRowContext(ctx, sqlFormatExpr, pq.Array(pieces), pq.Array(args), sep).Scan(&e)
		if err != nil {
			return "", p.c.masterErr("render statements of "+t.name, err)
		}
		return e, nil
	}
	vals := make([]string, len(t.cols))
	for i := range vals {
		vals[i] = "%L"
	}
	ins, err := expr(vals, t.cols, ", ")
	if err != nil {
		return nil, err
	}
	where, err := expr(t.keyPieces, t.keys, " AND ")
	if err != nil {
		return nil, err
	}
	// The key is not set; nor is an identity column GENERATED ALWAYS,
	// which an UPDATE may only set to DEFAULT.
	isKey := map[string]bool{}
	for _, k := range append(append([]string{}, t.keys...), t.identity...) {
		isKey[k] = true
	}
	var setPieces, setArgs []string
	for _, c := range t.cols {
		if !isKey[c] {
			setPieces = append(setPieces, strings.ReplaceAll(c, "%", "%%")+" = %L")
			setArgs = append(setArgs, c)
		}
	}
	r := &renderers{update: "NULL::text"}
	overriding := ""
	if len(t.identity) > 0 {
		overriding = " OVERRIDING SYSTEM VALUE"
	}
	r.insert = pq.QuoteLiteral("INSERT INTO "+t.name+" ("+strings.Join(t.cols, ", ")+")"+overriding+" VALUES (") +
		" || " + ins + " || " + pq.QuoteLiteral(") ON CONFLICT ("+strings.Join(t.keys, ", ")+") DO NOTHING")
	if len(setPieces) > 0 {
		set, err := expr(setPieces, setArgs, ", ")
		if err != nil {
			return nil, err
		}
		r.update = pq.QuoteLiteral("UPDATE ONLY "+t.name+" SET ") + " || " + set + " || ' WHERE ' || " + where
	}
	r.delete = pq.QuoteLiteral("DELETE FROM ONLY "+t.name+" WHERE ") + " || " + where
	return r, nil
}

// narrow finds the rows that differ in range r, whose checksums are m on
// the master and s on the slave: a small range is read row by row, a
// larger one split at the middle key of the side with more rows.
func (p *point) narrow(ctx context.Context, rs *renderers, r keyRange, m, s chunkSum, out func(RepairStatement) error) error {
	if m == s {
		return nil
	}
	if m.rows <= repairLeafRows && s.rows <= repairLeafRows {
		return p.leafDiff(ctx, rs, r, out)
	}
	side, n := p.m, m.rows
	if s.rows > m.rows {
		side, n = p.s, s.rows
	}
	mid, err := p.t.nthKey(ctx, side, r, n/2)
	if err != nil {
		return fmt.Errorf("read keys of %s: %w", p.t.name, err)
	}
	if mid == nil {
		// Cannot happen (n/2 of n rows): read the range row by row.
		return p.leafDiff(ctx, rs, r, out)
	}
	for _, half := range []keyRange{{lo: r.lo, hi: mid}, {lo: mid, hi: r.hi}} {
		hm, hs, err := p.sumBoth(ctx, half)
		if err != nil {
			return err
		}
		if err := p.narrow(ctx, rs, half, hm, hs, out); err != nil {
			return err
		}
	}
	return nil
}

// diffRow is one row of a small range, on one side.
type diffRow struct {
	row, stmt, update string
}

// readRows reads the rows of range r on one side, keyed by their key's
// text, with the statements that expr and expr2 render.
func (p *point) readRows(ctx context.Context, master bool, r keyRange, expr, expr2 string) (map[string]diffRow, []string, error) {
	t := p.t
	w, args := r.where(t)
	q := fmt.Sprintf(`SELECT ROW(%s)::text, %s, %s, %s FROM ONLY %s AS tbl WHERE %s ORDER BY %s`,
		strings.Join(t.keys, ", "), rowText(t), expr, expr2, t.name, w, keyOrder(t))
	cn := p.s
	if master {
		cn = p.m
	}
	rows, err := cn.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	out := map[string]diffRow{}
	var order []string
	for rows.Next() {
		var k string
		var d diffRow
		var upd *string
		if err := rows.Scan(&k, &d.row, &d.stmt, &upd); err != nil {
			return nil, nil, err
		}
		if upd != nil {
			d.update = *upd
		}
		out[k] = d
		order = append(order, k)
	}
	return out, order, rows.Err()
}

// leafDiff reads a small range on both sides and emits a statement per
// differing row.
func (p *point) leafDiff(ctx context.Context, rs *renderers, r keyRange, out func(RepairStatement) error) error {
	ms, morder, err := p.readRows(ctx, true, r, rs.insert, rs.update)
	if err != nil {
		return p.c.masterErr("read rows of "+p.t.name, err)
	}
	ss, sorder, err := p.readRows(ctx, false, r, rs.delete, "NULL::text")
	if err != nil {
		return slaveErr(p.slave.node.Name, "read rows of "+p.t.name, err)
	}
	for _, k := range sorder {
		if _, ok := ms[k]; !ok {
			if err := out(RepairStatement{Kind: "delete", SQL: ss[k].stmt}); err != nil {
				return err
			}
		}
	}
	for _, k := range morder {
		if sr, ok := ss[k]; ok && sr.row != ms[k].row {
			if err := out(RepairStatement{Kind: "update", SQL: ms[k].update}); err != nil {
				return err
			}
		}
	}
	for _, k := range morder {
		if _, ok := ss[k]; !ok {
			if err := out(RepairStatement{Kind: "insert", SQL: ms[k].stmt}); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyRepair runs statements on the slave through replica.apply, as the
// daemon runs logged statements: each must touch exactly one row.
func (p *point) applyRepair(ctx context.Context, sts []RepairStatement) error {
	origins := make([]string, len(sts))
	ops := make([]string, len(sts))
	stmts := make([]string, len(sts))
	nrows := make([]int32, len(sts))
	for i, st := range sts {
		origins[i] = p.c.opts.Master.Name
		ops[i] = strings.ToUpper(st.Kind[:1])
		stmts[i] = st.SQL
		nrows[i] = 1
	}
	var failed int
	var affected int64
	err := p.s.QueryRowContext(ctx, sqlApply, pq.Array(origins), pq.Array(ops), pq.Array(stmts), pq.Array(nrows)).Scan(&failed, &affected)
	if err != nil {
		return repairApplyErr(p.t, p.slave.node.Name, err)
	}
	if failed > 0 {
		return fmt.Errorf("repair table %s on slave %s: %d rows affected instead of 1 (the row changed meanwhile? run repair again): %s",
			p.t.name, p.slave.node.Name, affected, shorten(stmts[failed-1], 500))
	}
	return nil
}

// repairApplyErr explains an error of the repair transaction.
func repairApplyErr(t *cmpTable, slave string, err error) error {
	var pe *pq.Error
	if errors.As(err, &pe) && pe.Code == "40001" {
		return fmt.Errorf("repair table %s on slave %s: rows changed on the slave while repair ran (the daemon applied newer changes): nothing was repaired, run repair again: %w", t.name, slave, err)
	}
	return fmt.Errorf("repair table %s on slave %s: nothing was repaired: %w", t.name, slave, err)
}
