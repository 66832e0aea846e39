package replicator

import (
	"strconv"
	"strings"
)

// Joining logged UPDATEs and DELETEs. A backlog of single-row UPDATEs (or
// DELETEs) costs one parse, plan and execution per row when each logged
// statement runs alone; consecutive ones that change the same table the
// same way are applied as one set-based statement instead, whose row count
// is checked like that of a joined INSERT (and which falls back to one
// statement per event, errJoined, when it does not match):
//
//	UPDATE ONLY t AS r SET a = v.s1, b = v.s2
//	  FROM (VALUES (0, (NULL::t).a, (NULL::t).b, NULL),
//	               (1, 'x', NULL, '7'::integer), (2, 'y', '3', '9'::integer)) AS v(n, s1, s2, k1)
//	 WHERE v.n > 0 AND r.id OPERATOR(pg_catalog.=) v.k1
//
//	DELETE FROM ONLY t AS r USING (VALUES ('7'::integer), ('9'::integer)) AS v(k1)
//	 WHERE r.id OPERATOR(pg_catalog.=) v.k1
//
// The key is compared with the operator and the typed literals of the
// logged statements (replica.key_condition), so a row is found exactly as
// the statement alone finds it. The logged SET values are untyped literals,
// read by the column's own input function; in VALUES they take the type of
// the first row, which is the columns' own ((NULL::t).a) and is left out by
// v.n > 0.
//
// Each row of the table matches at most one VALUES row (the key is unique
// under its own operator), so the statement's row count equals the number
// of its VALUES rows exactly when each found its own row. A run holds one
// VALUES row per key text (a DELETE of a key already in the run starts
// another run; an UPDATE of one replaces its values, see rowRun); two keys
// that are equal under the operator without being the same text (citext
// 'A' and 'a') touch one row for two VALUES rows, and the count sends the
// run to the per-event path. An
// UPDATE that sets a key column is never joined: the rows it moves could be
// matched by the next events of the run in the order of the master, not of
// a set-based statement.

// joinMaxBytes: a logged statement longer than this is sent alone, never
// joined, so that no copy of a big value is made to build a run.
const joinMaxBytes = 64 << 10

// rowChange is a logged UPDATE or DELETE taken apart: the parts its run
// shares (table, the columns set, the key's columns, operators and types)
// and its literals.
type rowChange struct {
	shape    string   // what a run's events must share (with the origin)
	table    string   // quoted schema.table, as logged
	setCols  []string // quoted identifiers (UPDATE)
	setVals  []string // untyped literals (UPDATE)
	keyCols  []string // quoted identifiers
	keyOps   []string // the key operators, schema.op as in OPERATOR(...)
	keyVals  []string // typed literals, 'v'::type
	keyText  string   // the key's literals, to keep a run to distinct keys
	isUpdate bool
}

