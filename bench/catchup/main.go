// Command catchup measures how the drain rate of a backlog changes with its
// size: a pgbench workload runs on the master while nothing consumes it,
// then each consumer is started in turn and timed from its start until the
// slave holds a marker row written after the backlog:
//
//	goreplica   `goreplica run` with two_phase = true (default bounds of a
//	            slave transaction: a backlog is applied in sub-batches)
//	goreplica_whole  the same with unbounded slave transactions
//	            (batch_events and batch_bytes past any backlog): a whole
//	            backlog in one slave transaction, as before sub-batches
//	native      a native logical replication subscription, enabled
//
// Workloads: tpcb, pgbench's TPC-B-like script (three hot-spot updates, a
// history insert per transaction; pgbench_history is given a key, which
// goreplica needs), hot, updates of 10 rows only, update, single-row
// updates of pgbench_accounts by random key, and delete, single-row
// deletes of rows written (and drained, untimed) before the burst. Sizes are numbers of
// transactions; the target (DESIGN.md): the rate flat within 1.3x from the
// smallest to the largest backlog, and >= native's in the same run.
//
// Knobs (environment): SIZES [10000,40000,160000], WORKLOADS [tpcb,hot,update,delete],
// CLIENTS [4] pgbench clients for the burst, SCALE [1] pgbench scale,
// WHOLE_MAX [40000] the largest backlog goreplica_whole is timed on (its
// time grows with the square of a hot-row backlog), LOG_DIR [] a directory
// that keeps the daemons' logs (with GOREPLICA_LOG_LEVEL=debug they time
// each batch: the master's reads, the slave's apply, the commit), PGSS [0]
// 1 loads pg_stat_statements in both servers and prints, after each
// goreplica drain, the statements that took the most time on each.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lib/pq"

	"github.com/goreplica/goreplica/bench/internal/rig"
	"github.com/goreplica/goreplica/pgserver"
)

const (
	consumerGoreplica = "goreplica"
	consumerWhole     = "goreplica_whole"
	consumerNative    = "native"
)

// goreplicaConsumers are the goreplica consumers and the [replicate] lines
// that set their bounds.
var goreplicaConsumers = map[string]string{
	consumerGoreplica: "",
	consumerWhole:     "batch_events = 1000000000\nbatch_bytes = \"1000GB\"\n",
}

// scripts of the workloads; :scale is pgbench's.
var scripts = map[string]string{
	"tpcb": `\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
`,
	"hot": `\set id random(1, 10)
UPDATE hot SET n = n + 1, t = random()::text WHERE id = :id;
`,
	"update": `\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
`,
	// Each transaction deletes a row of its own: del holds the rows the
	// burst deletes, written (and drained by every consumer) before it.
	"delete": `SELECT nextval('del_seq') AS id \gset
DELETE FROM del WHERE id = :id;
`,
}

