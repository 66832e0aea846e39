package replicator

import (
	"context"
	"database/sql"
	"fmt"
	"sort"

	"github.com/lib/pq"
)

const (
	// sqlTableSequences lists the sequences the given tables' columns own
	// (serial, identity): name and increment.
	sqlTableSequences = `SELECT format('%I.%I', n.nspname, c.relname), s.seqincrement
  FROM pg_depend d
  JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_sequence s ON s.seqrelid = c.oid
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
   AND d.deptype IN ('a', 'i')
   AND d.refobjid IN (SELECT to_regclass(x) FROM unnest($1::text[]) x)
 ORDER BY 1`
	// sqlWrites tells whether a node is a master itself (captures tables):
	// a site that writes.
	sqlWrites       = `SELECT to_regclass('replica.tables') IS NOT NULL`
	sqlWritesTables = `SELECT EXISTS (SELECT 1 FROM replica.tables)`
)

// siteSequence is where a sequence stands: the next value it hands out and its
// increment.
type siteSequence struct {
	next, increment int64
}

// sequencesCollide reports whether two sequences, on two sites that both
// write, will hand out the same value: the values of each are next + k *
// increment, and two such progressions meet exactly when their difference
// is a multiple of the greatest common divisor of the increments (with
// increments 1 always).
func sequencesCollide(a, b siteSequence) bool {
	g := gcd(abs(a.increment), abs(b.increment))
	if g == 0 {
		return a.next == b.next
	}
	d := (a.next - b.next) % g
	return d == 0
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// sequenceAdvice words the fix for a sequence that two sites share: one
// increment for all (10: room for ten sites) and a distinct offset per
// site, past the values either has handed out.
func sequenceAdvice(name, master, slave string, m, s siteSequence) string {
	base := (max(m.next, s.next)/10 + 1) * 10
	return fmt.Sprintf("sequence %s hands out the same ids on master %s (next %d, increment %d) and on slave %s, which writes too (next %d, increment %d): rows inserted on both sites will collide on their keys. Give each writing site its own offset under one increment, e.g. for up to 10 sites: on %s ALTER SEQUENCE %s INCREMENT BY 10 RESTART WITH %d; on %s ALTER SEQUENCE %s INCREMENT BY 10 RESTART WITH %d",
		name, master, m.next, m.increment, slave, s.next, s.increment, master, name, base+1, slave, name, base+2)
}

// sequenceWarnings compares the sequences of the chosen tables on the
// master with the same sequences on every slave that writes too (a master
// itself: it captures tables), and warns about each pair that would hand
// out the same ids.
func sequenceWarnings(ctx context.Context, opts Options, master *sql.DB, slaves []*sql.DB, chosen []Table) ([]string, error) {
	names := make([]string, len(chosen))
	for i, t := range chosen {
		names[i] = t.Qualified()
	}
	ms, err := tableSequences(ctx, master, names)
	if err != nil {
		return nil, fmt.Errorf("read sequences on master %s: %w", opts.Master.Name, err)
	}
	if len(ms) == 0 {
		return nil, nil
	}
	var out []string
	for i, s := range opts.Slaves {
		var hasSchema, writes bool
		if err := slaves[i].QueryRowContext(ctx, sqlWrites).Scan(&hasSchema); err != nil {
			return nil, fmt.Errorf("slave %s: %w", s.Name, err)
		}
		if hasSchema {
			if err := slaves[i].QueryRowContext(ctx, sqlWritesTables).Scan(&writes); err != nil {
				return nil, fmt.Errorf("slave %s: %w", s.Name, err)
			}
		}
		if !writes {
			continue
		}
		ss, err := tableSequences(ctx, slaves[i], names)
		if err != nil {
			return nil, fmt.Errorf("read sequences on slave %s: %w", s.Name, err)
		}
		keys := make([]string, 0, len(ms))
		for k := range ms {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, name := range keys {
			if sq, ok := ss[name]; ok && sequencesCollide(ms[name], sq) {
				out = append(out, sequenceAdvice(name, opts.Master.Name, s.Name, ms[name], sq))
			}
		}
	}
	return out, nil
}

func tableSequences(ctx context.Context, db *sql.DB, tables []string) (map[string]siteSequence, error) {
	rows, err := db.QueryContext(ctx, sqlTableSequences, pq.Array(tables))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]siteSequence{}
	for rows.Next() {
		var name string
		var s siteSequence
		if err := rows.Scan(&name, &s.increment); err != nil {
			return nil, err
		}
		out[name] = s
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	// The next value, as the sequence itself holds it (a RESTART leaves
	// pg_sequence's start value as it was).
	for name, s := range out {
		if err := db.QueryRowContext(ctx, fmt.Sprintf(sqlSequenceNext, name), s.increment).Scan(&s.next); err != nil {
			return nil, fmt.Errorf("sequence %s: %w", name, err)
		}
		out[name] = s
	}
	return out, nil
}

// sqlSequenceNext reads the next value of the sequence named (quoted) at %s.
const sqlSequenceNext = `SELECT CASE WHEN is_called THEN last_value + $1 ELSE last_value END FROM %s`