// parseRowChange takes apart a logged `UPDATE ONLY t SET c = 'v', ...
// WHERE k OPERATOR(s.=) 'v'::type AND ...` or `DELETE FROM ONLY t WHERE
// ...`. ok is false for anything else (statements logged by older
// versions, or an UPDATE that sets a key column), which is then applied
// alone.
func parseRowChange(sql string) (rc rowChange, ok bool) {
	p := scanner{s: sql}
	switch {
	case p.take("UPDATE ONLY "):
		rc.isUpdate = true
	case p.take("DELETE FROM ONLY "):
	default:
		return rc, false
	}
	if rc.table, ok = p.qname(); !ok {
		return rc, false
	}
	if rc.isUpdate {
		if !p.take(" SET ") {
			return rc, false
		}
		for {
			col, ok := p.ident()
			if !ok || !p.take(" = ") {
				return rc, false
			}
			val, ok := p.literal()
			if !ok {
				return rc, false
			}
			rc.setCols, rc.setVals = append(rc.setCols, col), append(rc.setVals, val)
			if !p.take(", ") {
				break
			}
		}
	}
	if !p.take(" WHERE ") {
		return rc, false
	}
	var shape, keys strings.Builder
	shape.WriteString(rc.table)
	shape.WriteString(" SET ")
	shape.WriteString(strings.Join(rc.setCols, ", "))
	for {
		col, ok := p.ident()
		if !ok || !p.take(" OPERATOR(") {
			return rc, false
		}
		op, ok := p.operator()
		if !ok || !p.take(") ") {
			return rc, false
		}
		val, ok := p.literal()
		if !ok || !p.take("::") {
			return rc, false
		}
		typ, ok := p.typeName()
		if !ok {
			return rc, false
		}
		for _, c := range rc.setCols {
			if c == col {
				return rc, false // a key change
			}
		}
		rc.keyCols, rc.keyOps, rc.keyVals = append(rc.keyCols, col), append(rc.keyOps, op), append(rc.keyVals, val+"::"+typ)
		shape.WriteString(" WHERE " + col + " " + op + " " + typ)
		keys.WriteString(val)
		keys.WriteByte(0)
		if !p.take(" AND ") {
			break
		}
	}
	if p.i != len(p.s) {
		return rc, false
	}
	rc.shape, rc.keyText = shape.String(), keys.String()
	if rc.isUpdate {
		rc.shape = "U " + rc.shape
	} else {
		rc.shape = "D " + rc.shape
	}
	return rc, true
}

// rowRun is a run of joinable UPDATEs or DELETEs being built. An UPDATE of
// a row that the run already updates replaces that row's values (the run's
// events all set the same columns, none of them a key column, and nothing
// else comes between them), so that a hot row is updated once per run, not
// once per event: the slave transaction does not pile up versions of it.
type rowRun struct {
	first  rowChange
	sql    string // the first event's statement: a run of one is sent as it is
	origin string
	events int            // events in the run
	rows   []string       // the VALUES rows, one per distinct key
	keys   map[string]int // key literals -> index in rows
}

// accepts reports whether rc can join the run.
func (r *rowRun) accepts(rc rowChange, origin string) bool {
	if r.events == 0 || r.first.shape != rc.shape || r.origin != origin {
		return false
	}
	_, dup := r.keys[rc.keyText]
	return !dup || rc.isUpdate
}

func (r *rowRun) start(rc rowChange, sql, origin string) {
	r.first, r.sql, r.origin, r.events = rc, sql, origin, 1
	r.keys = map[string]int{rc.keyText: 0}
	r.rows = append(r.rows[:0], r.row(rc, 1))
}

func (r *rowRun) add(rc rowChange) {
	r.events++
	if i, dup := r.keys[rc.keyText]; dup {
		r.rows[i] = r.row(rc, i+1)
		return
	}
	r.keys[rc.keyText] = len(r.rows)
	r.rows = append(r.rows, r.row(rc, len(r.rows)+1))
}

// row returns the VALUES row of the run's row number n.
func (r *rowRun) row(rc rowChange, n int) string {
	var b strings.Builder
	b.WriteByte('(')
	if rc.isUpdate {
		b.WriteString(strconv.Itoa(n))
		for _, v := range rc.setVals {
			b.WriteString(", ")
			b.WriteString(v)
		}
		b.WriteString(", ")
	}
	b.WriteString(strings.Join(rc.keyVals, ", "))
	b.WriteByte(')')
	return b.String()
}

// statement returns the run's statement: the logged one for a run of one,
// else the set-based one.
func (r *rowRun) statement() string {
	if r.events == 1 {
		return r.sql
	}
	f := r.first
	var b strings.Builder
	var cols strings.Builder
	cols.WriteString("AS v(")
	if f.isUpdate {
		b.WriteString("UPDATE ONLY " + f.table + " AS r SET ")
		for i, c := range f.setCols {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(c + " = v.s" + strconv.Itoa(i+1))
		}
		b.WriteString(" FROM (VALUES (0")
		cols.WriteString("n")
		for i, c := range f.setCols {
			b.WriteString(", (NULL::" + f.table + ")." + c)
			cols.WriteString(", s" + strconv.Itoa(i+1))
		}
		for range f.keyCols {
			b.WriteString(", NULL")
		}
		b.WriteString("), ")
		cols.WriteString(", ")
	} else {
		b.WriteString("DELETE FROM ONLY " + f.table + " AS r USING (VALUES ")
	}
	b.WriteString(strings.Join(r.rows, ", "))
	for i := range f.keyCols {
		if i > 0 {
			cols.WriteString(", ")
		}
		cols.WriteString("k" + strconv.Itoa(i+1))
	}
	b.WriteString(") ")
	b.WriteString(cols.String())
	b.WriteString(") WHERE ")
	if f.isUpdate {
		b.WriteString("v.n > 0 AND ")
	}
	for i, c := range f.keyCols {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("r." + c + " OPERATOR(" + f.keyOps[i] + ") v.k" + strconv.Itoa(i+1))
	}
	return b.String()
}

