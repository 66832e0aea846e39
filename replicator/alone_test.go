package replicator

import (
	"strings"
	"testing"
	"time"
)

// Statements carrying big values are applied alone, between the joined
// statements of the small changes around them, and a conflict on one still
// names its row.
func TestBigValuesAppliedAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text, b bytea);`})
	e.exec(e.master, `INSERT INTO t SELECT g, 'small', '\x00' FROM generate_series(1, 10) g`)
	e.start(nil)
	e.waitConverged(30*time.Second, "t")
	e.tx(e.master, `INSERT INTO t SELECT g, 'small', NULL FROM generate_series(11, 20) g`,
		`INSERT INTO t VALUES (21, repeat(E'it''s \\ ✓', 120000), decode(repeat('00ff27', 70000), 'hex'))`,
		`INSERT INTO t SELECT g, 'small', NULL FROM generate_series(22, 30) g`,
		`UPDATE t SET v = v || 'x' WHERE id BETWEEN 15 AND 25`)
	e.waitConverged(30*time.Second, "t")
	e.requireNoPerRowRetry()

	e.exec(e.slaves[0], `UPDATE t SET id = 121 WHERE id = 21`)
	e.exec(e.master, `UPDATE t SET v = repeat('y', 1100000) WHERE id = 21`)
	msg := e.waitState(0, StateConflict).LastError
	for _, want := range []string{"update_missing", "public.t", "id = '21'::integer"} {
		if !strings.Contains(msg, want) {
			t.Errorf("conflict error %q does not name %q", shorten(msg, 300), want)
		}
	}
	e.exec(e.slaves[0], `UPDATE t SET id = 21 WHERE id = 121`)
	e.waitConverged(30*time.Second, "t")
}
