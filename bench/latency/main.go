// Command latency measures commit-to-visible latency at a steady rate and
// at saturation: pgbench -R RATE -T SECS with 2 clients, then pgbench -T SECS
// with 8 clients and no rate limit (as fast as they can), inserts single-row
// transactions on the master while a consumer runs, one consumer at a time
// on the same two durable servers, every consumer at the steady rate first:
//
//	goreplica_2pc  `goreplica run` with two_phase = true
//	goreplica_1pc  `goreplica run` with two_phase = false
//	native         a native logical replication subscription
//
// Per row two lags are computed (both servers are on this machine, so their
// clocks agree):
//
//	applied  slave's applied_at (DEFAULT clock_timestamp(), the time the row
//	         was written on the slave) - master's f (now(), the start of the
//	         inserting transaction): the anchor benchmark's measure
//	visible  commit time of the slave transaction that brought the row -
//	         commit time of the master transaction that made it, both from
//	         track_commit_timestamp: when the row became visible to readers
//	         of the slave (COMMIT PREPARED for two-phase batches)
//
// The lags are taken over every row a phase inserted: after pgbench ends
// the phase waits up to DRAIN for the slave to hold them all, and reports
// how long that took. A row still missing at DRAIN is counted, and its lags
// as infinite in the percentiles, so that a consumer that falls behind
// cannot look faster by leaving its slowest rows out.
//
// Knobs (environment): RATE [500] tps, SECS [30], CLIENTS [2],
// SATURATE_CLIENTS [8] the clients of the saturated phases (0 leaves them
// out), CONSUMERS ["goreplica_2pc goreplica_1pc native"], POLL [1s]
// goreplica's poll_interval, DRAIN [5m] how long a phase waits for its rows
// (and, at least 2m, for the backlog of earlier phases before it starts),
// BATCH_INTERVAL ["": goreplica's default] the daemons' batch_interval,
// DAEMON_MASTER_OPTIONS [""] key=value settings appended to the daemon's
// master DSN (an experiment: "synchronous_commit=off" makes its
// acknowledgements and flag updates asynchronous).
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
)

// load is the pgbench load of a phase.
type load struct {
	rate    int // -R; 0: as fast as the clients can
	clients int
}

func (l load) String() string {
	if l.rate == 0 {
		return fmt.Sprintf("saturated, %d clients", l.clients)
	}
	return fmt.Sprintf("%d tps, %d clients", l.rate, l.clients)
}

