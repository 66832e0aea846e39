package replicator

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
)

// Sequences. The sequences that Options.Sequences names travel with the
// batches: before a batch's slave transaction records its position, the
// worker reads their values on the master (after the batch's snapshot was
// taken, so each is at least the last value any of the batch's transactions
// drew) and sets those that are ahead of the slave's on the slave, in the
// same transaction. A slave's sequence never moves backwards (one already
// ahead, or one drawn from on the slave, is left alone), so that a slave
// promoted to master after a switch hands out no id the old master used.
// setval is not transactional: a value set by a batch that is then rolled
// back stays, which is harmless (it is still a value the master reached).

// seqResolveEvery is how often a worker looks again for the sequences its
// patterns match (a sequence created after the start is picked up then).
const seqResolveEvery = time.Minute

// sqlSequences lists the master's sequences: schema, name, quoted name,
// and whether it counts down.
const sqlSequences = `SELECT n.nspname, c.relname, format('%I.%I', n.nspname, c.relname), s.seqincrement < 0
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_sequence s ON s.seqrelid = c.oid
 WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'replica')
 ORDER BY 1, 2`

// sqlMissingSequences returns those of the names $1 that are no sequence on
// the slave.
const sqlMissingSequences = `SELECT coalesce(array_agg(n ORDER BY n), '{}') FROM unnest($1::text[]) AS n
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = to_regclass(n) AND c.relkind = 'S')`

// sequence is a sequence replicated to the slaves.
type sequence struct {
	name string // quoted schema.name
	down bool   // negative increment: "ahead" means lower
}

// seqSync is a worker's sequence state: the sequences it pushes, and the
// value it last set of each (none is set again until the master's moves).
type seqSync struct {
	seqs       []sequence
	sent       map[string]int64
	resolvedAt time.Time
}

// matchSequences picks the sequences whose schema.name a pattern matches.
func matchSequences(all []sequence, plain []string, patterns []string) []sequence {
	var out []sequence
	for i, s := range all {
		for _, p := range patterns {
			if matchTable(p, plain[i]) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// resolveSequences finds the sequences the patterns match on the master and
// checks that each exists on the slave.
func (w *worker) resolveSequences(ctx context.Context) error {
	rows, err := w.r.master.QueryContext(ctx, sqlSequences)
	if err != nil {
		return w.masterErr("list sequences", err)
	}
	defer rows.Close()
	var all []sequence
	var plain []string
	for rows.Next() {
		var schema, name string
		var s sequence
		if err := rows.Scan(&schema, &name, &s.name, &s.down); err != nil {
			return w.masterErr("list sequences", err)
		}
		all = append(all, s)
		plain = append(plain, schema+"."+name)
	}
	if err := rows.Err(); err != nil {
		return w.masterErr("list sequences", err)
	}
	chosen := matchSequences(all, plain, w.r.opts.Sequences)
	names := make([]string, len(chosen))
	for i, s := range chosen {
		names[i] = s.name
	}
	var missing []string
	if err := w.conn.QueryRowContext(ctx, sqlMissingSequences, pq.Array(names)).Scan(pq.Array(&missing)); err != nil {
		return w.slaveErr("look up sequences", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("slave %s: sequence %s (matched by replicate.sequences on master %s) does not exist on the slave: create it there, or narrow replicate.sequences",
			w.slave.Name, strings.Join(missing, ", "), w.r.opts.Master.Name)
	}
	w.seqs = seqSync{seqs: chosen, sent: map[string]int64{}, resolvedAt: time.Now()}
	return nil
}

// pushSequences sets, in the slave transaction under way, the sequences
// whose master value moved since it last set them and is ahead of the
// slave's.
func (w *worker) pushSequences(ctx context.Context) error {
	if len(w.r.opts.Sequences) == 0 {
		return nil
	}
	if time.Since(w.seqs.resolvedAt) > seqResolveEvery {
		if err := w.resolveSequences(ctx); err != nil {
			return err
		}
	}
	if len(w.seqs.seqs) == 0 {
		return nil
	}
	var read strings.Builder
	for i, s := range w.seqs.seqs {
		if i > 0 {
			read.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&read, "SELECT %d, last_value, is_called FROM %s", i, s.name)
	}
	rows, err := w.r.master.QueryContext(ctx, read.String())
	if err != nil {
		return w.masterErr("read sequences", err)
	}
	defer rows.Close()
	var set []string
	moved := map[string]int64{}
	for rows.Next() {
		var i int
		var v int64
		var called bool
		if err := rows.Scan(&i, &v, &called); err != nil {
			return w.masterErr("read sequences", err)
		}
		s := w.seqs.seqs[i]
		if last, ok := w.seqs.sent[s.name]; !called || (ok && last == v) {
			continue // never drawn from on the master, or unchanged
		}
		set = append(set, setvalAhead(s, v))
		moved[s.name] = v
	}
	if err := rows.Err(); err != nil {
		return w.masterErr("read sequences", err)
	}
	rows.Close()
	if len(set) == 0 {
		return nil
	}
	q := "SELECT count(*) FROM (" + strings.Join(set, " UNION ALL ") + ") s"
	var n int
	if err := w.conn.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return w.slaveErr("set sequences", err)
	}
	for k, v := range moved {
		w.seqs.sent[k] = v
	}
	return nil
}

// setvalAhead is a query that sets sequence s on the slave to v, the
// master's last value, unless the slave's is already there or beyond: its
// next value must come after v. It returns a row when it set it.
func setvalAhead(s sequence, v int64) string {
	val := strconv.FormatInt(v, 10)
	behind := "CASE WHEN is_called THEN last_value < " + val + " ELSE last_value <= " + val + " END"
	if s.down {
		behind = "CASE WHEN is_called THEN last_value > " + val + " ELSE last_value >= " + val + " END"
	}
	return fmt.Sprintf("SELECT setval(%s::regclass, %s) FROM %s WHERE %s", pq.QuoteLiteral(s.name), val, s.name, behind)
}
