package replicator

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
)

func TestParseRowChange(t *testing.T) {
	tests := []struct {
		name     string
		sql      string
		ok       bool
		shape    string
		setVals  []string
		keyVals  []string
		keyCols  []string
		keyOps   []string
		isUpdate bool
	}{
		{name: "update", sql: `UPDATE ONLY public.t SET v = 'a', n = NULL WHERE id OPERATOR(pg_catalog.=) '7'::integer`, ok: true,
			shape: "U public.t SET v, n WHERE id pg_catalog.= integer", setVals: []string{"'a'", "NULL"},
			keyVals: []string{"'7'::integer"}, keyCols: []string{"id"}, keyOps: []string{"pg_catalog.="}, isUpdate: true},
		{name: "delete, two key columns, quoted names and types", ok: true,
			sql:     `DELETE FROM ONLY "S x"."T ""AND"" y" WHERE "a b" OPERATOR(public.=) 'x'::public.citext AND k OPERATOR(pg_catalog.=) '1'::"my AND type"[]`,
			shape:   `D "S x"."T ""AND"" y" SET  WHERE "a b" public.= public.citext WHERE k pg_catalog.= "my AND type"[]`,
			keyVals: []string{"'x'::public.citext", `'1'::"my AND type"[]`}, keyCols: []string{`"a b"`, "k"}, keyOps: []string{"public.=", "pg_catalog.="}},
		{name: "literals holding the markers", ok: true,
			sql:     `UPDATE ONLY public.t SET v = E'it''s \\'' WHERE x'' AND ', w = ''')' WHERE id OPERATOR(pg_catalog.=) ' AND id OPERATOR(pg_catalog.=) '::text`,
			shape:   "U public.t SET v, w WHERE id pg_catalog.= text",
			setVals: []string{`E'it''s \\'' WHERE x'' AND '`, `''')'`}, keyVals: []string{`' AND id OPERATOR(pg_catalog.=) '::text`},
			keyCols: []string{"id"}, keyOps: []string{"pg_catalog.="}, isUpdate: true},
		{name: "type names with spaces", ok: true,
			sql:     `DELETE FROM ONLY public.t WHERE ts OPERATOR(pg_catalog.=) '2020-01-01 00:00:00'::timestamp without time zone AND d OPERATOR(pg_catalog.=) '1'::double precision`,
			shape:   "D public.t SET  WHERE ts pg_catalog.= timestamp without time zone WHERE d pg_catalog.= double precision",
			keyVals: []string{"'2020-01-01 00:00:00'::timestamp without time zone", "'1'::double precision"},
			keyCols: []string{"ts", "d"}, keyOps: []string{"pg_catalog.=", "pg_catalog.="}},
		{name: "an update of a key column", sql: `UPDATE ONLY public.t SET id = '8' WHERE id OPERATOR(pg_catalog.=) '7'::integer`},
		{name: "an older log's key", sql: `UPDATE ONLY public.t SET v = 'x' WHERE id = '1'`},
		{name: "without ONLY", sql: `DELETE FROM public.t WHERE id OPERATOR(pg_catalog.=) '7'::integer`},
		{name: "unterminated literal", sql: `DELETE FROM ONLY public.t WHERE id OPERATOR(pg_catalog.=) '7::integer`},
		{name: "trailing text", sql: `DELETE FROM ONLY public.t WHERE id OPERATOR(pg_catalog.=) '7'::integer; DROP TABLE x`},
		{name: "an insert", sql: `INSERT INTO public.t (id) VALUES ('1') ON CONFLICT (id) DO NOTHING`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, ok := parseRowChange(tt.sql)
			if ok != tt.ok {
				t.Fatalf("parseRowChange(%s): ok = %v, want %v", tt.sql, ok, tt.ok)
			}
			if !ok {
				return
			}
			if rc.shape != tt.shape || !slices.Equal(rc.setVals, tt.setVals) || !slices.Equal(rc.keyVals, tt.keyVals) ||
				!slices.Equal(rc.keyCols, tt.keyCols) || !slices.Equal(rc.keyOps, tt.keyOps) || rc.isUpdate != tt.isUpdate {
				t.Errorf("parseRowChange(%s) =\n%+v\nwant shape %q set %q key %q %q %q", tt.sql, rc, tt.shape, tt.setVals, tt.keyCols, tt.keyOps, tt.keyVals)
			}
		})
	}
}