type drain struct {
	workload, consumer string
	size               int
	secs, rate         float64
	rssKB              int64
	start              time.Time
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/catchup: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var k rig.Knobs
	var sizes []int
	for _, s := range strings.Split(k.String("SIZES", "10000,40000,160000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("SIZES: %w", err)
		}
		sizes = append(sizes, n)
	}
	workloads := strings.Split(k.String("WORKLOADS", "tpcb,hot,update,delete"), ",")
	clients := k.Int("CLIENTS", 4)
	scale := k.Int("SCALE", 1)
	wholeMax := k.Int("WHOLE_MAX", 40000)
	logDir := k.String("LOG_DIR", "")
	pgss := k.Int("PGSS", 0) == 1
	command := k.Command("./bench/catchup")

	dir, err := os.MkdirTemp("", "goreplica-catchup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if logDir == "" {
		logDir = dir
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	for name, text := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name+".sql"), []byte(text), 0o644); err != nil {
			return err
		}
	}
	rig.Logf("building goreplica")
	bin, err := rig.Build(ctx, dir)
	if err != nil {
		return err
	}
	rig.Logf("starting master and slave servers (durable)")
	masterSettings := map[string]string{"wal_level": "logical", "max_wal_senders": "10", "max_replication_slots": "10"}
	slaveSettings := map[string]string{"max_prepared_transactions": "10", "wal_retrieve_retry_interval": "100ms"}
	if pgss {
		for _, m := range []map[string]string{masterSettings, slaveSettings} {
			m["shared_preload_libraries"] = "pg_stat_statements"
			m["pg_stat_statements.track"] = "all"
		}
	}
	master, err := rig.Start(ctx, rig.MasterDB, masterSettings)
	if err != nil {
		return err
	}
	defer master.Close()
	slave, err := rig.Start(ctx, "", slaveSettings)
	if err != nil {
		return err
	}
	defer slave.Close()
	m, err := rig.Open(master, rig.MasterDB)
	if err != nil {
		return err
	}
	defer m.Close()
	dbs := map[string]*sql.DB{}
	for _, name := range []string{consumerGoreplica, consumerWhole, consumerNative} {
		if err := slave.CreateDatabase(ctx, name); err != nil {
			return err
		}
		if dbs[name], err = rig.Open(slave, name); err != nil {
			return err
		}
		defer dbs[name].Close()
	}
	// The same tables everywhere: pgbench -i is deterministic.
	const extra = `ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY;
CREATE TABLE hot (id int PRIMARY KEY, n bigint, t text);
INSERT INTO hot SELECT g, 0, '' FROM generate_series(1, 10) g;
CREATE TABLE marker (id int PRIMARY KEY);
CREATE TABLE del (id int PRIMARY KEY, v text);
CREATE SEQUENCE del_seq;`
	for _, t := range []struct {
		s  *pgserver.Server
		db string
		c  *sql.DB
	}{{master, rig.MasterDB, m}, {slave, consumerGoreplica, dbs[consumerGoreplica]}, {slave, consumerWhole, dbs[consumerWhole]},
		{slave, consumerNative, dbs[consumerNative]}} {
		cmd := t.s.Command(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), t.db)
		cmd.Env = append(cmd.Env, "PGHOST="+filepath.Dir(t.s.DataDir))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pgbench -i %s: %w\n%s", t.db, err, out)
		}
		if err := rig.Exec(ctx, t.c, extra); err != nil {
			return err
		}
		if pgss {
			if err := rig.Exec(ctx, t.c, `CREATE EXTENSION pg_stat_statements`); err != nil {
				return err
			}
		}
	}
	cfgs := map[string]string{}
	for name, bounds := range goreplicaConsumers {
		cfgs[name] = filepath.Join(dir, name+".toml")
		if err := os.WriteFile(cfgs[name], []byte(fmt.Sprintf(`[master]
name = "master"
dsn = %q

[[slave]]
name = %q
dsn = %q

[replicate]
tables = ["public.*"]
purge_interval = "1m"
max_backoff = "1s"
copy = "skip"
%s`, master.DSN(rig.MasterDB), name, slave.DSN(name), bounds)), 0o600); err != nil {
			return err
		}
		if err := rig.Init(ctx, bin, cfgs[name]); err != nil {
			return err
		}
	}
	if err := rig.Exec(ctx, m, `CREATE PUBLICATION bench_pub FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history, hot, marker, del`); err != nil {
		return err
	}
	native := dbs[consumerNative]
	if err := rig.Exec(ctx, native, fmt.Sprintf(`CREATE SUBSCRIPTION bench_sub CONNECTION %s PUBLICATION bench_pub WITH (copy_data = false, enabled = false)`,
		pq.QuoteLiteral(master.DSN(rig.MasterDB)))); err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = native.ExecContext(c, `ALTER SUBSCRIPTION bench_sub DISABLE`)
		_, _ = native.ExecContext(c, `ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE)`)
		_, _ = native.ExecContext(c, `DROP SUBSCRIPTION bench_sub`)
		_, _ = m.ExecContext(c, `SELECT pg_drop_replication_slot('bench_sub')`)
	}()

	var drains []drain
	marker := 0
	round := 0
	for _, w := range workloads {
		if scripts[w] == "" {
			return fmt.Errorf("WORKLOADS: no workload %q (tpcb, hot, update, delete)", w)
		}
	}
	// Sizes outside, workloads inside: goreplica_whole drops out for good
	// at the first size past WHOLE_MAX, having been timed on every workload
	// below it.
	whole := true
	for _, size := range sizes {
		for _, w := range workloads {
			if size > wholeMax && whole {
				// Unregistered, so that its backlog is purged.
				whole = false
				if err := rig.Exec(ctx, m, `DELETE FROM replica.slaves WHERE name = 'goreplica_whole'`); err != nil {
					return err
				}
			}
			if w == "delete" {
				// The rows the burst deletes, on every consumer first (untimed).
				rig.Logf("delete: writing the %d rows to delete and draining them, untimed", size)
				marker++
				if err := rig.Exec(ctx, m, `TRUNCATE del`, `SELECT setval('del_seq', 1, false)`,
					fmt.Sprintf(`INSERT INTO del SELECT g, 'row ' || g FROM generate_series(1, %d) g`, size),
					fmt.Sprintf(`INSERT INTO marker VALUES (%d)`, marker)); err != nil {
					return err
				}
				for _, c := range []string{consumerGoreplica, consumerWhole, consumerNative} {
					if c == consumerWhole && !whole {
						continue
					}
					var d drain
					if err := drainOne(ctx, bin, cfgs[c], logDir, native, dbs[c], c, marker, &d); err != nil {
						return err
					}
				}
			}
			rig.Logf("%s: burst of %d transactions, %d clients, nothing consuming", w, size, clients)
			if _, err := (rig.Pgbench{Dir: dir, Script: w + ".sql", DB: rig.MasterDB, Clients: clients,
				Transactions: size / clients, Sync: "off", Vars: map[string]string{"scale": strconv.Itoa(scale)}}).Run(ctx, master); err != nil {
				return err
			}
			marker++
			if err := rig.Exec(ctx, m, fmt.Sprintf(`INSERT INTO marker VALUES (%d)`, marker)); err != nil {
				return err
			}
			all := []string{consumerGoreplica, consumerWhole, consumerNative}
			order := append(append([]string(nil), all[round%3:]...), all[:round%3]...)
			round++
			for _, c := range order {
				if c == consumerWhole && !whole {
					continue
				}
				if err := rig.Exec(ctx, m, `CHECKPOINT`); err != nil {
					return err
				}
				if err := rig.Exec(ctx, dbs[c], `CHECKPOINT`); err != nil {
					return err
				}
				d := drain{workload: w, consumer: c, size: size / clients * clients}
				if pgss {
					for _, db := range []*sql.DB{m, dbs[c]} {
						if err := rig.Exec(ctx, db, `SELECT pg_stat_statements_reset()`); err != nil {
							return err
						}
					}
				}
				if err := drainOne(ctx, bin, cfgs[c], logDir, native, dbs[c], c, marker, &d); err != nil {
					return err
				}
				drains = append(drains, d)
				if pgss && c != consumerNative {
					for _, s := range []struct {
						name string
						db   *sql.DB
					}{{"master", m}, {"slave", dbs[c]}} {
						if err := topStatements(ctx, s.name, s.db); err != nil {
							return err
						}
					}
				}
				rig.Logf("%s %d %-9s %.2fs from %s: %.0f transactions/s  peak RSS %d kB", w, d.size, c, d.secs, d.start.Format("15:04:05.000"), d.rate, d.rssKB)
			}
			// Purge what goreplica applied, as its daemon does, and vacuum,
			// so that every round starts from a log and tables alike.
			if err := rig.Exec(ctx, m,
				`DELETE FROM replica.replica_log WHERE txid < (SELECT min(pg_snapshot_xmin(acked_snapshot)) FROM replica.slaves)`,
				`VACUUM ANALYZE`); err != nil {
				return err
			}
			for _, db := range dbs {
				if err := rig.Exec(ctx, db, `VACUUM ANALYZE`); err != nil {
					return err
				}
			}
		}
	}
	report(command, clients, scale, sizes, workloads, drains)
	return nil
}

