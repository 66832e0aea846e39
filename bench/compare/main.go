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
// With the master otherwise idle, the CPU time each server spent (its
// postmaster, its running processes and those it reaped meanwhile, from
// /proc) is read too: rows per CPU second of the busier server is what the
// rate would be with a core to each server, whatever else the machine runs.
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
	// cpu is the CPU time the busier server spent (master or slave, all
	// its processes), for the runs with the master otherwise idle: a
	// figure the machine's other load hardly moves.
	cpu []float64
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
		var secs float64
		cpu, err := busierCPU(func() error {
			var err error
			secs, err = floorRun(ctx, master, slave)
			return err
		}, master, slave)
		if err != nil {
			return err
		}
		floor.secs = append(floor.secs, secs)
		floor.cpu = append(floor.cpu, cpu)
		for _, c := range chunks {
			var secs, lock float64
			cpu, err := busierCPU(func() error {
				var err error
				secs, lock, err = compareRun(ctx, bin, cfg, c)
				return err
			}, master, slave)
			if err != nil {
				return err
			}
			idle[c].secs = append(idle[c].secs, secs)
			idle[c].lockMs = append(idle[c].lockMs, lock)
			idle[c].cpu = append(idle[c].cpu, cpu)
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
	fmt.Fprintln(tw, "variant\tchunk rows\tmedian s\trows/s\tvs floor\tlock ms (median)\tCPU s, busier server\trows per CPU s\truns s\t")
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
		cpu, perCPU := "-", "-"
		if len(m.cpu) > 0 {
			c := rig.Median(m.cpu)
			cpu, perCPU = fmt.Sprintf("%.2f", c), fmt.Sprintf("%.0f", float64(rows)/c)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.0f\t%.2fx\t%s\t%s\t%s\t%s\t\n", m.variant, chunk, med, float64(rows)/med, med/fl, lock, cpu, perCPU, strings.Join(each, " "))
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

// busierCPU runs f and returns the CPU time the busier of the servers
// spent meanwhile.
func busierCPU(f func() error, servers ...*pgserver.Server) (float64, error) {
	before := make([]float64, len(servers))
	for i, s := range servers {
		c, err := serverCPU(s)
		if err != nil {
			return 0, err
		}
		before[i] = c
	}
	if err := f(); err != nil {
		return 0, err
	}
	// The postmaster counts an ended backend's time once it has reaped it.
	time.Sleep(200 * time.Millisecond)
	most := 0.0
	for i, s := range servers {
		c, err := serverCPU(s)
		if err != nil {
			return 0, err
		}
		most = max(most, c-before[i])
	}
	return most, nil
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat times.
const clockTicks = 100

// serverCPU is the CPU time, in seconds, of a server's postmaster, of its
// ended children (which it has reaped) and of its running children.
func serverCPU(s *pgserver.Server) (float64, error) {
	b, err := os.ReadFile(filepath.Join(s.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid: %w", err)
	}
	_, total, err := procTimes(pm, true)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		parent, t, err := procTimes(pid, false)
		if err == nil && parent == pm {
			total += t
		}
	}
	return total / clockTicks, nil
}

// procTimes reads a process's parent and its user and system time in
// ticks, with its reaped children's when children is set.
func procTimes(pid int, children bool) (int, float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, ppid 4, utime 14, stime 15, cutime 16, cstime 17.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	var t float64
	last := 12
	if children {
		last = 14
	}
	for _, x := range f[11 : last+1] {
		v, _ := strconv.ParseFloat(x, 64)
		t += v
	}
	return ppid, t, nil
}
