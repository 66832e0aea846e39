// Command soak runs goreplica under a steady load for a long time and
// samples, every 10 seconds, what must stay flat: the size of the master's
// change log on disk (replica.replica_log with its index and TOAST), its
// dead tuples, the commit-to-visible lag and the daemon's memory.
//
// The master runs with autovacuum at its defaults (the other benchmarks
// turn it off). pgbench -R RATE -T MINUTES*60 with 2 clients updates rows of
// a 100,000-row table at random (one logged change per transaction), and a
// probe inserts a row every 100 ms; the lag of a probe row is the commit
// time of the slave transaction that brought it minus that of its master
// transaction (track_commit_timestamp on both; the servers share a clock).
// `goreplica run` (two_phase, purge every minute) applies throughout.
//
// Reported: one line per sample (minute, log size MB, live and dead tuples
// of the log, autovacuum runs so far, probe lag p50/p99 in the sample,
// daemon RSS), then the lag over the whole run and the log's size from the
// 5th minute to the end. Targets (issue 8): lag p99 < 50 ms, the log's size
// flat from the 5th minute to the 30th.
//
// Knobs (environment): MINUTES [30], RATE [1000] changes/s, ROWS [100000].
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
)

func main() { rig.Main("bench/soak", run) }

type sample struct {
	at               time.Duration
	logMB            float64
	live, dead, vacs int64
	p50, p99         float64
	probes           int
	rssMB            float64
	pending          int64
}

func run(ctx context.Context) error {
	var k rig.Knobs
	minutes := k.Int("MINUTES", 30)
	rate := k.Int("RATE", 1000)
	rows := k.Int("ROWS", 100000)
	command := k.Command("./bench/soak")

	srv, err := rig.StartServers(ctx, "goreplica-soak-",
		map[string]string{"track_commit_timestamp": "on", "autovacuum": "on"},
		map[string]string{"track_commit_timestamp": "on", "max_prepared_transactions": "10"}, "slave")
	if err != nil {
		return err
	}
	defer srv.Close()
	m, err := rig.Open(srv.Master, rig.MasterDB)
	if err != nil {
		return err
	}
	defer m.Close()
	s, err := rig.Open(srv.Slave, "slave")
	if err != nil {
		return err
	}
	defer s.Close()
	schema := fmt.Sprintf(`CREATE TABLE test (id int PRIMARY KEY, t text, n float8);
INSERT INTO test SELECT g, '', 0 FROM generate_series(1, %d) g;
CREATE TABLE probe (id int PRIMARY KEY);`, rows)
	for _, db := range []*sql.DB{m, s} {
		if err := rig.Exec(ctx, db, schema, `VACUUM ANALYZE test`); err != nil {
			return err
		}
	}
	cfg := filepath.Join(srv.Dir, "goreplica.toml")
	text := fmt.Sprintf(`[master]
name = "master"
dsn = %q

[[slave]]
name = "slave"
dsn = %q

[replicate]
tables = ["public.test", "public.probe"]
purge_interval = "1m"
`, srv.Master.DSN(rig.MasterDB), srv.Slave.DSN("slave"))
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return err
	}
	if err := rig.Init(ctx, srv.Bin, cfg); err != nil {
		return err
	}
	script := filepath.Join(srv.Dir, "update.sql")
	if err := os.WriteFile(script, []byte(`\set id random(1, :rows)
UPDATE test SET n = random(), t = random()::text WHERE id = :id;
`), 0o644); err != nil {
		return err
	}
	dm, err := rig.StartDaemon(srv.Bin, cfg, filepath.Join(srv.Dir, "daemon.log"))
	if err != nil {
		return err
	}
	defer dm.Stop()

	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	var loadErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, loadErr = rig.Pgbench{Dir: srv.Dir, Script: "update.sql", DB: rig.MasterDB, Clients: 2,
			Duration: time.Duration(minutes) * time.Minute, Rate: rate, Vars: map[string]string{"rows": strconv.Itoa(rows)}}.Run(lctx, srv.Master)
		stopLoad()
	}()
	var probeErr error
	go func() {
		defer wg.Done()
		probeErr = probe(lctx, m)
	}()
	rig.Logf("soak: %d changes/s for %d minutes, sampling every 10 s", rate, minutes)
	start := time.Now()
	var samples []sample
	lastProbe := 0
	var all []float64
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-lctx.Done():
			done = true
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
		sm := sample{at: time.Since(start)}
		if err := m.QueryRowContext(ctx, `SELECT pg_total_relation_size('replica.replica_log') / 1048576.0,
       coalesce(n_live_tup, 0), coalesce(n_dead_tup, 0), coalesce(autovacuum_count, 0)
  FROM pg_stat_all_tables WHERE relid = 'replica.replica_log'::regclass`).Scan(&sm.logMB, &sm.live, &sm.dead, &sm.vacs); err != nil {
			return err
		}
		if err := m.QueryRowContext(ctx, `SELECT count(*) FROM replica.replica_log
 WHERE NOT pg_visible_in_snapshot(txid, (SELECT acked_snapshot FROM replica.slaves WHERE name = 'slave'))`).Scan(&sm.pending); err != nil {
			return err
		}
		lags, last, err := probeLags(ctx, m, s, lastProbe)
		if err != nil {
			return err
		}
		lastProbe = last
		sm.probes = len(lags)
		sort.Float64s(lags)
		sm.p50, sm.p99 = rig.Percentile(lags, 50), rig.Percentile(lags, 99)
		all = append(all, lags...)
		if u, err := rss(dm.Pid()); err == nil {
			sm.rssMB = u
		}
		samples = append(samples, sm)
		rig.Logf("%5.1f min  log %6.1f MB  live %7d dead %7d  autovacuums %d  pending %6d  lag p50 %5.1f p99 %6.1f ms (%d probes)  daemon RSS %.0f MB",
			sm.at.Minutes(), sm.logMB, sm.live, sm.dead, sm.vacs, sm.pending, sm.p50, sm.p99, sm.probes, sm.rssMB)
	}
	stopLoad()
	wg.Wait()
	if loadErr != nil && ctx.Err() == nil {
		return loadErr
	}
	if probeErr != nil && ctx.Err() == nil {
		return probeErr
	}
	report(command, minutes, rate, samples, all)
	return nil
}