// drainOne starts consumer c and waits until its database holds the marker.
func drainOne(ctx context.Context, bin, cfg, dir string, native, db *sql.DB, c string, marker int, d *drain) error {
	wctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	t0 := time.Now()
	var dm *rig.Daemon
	if c == consumerNative {
		if err := rig.Exec(ctx, native, `ALTER SUBSCRIPTION bench_sub ENABLE`); err != nil {
			return err
		}
	} else {
		var err error
		if dm, err = rig.StartDaemon(bin, cfg, filepath.Join(dir, fmt.Sprintf("%s-%d.log", c, marker))); err != nil {
			return err
		}
	}
	err := rig.WaitContext(wctx, 10*time.Millisecond, func() (bool, error) {
		var ok bool
		err := db.QueryRowContext(wctx, `SELECT EXISTS (SELECT 1 FROM marker WHERE id = $1)`, marker).Scan(&ok)
		return ok, err
	})
	t1 := time.Now()
	if c == consumerNative {
		if derr := rig.Exec(ctx, native, `ALTER SUBSCRIPTION bench_sub DISABLE`); derr != nil && err == nil {
			err = derr
		}
		// Wait for the apply worker to exit.
		_ = rig.WaitContext(wctx, 50*time.Millisecond, func() (bool, error) {
			var n int
			e := native.QueryRowContext(wctx, `SELECT count(pid) FROM pg_stat_subscription WHERE subname = 'bench_sub'`).Scan(&n)
			return n == 0, e
		})
	} else {
		u, uerr := dm.Usage()
		serr := dm.Stop()
		if err != nil {
			return fmt.Errorf("%s: %w\ndaemon log:\n%s", c, err, dm.Tail(3000))
		}
		if uerr != nil {
			return uerr
		}
		if serr != nil {
			return serr
		}
		d.rssKB = u.PeakRSSKB
	}
	if err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	d.start = t0
	d.secs = t1.Sub(t0).Seconds()
	d.rate = float64(d.size) / d.secs
	return nil
}

