package replicator

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
)

// builtinSamples holds a value of every built-in type of pg_catalog that can
// be stored and typed in; TestEveryBuiltinTypeUnderHostileSettings fails
// when the server has a type this list lacks, so that a new PostgreSQL
// version's types are added here.
var builtinSamples = map[string]string{
	"aclitem": `postgres=arw/postgres`, "bit": `1`, "bool": `t`, "box": `(3,4),(1,2)`,
	"bpchar": `a`, "bytea": `\x00ff27`, "char": `'`, "cid": `5`, "cidr": `10.0.0.0/8`,
	"circle": `<(1,2),3>`, "date": `0001-01-01 BC`, "datemultirange": `{[2024-01-01,2024-02-01),[2024-03-01,infinity)}`,
	"daterange": `[2024-01-01,2024-02-29]`, "float4": `-3.4028235e38`, "float8": `-0`, "inet": `::1/128`,
	"int2": `-32768`, "int2vector": `1 2 3`, "int4": `2147483647`, "int4multirange": `{[1,3),[5,7)}`,
	"int4range": `[1,10)`, "int8": `-9223372036854775808`, "int8multirange": `{}`, "int8range": `empty`,
	"interval": `-1 years +2 days -03:04:05.6`, "json": `{"a": [1, "b\"c"], "a": null}`, "jsonb": `{"k": 1e-7, "u": "ü\\n"}`,
	"jsonpath": `$."a"[*] ? (@ > 1)`, "line": `{1,2,3}`, "lseg": `[(1,2),(3,4)]`, "macaddr": `08:00:2b:01:02:03`,
	"macaddr8": `08:00:2b:01:02:03:04:05`, "money": `-0.01`, "name": `a "name"`, "numeric": `-123456789012345678901234567890.1234500`,
	"nummultirange": `{[1.5,2.5]}`, "numrange": `(1.5,2.5]`, "oid": `4294967295`, "oidvector": `1 2`,
	"path": `[(1,2),(3,4)]`, "pg_lsn": `16/B374D848`, "pg_snapshot": `10:20:10,14,15`, "point": `(1.5,-2)`,
	"polygon": `((0,0),(1,1),(1,0))`, "refcursor": `cur`, "regclass": `pg_class`, "regcollation": `"C"`,
	"regconfig": `english`, "regdictionary": `simple`, "regnamespace": `pg_catalog`, "regoper": `pg_catalog.||/`,
	"regoperator": `+(integer,integer)`, "regproc": `now`, "regprocedure": `abs(integer)`, "regrole": `pg_monitor`,
	"regtype": `integer`, "text": "tab\there, quote ' backslash \\ unicode ✓", "tid": `(1,2)`, "time": `23:59:59.999999`,
	"timestamp": `2024-02-29 12:00:00.5`, "timestamptz": `2024-02-29 12:00:00.5+05:45`, "timetz": `12:00:00+05:45`,
	"tsmultirange": `{["2024-01-01 00:00","2024-01-02 00:00")}`, "tsquery": `'a' & !'b'`,
	"tsrange": `["2024-01-01 00:00",infinity)`, "tstzmultirange": `{["2024-01-01 00:00+00","2024-01-02 00:00+00")}`,
	"tstzrange": `(-infinity,"2024-01-01 00:00+03")`, "tsvector": `'a':1 'b c':2`, "txid_snapshot": `10:20:10,14,15`,
	"uuid": `a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`, "varbit": `10101`, "varchar": `v`, "xid": `123`, "xid8": `123`,
	"xml": `text <b>fragment</b>`,
}

// builtinWithoutInput are the built-in types no column can be given a
// value of from text (their input function refuses, or they have no
// array type).
var builtinWithoutInput = map[string]bool{
	"gtsvector": true, "pg_brin_bloom_summary": true, "pg_brin_minmax_multi_summary": true, "pg_dependencies": true,
	"pg_mcv_list": true, "pg_ndistinct": true, "pg_node_tree": true,
}

// canonicalSettings are set before values are compared as text.
const canonicalSettings = `SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3;
SET lc_monetary = 'C'; SET xmloption = content; SET TimeZone = 'UTC'; SET bytea_output = 'hex'`