func TestChunkJoinsUpdatesAndDeletes(t *testing.T) {
	upd := func(id, v, origin string) event {
		return event{txid: "1", origin: origin, table: "public.t", op: 'U',
			sql: "UPDATE ONLY public.t SET v = " + v + " WHERE id OPERATOR(pg_catalog.=) '" + id + "'::integer"}
	}
	del := func(id string) event {
		return event{txid: "1", origin: "m", table: "public.t", op: 'D',
			sql: "DELETE FROM ONLY public.t WHERE id OPERATOR(pg_catalog.=) '" + id + "'::integer"}
	}
	other := event{txid: "1", origin: "m", table: "public.t", op: 'U',
		sql: "UPDATE ONLY public.t SET w = 'z' WHERE id OPERATOR(pg_catalog.=) '3'::integer"}
	big := upd("9", "'"+strings.Repeat("x", joinMaxBytes)+"'", "m")
	evs := []event{upd("1", "'a'", "m"), upd("2", "NULL", "m"), upd("1", "'b'", "m"), upd("3", "'c'", "m"), other,
		upd("4", "'d'", "m"), upd("5", "'e'", "n"), del("1"), del("2"), del("3"), upd("6", "'f'", "m"), big, upd("7", "'g'", "m")}
	c := chunkOf(false, evs)
	want := []string{
		// The second update of key 1 replaces the first's values.
		"UPDATE ONLY public.t AS r SET v = v.s1 FROM (VALUES (0, (NULL::public.t).v, NULL), (1, 'b', '1'::integer), (2, NULL, '2'::integer), (3, 'c', '3'::integer)) AS v(n, s1, k1) WHERE v.n > 0 AND r.id OPERATOR(pg_catalog.=) v.k1",
		other.sql,
		upd("4", "'d'", "m").sql,
		upd("5", "'e'", "n").sql,
		"DELETE FROM ONLY public.t AS r USING (VALUES ('1'::integer), ('2'::integer), ('3'::integer)) AS v(k1) WHERE r.id OPERATOR(pg_catalog.=) v.k1",
		upd("6", "'f'", "m").sql,
		big.sql,
		upd("7", "'g'", "m").sql,
	}
	if !slices.Equal(c.stmts, want) {
		t.Errorf("statements:\n%s\nwant:\n%s", shorten(strings.Join(c.stmts, "\n"), 3000), shorten(strings.Join(want, "\n"), 3000))
	}
	checkRuns(t, evs, c, []int32{3, 1, 1, 1, 3, 1, 1, 1}, []int{0, 4, 5, 6, 7, 10, 11, 12})
}

// Backlogs of UPDATEs and DELETEs are applied as set-based statements:
// values of every kind, keys of several columns, of a type whose equality
// is not its text's (citext) and of a type in another schema, quoted
// names; the slave ends equal to the master.
func TestJoinedUpdatesAndDeletesReplicate(t *testing.T) {
	t.Parallel()
	schema := `CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA "Sch ema";
CREATE DOMAIN "Sch ema".code AS text CHECK (VALUE <> '');
CREATE TABLE "Sch ema"."T ""x""" ("a b" int, k "Sch ema".code, "select" text, n numeric(10,2), f float8, ts timestamptz,
  arr int[], j jsonb, b bytea, PRIMARY KEY ("a b", k));
CREATE TABLE ci (id citext PRIMARY KEY, v text);
CREATE TABLE plain (id int PRIMARY KEY, v text, w int);`
	e := newEnv(t, setup{schema: schema, tables: []string{"public.*", "Sch ema.*"}})
	e.exec(e.master, `INSERT INTO "Sch ema"."T ""x""" SELECT g % 7, 'k' || g, 's', g, g, now(), ARRAY[g], '{}', '\x00' FROM generate_series(1, 300) g`)
	e.exec(e.master, `INSERT INTO ci SELECT 'Key' || g, 'v' FROM generate_series(1, 100) g`)
	e.exec(e.master, `INSERT INTO plain SELECT g, 'v', g FROM generate_series(1, 300) g`)
	first := e.start(nil)
	e.waitConverged(60*time.Second, `"Sch ema"."T ""x"""`, "ci", "plain")
	first.stop()
	for g := 1; g <= 300; g++ {
		e.exec(e.master, `UPDATE "Sch ema"."T ""x""" SET "select" = $1, n = n + 0.01, f = 'NaN', ts = 'infinity', arr = arr || $2::int, j = '{"a": "it''s"}', b = '\xdead'
			WHERE "a b" = $3 AND k = $4`, fmt.Sprintf(`o'k\ "%d"`, g), g, g%7, fmt.Sprintf("k%d", g))
		e.exec(e.master, `UPDATE plain SET v = NULL WHERE id = $1`, g)
	}
	e.exec(e.master, `UPDATE ci SET v = 'w' WHERE id IN (SELECT id FROM ci ORDER BY id LIMIT 50)`)
	e.exec(e.master, `DELETE FROM ci WHERE id = 'KEY7'`)
	e.exec(e.master, `DELETE FROM "Sch ema"."T ""x""" WHERE n < 100.5`)
	e.exec(e.master, `DELETE FROM plain WHERE id % 3 = 0`)
	for i := range 60 {
		e.exec(e.master, `UPDATE plain SET v = $1 WHERE id = $2`, fmt.Sprint(i), i%3+1)
	}
	e.tx(e.master, `UPDATE plain SET w = -w WHERE id % 3 = 1`, `UPDATE plain SET w = -w WHERE id % 3 = 1`, `DELETE FROM plain WHERE id % 3 = 1 AND id > 250`)
	e.start(nil)
	e.waitConverged(60*time.Second, `"Sch ema"."T ""x"""`, "ci", "plain")
	if n := queryString(t, e.slaves[0], `SELECT count(*) FROM plain WHERE v IS NULL`); n == "0" {
		t.Error("the updates did not reach the slave")
	}
	e.requireNoPerRowRetry()
}

