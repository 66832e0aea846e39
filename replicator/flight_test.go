package replicator

import (
	"strings"
	"testing"
	"time"
)

// A batch of more than one chunk sends each full chunk while it builds the
// next; a conflict in a chunk that was in flight is handled as in one
// applied alone: stop names the row and keeps nothing of the batch, skip
// records the row and applies the rest of the batch, the chunks after it
// included.
func TestConflictInChunkInFlight(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{PolicyStop, PolicySkip} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY);`})
			e.opts.OnConflict = policy
			e.exec(e.master, `INSERT INTO t SELECT g, 'a' FROM generate_series(1, 5000) g`)
			r := e.start(nil)
			e.waitConverged(60*time.Second, "t")
			r.stop()
			e.exec(e.slaves[0], `DELETE FROM t WHERE id = 10`)
			// 5,000 UPDATE events, then an INSERT: three chunks, the
			// conflict in the first.
			e.tx(e.master, `UPDATE t SET v = 'b'`, `INSERT INTO u VALUES (1)`)
			e.start(nil)
			if policy == PolicyStop {
				msg := e.waitState(0, StateConflict).LastError
				for _, want := range []string{"update_missing", "public.t", "id = '10'::integer"} {
					if !strings.Contains(msg, want) {
						t.Errorf("conflict error %q does not name %q", msg, want)
					}
				}
				if n := queryString(t, e.slaves[0], `SELECT count(*) FROM t WHERE v = 'b'`); n != "0" {
					t.Errorf("%s rows of the stopped batch were kept", n)
				}
				e.exec(e.slaves[0], `INSERT INTO t VALUES (10, 'a')`)
				e.waitConverged(60*time.Second, "t", "u")
				return
			}
			waitFor(t, 60*time.Second, func() string {
				n := queryString(t, e.slaves[0], `SELECT (SELECT count(*) FROM t WHERE v = 'b')::text || ' ' || (SELECT count(*) FROM u)::text`)
				if n != "4999 1" {
					return "updated rows, rows of u: " + n
				}
				return ""
			})
			if k := queryString(t, e.slaves[0], `SELECT string_agg(kind || ' ' || key, ', ') FROM replica.conflicts`); k != "update_missing id = '10'::integer" {
				t.Errorf("recorded conflicts: %q", k)
			}
		})
	}
}