// Invariant 8: a value of every built-in type, and an array of each, round
// trips exactly, written by a session whose settings change how values
// print, and applied on a slave whose database has other settings still
// (lc_monetary, DateStyle, IntervalStyle, xmloption, array_nulls,
// standard_conforming_strings, TimeZone...).
// everyTypeColumns returns, for every built-in type, the column
// definitions of a value and an array of it, sample values for them, and
// their names.
func everyTypeColumns(t *testing.T, probe *sql.DB) (cols, vals, arrs []string) {
	t.Helper()
	rows, err := probe.Query(`SELECT t.typname FROM pg_type t
		WHERE t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype IN ('b', 'r', 'm') AND t.typisdefined
		  AND t.typarray <> 0 AND t.typname !~ '^_' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var types, missing []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		switch {
		case builtinWithoutInput[n]:
		case builtinSamples[n] == "":
			missing = append(missing, n)
		default:
			types = append(types, n)
		}
	}
	rows.Close()
	if len(missing) > 0 {
		t.Fatalf("built-in types without a sample value in builtinSamples: %s", strings.Join(missing, ", "))
	}
	sort.Strings(types)
	for _, ty := range types {
		q := pq.QuoteIdentifier(ty)
		cols = append(cols, fmt.Sprintf("%s pg_catalog.%s, %s pg_catalog.%s[]", pq.QuoteIdentifier("c_"+ty), q, pq.QuoteIdentifier("a_"+ty), q))
		v := pq.QuoteLiteral(builtinSamples[ty]) + "::pg_catalog." + q
		vals = append(vals, v, fmt.Sprintf("ARRAY[%s, NULL]", v))
		arrs = append(arrs, pq.QuoteIdentifier("c_"+ty), pq.QuoteIdentifier("a_"+ty))
	}
	if ty := "bit"; !strings.Contains(strings.Join(types, " "), ty) {
		t.Fatal("no bit type")
	}
	return cols, vals, arrs
}

// hostileSlave gives the slave's database settings that change how values
// read and print, and returns the lc_monetary the tests use.
func (e *env) hostileSlave() string {
	e.t.Helper()
	monetary := "de_DE.UTF-8"
	if !hasLocale(monetary) {
		if os.Getenv("CI") != "" {
			e.t.Fatalf("locale %s is missing: .ci/run generates it (locale-gen)", monetary)
		}
		e.t.Logf("locale %s is missing (locale-gen it): the slave's lc_monetary stays C", monetary)
		monetary = "C"
	}
	slaveDB := queryString(e.t, e.slaves[0], `SELECT current_database()`)
	for _, set := range []string{"DateStyle = 'German, DMY'", "IntervalStyle = 'iso_8601'", "lc_monetary = " + pq.QuoteLiteral(monetary),
		"xmloption = document", "array_nulls = off", "standard_conforming_strings = off", "TimeZone = 'Pacific/Chatham'",
		"extra_float_digits = -15", "bytea_output = 'escape'", "search_path = pg_temp"} {
		e.exec(e.slaves[0], fmt.Sprintf("ALTER DATABASE %s SET %s", pq.QuoteIdentifier(slaveDB), set))
	}
	return monetary
}

func TestEveryBuiltinTypeUnderHostileSettings(t *testing.T) {
	t.Parallel()
	ms, _ := servers(t)
	probe, _ := newDB(t, ms, "probe")
	cols, vals, arrs := everyTypeColumns(t, probe)
	schema := fmt.Sprintf("CREATE TABLE every (id int PRIMARY KEY, %s)", strings.Join(cols, ", "))
	e := newEnv(t, setup{schema: schema, twoPhase: []bool{false}})
	monetary := e.hostileSlave()
	e.start(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := e.hostileConn(ctx, "SET lc_monetary = "+pq.QuoteLiteral(monetary))
	for _, q := range []string{
		fmt.Sprintf("INSERT INTO every (id, %s) VALUES (1, %s)", strings.Join(arrs, ", "), strings.Join(vals, ", ")),
		"INSERT INTO every (id) VALUES (2), (3), (5)",
		// Two rows: one joined UPDATE (join.go) sets every type.
		fmt.Sprintf("UPDATE every SET (%s) = (SELECT %s FROM every WHERE id = 1) WHERE id IN (2, 5)", strings.Join(arrs, ", "), strings.Join(arrs, ", ")),
		"UPDATE every SET id = 4 WHERE id = 3",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", shorten(q, 200), err)
		}
	}
	e.waitState(0, StateRunning)
	waitFor(t, 30*time.Second, func() string {
		if n := queryString(t, e.slaves[0], `SELECT count(*) FROM every`); n != "4" {
			return "slave has " + n + " rows of 4"
		}
		if st, err := GetStatus(context.Background(), e.opts); err != nil || st.Slaves[0].PendingEvents > 0 || st.Slaves[0].State != StateRunning {
			return fmt.Sprintf("status %+v %v", st, err)
		}
		return ""
	})
	e.sameColumns("every", arrs)
}

// sameColumns compares the columns of table on the master and the first
// slave, as text under canonical settings.
func (e *env) sameColumns(table string, columns []string) {
	e.t.Helper()
	for _, c := range columns {
		q := fmt.Sprintf("SELECT string_agg(coalesce(%s::text, 'NULL'), ' | ' ORDER BY id) FROM %s", c, table)
		want, got := canonicalText(e.t, e.master, q), canonicalText(e.t, e.slaves[0], q)
		if got != want {
			e.t.Errorf("column %s: slave has %s, master has %s", c, got, want)
		}
	}
	e.requireNoPerRowRetry()
}

// Invariant 8 for the initial copy: a value of every built-in type, and an
// array of each, is copied exactly into a slave table created by init, on
// a slave whose database settings change how values read and print.
func TestEveryBuiltinTypeCopies(t *testing.T) {
	t.Parallel()
	ms, _ := servers(t)
	probe, _ := newDB(t, ms, "probe")
	cols, vals, arrs := everyTypeColumns(t, probe)
	e := newEnv(t, setup{twoPhase: []bool{false}})
	e.hostileSlave()
	e.exec(e.master, fmt.Sprintf("CREATE TABLE every (id int PRIMARY KEY, %s)", strings.Join(cols, ", ")))
	e.exec(e.master, fmt.Sprintf("INSERT INTO every (id, %s) VALUES (1, %s), (2, %s)", strings.Join(arrs, ", "), strings.Join(vals, ", "), strings.Join(vals, ", ")))
	e.exec(e.master, "INSERT INTO every (id) VALUES (3)")
	e.initAgain(e.copyOpts(CopyTruncate))
	e.start(nil)
	e.waitTableState(0, "public.every", TableOK)
	e.sameColumns("every", arrs)
}

// canonicalText runs a one-value query under canonicalSettings.
func canonicalText(t *testing.T, db *sql.DB, q string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, canonicalSettings); err != nil {
		t.Fatal(err)
	}
	var s sql.NullString
	if err := conn.QueryRowContext(ctx, q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s.String
}

// hasLocale reports whether the C library has locale name (de_DE.UTF-8),
// which it may list in its normalized form (de_DE.utf8).
func hasLocale(name string) bool {
	out, err := exec.Command("locale", "-a").Output()
	if err != nil {
		return false
	}
	norm := strings.ToLower(strings.ReplaceAll(name, "-", ""))
	for _, l := range strings.Fields(string(out)) {
		if strings.ToLower(strings.ReplaceAll(l, "-", "")) == norm {
			return true
		}
	}
	return false
}

// plpgsqlKeywords are the words PL/pgSQL reserves or knows (PostgreSQL
// 15's pl_reserved_kwlist.h and pl_unreserved_kwlist.h), and the names the
// generated log function uses for its own variables.
var plpgsqlKeywords = strings.Fields(`all begin by case declare else end execute for foreach from if in into loop not null
or strict then to using when while absolute alias and array assert backward call chain close collate column column_name
commit constant constraint constraint_name continue current cursor datatype debug default detail diagnostics do dump
elseif elsif errcode error exception exit fetch first forward get hint import info insert is last log message
message_text move next no notice open option perform pg_context pg_datatype_name pg_exception_context
pg_exception_detail pg_exception_hint print_strict_params prior query raise relative reset return returned_sqlstate
reverse rollback row_count rowtype schema schema_name scroll slice sqlstate stacked table table_name type use_column
use_variable variable_conflict warning s v o new old tg_op tg_relid found`)

// Invariant 8: every keyword, of SQL and of PL/pgSQL, works as a column, a
// table and a schema name, and so do names holding format()'s %.
func TestEveryKeywordAsIdentifier(t *testing.T) {
	t.Parallel()
	ms, _ := servers(t)
	probe, _ := newDB(t, ms, "probe")
	rows, err := probe.Query(`SELECT word FROM pg_get_keywords()`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var words []string
	add := func(w string) {
		if !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	for rows.Next() {
		var w string
		if err := rows.Scan(&w); err != nil {
			t.Fatal(err)
		}
		if w != "replica" { // goreplica's own schema
			add(w)
		}
	}
	rows.Close()
	for _, w := range append(plpgsqlKeywords, "100%", "%s", "%L", "%I %1$s") {
		add(w)
	}
	sort.Strings(words)
	var schema strings.Builder
	var cols, vals, sets []string
	qualified := func(w string) string {
		if strings.HasPrefix(w, "pg_") { // schema names starting with pg_ are reserved
			return "public." + pq.QuoteIdentifier(w)
		}
		return pq.QuoteIdentifier(w) + "." + pq.QuoteIdentifier(w)
	}
	for i, w := range words {
		q := pq.QuoteIdentifier(w)
		cols = append(cols, q+" text")
		vals = append(vals, fmt.Sprintf("'%d'", i))
		sets = append(sets, fmt.Sprintf("%s = %s || '!'", q, q))
		if !strings.HasPrefix(w, "pg_") {
			fmt.Fprintf(&schema, "CREATE SCHEMA %s;\n", q)
		}
		fmt.Fprintf(&schema, "CREATE TABLE %s (%s int PRIMARY KEY, \"v a l\" text);\n", qualified(w), q)
	}
	fmt.Fprintf(&schema, "CREATE TABLE words (%s, PRIMARY KEY (\"by\", \"loop\"));\n", strings.Join(cols, ", "))
	e := newEnv(t, setup{schema: schema.String(), tables: []string{"*"}, twoPhase: []bool{false}})
	e.start(nil)
	var writes strings.Builder
	for _, w := range words {
		q := pq.QuoteIdentifier(w)
		fmt.Fprintf(&writes, "INSERT INTO %[1]s VALUES (1, 'a'), (2, 'b'); UPDATE %[1]s SET \"v a l\" = 'c', %[2]s = 3 WHERE %[2]s = 1; DELETE FROM %[1]s WHERE %[2]s = 2;\n", qualified(w), q)
	}
	fmt.Fprintf(&writes, "INSERT INTO words VALUES (%s); INSERT INTO words (\"by\", \"loop\") VALUES ('x', 'y');", strings.Join(vals, ", "))
	fmt.Fprintf(&writes, "UPDATE words SET %s WHERE \"by\" <> 'x'; DELETE FROM words WHERE \"by\" = 'x';", strings.Join(sets, ", "))
	e.exec(e.master, writes.String())
	// One query sums up every table: a query per table would take longer
	// than the replication.
	var sum strings.Builder
	sum.WriteString(`SELECT 'words' || md5(string_agg(w::text, ',' ORDER BY w::text)) AS x FROM words w`)
	for _, w := range words {
		fmt.Fprintf(&sum, " UNION ALL SELECT %s || coalesce(md5(string_agg(w::text, ',' ORDER BY w::text)), '') FROM %s w", pq.QuoteLiteral(w), qualified(w))
	}
	total := "SELECT md5(string_agg(x, E'\n')) FROM (" + sum.String() + ") s"
	want := queryString(t, e.master, total)
	waitFor(t, 60*time.Second, func() string {
		if got := queryString(t, e.slaves[0], total); got != want {
			each := "SELECT string_agg(x, ' ') FROM (" + sum.String() + ") s"
			st, err := GetStatus(context.Background(), e.opts)
			return fmt.Sprintf("slave differs from the master; status %+v %v\nmaster: %s\nslave: %s", st, err,
				queryString(t, e.master, each), queryString(t, e.slaves[0], each))
		}
		return ""
	})
}

// Invariant 12: a row is found on the slave by its key, whatever the key's
// type: every built-in type that can be a primary key, a composite, an
// enum, a domain, an array, and an extension's type whose equality lives
// outside pg_catalog (citext: compared as citext, through its index).
func TestEveryKeyType(t *testing.T) {
	t.Parallel()
	ms, _ := servers(t)
	probe, _ := newDB(t, ms, "probe")
	rows, err := probe.Query(`SELECT t.typname FROM pg_type t
		WHERE t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype IN ('b', 'r', 'm') AND t.typarray <> 0
		  AND t.typname !~ '^_' AND EXISTS (SELECT 1 FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod
		      WHERE a.amname = 'btree' AND c.opcdefault AND (c.opcintype = t.oid OR (c.opcintype = 'anyrange'::regtype AND t.typtype = 'r')
		         OR (c.opcintype = 'anymultirange'::regtype AND t.typtype = 'm') OR (c.opcintype = 'anyenum'::regtype AND t.typtype = 'e')))
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{} // table name -> key type
	var schema strings.Builder
	schema.WriteString(`CREATE EXTENSION IF NOT EXISTS citext;
CREATE TYPE kpair AS (a int, b text); CREATE TYPE kmood AS ENUM ('sad', 'happy'); CREATE DOMAIN kpos AS int CHECK (VALUE > 0);
`)
	samples := map[string]string{"kpair": `(1,"a b")`, "kmood": `happy`, "kpos": `7`, "citext": `MiXeD`, "int4[]": `{1,NULL,3}`, "text[]": `{"a b",c}`,
		// Types with a modifier: the key's literal is typed as its column.
		"bit(3)": `101`, "varbit(4)": `10`, "character(4)": `ab`, "varchar(5)": `abc`, "numeric(6,2)": `12.30`,
		"timestamp(0)": `2024-01-02 03:04:05`, "interval day to second(1)": `1 day 02:03:04.5`}
	for rows.Next() {
		var ty string
		if err := rows.Scan(&ty); err != nil {
			t.Fatal(err)
		}
		if v, ok := builtinSamples[ty]; ok {
			samples[pq.QuoteIdentifier(ty)] = v
		}
	}
	rows.Close()
	for ty, v := range samples {
		name := "k_" + strings.Trim(strings.NewReplacer("[]", "_array", `"`, "", "(", "_", ")", "", ",", "_", " ", "_").Replace(ty), "_")
		keys[name] = ty
		fmt.Fprintf(&schema, "CREATE TABLE %s (k %s PRIMARY KEY, v text); INSERT INTO %[1]s VALUES (%[3]s, 'a');\n",
			pq.QuoteIdentifier(name), ty, pq.QuoteLiteral(v))
	}
	e := newEnv(t, setup{schema: schema.String(), twoPhase: []bool{false}})
	// The slave's search_path holds nothing: operators are found by name.
	e.exec(e.slaves[0], fmt.Sprintf("ALTER DATABASE %s SET search_path = pg_temp", pq.QuoteIdentifier(queryString(t, e.slaves[0], `SELECT current_database()`))))
	e.start(nil)
	var writes strings.Builder
	var tables []string
	for name := range keys {
		q := pq.QuoteIdentifier(name)
		tables = append(tables, q)
		fmt.Fprintf(&writes, "UPDATE %[1]s SET v = 'b'; INSERT INTO %[1]s SELECT k, 'c' FROM %[1]s ON CONFLICT DO NOTHING;\n", q)
	}
	sort.Strings(tables)
	e.exec(e.master, writes.String())
	e.waitConverged(60*time.Second, tables...)
	for _, q := range tables {
		e.exec(e.master, "DELETE FROM "+q)
	}
	e.waitConverged(60*time.Second, tables...)
	e.waitState(0, StateRunning)
	var plan string
	conn, err := e.slaves[0].Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(context.Background(), `EXPLAIN (COSTS OFF) SELECT * FROM public.k_citext WHERE k OPERATOR(public.=) 'x'::public.citext`).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "Index") {
		t.Errorf("a citext key is not found through its index on the slave: %s", plan)
	}
}
