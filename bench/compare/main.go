// Command compare measures how fast `goreplica compare` reads a table: a
// pgbench_accounts table of SCALE x 100,000 rows (1,000,000 by default),
// created alike by `pgbench -i` on a master and a slave server, replicated
// by a running `goreplica run`, is compared with `goreplica compare` (the
// real binary, timed from its start to its exit) in turn with each chunk
// size of CHUNKS, with the master idle and then under a steady TPC-B load
// (LOAD_TPS transactions a second, which the daemon applies meanwhile).
//
// Beside them, in the same run, the floor: one query per server that
// checksums the whole table at once (the same md5 of every row's text in
// key order, no chunks, no consistent point, unbounded server memory), run
// on both servers at the same time. Reported: median seconds of RUNS runs,
// rows/s, and the time of the master's SHARE lock.
//
// Knobs (environment): SCALE [10], RUNS [3], CHUNKS ["1000 10000 100000"],
// LOAD_TPS [200] (0: no run under load).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
	"github.com/goreplica/goreplica/pgserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/compare: "+err.Error())
		os.Exit(1)
	}
}

// measure is one timed compare.
type measure struct {
	variant string
	chunk   int
	secs    []float64
	lockMs  []float64
}

func run(ctx context.Context) error {
	var k rig.Knobs
	scale := k.Int("SCALE", 10)
	runs := k.Int("RUNS", 3)
	chunks := k.Ints("CHUNKS", []int{1000, 10000, 100000})
	loadTPS := 200
	if v := os.Getenv("LOAD_TPS"); v == "0" {
		loadTPS = 0
		k.String("LOAD_TPS", "0")
	} else {
		loadTPS = k.Int("LOAD_TPS", loadTPS)
	}
	command := k.Command("./bench/compare")
	rows := int64(scale) * 100000

	dir, err := os.MkdirTemp("", "goreplica-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rig.Logf("building goreplica")
	bin, err := rig.Build(ctx, dir)
	if err != nil {
		return err
	}
	rig.Logf("starting master and slave servers (durable)")
	master, err := rig.Start(ctx, rig.MasterDB, nil)
	if err != nil {
		return err
	}
	defer master.Close()
	slave, err := rig.Start(ctx, rig.MasterDB, map[string]string{"max_prepared_transactions": "10"})
	if err != nil {
		return err
	}
	defer slave.Close()
	for _, s := range []*pgserver.Server{master, slave} {
		rig.Logf("pgbench -i -s %d on %s", scale, s.DataDir)
		if out, err := s.Command(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), rig.MasterDB).CombinedOutput(); err != nil {
			return fmt.Errorf("pgbench -i: %w\n%s", err, out)
		}
	}
	cfg := filepath.Join(dir, "goreplica.toml")
	text := fmt.Sprintf(`[master]
name = "master"
dsn = %q

[[slave]]
name = "slave"
dsn = %q

[replicate]
tables = ["public.pgbench_accounts"]
poll_interval = "1s"
`, master.DSN(rig.MasterDB), slave.DSN(rig.MasterDB))
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return err
	}
	if err := rig.Init(ctx, bin, cfg); err != nil {
		return err
	}
	d, err := rig.StartDaemon(bin, cfg, filepath.Join(dir, "daemon.log"))
	if err != nil {
		return err
	}
	defer d.Stop()
	sdb, err := rig.Open(slave, rig.MasterDB)
	if err != nil {
		return err
	}
	defer sdb.Close()
	mdb, err := rig.Open(master, rig.MasterDB)
	if err != nil {
		return err
	}
	defer mdb.Close()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = rig.WaitContext(wctx, 100*time.Millisecond, func() (bool, error) {
		var n int
		err := sdb.QueryRowContext(wctx, `SELECT count(*) FROM replica.position`).Scan(&n)
		return n > 0, err
	})
	cancel()
	if err != nil {
		return fmt.Errorf("wait for the daemon's first batch: %w\n%s", err, d.Tail(20))
	}
	if err := rig.Exec(ctx, mdb, "VACUUM ANALYZE pgbench_accounts", "CHECKPOINT"); err != nil {
		return err
	}
	if err := rig.Exec(ctx, sdb, "VACUUM ANALYZE pgbench_accounts", "CHECKPOINT"); err != nil {
		return err
	}

	var results []*measure
	floor := &measure{variant: "floor: one whole-table query per server"}
	results = append(results, floor)
	idle := map[int]*measure{}
	loaded := map[int]*measure{}
	for _, c := range chunks {
		idle[c] = &measure{variant: "goreplica compare, master idle", chunk: c}
		results = append(results, idle[c])
	}
	if loadTPS > 0 {
		for _, c := range chunks {
			loaded[c] = &measure{variant: fmt.Sprintf("goreplica compare, master at %d TPC-B tps", loadTPS), chunk: c}
			results = append(results, loaded[c])
		}
	}
	// One warm-up pass reads the table into both servers' caches.
	rig.Logf("warm-up")
	if _, err := floorRun(ctx, master, slave); err != nil {
		return err
	}
	for r := range runs {
		rig.Logf("round %d of %d", r+1, runs)
		secs, err := floorRun(ctx, master, slave)
		if err != nil {
			return err
		}
		floor.secs = append(floor.secs, secs)
		for _, c := range chunks {
			secs, lock, err := compareRun(ctx, bin, cfg, c)
			if err != nil {
				return err
			}
			idle[c].secs = append(idle[c].secs, secs)
			idle[c].lockMs = append(idle[c].lockMs, lock)
		}
		if loadTPS == 0 {
			continue
		}
		lctx, stopLoad := context.WithCancel(ctx)
		load := master.Command(lctx, "pgbench", "-n", "-b", "tpcb-like", "-c", "2", "-j", "2", "-R", strconv.Itoa(loadTPS), "-T", "3600", rig.MasterDB)
		if err := load.Start(); err != nil {
			stopLoad()
			return fmt.Errorf("start pgbench load: %w", err)
		}
		time.Sleep(2 * time.Second)
		for _, c := range chunks {
			secs, lock, err := compareRun(ctx, bin, cfg, c)
			if err != nil {
				stopLoad()
				_ = load.Wait()
				return err
			}
			loaded[c].secs = append(loaded[c].secs, secs)
			loaded[c].lockMs = append(loaded[c].lockMs, lock)
		}
		stopLoad()
		_ = load.Wait()
	}

	rig.Header(fmt.Sprintf("compare rate: pgbench_accounts, %d rows (SCALE=%d), one slave", rows, scale), command)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "variant\tchunk rows\tmedian s\trows/s\tvs floor\tlock ms (median)\truns s\t")
	fl := rig.Median(floor.secs)
	for _, m := range results {
		med := rig.Median(m.secs)
		chunk, lock := "-", "-"
		if m.chunk > 0 {
			chunk = strconv.Itoa(m.chunk)
			lock = fmt.Sprintf("%.1f", rig.Median(m.lockMs))
		}
		var each []string
		for _, s := range m.secs {
			each = append(each, fmt.Sprintf("%.2f", s))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.0f\t%.2fx\t%s\t%s\t\n", m.variant, chunk, med, float64(rows)/med, med/fl, lock, strings.Join(each, " "))
	}
	return tw.Flush()
}

