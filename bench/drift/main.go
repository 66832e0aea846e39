// Command drift times the daemon's check for captured tables whose columns
// or key changed (replica.recapture_drifted: every 10 s, and in the
// transaction of a captured table's DDL when goreplica was installed by a
// superuser). The check computes every captured table's column signature,
// so its cost grows with the number of tables.
//
// For each count of captured tables it times the check's query with
// trigger.sql's helpers (PL/pgSQL: each statement's plan kept for the
// session) and with the SQL functions schema version 6 first shipped
// (sql_functions.sql, installed as schema drift_sql: their queries are
// planned again whenever the query calling them starts), each in a new
// session (its first run, plans made) and again in the same session (the
// daemon's case: its session lives on), and replica.recapture_drifted()
// itself. Both variants must find no drift (a check of the frozen copy).
//
// Knobs (environment): TABLES ["100 500 2000"] captured tables (each with
// a primary key and four columns), RUNS [3] repetitions (median).
package main

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
	"github.com/goreplica/goreplica/pgserver"
)

//go:embed sql_functions.sql
var sqlFunctions string

const db = "bench"

func main() { rig.Main("bench/drift", run) }

// variant is one way of computing the signatures: the schema holding
// column_signature.
type variant struct{ name, schema string }

var variants = []variant{{"plpgsql (trigger.sql)", "replica"}, {"sql (version 6 as shipped)", "drift_sql"}}

func run(ctx context.Context) error {
	var k rig.Knobs
	counts := k.Ints("TABLES", []int{100, 500, 2000})
	runs := k.Int("RUNS", 3)
	command := k.Command("./bench/drift")
	triggerSQL, err := rig.TriggerSQL()
	if err != nil {
		return err
	}
	rig.Logf("starting a server")
	s, err := rig.Start(ctx, db, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	m, err := rig.Open(s, db)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := rig.Exec(ctx, m, triggerSQL, sqlFunctions); err != nil {
		return err
	}
	type row struct {
		tables              int
		v                   string
		first, again, check float64 // ms, medians
	}
	var out []row
	have := 0
	for _, n := range counts {
		if n > have {
			rig.Logf("capturing tables %d to %d", have+1, n)
			if err := rig.Exec(ctx, m, fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP
  EXECUTE format('CREATE TABLE d%%s (id int PRIMARY KEY, a text, b int, c timestamptz)', i);
  PERFORM replica.capture(format('d%%s', i)::regclass);
END LOOP; END $$`, have+1, n)); err != nil {
				return err
			}
			have = n
		}
		samples := map[string][3][]float64{}
		for r := 0; r < runs; r++ {
			for _, v := range variants {
				first, again, check, err := measure(ctx, s, v, n)
				if err != nil {
					return err
				}
				x := samples[v.name]
				x[0], x[1], x[2] = append(x[0], first), append(x[1], again), append(x[2], check)
				samples[v.name] = x
				rig.Logf("tables %d, run %d, %s: first %.1f ms, again %.1f ms", n, r+1, v.name, first, again)
			}
		}
		for _, v := range variants {
			x := samples[v.name]
			out = append(out, row{n, v.name, rig.Median(x[0]), rig.Median(x[1]), rig.Median(x[2])})
		}
	}
	rig.Header("the drift check: column signatures of every captured table", command)
	fmt.Printf("# query: the check's (replica.tables whose recorded signature differs from column_signature); first = in a new session, again = its second run there (the daemon's case); median of %d runs\n", runs)
	fmt.Printf("# recapture_drifted() = the whole check as the daemon calls it, its second run in a session (plpgsql only: it calls replica's helpers)\n")
	tw := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tables\thelpers\tfirst ms\tagain ms\tagain us/table\trecapture_drifted() ms\tagain vs plpgsql\t")
	for i, r := range out {
		base := out[i-i%len(variants)].again
		check := "-"
		if r.v == variants[0].name {
			check = fmt.Sprintf("%.1f", r.check)
		}
		fmt.Fprintf(tw, "%d\t%s\t%.1f\t%.1f\t%.0f\t%s\t%.2fx\t\n", r.tables, r.v, r.first, r.again, r.again*1000/float64(r.tables), check, r.again/base)
	}
	return tw.Flush()
}

// measure runs the check's query twice in a new session with variant v's
// helpers, and, for trigger.sql's, replica.recapture_drifted() after them.
func measure(ctx context.Context, s *pgserver.Server, v variant, tables int) (first, again, check float64, err error) {
	c, err := sql.Open("postgres", s.DSN(db))
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close()
	c.SetMaxOpenConns(1)
	if err := c.PingContext(ctx); err != nil {
		return 0, 0, 0, err
	}
	q := fmt.Sprintf(`SELECT count(*) FROM replica.tables
 WHERE EXISTS (SELECT 1 FROM pg_class WHERE oid = relid)
   AND columns IS DISTINCT FROM %s.column_signature(relid)`, v.schema)
	timed := func(q string) (float64, error) {
		t := time.Now()
		var drifted int
		if err := c.QueryRowContext(ctx, q).Scan(&drifted); err != nil {
			return 0, err
		}
		if drifted != 0 {
			return 0, fmt.Errorf("%s: %d of %d tables drifted, want none", v.name, drifted, tables)
		}
		return float64(time.Since(t).Microseconds()) / 1000, nil
	}
	if first, err = timed(q); err != nil {
		return 0, 0, 0, err
	}
	if again, err = timed(q); err != nil {
		return 0, 0, 0, err
	}
	if v.schema != "replica" {
		return first, again, 0, nil
	}
	recap := `SELECT count(*) FROM replica.recapture_drifted()`
	if _, err = timed(recap); err != nil {
		return 0, 0, 0, err
	}
	check, err = timed(recap)
	return first, again, check, err
}