// scanner reads the pieces of a logged statement.
type scanner struct {
	s string
	i int
}

func (p *scanner) take(x string) bool {
	if strings.HasPrefix(p.s[p.i:], x) {
		p.i += len(x)
		return true
	}
	return false
}

// ident reads an identifier as format('%I') writes it: quoted (each
// double quote inside doubled), or lower-case letters, digits and
// underscores.
func (p *scanner) ident() (string, bool) {
	start := p.i
	if p.i < len(p.s) && p.s[p.i] == '"' {
		ok := p.quoted('"', false)
		return p.s[start:p.i], ok
	}
	for p.i < len(p.s) && (p.s[p.i] >= 'a' && p.s[p.i] <= 'z' || p.s[p.i] >= '0' && p.s[p.i] <= '9' || p.s[p.i] == '_') {
		p.i++
	}
	return p.s[start:p.i], p.i > start && (p.s[start] < '0' || p.s[start] > '9')
}

// quoted moves past a text quoted with q, from its opening quote to its
// closing one, where a doubled q stands for one and, with backslash, a
// backslash escapes the next byte.
func (p *scanner) quoted(q byte, backslash bool) bool {
	for p.i++; p.i < len(p.s); p.i++ {
		switch p.s[p.i] {
		case '\\':
			if backslash {
				p.i++
			}
		case q:
			if p.i+1 < len(p.s) && p.s[p.i+1] == q {
				p.i++
				continue
			}
			p.i++
			return true
		}
	}
	return false
}

// qname reads schema.table.
func (p *scanner) qname() (string, bool) {
	start := p.i
	if _, ok := p.ident(); !ok || !p.take(".") {
		return "", false
	}
	if _, ok := p.ident(); !ok {
		return "", false
	}
	return p.s[start:p.i], true
}

// operator reads schema.op as replica.key_condition writes it.
func (p *scanner) operator() (string, bool) {
	start := p.i
	if _, ok := p.ident(); !ok || !p.take(".") {
		return "", false
	}
	n := p.i
	for p.i < len(p.s) && strings.IndexByte("+-*/<>=~!@#%^&|`?", p.s[p.i]) >= 0 {
		p.i++
	}
	return p.s[start:p.i], p.i > n
}

// literal reads what format('%L') writes: NULL, a quoted text with each
// quote doubled, or the same after an E, with backslashes escaped too.
func (p *scanner) literal() (string, bool) {
	start := p.i
	if p.take("NULL") {
		return "NULL", true
	}
	escapes := p.take("E")
	if p.i >= len(p.s) || p.s[p.i] != '\'' || !p.quoted('\'', escapes) {
		return "", false
	}
	return p.s[start:p.i], true
}

// typeName reads a type as format_type writes it (integer, character
// varying, "char", public.citext, "S"."t"[]): up to " AND " outside double
// quotes, or the end.
func (p *scanner) typeName() (string, bool) {
	start := p.i
	quoted := false
	for ; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case c == '"':
			quoted = !quoted
		case quoted:
		case strings.HasPrefix(p.s[p.i:], " AND "):
			return p.s[start:p.i], p.i > start
		case c == '\'' || c == '(' || c == ')' || c == ';':
			return "", false
		}
	}
	return p.s[start:p.i], p.i > start && !quoted
}
