// Package demo runs goreplica's demonstration: a throwaway master and two
// slaves started from the local PostgreSQL binaries, a live write workload on
// the master, one status line a second, and a final comparison of every
// table. It does not parse a command line or read a configuration file.
package demo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goreplica/goreplica/notify"
	"github.com/goreplica/goreplica/pgserver"
	"github.com/goreplica/goreplica/replicator"
)

const demoSchema = `
CREATE TABLE customer (
  id      serial PRIMARY KEY,
  name    text NOT NULL,
  email   text,
  balance numeric(12,2) NOT NULL DEFAULT 0
);
CREATE TABLE "order" (
  id          bigserial PRIMARY KEY,
  customer_id int NOT NULL REFERENCES customer,
  amount      numeric(12,2) NOT NULL,
  note        text,
  created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO customer (name, email, balance)
SELECT 'customer ' || g, 'c' || g || '@example.com', 100 FROM generate_series(1, 200) g;
`

var demoTables = []string{"customer", `"order"`}

// Options says how long and how hard the demonstration writes, and where it
// prints.
type Options struct {
	Duration   time.Duration // how long the write workload runs
	Clients    int           // concurrent writers on the master
	TriggerSQL string        // the SQL goreplica installs (trigger.sql)
	Stdout     io.Writer     // progress lines
	Stderr     io.Writer     // the replicator's warnings and errors
}

