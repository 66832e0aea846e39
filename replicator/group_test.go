package replicator

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGroupByTable(t *testing.T) {
	ev := func(table string, op byte, n string) event {
		return event{txid: "1", origin: "m", table: table, op: op, sql: n}
	}
	tests := []struct {
		name string
		in   []event
		want []string
	}{
		{"tables in order of first appearance, each in log order",
			[]event{ev("a", 'U', "a1"), ev("b", 'U', "b1"), ev("c", 'I', "c1"), ev("a", 'U', "a2"), ev("b", 'D', "b2"), ev("c", 'I', "c2")},
			[]string{"a1", "a2", "b1", "b2", "c1", "c2"}},
		{"a TRUNCATE keeps its place",
			[]event{ev("a", 'I', "a1"), ev("b", 'I', "b1"), ev("a", 'I', "a2"), ev("a", 'T', "ta"), ev("b", 'T', "tb"), ev("b", 'I', "b3"), ev("a", 'I', "a3"), ev("b", 'I', "b4")},
			[]string{"a1", "a2", "b1", "ta", "tb", "b3", "b4", "a3"}},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range groupByTable(tt.in) {
				got = append(got, e.sql)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("groupByTable = %v, want %v", got, tt.want)
			}
		})
	}
}

// A grouped chunk joins the changes of interleaved transactions table by
// table; an exact one keeps the log order.
func TestGroupedChunkJoinsInterleavedTables(t *testing.T) {
	upd := func(table, id, v string) event {
		return event{txid: id, origin: "m", table: table, op: 'U',
			sql: "UPDATE ONLY " + table + " SET v = '" + v + "' WHERE id OPERATOR(pg_catalog.=) '" + id + "'::integer"}
	}
	var evs []event
	for _, id := range []string{"1", "2", "3"} {
		evs = append(evs, upd("public.account", id, "a"+id), upd("public.branch", "1", "b"+id))
	}
	c := &chunk{group: true}
	for _, e := range evs {
		c.buffer(e)
	}
	c.build()
	c.closeRun()
	if len(c.stmts) != 2 || !strings.Contains(c.stmts[0], "public.account") || !strings.Contains(c.stmts[1], "(1, 'b3', '1'::integer)") {
		t.Errorf("grouped statements:\n%s", strings.Join(c.stmts, "\n"))
	}
	exact := &chunk{group: true, exact: true}
	for _, e := range evs {
		exact.buffer(e)
	}
	exact.build()
	exact.closeRun()
	if len(exact.stmts) != len(evs) {
		t.Errorf("exact chunk grouped or joined: %q", exact.stmts)
	}
}

// Grouped by table, a child row may be inserted before its parent row in
// the slave transaction: in replica mode no foreign-key check runs before
// the commit, and the slave ends equal to the master.
func TestGroupedApplyKeepsForeignKeysWhole(t *testing.T) {
	t.Parallel()
	schema := `CREATE TABLE parent (id int PRIMARY KEY, v text);
CREATE TABLE child (id int PRIMARY KEY, parent int NOT NULL REFERENCES parent, v text);
INSERT INTO parent VALUES (0, 'p');`
	e := newEnv(t, setup{schema: schema})
	e.start(nil)
	for i := 1; i <= 30; i++ {
		e.tx(e.master, `INSERT INTO child VALUES ($1, 0, 'c')`, 1000+i, `INSERT INTO parent VALUES ($1, 'p')`, i,
			`INSERT INTO child VALUES ($1, $1, 'c')`, i, `UPDATE parent SET v = 'q' WHERE id = 0`)
	}
	e.tx(e.master, `DELETE FROM child WHERE parent > 20`, `DELETE FROM parent WHERE id > 20`)
	e.waitConverged(30*time.Second, "parent", "child")
	e.requireNoPerRowRetry()
}
