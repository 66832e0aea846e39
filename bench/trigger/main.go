// Command trigger measures what goreplica's log trigger costs the
// application: the PyReplica slide test (single-row INSERT transactions, and
// single-row UPDATEs by random key), with pgbench, at 1 and 8 clients,
// synchronous_commit on and off, on a durable throwaway server.
//
// Variants, attached one at a time to table test and run interleaved
// (repetition is the outer loop, so drift spreads over all of them):
//
//	none              no trigger
//	goreplica         trigger.sql's generated log trigger; a slave is
//	                  registered but its daemon is busy (waiting = false): no NOTIFY
//	goreplica_daemon  the same with a real daemon running and applying to a
//	                  slave on a second server (slave and daemon on CPU 1)
//	goreplica_notify  the same while a daemon idle-waits (waiting = true) and
//	                  LISTENs: one NOTIFY per transaction, the worst case
//	pgq_sqltriga      PgQ's C trigger (Debian package postgresql-15-pgq3), when installed
//
// Diagnostic variants (probe_*, see probe.go) take one ingredient out of
// goreplica's trigger to show what it costs; they run only when named in
// VARIANTS.
//
// Knobs (environment): ROWS [20000] transactions per run with
// synchronous_commit off, ROWS_SYNC_ON [5000] with it on (each commit waits
// for a WAL flush: hundreds to a few thousand tps here), TABLE_ROWS [100000]
// rows of the update workload's table, RUNS [3], CLIENTS ["1 8"],
// SYNC ["on off"], WORKLOADS ["insert update"], VARIANTS [all five],
// (goreplica_daemon@INTERVAL runs the daemon with batch_interval = INTERVAL,
// e.g. goreplica_daemon@0s beside goreplica_daemon's default),
// PIN [auto: with 1 client the server and pgbench run on CPU 0; split: at
// every client count; none]. With PIN auto or split the slave server and
// the daemon of goreplica_daemon run on CPU 1. SLAVE_DIR [the temporary
// directory] is where goreplica_daemon's slave server keeps its files:
// another file system (such as /dev/shm) keeps its WAL flushes off the
// master's disk, as a slave on a separate host would.
//
// Every run counts the NOTIFYs its transactions sent (a listener on the
// master, see notifyCounter).
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
	"github.com/goreplica/goreplica/pgserver"
)

const db = "bench"

