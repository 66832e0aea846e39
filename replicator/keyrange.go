package replicator

import (
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// Key ranges. Compare and repair read a table in ranges of its primary
// key, in the order of the key's btree index, on both servers alike. Every
// comparison and every ORDER BY names the index's own operators, schema
// and all (the key_condition rule of the log trigger): a citext key is
// ordered and bounded as citext whatever the session's search_path, and a
// key whose index uses a non-default operator class follows that class.

// btreeStrategies is the number of btree strategies: <, <=, =, >=, >.
const btreeStrategies = 5

// btree strategy numbers, from 1.
const (
	stratLT = 1 + iota
	stratLE
	stratEQ
	stratGE
	stratGT
)

// keyRange is the keys after lo (nil: from the first) up to hi included
// (nil: to the last), each a key's column values as text.
type keyRange struct {
	lo, hi []string
}

// op is key column i's operator of a strategy: OPERATOR(pg_catalog.<).
func (t *cmpTable) op(i, strategy int) string {
	return "OPERATOR(" + t.keyOps[i*btreeStrategies+strategy-1] + ")"
}

// sameOp reports whether every key column has the very same operator for
// strategy: then a row comparison (a, b) OPERATOR(s.>) (x, y) expresses a
// bound, and a btree index on (a, b) serves it.
func (t *cmpTable) sameOp(strategy int) bool {
	for i := 1; i < len(t.keys); i++ {
		if t.op(i, strategy) != t.op(0, strategy) {
			return false
		}
	}
	return true
}

// keyOrder orders rows by key with the index's operators. The columns are
// qualified with the table's alias (FROM ONLY t AS tbl): a bare name in
// ORDER BY would be taken for an output column of the same name.
func keyOrder(t *cmpTable) string {
	q := make([]string, len(t.keys))
	for i, k := range t.keys {
		q[i] = "tbl." + k + " USING " + t.op(i, stratLT)
	}
	return strings.Join(q, ", ")
}

// where returns the condition selecting the range and its parameters,
// numbered from $1.
func (r keyRange) where(t *cmpTable) (string, []any) {
	var conds []string
	var args []any
	params := func(v []string) []string {
		ps := make([]string, len(v))
		for i := range v {
			args = append(args, v[i])
			ps[i] = fmt.Sprintf("$%d::%s", len(args), t.keyTypes[i])
		}
		return ps
	}
	if r.lo != nil {
		conds = append(conds, t.bound(params(r.lo), stratGT, stratGE, stratGT))
	}
	if r.hi != nil {
		conds = append(conds, t.bound(params(r.hi), stratLT, stratLE, stratLE))
	}
	if len(conds) == 0 {
		return "true", nil
	}
	return strings.Join(conds, " AND "), args
}

// bound is the condition "key after v" (strict > then >=, last >) or "key
// up to v" (strict < then <=, last <=), in key order. One column: k op v.
// Several with one operator: a row comparison. Otherwise the lexicographic
// expansion, led by a bound on the first column alone for the index.
func (t *cmpTable) bound(v []string, strict, loose, last int) string {
	if len(t.keys) == 1 {
		return t.keys[0] + " " + t.op(0, last) + " " + v[0]
	}
	if t.sameOp(last) {
		return "(" + strings.Join(t.keys, ", ") + ") " + t.op(0, last) + " (" + strings.Join(v, ", ") + ")"
	}
	var alts []string
	for i := range t.keys {
		var and []string
		for j := range i {
			and = append(and, t.keys[j]+" "+t.op(j, stratEQ)+" "+v[j])
		}
		s := strict
		if i == len(t.keys)-1 {
			s = last
		}
		and = append(and, t.keys[i]+" "+t.op(i, s)+" "+v[i])
		alts = append(alts, "("+strings.Join(and, " AND ")+")")
	}
	return t.keys[0] + " " + t.op(0, loose) + " " + v[0] + " AND (" + strings.Join(alts, " OR ") + ")"
}

// describe prints the range for a user: id > '10' AND id <= '20'.
func (r keyRange) describe(t *cmpTable) string {
	k := t.keys[0]
	if len(t.keys) > 1 {
		k = "(" + strings.Join(t.keys, ", ") + ")"
	}
	var parts []string
	if r.lo != nil {
		parts = append(parts, k+" > "+tupleText(r.lo))
	}
	if r.hi != nil {
		parts = append(parts, k+" <= "+tupleText(r.hi))
	}
	if len(parts) == 0 {
		return "(whole table)"
	}
	return strings.Join(parts, " AND ")
}

func tupleText(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = pq.QuoteLiteral(s)
	}
	if len(q) == 1 {
		return q[0]
	}
	return "(" + strings.Join(q, ", ") + ")"
}