// A joined UPDATE or DELETE whose row is missing on the slave is applied
// again a statement per event: the conflict names the row, and nothing of
// the batch is kept.
func TestConflictInJoinedUpdateOrDeleteNamesTheRow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, change, kind, key string
	}{
		{"update", `UPDATE t SET v = 'b' WHERE id BETWEEN 1 AND 20`, "update_missing", "id = '7'::integer"},
		{"delete", `DELETE FROM t WHERE id BETWEEN 1 AND 20`, "delete_missing", "id = '7'::integer"},
		// The updates of row 7 are one VALUES row of the joined UPDATE.
		{"hot row", `UPDATE t SET v = 'b' WHERE id = 6; UPDATE t SET v = 'c' WHERE id = 7; UPDATE t SET v = 'd' WHERE id = 7`,
			"update_missing", "id = '7'::integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY);`})
			e.exec(e.master, `INSERT INTO t SELECT g, 'a' FROM generate_series(1, 20) g`)
			e.start(nil)
			e.waitConverged(30*time.Second, "t")
			e.exec(e.slaves[0], `DELETE FROM t WHERE id = 7`)
			e.tx(e.master, `INSERT INTO u VALUES (1)`, tc.change)
			msg := e.waitState(0, StateConflict).LastError
			for _, want := range []string{tc.kind, "public.t", tc.key} {
				if !strings.Contains(msg, want) {
					t.Errorf("conflict error %q does not name %q", msg, want)
				}
			}
			if n := queryString(t, e.slaves[0], `SELECT count(*) FROM u`); n != "0" {
				t.Error("the batch holding the conflict was applied in part")
			}
			e.logMu.Lock()
			joined := strings.Contains(e.logs.String(), "applying the batch again one statement per row")
			e.logMu.Unlock()
			if !joined {
				t.Error("the conflicting statement was not applied as part of a joined one first")
			}
			e.exec(e.slaves[0], `INSERT INTO t VALUES (7, 'a')`)
			e.waitConverged(30*time.Second, "t", "u")
		})
	}
}

// requireNoPerRowRetry fails the test when a joined statement failed or
// conflicted, which the per-event retry would otherwise hide.
func (e *env) requireNoPerRowRetry() {
	e.t.Helper()
	e.logMu.Lock()
	again := strings.Contains(e.logs.String(), "applying the batch again one statement per row")
	e.logMu.Unlock()
	if again {
		e.t.Error("a joined statement failed or conflicted and its batch was applied again one statement per row")
	}
}