// probe inserts a probe row every 100 ms until ctx ends.
func probe(ctx context.Context, m *sql.DB) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for id := 1; ; id++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := m.ExecContext(ctx, `INSERT INTO probe VALUES ($1)`, id); err != nil && ctx.Err() == nil {
			return err
		}
	}
}

// probeLags returns the visible lag in milliseconds of the probe rows after
// id after that the slave has, and the last such id.
func probeLags(ctx context.Context, m, s *sql.DB, after int) ([]float64, int, error) {
	commits := func(db *sql.DB) (map[int]time.Time, error) {
		rows, err := db.QueryContext(ctx, `SELECT id, pg_xact_commit_timestamp(xmin) FROM probe WHERE id > $1`, after)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		out := map[int]time.Time{}
		for rows.Next() {
			var id int
			var ts time.Time
			if err := rows.Scan(&id, &ts); err != nil {
				return nil, err
			}
			out[id] = ts
		}
		return out, rows.Err()
	}
	onSlave, err := commits(s)
	if err != nil {
		return nil, after, err
	}
	onMaster, err := commits(m)
	if err != nil {
		return nil, after, err
	}
	// Only the probes up to the first one the slave lacks: a later sample
	// takes the rest.
	var lags []float64
	last := after
	for id := after + 1; ; id++ {
		ts, ok := onSlave[id]
		mt, mok := onMaster[id]
		if !ok || !mok {
			break
		}
		lags = append(lags, float64(ts.Sub(mt))/float64(time.Millisecond))
		last = id
	}
	return lags, last, nil
}

// rss returns the current resident memory of process pid in MB.
func rss(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}

func report(command string, minutes, rate int, samples []sample, all []float64) {
	fmt.Println()
	fmt.Printf("# %s\n", command)
	fmt.Printf("# %d changes/s for %d minutes, autovacuum at its defaults; a sample every 10 s\n", rate, minutes)
	fmt.Println("# targets (issue 8): lag p99 < 50 ms; the log's size flat from the 5th minute to the end")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "minute\tlog MB\tlive\tdead\tautovacuums\tpending\tlag p50 ms\tlag p99 ms\tprobes\tdaemon RSS MB\t")
	for _, sm := range samples {
		fmt.Fprintf(tw, "%.1f\t%.1f\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%d\t%.0f\t\n", sm.at.Minutes(), sm.logMB, sm.live, sm.dead, sm.vacs,
			sm.pending, sm.p50, sm.p99, sm.probes, sm.rssMB)
	}
	tw.Flush()
	sort.Float64s(all)
	fmt.Printf("# lag over the run: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d probes)\n",
		rig.Percentile(all, 50), rig.Percentile(all, 99), rig.Percentile(all, 100), len(all))
	var from, to, peak float64
	var rssMin, rssMax float64
	for _, sm := range samples {
		if sm.at >= 5*time.Minute {
			if from == 0 {
				from = sm.logMB
			}
			to = sm.logMB
			peak = max(peak, sm.logMB)
		}
		if rssMin == 0 || sm.rssMB < rssMin {
			rssMin = sm.rssMB
		}
		rssMax = max(rssMax, sm.rssMB)
	}
	fmt.Printf("# log size from the 5th minute: %.1f MB, at the end %.1f MB, peak %.1f MB; daemon RSS %.0f-%.0f MB\n", from, to, peak, rssMin, rssMax)
}
