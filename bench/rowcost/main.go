// Command rowcost is a diagnostic companion of bench/trigger and
// bench/apply: it measures CPU cost per row inside one backend, where
// pgbench figures carry the noise of commits, round trips and neighbours.
//
// Trigger: one statement changes N rows of table test (INSERT ... SELECT
// generate_series, then UPDATE of every row), so the log trigger fires N
// times in one transaction; microseconds per row over "none" is the
// trigger's own cost. Variants: goreplica's generated trigger as is (no
// SET clause: names schema-qualified, output settings checked and set only
// where the session's would print otherwise), then with the SET clauses
// schema version 4 gave it (search_path and, for table test's float8 and
// timestamptz, the four output settings), with SET search_path only, and
// PgQ's sqltriga when installed.
//
// Apply: the N logged INSERT statements are applied to an empty copy of the
// table as goreplica's daemon does (replica.apply over chunks of 2000), as
// multi-row INSERTs of 2000 VALUES lists, as a per-row INSERT with a cached
// plan, and as one INSERT ... SELECT (the floor).
//
// Every figure is the minimum over RUNS interleaved repetitions (the least
// disturbed), with the median beside it. Knobs: ROWS [50000], RUNS [5].
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/rowcost: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var k rig.Knobs
	n := k.Int("ROWS", 50000)
	runs := k.Int("RUNS", 5)
	command := k.Command("./bench/rowcost")
	triggerSQL, err := rig.TriggerSQL()
	if err != nil {
		return err
	}
	s, err := rig.Start(ctx, "bench", nil)
	if err != nil {
		return err
	}
	defer s.Close()
	db, err := rig.Open(s, "bench")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := rig.Exec(ctx, db, rig.TestTable, triggerSQL,
		`CREATE TABLE dst (id int PRIMARY KEY, t text, n float8, f timestamptz, b bool)`,
		`INSERT INTO replica.slaves (name, acked_snapshot, waiting) VALUES ('bench', pg_current_snapshot(), false)`); err != nil {
		return err
	}
	var fn string
	if err := db.QueryRowContext(ctx, `SELECT replica.capture('test')::text, format('replica.%I()', 'log_' || 'test'::regclass::oid)`).Scan(new(string), &fn); err != nil {
		return err
	}
	capture := `SELECT replica.capture('test')`
	variants := []struct {
		name string
		sql  []string
	}{
		{"none", nil},
		{"goreplica", []string{capture}},
		{"goreplica + SET clauses (version 4)", []string{capture, `ALTER FUNCTION ` + fn + ` SET search_path = pg_catalog, pg_temp`,
			`ALTER FUNCTION ` + fn + ` SET DateStyle = 'ISO, YMD'`, `ALTER FUNCTION ` + fn + ` SET IntervalStyle = 'postgres'`,
			`ALTER FUNCTION ` + fn + ` SET extra_float_digits = 3`, `ALTER FUNCTION ` + fn + ` SET lc_monetary = 'C'`}},
		{"goreplica + SET search_path", []string{capture, `ALTER FUNCTION ` + fn + ` SET search_path = pg_catalog, pg_temp`}},
	}
	pgq := rig.Exec(ctx, db, `CREATE EXTENSION pgq`, `SELECT pgq.create_queue('bench')`) == nil
	if pgq {
		variants = append(variants, struct {
			name string
			sql  []string
		}{"pgq_sqltriga", []string{`CREATE TRIGGER bench_pgq AFTER INSERT OR UPDATE OR DELETE ON test FOR EACH ROW EXECUTE FUNCTION pgq.sqltriga('bench')`}})
	}
	insert := fmt.Sprintf(`INSERT INTO test (t, n, f, b) SELECT random()::text, random(), now(), true FROM generate_series(1, %d)`, n)
	trig := map[string][]float64{}
	for rep := 1; rep <= runs; rep++ {
		rig.Logf("trigger: repetition %d of %d", rep, runs)
		for _, v := range variants {
			for _, wl := range []string{"insert", "update"} {
				stmts := []string{`DROP TRIGGER IF EXISTS bench_pgq ON test`, `SELECT replica.uncapture('test'::regclass::oid)`, `TRUNCATE test RESTART IDENTITY`}
				if wl == "update" {
					stmts = append(stmts, insert)
				}
				stmts = append(stmts, `TRUNCATE replica.replica_log`, `VACUUM ANALYZE test`)
				if err := rig.Exec(ctx, db, append(stmts, v.sql...)...); err != nil {
					return fmt.Errorf("%s: %w", v.name, err)
				}
				q := insert
				if wl == "update" {
					q = `UPDATE test SET n = random(), t = random()::text`
				}
				d, err := timed(ctx, db, q)
				if err != nil {
					return fmt.Errorf("%s: %w", v.name, err)
				}
				trig[wl+"/"+v.name] = append(trig[wl+"/"+v.name], d/float64(n))
			}
		}
	}

	// Apply: the statements goreplica logged for n inserted rows, retargeted
	// to table dst.
	if err := rig.Exec(ctx, db, `SELECT replica.uncapture('test'::regclass::oid)`, `DROP TRIGGER IF EXISTS bench_pgq ON test`,
		`TRUNCATE test RESTART IDENTITY`, `TRUNCATE replica.replica_log`, capture, insert,
		`CREATE TABLE stmts AS SELECT row_number() OVER (ORDER BY lsn) AS i, replace(sql, 'public.test', 'public.dst') AS sql FROM replica.replica_log`,
		`CREATE INDEX ON stmts (i)`, `ANALYZE stmts`); err != nil {
		return err
	}
	chunks := (n + 1999) / 2000
	applies := []struct{ name, sql string }{
		{"replica.apply, chunks of 2000 (the daemon's way)", fmt.Sprintf(`DO $$ BEGIN
  FOR k IN 0..%d LOOP
    PERFORM replica.apply(array_fill(NULL::text, ARRAY[2000]), array_fill('I'::"char", ARRAY[2000]),
      (SELECT array_agg(sql ORDER BY i) FROM stmts WHERE i > k * 2000 AND i <= (k + 1) * 2000), array_fill(1, ARRAY[2000]));
  END LOOP; END $$`, chunks-1)},
		{"multi-row INSERT, 2000 VALUES lists each", fmt.Sprintf(`DO $$ BEGIN
  FOR k IN 0..%d LOOP
    EXECUTE 'INSERT INTO public.dst (id, t, n, f, b) VALUES '
      || (SELECT string_agg(substr(sql, strpos(sql, 'VALUES (') + 7, length(sql) - strpos(sql, 'VALUES (') - 6 - length(' ON CONFLICT (id) DO NOTHING')), ', ' ORDER BY i)
            FROM stmts WHERE i > k * 2000 AND i <= (k + 1) * 2000)
      || ' ON CONFLICT DO NOTHING';
  END LOOP; END $$`, chunks-1)},
		{"per-row INSERT with a cached plan", `DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT * FROM test LOOP
    INSERT INTO dst VALUES (r.id, r.t, r.n, r.f, r.b) ON CONFLICT DO NOTHING;
  END LOOP; END $$`},
		{"INSERT ... SELECT (floor)", `INSERT INTO dst SELECT id, t, n, f, b FROM test`},
	}
	apply := map[string][]float64{}
	for rep := 1; rep <= runs; rep++ {
		rig.Logf("apply: repetition %d of %d", rep, runs)
		for _, a := range applies {
			if err := rig.Exec(ctx, db, `TRUNCATE dst`, `CHECKPOINT`); err != nil {
				return err
			}
			d, err := timed(ctx, db, a.sql)
			if err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
			var got int
			if err := db.QueryRowContext(ctx, `SELECT count(*) FROM dst`).Scan(&got); err != nil {
				return err
			}
			if got != n {
				return fmt.Errorf("%s: %d rows applied, want %d", a.name, got, n)
			}
			apply[a.name] = append(apply[a.name], d/float64(n))
		}
	}

	fmt.Println()
	rig.Header("per-row CPU cost inside one backend (minimum of runs, least disturbed; median beside it)", command)
	fmt.Printf("# %d rows per statement, %d runs\n", n, runs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\ttrigger\tmin us/row\tmedian us/row\ttrigger's own us/row\t")
	for _, wl := range []string{"insert", "update"} {
		base := minOf(trig[wl+"/none"])
		for _, v := range variants {
			xs := trig[wl+"/"+v.name]
			fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%.2f\t\n", wl, v.name, minOf(xs), rig.Median(xs), minOf(xs)-base)
		}
	}
	tw.Flush()
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "apply of logged INSERTs\tmin us/row\tmedian us/row\tbest rows/s\t")
	for _, a := range applies {
		xs := apply[a.name]
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.0f\t\n", a.name, minOf(xs), rig.Median(xs), 1e6/minOf(xs))
	}
	tw.Flush()
	return nil
}

// timed runs q and returns how long it took, in microseconds.
func timed(ctx context.Context, db *sql.DB, q string) (float64, error) {
	t := time.Now()
	if _, err := db.ExecContext(ctx, q); err != nil {
		return 0, err
	}
	return float64(time.Since(t)) / float64(time.Microsecond), nil
}

func minOf(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[0]
}