// Joined UPDATEs and DELETEs find their rows by keys of every kind: arrays
// (a VALUES row keeps an array whole), composites, enums, domains, ranges,
// an extension's type (citext, compared by its own operator) and keys of
// two columns, on a slave whose search_path holds nothing.
func TestJoinedStatementsFindEveryKeyType(t *testing.T) {
	t.Parallel()
	keys := map[string][2]string{
		"int4[]": {`{1,NULL,3}`, `{2}`}, "text[]": {`{"a b",c}`, `{}`}, "kpair": {`(1,"a b")`, `(2,)`},
		"kmood": {`happy`, `sad`}, "kpos": {`7`, `8`}, "citext": {`MiXeD`, `other`}, "int4range": {`[1,10)`, `empty`},
		"numeric": {`1.50`, `-2`}, "float8": {`-0`, `1e-300`}, "timestamptz": {`2024-02-29 12:00:00.5+05:45`, `infinity`},
		"interval": {`1 day`, `-1 years +2 days -03:04:05.6`}, "bytea": {`\x00ff27`, `\x`}, `"char"`: {`'`, `\`},
		"text": {"tab\there, quote ' backslash \\ unicode ✓", ""}, "inet": {`::1/128`, `10.0.0.1`}, "bool": {`t`, `f`},
		"uuid": {`a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`, `00000000-0000-0000-0000-000000000000`}, "jsonb": {`{"k": 1e-7}`, `[]`},
		"varbit": {`101`, `0`}, "time": {`23:59:59.999999`, `00:00`}, "pg_lsn": {`16/B374D848`, `0/0`},
	}
	var schema strings.Builder
	schema.WriteString(`CREATE EXTENSION IF NOT EXISTS citext;
CREATE TYPE kpair AS (a int, b text); CREATE TYPE kmood AS ENUM ('sad', 'happy'); CREATE DOMAIN kpos AS int CHECK (VALUE > 0);
CREATE TABLE two (a text, b int, v text, w int, PRIMARY KEY (b, a)); INSERT INTO two SELECT 'a' || g, g % 3, 'v', 0 FROM generate_series(1, 9) g;
`)
	tables := []string{"two"}
	for ty, v := range keys {
		name := pq.QuoteIdentifier("k_" + strings.Trim(strings.NewReplacer("[]", "_array", `"`, "", "(", "", ")", "").Replace(ty), "_"))
		tables = append(tables, name)
		fmt.Fprintf(&schema, "CREATE TABLE %s (k %s PRIMARY KEY, v text, w int); INSERT INTO %[1]s VALUES (%[3]s, 'a', 1), (%[4]s, 'a', 2);\n",
			name, ty, pq.QuoteLiteral(v[0]), pq.QuoteLiteral(v[1]))
	}
	sort.Strings(tables)
	e := newEnv(t, setup{schema: schema.String(), twoPhase: []bool{false}})
	e.exec(e.slaves[0], fmt.Sprintf("ALTER DATABASE %s SET search_path = pg_temp", pq.QuoteIdentifier(queryString(t, e.slaves[0], `SELECT current_database()`))))
	e.start(nil)
	var writes strings.Builder
	for _, q := range tables {
		fmt.Fprintf(&writes, "UPDATE %[1]s SET v = 'b'; UPDATE %[1]s SET v = NULL, w = 3;\n", q)
	}
	e.exec(e.master, writes.String())
	e.waitConverged(60*time.Second, tables...)
	writes.Reset()
	for _, q := range tables {
		fmt.Fprintf(&writes, "DELETE FROM %s;\n", q)
	}
	e.exec(e.master, writes.String())
	e.waitConverged(60*time.Second, tables...)
	e.requireNoPerRowRetry()
}

// checkRuns checks which events each statement of chunk c covers, and that
// an exact chunk joins none of evs.
func checkRuns(t *testing.T, evs []event, c *chunk, nrows []int32, first []int) {
	t.Helper()
	if !slices.Equal(c.nrows, nrows) {
		t.Errorf("nrows = %v, want %v", c.nrows, nrows)
	}
	if !slices.Equal(c.first, first) {
		t.Errorf("first = %v, want %v", c.first, first)
	}
	if exact := chunkOf(true, evs); len(exact.stmts) != len(evs) {
		t.Errorf("exact chunk joined statements: %q", exact.stmts)
	}
}

// chunkOf adds evs to a new chunk and closes its last run.
func chunkOf(exact bool, evs []event) *chunk {
	c := &chunk{exact: exact}
	for _, e := range evs {
		c.add(e)
	}
	c.closeRun()
	return c
}