type phase struct {
	load     load
	consumer string
	rows     int // rows the phase inserted on the master
	missing  int // of those, not on the slave at the DRAIN deadline
	txs      int // slave transactions that brought the rows
	tps      float64
	drain    time.Duration // from pgbench's end until the slave held every row
	// Milliseconds, sorted; a missing row's lags are +Inf.
	applied, visible []float64
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/latency: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var k rig.Knobs
	rate := k.Int("RATE", 500)
	secs := k.Int("SECS", 30)
	clients := k.Int("CLIENTS", 2)
	// Not k.Int: 0 is a value here (no saturated phases).
	satClients, err := strconv.Atoi(k.String("SATURATE_CLIENTS", "8"))
	if err != nil || satClients < 0 {
		return fmt.Errorf("SATURATE_CLIENTS: want a number of clients, 0 for none")
	}
	consumers := strings.Fields(k.String("CONSUMERS", "goreplica_2pc goreplica_1pc native"))
	poll, err := time.ParseDuration(k.String("POLL", "1s"))
	if err != nil {
		return fmt.Errorf("POLL: %w", err)
	}
	drain, err := time.ParseDuration(k.String("DRAIN", "5m"))
	if err != nil {
		return fmt.Errorf("DRAIN: %w", err)
	}
	loads := []load{{rate: rate, clients: clients}}
	if satClients > 0 {
		loads = append(loads, load{clients: satClients})
	}
	masterOpts := k.String("DAEMON_MASTER_OPTIONS", "")
	batchInterval := k.String("BATCH_INTERVAL", "")
	command := k.Command("./bench/latency")

	o := rig.PairOptions{
		SlaveColumns:   ", applied_at timestamptz DEFAULT clock_timestamp()",
		MasterSettings: map[string]string{"track_commit_timestamp": "on"},
		SlaveSettings:  map[string]string{"track_commit_timestamp": "on"},
		Poll:           poll,
		// An experiment knob: settings for the daemon's master sessions,
		// e.g. DAEMON_MASTER_OPTIONS=synchronous_commit=off.
		MasterDSNOptions: masterOpts,
		BatchInterval:    batchInterval,
	}
	for _, c := range consumers {
		switch c {
		case "goreplica_2pc":
			o.Slaves = append(o.Slaves, rig.Slave{Name: c, TwoPhase: true})
		case "goreplica_1pc":
			o.Slaves = append(o.Slaves, rig.Slave{Name: c, TwoPhase: false})
		case "native":
			o.Native = c
		default:
			return fmt.Errorf("CONSUMERS: unknown consumer %q (goreplica_2pc, goreplica_1pc, native)", c)
		}
	}
	p, err := rig.StartPair(ctx, o)
	if err != nil {
		return err
	}
	defer p.Close()
	dir, cleanup, err := rig.Scripts()
	if err != nil {
		return err
	}
	defer cleanup()

	// Every consumer at one load, then every consumer at the next: the
	// steady phases run first, as they did before the saturated ones
	// existed, and the consumers of one load are compared side by side.
	var phases []phase
	for _, l := range loads {
		for _, c := range consumers {
			ph, err := measure(ctx, p, dir, c, l, secs, drain)
			if err != nil {
				return err
			}
			phases = append(phases, ph)
			rig.Logf("%s, %s: %d rows at %.0f tps, drained %.1f s after pgbench, %d missing: applied p50 %.1f ms p99 %.1f ms max %.1f ms",
				c, l, ph.rows, ph.tps, ph.drain.Seconds(), ph.missing,
				rig.Percentile(ph.applied, 50), rig.Percentile(ph.applied, 99), rig.Percentile(ph.applied, 100))
		}
	}

	fmt.Println()
	rig.Header("latency: commit on the master to visible on the slave, at a steady rate and at saturation", command)
	fmt.Printf("# pgbench -R %d -T %d, %d clients", rate, secs, clients)
	if satClients > 0 {
		fmt.Printf("; then pgbench -T %d, %d clients, no rate limit", secs, satClients)
	}
	fmt.Printf("; single-row INSERT transactions, synchronous_commit on; goreplica poll_interval %v (wake-ups by NOTIFY)\n", poll)
	if masterOpts != "" {
		fmt.Printf("# the daemon's master DSN has %q appended\n", masterOpts)
	}
	fmt.Println("# visible = slave commit time - master commit time (track_commit_timestamp); applied = slave applied_at - master now() (anchor's measure)")
	fmt.Println("# targets (DESIGN.md, at the steady rate): visible p50 < 10 ms, p99 < 50 ms; anchors: Londiste p50 1260 / p99 2850 ms, native p50 1 / p99 4 ms")
	fmt.Printf("# drain s = from pgbench's end until the slave held every row of the phase (polled every 20 ms); missing = rows not there after DRAIN (%v), their lags +Inf\n", drain)
	fmt.Println("# rows/tx = the phase's rows per slave transaction that brought them (goreplica's batch size)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\tconsumer\trows\ttps\tvisible p50 ms\tp99 ms\tmax ms\tapplied p50 ms\tp99 ms\tmax ms\tdrain s\tmissing\trows/tx\t")
	for _, ph := range phases {
		vis := fmt.Sprintf("%.1f\t%.1f\t%.1f", rig.Percentile(ph.visible, 50), rig.Percentile(ph.visible, 99), rig.Percentile(ph.visible, 100))
		if ph.consumer == "native" {
			vis = "n/a\tn/a\tn/a"
		}
		perTx := 0.0
		if ph.txs > 0 {
			perTx = float64(ph.rows-ph.missing) / float64(ph.txs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%.1f\t%.1f\t%.1f\t%.2f\t%d\t%.1f\t\n", ph.load, ph.consumer, ph.rows, ph.tps, vis,
			rig.Percentile(ph.applied, 50), rig.Percentile(ph.applied, 99), rig.Percentile(ph.applied, 100),
			ph.drain.Seconds(), ph.missing, perTx)
	}
	tw.Flush()
	if len(o.Native) > 0 {
		fmt.Println("# native: n/a because a subscription's commits carry the origin's commit time; it applies each source")
		fmt.Println("# transaction as one slave transaction, so its visible lag is its applied lag plus one commit on the slave")
	}
	return nil
}

// measure runs load l for secs seconds with consumer c running, waits up to
// drain for the slave to hold every row, and computes the lags.
func measure(ctx context.Context, p *rig.Pair, dir, c string, l load, secs int, drain time.Duration) (phase, error) {
	ph := phase{load: l, consumer: c}
	slave := p.S[c]
	// Autovacuum is off on bench servers, so nothing would ever analyze the
	// master's log: without statistics the planner takes a lingering
	// worker's "anything new?" query (an EXISTS over the log from the
	// slave's position) for a sequential scan of the whole log, which the
	// earlier phases have filled, and the later phases pay for it (a
	// saturated phase run after another: visible p50 165-333 ms instead of
	// 30). A user's autovacuum analyzes the log; VACUUM ANALYZE stands in
	// for it, and removes the dead log rows earlier daemons purged.
	if err := rig.Exec(ctx, p.M, `VACUUM ANALYZE`, `CHECKPOINT`); err != nil {
		return ph, err
	}
	// Start the consumer and wait until it has caught up with what the
	// previous phases wrote.
	var stopConsumer func() error
	if c == "native" {
		if err := p.SetNative(ctx, true); err != nil {
			return ph, err
		}
		stopConsumer = func() error { return p.SetNative(ctx, false) }
	} else {
		cfg := ""
		for _, s := range p.Slaves {
			if s.Name == c {
				cfg = s.Config
			}
		}
		d, err := rig.StartDaemon(p.Bin, cfg, filepath.Join(p.Dir, c+".log"))
		if err != nil {
			return ph, err
		}
		stopConsumer = d.Stop
		defer d.Stop()
	}
	cctx, cancel := context.WithTimeout(ctx, max(drain, 2*time.Minute))
	err := catchUp(cctx, p, slave)
	cancel()
	if err != nil {
		return ph, fmt.Errorf("%s: catch up before the %s load: %w", c, l, err)
	}
	after, err := rig.MaxID(ctx, p.M)
	if err != nil {
		return ph, err
	}
	rig.Logf("%s: %s, pgbench -T %d", c, l, secs)
	res, err := rig.Pgbench{Dir: dir, Script: "insert.sql", DB: rig.MasterDB, Clients: l.clients,
		Duration: time.Duration(secs) * time.Second, Rate: l.rate}.Run(ctx, p.Master)
	if err != nil {
		return ph, err
	}
	ended := time.Now()
	ph.tps = res.TPS
	maxID, err := rig.MaxID(ctx, p.M)
	if err != nil {
		return ph, err
	}
	var want int64
	if err := p.M.QueryRowContext(ctx, `SELECT count(*) FROM test WHERE id > $1`, after).Scan(&want); err != nil {
		return ph, err
	}
	// Wait for the backlog to drain. At the deadline, go on with the rows
	// that arrived: the others are counted below, not left out.
	dctx, cancel := context.WithTimeout(ctx, drain)
	seen, err := rig.WaitRows(dctx, slave, after, maxID, want, 20*time.Millisecond)
	cancel()
	switch {
	case err == nil:
		ph.drain = seen.Sub(ended)
	case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		ph.drain = drain
		rig.Logf("%s, %s: %v", c, l, err)
	default:
		return ph, fmt.Errorf("%s: %w", c, err)
	}
	if err := stopConsumer(); err != nil {
		return ph, err
	}

	type times struct{ f, commit time.Time }
	master := map[int64]times{}
	err = query(ctx, p.M, `SELECT id, f, pg_xact_commit_timestamp(xmin) FROM test WHERE id > $1`, after, func(id int64, a, b time.Time) {
		master[id] = times{a, b}
	})
	if err != nil {
		return ph, err
	}
	ph.rows = len(master)
	arrived := map[int64]bool{}
	err = query(ctx, slave, `SELECT id, applied_at, pg_xact_commit_timestamp(xmin) FROM test WHERE id > $1`, after, func(id int64, a, b time.Time) {
		m, ok := master[id]
		if !ok {
			return
		}
		arrived[id] = true
		ph.applied = append(ph.applied, float64(a.Sub(m.f))/float64(time.Millisecond))
		ph.visible = append(ph.visible, float64(b.Sub(m.commit))/float64(time.Millisecond))
	})
	if err != nil {
		return ph, err
	}
	ph.missing = ph.rows - len(arrived)
	for range ph.missing {
		ph.applied = append(ph.applied, math.Inf(1))
		ph.visible = append(ph.visible, math.Inf(1))
	}
	sort.Float64s(ph.applied)
	sort.Float64s(ph.visible)
	// Rows per slave transaction: native applies each source transaction
	// as one; goreplica applies what each cycle finds as one batch.
	if err := slave.QueryRowContext(ctx, `SELECT count(DISTINCT xmin::text) FROM test WHERE id > $1`, after).Scan(&ph.txs); err != nil {
		return ph, err
	}
	return ph, nil
}

// catchUp inserts one row on the master and waits until the slave has it.
func catchUp(ctx context.Context, p *rig.Pair, slave *sql.DB) error {
	var id int64
	if err := p.M.QueryRowContext(ctx, `INSERT INTO test (t, n, f, b) VALUES ('catch-up', 0, now(), true) RETURNING id`).Scan(&id); err != nil {
		return err
	}
	return rig.WaitContext(ctx, 20*time.Millisecond, func() (bool, error) {
		var ok bool
		err := slave.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM test WHERE id = $1)`, id).Scan(&ok)
		return ok, err
	})
}

func query(ctx context.Context, db *sql.DB, q string, after int64, row func(id int64, a, b time.Time)) error {
	rows, err := db.QueryContext(ctx, q, after)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var a, b time.Time
		if err := rows.Scan(&id, &a, &b); err != nil {
			return err
		}
		row(id, a, b)
	}
	return rows.Err()
}