// floorQuery checksums the whole table in one query.
const floorQuery = `SELECT count(*), md5(string_agg(ROW(aid, bid, abalance, filler)::text, E'\n' ORDER BY aid)) FROM pgbench_accounts`

// floorRun runs floorQuery on both servers at once and returns the time
// until both have answered.
func floorRun(ctx context.Context, servers ...*pgserver.Server) (float64, error) {
	began := time.Now()
	errs := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			out, err := s.Command(ctx, "psql", "-X", "-qAt", "-c", floorQuery, rig.MasterDB).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("psql: %w\n%s", err, out)
			}
			errs <- err
		}()
	}
	for range servers {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	return time.Since(began).Seconds(), nil
}

// compareRun runs goreplica compare and returns its time and its lock's.
func compareRun(ctx context.Context, bin, cfg string, chunk int) (float64, float64, error) {
	began := time.Now()
	cmd := exec.CommandContext(ctx, bin, "compare", "-c", cfg, "--json", "--quiet", "--chunk", strconv.Itoa(chunk))
	out, err := cmd.Output()
	secs := time.Since(began).Seconds()
	if err != nil {
		return 0, 0, fmt.Errorf("goreplica compare --chunk %d: %w\n%s", chunk, err, out)
	}
	var res struct {
		Equal  bool `json:"equal"`
		Tables []struct {
			LockMs     float64 `json:"lock_ms"`
			MasterRows int64   `json:"master_rows"`
		} `json:"tables"`
	}
	if err := json.Unmarshal(out, &res); err != nil || !res.Equal || len(res.Tables) != 1 {
		return 0, 0, fmt.Errorf("goreplica compare --chunk %d: not equal or unreadable (%v):\n%s", chunk, err, out)
	}
	return secs, res.Tables[0].LockMs, nil
}