type config struct {
	rows, rowsSyncOn, tableRows, runs int
	clients                           []int
	syncs                             []string
	workloads                         []string
	variants                          []string
	pin                               string
	logDir                            string
	slaveDir                          string
	command                           string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/trigger: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var k rig.Knobs
	cfg := config{
		rows:       k.Int("ROWS", 20000),
		rowsSyncOn: k.Int("ROWS_SYNC_ON", 5000),
		tableRows:  k.Int("TABLE_ROWS", 100000),
		runs:       k.Int("RUNS", 3),
		clients:    k.Ints("CLIENTS", []int{1, 8}),
		syncs:      strings.Fields(k.String("SYNC", "on off")),
		workloads:  strings.Fields(k.String("WORKLOADS", "insert update")),
		variants:   strings.Fields(k.String("VARIANTS", "none goreplica goreplica_daemon goreplica_notify pgq_sqltriga")),
		pin:        k.String("PIN", "auto"),
		logDir:     k.String("LOG_DIR", ""),
		slaveDir:   k.String("SLAVE_DIR", ""),
	}
	cfg.command = k.Command("./bench/trigger")
	triggerSQL, err := rig.TriggerSQL()
	if err != nil {
		return err
	}
	dir, cleanup, err := rig.Scripts()
	if err != nil {
		return err
	}
	defer cleanup()

	rig.Logf("starting a durable server")
	s, err := rig.Start(ctx, db, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	conn, err := rig.Open(s, db)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	b := &bench{cfg: cfg, s: s, db: conn, dir: dir}
	if err := b.setup(ctx, triggerSQL); err != nil {
		return err
	}
	if slices.ContainsFunc(cfg.variants, isDaemon) {
		if b.daemon, err = startDaemonRig(ctx, s, cfg.logDir, cfg.slaveDir); err != nil {
			return err
		}
		defer b.daemon.close()
	}
	// A listener LISTENing all along, as a running daemon does (it is the
	// idle daemon's listener of goreplica_notify), counts the NOTIFYs.
	if b.notifies, err = newNotifyCounter(s.DSN(db), conn); err != nil {
		return err
	}
	defer b.notifies.close()

	if err := b.measure(ctx); err != nil {
		return err
	}
	b.print()
	return nil
}

type sample struct {
	workload, sync, variant string
	clients                 int
	tps                     float64
	logged                  int64
	notifies                int64
	batches                 int64   // goreplica_daemon: batches the daemon applied during the run
	masterMS                float64 // goreplica_daemon: CPU ms of the daemon's sessions on the master during the run
}

type bench struct {
	cfg      config
	s        *pgserver.Server
	db       *sql.DB
	dir      string
	pgqData  string // PgQ's event table of queue "bench"; "" when PgQ is unavailable
	pgqWhy   string
	samples  []sample
	filled   bool       // table test holds cfg.tableRows rows for the update workload
	daemon   *daemonRig // goreplica_daemon's slave server; nil when not run
	notifies *notifyCounter
}

func (b *bench) setup(ctx context.Context, triggerSQL string) error {
	if err := rig.Exec(ctx, b.db,
		`CREATE TABLE test (id serial PRIMARY KEY, t text, n float8, f timestamptz, b bool)`,
		triggerSQL,
		`INSERT INTO replica.slaves (name, acked_snapshot, waiting) VALUES ('bench', pg_current_snapshot(), false)`,
	); err != nil {
		return fmt.Errorf("install goreplica: %w", err)
	}
	if slices.Contains(b.cfg.variants, "pgq_sqltriga") {
		err := rig.Exec(ctx, b.db, `CREATE EXTENSION pgq`, `SELECT pgq.create_queue('bench')`)
		if err == nil {
			err = b.db.QueryRowContext(ctx, `SELECT queue_data_pfx FROM pgq.queue WHERE queue_name = 'bench'`).Scan(&b.pgqData)
		}
		if err != nil {
			b.pgqData = ""
			b.pgqWhy = "PgQ unavailable (apt-get install -y postgresql-15-pgq3): " + err.Error()
			rig.Logf("%s", b.pgqWhy)
		}
	}
	return nil
}

func (b *bench) measure(ctx context.Context) error {
	for rep := 1; rep <= b.cfg.runs; rep++ {
		for _, wl := range b.cfg.workloads {
			for _, sync := range b.cfg.syncs {
				for _, c := range b.cfg.clients {
					pinCPU := ""
					cpus := rig.AllCPUs()
					if b.cfg.pin == "split" || (b.cfg.pin == "auto" && c == 1) {
						pinCPU, cpus = "0", "0"
					}
					if err := rig.Pin(b.s, cpus); err != nil {
						return err
					}
					// Rotate the variant order from one repetition to the next.
					vs := b.cfg.variants
					r := (rep - 1) % len(vs)
					vs = append(append([]string(nil), vs[r:]...), vs[:r]...)
					for _, v := range vs {
						if v == "pgq_sqltriga" && b.pgqData == "" {
							continue
						}
						smp, err := b.once(ctx, wl, sync, v, c, pinCPU)
						if err != nil {
							return err
						}
						b.samples = append(b.samples, smp)
						rig.Logf("rep %d %s c=%d sync=%s %-17s tps=%8.0f logged=%d notifies=%d", rep, wl, c, sync, v, smp.tps, smp.logged, smp.notifies)
					}
				}
			}
		}
	}
	return rig.Pin(b.s, rig.AllCPUs())
}

// once resets table test, attaches variant v and runs the workload.
func (b *bench) once(ctx context.Context, wl, sync, v string, clients int, pinCPU string) (sample, error) {
	smp := sample{workload: wl, sync: sync, variant: v, clients: clients}
	reset := []string{
		`DROP TRIGGER IF EXISTS bench_pgq ON test`,
		`SELECT replica.uncapture('test'::regclass::oid)`,
		`TRUNCATE replica.replica_log`,
		`UPDATE replica.slaves SET waiting = false`,
	}
	if b.pgqData != "" {
		reset = append(reset, `TRUNCATE `+b.pgqData)
	}
	// The update workload reuses its table (VACUUM clears the previous
	// run's dead rows); the insert workload starts from an empty one.
	switch {
	case wl == "update" && !b.filled:
		reset = append(reset, `TRUNCATE test RESTART IDENTITY`,
			fmt.Sprintf(`INSERT INTO test (t, n, f, b) SELECT random()::text, random(), now(), true FROM generate_series(1, %d)`, b.cfg.tableRows))
		b.filled = true
	case wl != "update":
		reset = append(reset, `TRUNCATE test RESTART IDENTITY`)
		b.filled = false
	}
	reset = append(reset, `VACUUM ANALYZE test`, `VACUUM ANALYZE replica.replica_log`, `CHECKPOINT`)
	switch {
	case v == "none":
	case v == "goreplica" || isDaemon(v):
		reset = append(reset, `SELECT replica.capture('test')`)
	case v == "goreplica_notify":
		reset = append(reset, `SELECT replica.capture('test')`, `UPDATE replica.slaves SET waiting = true`)
	case v == "pgq_sqltriga":
		reset = append(reset, `CREATE TRIGGER bench_pgq AFTER INSERT OR UPDATE OR DELETE ON test FOR EACH ROW EXECUTE FUNCTION pgq.sqltriga('bench')`)
	default:
		if _, ok := probes[v]; !ok {
			return smp, fmt.Errorf("unknown variant %q (none, goreplica, goreplica_daemon, goreplica_notify, pgq_sqltriga, or a probe: %s)", v, probeNames())
		}
		reset = append(reset, `SELECT replica.capture('test')`)
	}
	reset = append([]string{`CREATE INDEX IF NOT EXISTS replica_log_txid ON replica.replica_log (txid)`,
		`ALTER TABLE replica.replica_log SET LOGGED`}, reset...)
	if err := rig.Exec(ctx, b.db, reset...); err != nil {
		return smp, err
	}
	if probe := probes[v]; probe != nil {
		if err := probe(ctx, b.db); err != nil {
			return smp, fmt.Errorf("probe %s: %w", v, err)
		}
	}
	script := map[string]string{"insert": "insert.sql", "update": "update.sql"}[wl]
	if script == "" {
		return smp, fmt.Errorf("unknown workload %q (insert, update)", wl)
	}
	rows := b.cfg.rows
	if sync == "on" {
		rows = b.cfg.rowsSyncOn
	}
	p := rig.Pgbench{
		Dir: b.dir, Script: script, DB: db, Clients: clients,
		Transactions: rows / clients,
		Vars:         map[string]string{"rows": fmt.Sprint(b.cfg.tableRows)},
		Sync:         sync, PinCPU: pinCPU,
	}
	if isDaemon(v) {
		if err := b.daemon.prepare(ctx, wl, b.cfg.tableRows); err != nil {
			return smp, err
		}
		if err := b.daemon.start(ctx, b.db, daemonInterval(v)); err != nil {
			return smp, err
		}
	}
	before, err := b.notifies.mark(ctx)
	if err != nil {
		return smp, err
	}
	var batch0 int64
	var cpu0 map[int]time.Duration
	if isDaemon(v) {
		if batch0, err = b.daemon.batch(ctx, b.db); err != nil {
			return smp, err
		}
		if cpu0, err = b.daemon.masterCPU(ctx, b.db); err != nil {
			return smp, err
		}
	}
	res, err := p.Run(ctx, b.s)
	if err != nil {
		return smp, err
	}
	after, err := b.notifies.mark(ctx)
	if err != nil {
		return smp, err
	}
	if isDaemon(v) {
		cpu1, err := b.daemon.masterCPU(ctx, b.db)
		if err != nil {
			return smp, err
		}
		smp.masterMS = cpuSince(cpu0, cpu1)
		// A stopped daemon has acknowledged every batch it applied.
		if err := b.daemon.stop(); err != nil {
			return smp, err
		}
		batch1, err := b.daemon.batch(ctx, b.db)
		if err != nil {
			return smp, err
		}
		smp.batches = batch1 - batch0
	}
	smp.tps, smp.notifies = res.TPS, after-before
	q := `SELECT 0::int8`
	switch v {
	case "none":
	case "pgq_sqltriga":
		q = `SELECT count(*) FROM ` + b.pgqData
	default:
		q = `SELECT count(*) FROM replica.replica_log`
	}
	if err := b.db.QueryRowContext(ctx, q).Scan(&smp.logged); err != nil {
		return smp, err
	}
	return smp, nil
}

// targets from DESIGN.md, as time with trigger / time without.
func target(v, sync string, clients int) string {
	if v != "goreplica" && !isDaemon(v) && v != "goreplica_notify" {
		return ""
	}
	if sync == "off" {
		return "<=1.2x pgq"
	}
	if isDaemon(v) { // issue 8
		if clients == 1 {
			return "<=1.25x, <=1.1x goreplica"
		}
		return "<=1.5x, <=1.1x goreplica"
	}
	if clients == 1 {
		return "<=1.2x"
	}
	return "<=1.4x"
}

func (b *bench) print() {
	type key struct {
		wl, sync, v string
		c           int
	}
	tps := map[key][]float64{}
	logged := map[key]int64{}
	notifies := map[key][]string{}
	batches := map[key][]string{}
	masterCPU := map[key][]string{}
	for _, s := range b.samples {
		k := key{s.workload, s.sync, s.variant, s.clients}
		tps[k] = append(tps[k], s.tps)
		logged[k] = s.logged
		notifies[k] = append(notifies[k], fmt.Sprint(s.notifies))
		if isDaemon(s.variant) {
			batches[k] = append(batches[k], fmt.Sprint(s.batches))
			masterCPU[k] = append(masterCPU[k], fmt.Sprintf("%.0f", s.masterMS))
		}
	}
	fmt.Println()
	rig.Header("trigger overhead: pgbench -n -M prepared, single-row transactions, median of runs", b.cfg.command)
	pinned := map[string]string{"auto": "the master server and pgbench on CPU 0 at 1 client", "split": "the master server and pgbench on CPU 0"}[b.cfg.pin]
	if pinned == "" {
		pinned = "nothing"
	} else if b.daemon != nil {
		pinned += "; goreplica_daemon's slave server and daemon on CPU 1"
	}
	fmt.Printf("# transactions per run: %d with synchronous_commit off, %d with it on; update table: %d rows; runs: %d; pinned: %s\n",
		b.cfg.rows, b.cfg.rowsSyncOn, b.cfg.tableRows, b.cfg.runs, pinned)
	fmt.Println("# vs none = time with / time without (none's tps / variant's tps); vs goreplica = time with / the no-daemon variant's time; vs pgq = time with / PgQ's time; logged rows: last run")
	fmt.Println("# paired: the median over repetitions of the ratio within each repetition (the variants of one repetition run one after the other, so a disk or neighbour that slows a whole repetition cancels out)")
	if b.pgqWhy != "" {
		fmt.Println("# " + b.pgqWhy)
	}
	fmt.Println("# NOTIFYs: transactions of each run that sent a NOTIFY (counted by a listener); batches: the daemon's acknowledged batches during each run;")
	fmt.Println("# master CPU ms: CPU time of the daemon's sessions on the master during each run (/proc, user + system)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tclients\tsync\tvariant\tmedian tps\truns (tps)\tlogged rows\tNOTIFYs (runs)\tbatches (runs)\tmaster CPU ms (runs)\tvs none\tpaired\tvs goreplica\tpaired\tvs pgq\ttarget\t")
	for _, wl := range b.cfg.workloads {
		for _, sync := range b.cfg.syncs {
			for _, c := range b.cfg.clients {
				baseRuns, plainRuns := tps[key{wl, sync, "none", c}], tps[key{wl, sync, "goreplica", c}]
				base := rig.Median(baseRuns)
				pgq := rig.Median(tps[key{wl, sync, "pgq_sqltriga", c}])
				plain := rig.Median(plainRuns)
				for _, v := range b.cfg.variants {
					k := key{wl, sync, v, c}
					xs := tps[k]
					if len(xs) == 0 {
						continue
					}
					m := rig.Median(xs)
					var runs []string
					for _, x := range xs {
						runs = append(runs, fmt.Sprintf("%.0f", x))
					}
					vsNone, vsPlain, vsPgq := "-", "-", "-"
					pairedNone, pairedPlain := "-", "-"
					if plain > 0 && v != "none" && v != "pgq_sqltriga" {
						vsPlain = fmt.Sprintf("%.2fx", plain/m)
						pairedPlain = paired(plainRuns, xs)
					}
					if base > 0 {
						vsNone = fmt.Sprintf("%.2fx", base/m)
						pairedNone = paired(baseRuns, xs)
					}
					if pgq > 0 && v != "none" {
						vsPgq = fmt.Sprintf("%.2fx", pgq/m)
					}
					nb, ms := strings.Join(batches[k], " "), strings.Join(masterCPU[k], " ")
					if nb == "" {
						nb, ms = "-", "-"
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.0f\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
						wl, c, sync, v, m, strings.Join(runs, " "), logged[k], strings.Join(notifies[k], " "), nb, ms, vsNone, pairedNone, vsPlain, pairedPlain, vsPgq, target(v, sync, c))
				}
			}
		}
	}
	tw.Flush()
}

// paired returns the median over repetitions of base[i] / xs[i] (time with
// xs / time with base), or "-" when the runs do not pair up.
func paired(base, xs []float64) string {
	if len(base) != len(xs) || len(xs) == 0 {
		return "-"
	}
	var rs []float64
	for i := range xs {
		if xs[i] > 0 {
			rs = append(rs, base[i]/xs[i])
		}
	}
	if len(rs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", rig.Median(rs))
}
