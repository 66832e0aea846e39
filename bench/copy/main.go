// Command copy measures goreplica's online initial copy of a table against
// `pg_dump -t T | psql` of the same table, side by side in one run: a
// pgbench_accounts table of ROWS rows (1,000,000 by default, pgbench's scale
// 10) on a master server, copied into an empty database of a slave server
// (goreplica creating the table, as pg_dump's script does). Runs alternate
// between the two, each into a fresh database.
//
// goreplica is timed from `goreplica init` (which creates the table on the
// slave and marks it for copy) until `goreplica wait` says every table is
// ok, with `goreplica run` started right after init: what a user waits for.
// The copy alone (its own figure, as the daemon logs it) is shown beside.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
	"github.com/goreplica/goreplica/pgserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench/copy:", err)
		os.Exit(1)
	}
}

const masterDB = "bench"

func run(ctx context.Context) error {
	var k rig.Knobs
	rows := k.Int("ROWS", 1000000)
	runs := k.Int("RUNS", 3)
	rig.Header("initial copy: goreplica init + run + wait against pg_dump -t | psql", k.Command("./bench/copy"))

	dir, err := os.MkdirTemp("", "goreplica-bench-copy")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := rig.Build(ctx, dir)
	if err != nil {
		return err
	}
	master, err := rig.Start(ctx, masterDB, nil)
	if err != nil {
		return err
	}
	defer master.Close()
	slave, err := rig.Start(ctx, "", map[string]string{"max_prepared_transactions": "10"})
	if err != nil {
		return err
	}
	defer slave.Close()
	mdb, err := rig.Open(master, masterDB)
	if err != nil {
		return err
	}
	defer mdb.Close()
	rig.Logf("filling pgbench_accounts with %d rows", rows)
	if err := rig.Exec(ctx, mdb,
		`CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor = 100)`,
		fmt.Sprintf(`INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, %d) g`, rows),
		`ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)`,
		`VACUUM ANALYZE pgbench_accounts`); err != nil {
		return err
	}
	var size int64
	if err := mdb.QueryRowContext(ctx, `SELECT pg_table_size('pgbench_accounts')`).Scan(&size); err != nil {
		return err
	}

	times := map[string][]float64{}
	copyOnly := []float64{}
	variants := []string{"pg_dump -t \\| psql", "goreplica"}
	for i := 0; i < runs; i++ {
		for j := range variants {
			v := variants[(i+j)%len(variants)]
			db := fmt.Sprintf("copy_%d_%d", i, j)
			if err := slave.CreateDatabase(ctx, db); err != nil {
				return err
			}
			if err := rig.Exec(ctx, mdb, `CHECKPOINT`); err != nil {
				return err
			}
			var secs, copySecs float64
			if v == "goreplica" {
				secs, copySecs, err = goreplicaCopy(ctx, bin, dir, master, slave, db)
				copyOnly = append(copyOnly, copySecs)
			} else {
				secs, err = dumpRestore(ctx, master, slave, db)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", v, err)
			}
			if err := checkCount(ctx, slave, db, rows); err != nil {
				return fmt.Errorf("%s: %w", v, err)
			}
			rig.Logf("run %d %s: %.2fs", i+1, v, secs)
			times[v] = append(times[v], secs)
		}
	}
	dump := rig.Median(times["pg_dump -t \\| psql"])
	fmt.Printf("\n%d rows, table %.0f MB on the master; median of %d runs\n\n", rows, float64(size)/(1<<20), runs)
	fmt.Println("| variant | seconds | rows/s | MB/s | time / pg_dump's | runs |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, v := range variants {
		m := rig.Median(times[v])
		fmt.Printf("| %s | %.2f | %.0f | %.1f | %.2fx | %s |\n", v, m, float64(rows)/m, float64(size)/(1<<20)/m, m/dump, list(times[v]))
	}
	m := rig.Median(copyOnly)
	fmt.Printf("| goreplica, the copy alone | %.2f | %.0f | %.1f | %.2fx | %s |\n", m, float64(rows)/m, float64(size)/(1<<20)/m, m/dump, list(copyOnly))
	return nil
}

func list(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strings.Join(s, " ")
}

// dumpRestore runs pg_dump -t pgbench_accounts | psql into db.
func dumpRestore(ctx context.Context, master, slave *pgserver.Server, db string) (float64, error) {
	script := fmt.Sprintf("set -o pipefail; %q -d %q -t public.pgbench_accounts | %q -q -v ON_ERROR_STOP=1 -d %q >/dev/null",
		filepath.Join(master.BinDir, "pg_dump"), master.DSN(masterDB), filepath.Join(slave.BinDir, "psql"), slave.DSN(db))
	began := time.Now()
	out, err := exec.CommandContext(ctx, "bash", "-c", script).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%w\n%s", err, out)
	}
	return time.Since(began).Seconds(), nil
}

var copiedRe = regexp.MustCompile(`table copied: catching up.* seconds=([0-9.]+)`)

// goreplicaCopy runs init, run and wait into db and returns the time they
// took, and the copy's own time from the daemon's log.
func goreplicaCopy(ctx context.Context, bin, dir string, master, slave *pgserver.Server, db string) (float64, float64, error) {
	cfg := filepath.Join(dir, db+".toml")
	text := fmt.Sprintf(`[master]
name = "master"
dsn = %q

[[slave]]
name = "slave"
dsn = %q

[replicate]
tables = ["public.pgbench_accounts"]
poll_interval = "1s"
copy = "truncate"
create = true
`, master.DSN(masterDB), slave.DSN(db))
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return 0, 0, err
	}
	began := time.Now()
	if err := rig.Init(ctx, bin, cfg); err != nil {
		return 0, 0, err
	}
	d, err := rig.StartDaemon(bin, cfg, filepath.Join(dir, db+".log"))
	if err != nil {
		return 0, 0, err
	}
	defer d.Stop()
	out, err := exec.CommandContext(ctx, bin, "wait", "-c", cfg, "--timeout", "30m").CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("goreplica wait: %w\n%s\n%s", err, out, d.Tail(3000))
	}
	secs := time.Since(began).Seconds()
	// The un-registration keeps the master's log free for the next run.
	_ = d.Stop()
	if out, err := exec.CommandContext(ctx, bin, "uninstall", "--yes", "-c", cfg).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("goreplica uninstall: %w\n%s", err, out)
	}
	var copySecs float64
	if m := copiedRe.FindStringSubmatch(d.Tail(1 << 20)); m != nil {
		copySecs, _ = strconv.ParseFloat(m[1], 64)
	}
	return secs, copySecs, nil
}

func checkCount(ctx context.Context, slave *pgserver.Server, db string, rows int) error {
	sdb, err := rig.Open(slave, db)
	if err != nil {
		return err
	}
	defer sdb.Close()
	var n int
	if err := sdb.QueryRowContext(ctx, `SELECT count(*) FROM pgbench_accounts`).Scan(&n); err != nil {
		return err
	}
	if n != rows {
		return fmt.Errorf("slave database %s holds %d rows, want %d", db, n, rows)
	}
	return nil
}
