// Command latency measures commit-to-visible latency at a steady rate:
// pgbench -R RATE -T SECS with 2 clients inserts single-row transactions on
// the master while a consumer runs, one consumer at a time on the same two
// durable servers:
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
// Knobs (environment): RATE [500] tps, SECS [30], CLIENTS [2],
// CONSUMERS ["goreplica_2pc goreplica_1pc native"], POLL [1s] goreplica's
// poll_interval, DAEMON_MASTER_OPTIONS [""] key=value settings appended to
// the daemon's master DSN (an experiment: "synchronous_commit=off" makes its
// acknowledgements and flag updates asynchronous).
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
)

type phase struct {
	consumer         string
	rows             int
	tps              float64
	applied, visible []float64 // milliseconds, sorted
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
	consumers := strings.Fields(k.String("CONSUMERS", "goreplica_2pc goreplica_1pc native"))
	poll, err := time.ParseDuration(k.String("POLL", "1s"))
	if err != nil {
		return fmt.Errorf("POLL: %w", err)
	}
	masterOpts := k.String("DAEMON_MASTER_OPTIONS", "")
	command := k.Command("./bench/latency")

	o := rig.PairOptions{
		SlaveColumns:   ", applied_at timestamptz DEFAULT clock_timestamp()",
		MasterSettings: map[string]string{"track_commit_timestamp": "on"},
		SlaveSettings:  map[string]string{"track_commit_timestamp": "on"},
		Poll:           poll,
		// An experiment knob: settings for the daemon's master sessions,
		// e.g. DAEMON_MASTER_OPTIONS=synchronous_commit=off.
		MasterDSNOptions: masterOpts,
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

	var phases []phase
	for _, c := range consumers {
		ph, err := measure(ctx, p, dir, c, rate, secs, clients)
		if err != nil {
			return err
		}
		phases = append(phases, ph)
		rig.Logf("%s: %d rows at %.0f tps: applied p50 %.1f ms p99 %.1f ms max %.1f ms", c, ph.rows, ph.tps,
			rig.Percentile(ph.applied, 50), rig.Percentile(ph.applied, 99), rig.Percentile(ph.applied, 100))
	}

	fmt.Println()
	rig.Header("latency: commit on the master to visible on the slave at a steady rate", command)
	fmt.Printf("# pgbench -R %d -T %d, %d clients, single-row INSERT transactions, synchronous_commit on; goreplica poll_interval %v (wake-ups by NOTIFY)\n", rate, secs, clients, poll)
	if masterOpts != "" {
		fmt.Printf("# the daemon's master DSN has %q appended\n", masterOpts)
	}
	fmt.Println("# visible = slave commit time - master commit time (track_commit_timestamp); applied = slave applied_at - master now() (anchor's measure)")
	fmt.Println("# targets (DESIGN.md): visible p50 < 10 ms, p99 < 50 ms; anchors: Londiste p50 1260 / p99 2850 ms, native p50 1 / p99 4 ms")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "consumer\trows\ttps\tvisible p50 ms\tp99 ms\tmax ms\tapplied p50 ms\tp99 ms\tmax ms\t")
	for _, ph := range phases {
		vis := fmt.Sprintf("%.1f\t%.1f\t%.1f", rig.Percentile(ph.visible, 50), rig.Percentile(ph.visible, 99), rig.Percentile(ph.visible, 100))
		if ph.consumer == "native" {
			vis = "n/a\tn/a\tn/a"
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%.1f\t%.1f\t%.1f\t\n", ph.consumer, ph.rows, ph.tps, vis,
			rig.Percentile(ph.applied, 50), rig.Percentile(ph.applied, 99), rig.Percentile(ph.applied, 100))
	}
	if len(o.Native) > 0 {
		fmt.Println("# native: n/a because a subscription's commits carry the origin's commit time; it applies each source")
		fmt.Println("# transaction as one slave transaction, so its visible lag is its applied lag plus one commit on the slave")
	}
	tw.Flush()
	return nil
}

// measure runs the steady load with consumer c running and computes the lags.
func measure(ctx context.Context, p *rig.Pair, dir, c string, rate, secs, clients int) (phase, error) {
	ph := phase{consumer: c}
	slave := p.S[c]
	if err := rig.Exec(ctx, p.M, `CHECKPOINT`); err != nil {
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
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := catchUp(wctx, p, slave); err != nil {
		return ph, fmt.Errorf("%s: catch up before the steady load: %w", c, err)
	}
	after, err := rig.MaxID(ctx, p.M)
	if err != nil {
		return ph, err
	}
	rig.Logf("%s: pgbench -R %d -T %d, %d clients", c, rate, secs, clients)
	res, err := rig.Pgbench{Dir: dir, Script: "insert.sql", DB: rig.MasterDB, Clients: clients,
		Duration: time.Duration(secs) * time.Second, Rate: rate}.Run(ctx, p.Master)
	if err != nil {
		return ph, err
	}
	ph.tps = res.TPS
	maxID, err := rig.MaxID(ctx, p.M)
	if err != nil {
		return ph, err
	}
	var want int64
	if err := p.M.QueryRowContext(ctx, `SELECT count(*) FROM test WHERE id > $1`, after).Scan(&want); err != nil {
		return ph, err
	}
	if _, err := rig.WaitRows(wctx, slave, after, maxID, want, 20*time.Millisecond); err != nil {
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
	err = query(ctx, slave, `SELECT id, applied_at, pg_xact_commit_timestamp(xmin) FROM test WHERE id > $1`, after, func(id int64, a, b time.Time) {
		m, ok := master[id]
		if !ok {
			return
		}
		ph.applied = append(ph.applied, float64(a.Sub(m.f))/float64(time.Millisecond))
		ph.visible = append(ph.visible, float64(b.Sub(m.commit))/float64(time.Millisecond))
	})
	if err != nil {
		return ph, err
	}
	ph.rows = len(ph.visible)
	sort.Float64s(ph.applied)
	sort.Float64s(ph.visible)
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