// Run starts the servers, replicates the workload for o.Duration, waits for
// the slaves to match the master and removes the servers.
func Run(ctx context.Context, o Options) error {
	stdout, stderr := o.Stdout, o.Stderr
	if _, err := pgserver.BinariesAvailable(pgserver.Options{}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	say("starting a throwaway master and two slaves from the local PostgreSQL binaries...")
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	settings := []map[string]string{nil, {"max_prepared_transactions": "10"}, {"max_prepared_transactions": "10"}}
	servers := make([]*pgserver.Server, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = pgserver.Start(startCtx, pgserver.Options{Settings: settings[i]})
		}()
	}
	wg.Wait()
	defer func() {
		for _, s := range servers {
			if s != nil {
				s.Close()
			}
		}
		say("servers stopped and removed")
	}()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	names := []string{"paris", "lyon", "nice"}
	dbs := make([]*sql.DB, 3)
	for i, s := range servers {
		if err := s.CreateDatabase(startCtx, "shop"); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		db, err := sql.Open("postgres", s.DSN("shop"))
		if err != nil {
			return err
		}
		defer db.Close()
		dbs[i] = db
		if _, err := db.ExecContext(startCtx, demoSchema); err != nil {
			return fmt.Errorf("demo: schema on %s: %w", names[i], err)
		}
		say("  %-5s %s  (psql %q)", names[i], roleOf(i), s.URL("shop"))
	}
	opts := replicator.Options{
		Master:        replicator.Node{Name: "paris", DSN: servers[0].DSN("shop")},
		Slaves:        []replicator.Node{{Name: "lyon", DSN: servers[1].DSN("shop"), TwoPhase: true}, {Name: "nice", DSN: servers[2].DSN("shop"), TwoPhase: false}},
		Tables:        []string{"public.*"},
		PollInterval:  time.Second,
		PurgeInterval: 5 * time.Second,
		MaxBackoff:    5 * time.Second,
		// Only warnings and errors reach the terminal; the status lines
		// below show what the daemon does.
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	rep, err := replicator.Init(startCtx, opts, o.TriggerSQL)
	if err != nil {
		return fmt.Errorf("demo: init: %w", err)
	}
	say("goreplica init: capturing %s; slaves lyon (two-phase commit) and nice (plain commit) registered", strings.Join(rep.Tables, ", "))

	l, err := notify.Listen(opts.Master.DSN, opts.Logger)
	if err != nil {
		return err
	}
	defer l.Close()
	opts.Waker = l
	r, err := replicator.New(opts)
	if err != nil {
		return err
	}
	defer r.Close()
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- r.Run(runCtx) }()
	defer func() {
		stopRun()
		<-runDone
	}()

	say("running %d writers on paris for %s (orders, payments, deletes, multi-row transactions)...", o.Clients, o.Duration)
	var commits atomic.Int64
	workCtx, stopWork := context.WithTimeout(ctx, o.Duration)
	defer stopWork()
	var workers sync.WaitGroup
	workErr := make(chan error, o.Clients)
	for c := range o.Clients {
		workers.Add(1)
		go func() {
			defer workers.Done()
			if err := demoWorkload(workCtx, dbs[0], c, &commits); err != nil && workCtx.Err() == nil {
				workErr <- err
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	start := time.Now()
	// Each line shows the seconds elapsed (one line per second) and the rate
	// of commits since the previous line.
	last, lastAt, secs := int64(0), start, 0
loop:
	for {
		select {
		case <-workCtx.Done():
			break loop
		case err := <-workErr:
			stopWork()
			workers.Wait()
			return fmt.Errorf("demo: workload: %w", err)
		case <-tick.C:
			n, now := commits.Load(), time.Now()
			st, err := replicator.GetStatus(ctx, opts)
			secs++
			line := fmt.Sprintf("  %4ds  paris %5.0f tx/s", secs, float64(n-last)/now.Sub(lastAt).Seconds())
			last, lastAt = n, now
			if err == nil {
				for _, s := range st.Slaves {
					line += fmt.Sprintf(" | %s %s lag %.2fs pending %d", s.Name, s.State, s.LagSeconds, s.PendingEvents)
				}
			}
			say("%s", line)
		}
	}
	tick.Stop()
	workers.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	say("workload done: %d transactions committed on paris; waiting for the slaves to catch up...", commits.Load())
	waitCtx, cancelWait := context.WithTimeout(ctx, 60*time.Second)
	defer cancelWait()
	for {
		same, report, err := demoCompare(waitCtx, dbs)
		if err == nil && same {
			for _, line := range report {
				say("  %s", line)
			}
			say("slaves match the master exactly.")
			return nil
		}
		select {
		case <-waitCtx.Done():
			return fmt.Errorf("demo: slaves did not match the master within 60s: %s", strings.Join(report, "; "))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func roleOf(i int) string {
	if i == 0 {
		return "master"
	}
	return "slave "
}

// demoWorkload writes on the master until ctx ends.
func demoWorkload(ctx context.Context, db *sql.DB, seed int, commits *atomic.Int64) error {
	rnd := rand.New(rand.NewPCG(uint64(seed), 42))
	for ctx.Err() == nil {
		cust := 1 + rnd.IntN(200)
		var err error
		switch k := rnd.IntN(10); {
		case k < 6: // an order and its payment, in one transaction
			err = inTx(ctx, db, func(tx *sql.Tx) error {
				amount := float64(rnd.IntN(10000)) / 100
				if _, err := tx.ExecContext(ctx, `INSERT INTO "order" (customer_id, amount, note) VALUES ($1, $2, $3)`,
					cust, amount, fmt.Sprintf("it's order #%d ✓", rnd.IntN(1e6))); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, `UPDATE customer SET balance = balance - $2 WHERE id = $1`, cust, amount)
				return err
			})
		case k < 8:
			_, err = db.ExecContext(ctx, `UPDATE customer SET email = $2 WHERE id = $1`, cust, fmt.Sprintf("c%d+%d@example.com", cust, rnd.IntN(100)))
		case k < 9:
			_, err = db.ExecContext(ctx, `DELETE FROM "order" WHERE id = (SELECT min(id) FROM "order" WHERE customer_id = $1)`, cust)
		default:
			_, err = db.ExecContext(ctx, `UPDATE customer SET name = name || '.' , balance = balance + 1 WHERE id % 20 = $1`, cust%20)
		}
		if err != nil {
			return err
		}
		commits.Add(1)
	}
	return nil
}

func inTx(ctx context.Context, db *sql.DB, f func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// demoCompare compares each table's rows on the slaves with the master's.
func demoCompare(ctx context.Context, dbs []*sql.DB) (bool, []string, error) {
	same := true
	var report []string
	for _, t := range demoTables {
		sums := make([]string, len(dbs))
		for i, db := range dbs {
			var n int64
			var sum string
			if err := db.QueryRowContext(ctx, `SELECT count(*), coalesce(md5(string_agg(x::text, E'\n' ORDER BY x::text)), '') FROM `+t+` x`).Scan(&n, &sum); err != nil {
				return false, report, err
			}
			sums[i] = fmt.Sprintf("%d rows, md5 %s", n, sum)
		}
		for _, s := range sums[1:] {
			if s != sums[0] {
				same = false
			}
		}
		report = append(report, fmt.Sprintf("table %-9s paris %s | lyon %s | nice %s", t, sums[0], sums[1][strings.Index(sums[1], "md5"):], sums[2][strings.Index(sums[2], "md5"):]))
	}
	return same, report, nil
}
