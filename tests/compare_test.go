package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// compareJSON is what 'goreplica compare --json' prints.
type compareJSON struct {
	Equal  bool   `json:"equal"`
	Error  string `json:"error"`
	Tables []struct {
		Slave      string `json:"slave"`
		Table      string `json:"table"`
		Equal      bool   `json:"equal"`
		MasterRows int64  `json:"master_rows"`
		SlaveRows  int64  `json:"slave_rows"`
		DiffRanges int    `json:"differing_ranges"`
		Error      string `json:"error"`
	} `json:"tables"`
}

func decodeCompare(t *testing.T, r result) compareJSON {
	t.Helper()
	var c compareJSON
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatalf("decode compare --json: %v\n%s", err, r)
	}
	return c
}

// expectCode runs a verb and fails unless it exits with code.
func expectCode(t *testing.T, code int, args ...string) result {
	t.Helper()
	r := goreplica(t, nil, args...)
	if r.code != code {
		t.Fatalf("expected exit %d\n%s", code, r)
	}
	return r
}

// compare and repair as a user drives them: ok and exit 0 when equal,
// DIFFERS and exit 1 after a change by hand on a slave, a repair script
// that psql can run, repair --apply, --json for programs, exit 3 when a
// table cannot be compared (events pending, no daemon) and 2 for a bad
// command line.
func TestCompareAndRepairVerbs(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	ms, ss := servers(t)
	master := newDB(t, ms, "cmp_master")
	slaves := []database{newDB(t, ss, "cmp_a"), newDB(t, ss, "cmp_b")}
	execAll(t, `CREATE TABLE items (id int PRIMARY KEY, name text, price numeric); CREATE TABLE "Odd Name" (k text PRIMARY KEY, v jsonb)`,
		append([]database{master}, slaves...)...)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: master.dsn()},
		slaves: []node{{name: "a", dsn: slaves[0].dsn()}, {name: "b", dsn: slaves[1].dsn(), twoPhase: boolp(false)}},
	})
	mustRun(t, nil, "init", "-c", cfg)
	d := startDaemon(t, cfg)
	execAll(t, `INSERT INTO items SELECT i, 'item ' || i, i / 3.0 FROM generate_series(1, 2000) i;
		INSERT INTO "Odd Name" VALUES ('a''b', '{"x": [1, 2]}'), ('c', 'null')`, master)
	waitConverged(ctx, t, master, slaves, "items", "Odd Name")

	r := expectCode(t, 0, "compare", "-c", cfg)
	for _, want := range []string{"a  public.items", "ok  2000 rows", `b  public."Odd Name"`} {
		if !strings.Contains(strings.Join(strings.Fields(r.stdout), "  "), strings.Join(strings.Fields(want), "  ")) {
			t.Errorf("compare output lacks %q\n%s", want, r)
		}
	}

	execAll(t, `UPDATE items SET price = 0 WHERE id = 77; DELETE FROM items WHERE id = 1999; INSERT INTO "Odd Name" VALUES ('extra', '{}')`, slaves[1])
	r = expectCode(t, 1, "compare", "-c", cfg, "--chunk", "500")
	if !strings.Contains(r.stdout, "DIFFERS") || !strings.Contains(r.stdout, "goreplica repair --slave b public.items") {
		t.Errorf("compare does not say what differs and what to run\n%s", r)
	}
	c := decodeCompare(t, expectCode(t, 1, "compare", "-c", cfg, "--json", "--slave", "b", "items"))
	if c.Equal || len(c.Tables) != 1 || c.Tables[0].Table != "public.items" || c.Tables[0].MasterRows != 2000 ||
		c.Tables[0].SlaveRows != 1999 || c.Tables[0].DiffRanges != 1 {
		t.Errorf("compare --json --slave b items: %+v", c)
	}
	c = decodeCompare(t, expectCode(t, 0, "compare", "-c", cfg, "--json", "--slave", "a"))
	if !c.Equal || len(c.Tables) != 2 {
		t.Errorf("compare --json --slave a: %+v", c)
	}

	// A printed repair is a script psql runs as it is.
	r = expectCode(t, 1, "repair", "-c", cfg, "--slave", "b", "items")
	for _, want := range []string{"BEGIN;\n", "SET LOCAL DateStyle = 'ISO, YMD';\n",
		"UPDATE ONLY public.items SET name = 'item 77', price = '25.6666666666666667' WHERE id OPERATOR(pg_catalog.=) '77'::integer;\n",
		"INSERT INTO public.items (id, name, price) VALUES ('1999', 'item 1999', '666.3333333333333333') ON CONFLICT (id) DO NOTHING;\n",
		"COMMIT;\n-- 1 missing on the slave, 1 different, 0 extra"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("repair script lacks %q\n%s", want, r)
		}
	}
	execAll(t, r.stdout, slaves[1])
	r = expectCode(t, 0, "repair", "-c", cfg, "--slave", "b", `"Odd Name"`, "--apply")
	if !strings.Contains(r.stdout, `slave b, table public."Odd Name": repaired (0 missing on the slave, 0 different, 1 extra)`) {
		t.Errorf("repair --apply\n%s", r)
	}
	expectCode(t, 0, "compare", "-c", cfg)
	r = expectCode(t, 0, "repair", "-c", cfg, "--slave", "b", "items", "--json")
	var rep struct {
		Missing, Different, Extra int64
		Statements                []any `json:"statements"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Missing+rep.Different+rep.Extra != 0 || len(rep.Statements) != 0 {
		t.Errorf("repair --json of an equal table: %+v %v\n%s", rep, err, r)
	}

	// No daemon, a change pending: could not compare, and why.
	d.stop()
	execAll(t, `INSERT INTO items VALUES (5000, 'late', 1)`, master)
	r = expectCode(t, 3, "compare", "-c", cfg, "items", "--slave", "a")
	if !strings.Contains(r.stdout, "no daemon applies to the slave") || !strings.Contains(r.stdout, "ERROR") {
		t.Errorf("compare with a change pending and no daemon\n%s", r)
	}
	r = expectCode(t, 3, "compare", "-c", cfg, "nosuch")
	if !strings.Contains(r.stderr, "not a replicated table: nosuch") {
		t.Errorf("compare of an unknown table\n%s", r)
	}
	expectCode(t, 2, "repair", "-c", cfg, "items")
	expectCode(t, 2, "compare", "-c", cfg, "--slave", "nosuch")
}
