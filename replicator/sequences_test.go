package replicator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// seqState is a sequence's last_value and is_called, as text.
func seqState(t *testing.T, e *env, slave int, seq string) string {
	t.Helper()
	db := e.master
	if slave >= 0 {
		db = e.slaves[slave]
	}
	return queryString(t, db, fmt.Sprintf(`SELECT last_value || ' ' || is_called FROM %s`, seq))
}

// Sequences follow the batches: a slave's sequence reaches the master's
// value, but never moves backwards, whether it was ahead from the start,
// counts down, or is drawn from on the slave itself; sequences no pattern
// names are left alone.
func TestSequencesNeverGoBackwards(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{slaves: 2, schema: `CREATE TABLE t (id serial PRIMARY KEY, v text);
		CREATE SEQUENCE ahead; CREATE SEQUENCE down INCREMENT -1; CREATE SEQUENCE fresh;
		CREATE SCHEMA other; CREATE SEQUENCE other.untouched`})
	e.opts.Sequences = []string{"public.*"}
	// lyon's "ahead" sequence is far ahead (the ids it handed out are its
	// own); nice's t_id_seq has been drawn from on the slave.
	e.exec(e.slaves[0], `SELECT setval('ahead', 1000)`)
	e.exec(e.slaves[1], `SELECT nextval('t_id_seq') FROM generate_series(1, 7)`)
	e.start(nil)
	e.exec(e.master, `INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 5);
		SELECT nextval('ahead') FROM generate_series(1, 3); SELECT nextval('down'), nextval('down');
		SELECT nextval('other.untouched') FROM generate_series(1, 4)`)
	e.waitConverged(30*time.Second, "t")
	want := [][]string{
		{"t_id_seq", "5 true", "7 true"},
		{"ahead", "1000 true", "3 true"},
		{"down", "-2 true", "-2 true"},
		{"fresh", "1 false", "1 false"},
		{"other.untouched", "1 false", "1 false"},
	}
	check := func() string {
		var diffs []string
		for _, w := range want {
			for i := range 2 {
				if got := seqState(t, e, i, w[0]); got != w[1+i] {
					diffs = append(diffs, fmt.Sprintf("slave %d %s: %s, want %s", i, w[0], got, w[1+i]))
				}
			}
		}
		return strings.Join(diffs, "; ")
	}
	waitFor(t, 30*time.Second, check)
	// The next batches carry the next values; nice passes 7 only now.
	e.exec(e.master, `INSERT INTO t (v) SELECT 'y' FROM generate_series(1, 4); SELECT nextval('down')`)
	want[0] = []string{"t_id_seq", "9 true", "9 true"}
	want[2] = []string{"down", "-3 true", "-3 true"}
	waitFor(t, 30*time.Second, check)
	if got := seqState(t, e, -1, "t_id_seq"); got != "9 true" {
		t.Fatalf("master t_id_seq: %s", got)
	}
	// A promoted slave hands out the next id, not a used one.
	var id int
	if err := e.slaves[0].QueryRowContext(context.Background(), `INSERT INTO t (v) VALUES ('promoted') RETURNING id`).Scan(&id); err != nil || id != 10 {
		t.Fatalf("an insert on the slave got id %d (%v), want 10", id, err)
	}
}

// A sequence the patterns name that the slave lacks stops that slave with
// an error naming the sequence, the slave and the setting.
func TestSequenceMissingOnSlave(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY)`})
	e.exec(e.master, `CREATE SEQUENCE "Only On Master"`)
	e.opts.Sequences = []string{"public.*"}
	e.start(nil)
	e.exec(e.master, `INSERT INTO t VALUES (1)`)
	st := e.waitState(0, StateError)
	if !strings.Contains(st.LastError, `sequence public."Only On Master" (matched by replicate.sequences on master paris) does not exist on the slave`) {
		t.Fatalf("last error: %s", st.LastError)
	}
}