// topStatements prints the statements of db that took the most time since
// the last reset (pg_stat_statements).
func topStatements(ctx context.Context, name string, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT calls, round(total_exec_time::numeric, 1), toplevel,
       left(regexp_replace(query, '\s+', ' ', 'g'), 110)
  FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12`)
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Printf("# %s: calls  total ms  top-level  statement\n", name)
	for rows.Next() {
		var calls int64
		var ms float64
		var top bool
		var q string
		if err := rows.Scan(&calls, &ms, &top, &q); err != nil {
			return err
		}
		fmt.Printf("#   %7d %9.1f %5v  %s\n", calls, ms, top, q)
	}
	return rows.Err()
}

func report(command string, clients, scale int, sizes []int, workloads []string, drains []drain) {
	fmt.Println()
	fmt.Printf("# %s\n", command)
	fmt.Printf("# backlog drain, transactions/s; burst of CLIENTS=%d pgbench clients (synchronous_commit off), scale %d\n", clients, scale)
	fmt.Println("# targets (DESIGN.md): rate flat within 1.3x from the smallest to the largest backlog, and >= native in the same run")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tbacklog (tx)\tgoreplica tx/s\tgoreplica_whole tx/s\tnative tx/s\tgoreplica vs native\tgoreplica peak RSS MB\tgoreplica_whole peak RSS MB\t")
	first := map[string]float64{}
	last := map[string]float64{}
	for _, w := range workloads {
		for _, size := range sizes {
			by := map[string]drain{}
			for _, d := range drains {
				if d.workload == w && d.size == size/clients*clients {
					by[d.consumer] = d
				}
			}
			g, wh, n := by[consumerGoreplica], by[consumerWhole], by[consumerNative]
			if g.secs == 0 || n.secs == 0 {
				continue
			}
			for _, c := range []string{consumerGoreplica, consumerWhole} {
				if by[c].secs == 0 {
					continue
				}
				if _, ok := first[w+c]; !ok {
					first[w+c] = by[c].rate
				}
				last[w+c] = by[c].rate
			}
			whole, wholeRSS := "-", "-"
			if wh.secs > 0 {
				whole, wholeRSS = fmt.Sprintf("%.0f", wh.rate), fmt.Sprintf("%.0f", float64(wh.rssKB)/1024)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%.0f\t%.2fx\t%.0f\t%s\t\n", w, g.size, g.rate, whole, n.rate, g.rate/n.rate,
				float64(g.rssKB)/1024, wholeRSS)
		}
	}
	tw.Flush()
	for _, w := range workloads {
		for _, c := range []string{consumerGoreplica, consumerWhole} {
			if last[w+c] > 0 {
				fmt.Printf("# %s, %s: rate at the smallest backlog / at the largest = %.2fx\n", w, c, first[w+c]/last[w+c])
			}
		}
	}
}
