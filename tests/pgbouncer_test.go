//go:build unix

package tests

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/goreplica/goreplica/tests/internal/bouncer"
)

// protocolTrouble are what lib/pq and PostgreSQL say when two clients'
// extended-protocol messages are mixed up by a transaction pool, or when a
// pooler refuses what goreplica sends.
var protocolTrouble = []string{
	"unexpected", "prepared statement", "bind message", "unnamed", "protocol",
	"unsupported startup parameter", "another goreplica process", "panic",
}

func requireNoTrouble(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range protocolTrouble {
		if strings.Contains(out, s) {
			t.Errorf("%s says %q:\n%s", what, s, out)
			return
		}
	}
}

// insertRows inserts n rows into t on the master, one transaction each,
// with ids from first on.
func insertRows(t *testing.T, master database, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		execAll(t, fmt.Sprintf(`INSERT INTO t VALUES (%d, 'row %d'); UPDATE t SET v = v || '+' WHERE id = %d`, i, i, i/2), master)
	}
}

// hammer runs parameterized queries through the pooler on db from several
// clients until ctx ends, as applications sharing the pool would: half of
// them with lib/pq's default protocol (Parse/Describe/Sync, then
// Bind/Execute/Sync, which a transaction pool can split between server
// connections: their own errors are not goreplica's business), half in one
// exchange. It returns a function that waits for them and says how many
// queries succeeded.
func hammer(ctx context.Context, dsn string, clients int) (func() int, error) {
	var dbs []*sql.DB
	for _, extra := range []string{"", " binary_parameters=yes"} {
		c, err := pq.NewConnector(dsn + extra)
		if err != nil {
			return nil, err
		}
		db := sql.OpenDB(c)
		db.SetMaxOpenConns(clients)
		dbs = append(dbs, db)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for i := range clients {
		db := dbs[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var x int
				if db.QueryRowContext(ctx, `SELECT $1::int + count(*)::int FROM t`, 1).Scan(&x) == nil {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}
		}()
	}
	return func() int {
		wg.Wait()
		for _, db := range dbs {
			db.Close()
		}
		return n
	}, nil
}

// TestPgbouncerInFrontOfSlaves runs the daemon with its slaves behind a
// real pgbouncer in session and in transaction pooling mode (two server
// connections per database, shared with other clients): it replicates,
// restarts at once after a clean stop and after a kill (no lease left on
// a pooled connection), and no protocol error shows while other clients
// and status share the pool.
func TestPgbouncerInFrontOfSlaves(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			ctx := testContext(t, 4*time.Minute)
			ms, ss := servers(t)
			// In transaction mode the daemon and four other clients
			// per database share two server connections; in session mode
			// each client holds one for as long as it is connected.
			size := 2
			if mode == "session" {
				size = 10
			}
			pool := bouncer.Start(t, ss, bouncer.Options{Mode: mode, PoolSize: size})
			master := newDB(t, ms, "pgb_"+mode+"_m")
			slaves := []database{newDB(t, ss, "pgb_"+mode+"_a"), newDB(t, ss, "pgb_"+mode+"_b")}
			execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, master, slaves[0], slaves[1])
			cfg := writeConfig(t, configFile{
				master: node{name: "paris", dsn: master.dsn()},
				slaves: []node{
					{name: "lyon", dsn: pool.DSN(slaves[0].name)},
					{name: "nice", dsn: pool.DSN(slaves[1].name), twoPhase: boolp(false)},
				},
			})
			r := mustRun(t, nil, "init", "-c", cfg)
			requireNoTrouble(t, "init", r.stdout+r.stderr)

			hctx, stopHammer := context.WithCancel(ctx)
			var waits []func() int
			for _, s := range slaves {
				wait, err := hammer(hctx, pool.DSN(s.name), 4)
				if err != nil {
					t.Fatal(err)
				}
				waits = append(waits, wait)
			}

			var outputs []string
			d := startDaemon(t, cfg)
			insertRows(t, master, 1, 50)
			waitConverged(ctx, t, master, slaves, "t")
			st, r := status(t, cfg)
			requireNoTrouble(t, "status", r.stdout+r.stderr)
			if len(st.Slaves) != 2 {
				t.Fatalf("status shows %d slaves\n%s", len(st.Slaves), r)
			}

			// A clean stop, then a restart at once.
			d.stop()
			outputs = append(outputs, d.stderr.String())
			d = startDaemon(t, cfg)
			insertRows(t, master, 100, 50)
			waitConverged(ctx, t, master, slaves, "t")

			// A kill (no lease released, prepared batches possibly in
			// doubt), then a restart at once.
			d.kill()
			outputs = append(outputs, d.stderr.String())
			d = startDaemon(t, cfg)
			insertRows(t, master, 200, 50)
			waitConverged(ctx, t, master, slaves, "t")
			waitAllCaughtUp(ctx, t, cfg, 2)
			d.stop()
			outputs = append(outputs, d.stderr.String())

			stopHammer()
			total := 0
			for _, w := range waits {
				total += w()
			}
			if total == 0 {
				t.Errorf("the other clients ran no query through the pool")
			}
			for i, out := range outputs {
				requireNoTrouble(t, fmt.Sprintf("goreplica run #%d", i+1), out)
			}
		})
	}
}

// TestPgbouncerStatementPoolRefused: a statement pool cannot carry a
// batch's transaction; init refuses it, run refuses to start, and status
// warns, each naming the slave and saying which pool modes work.
func TestPgbouncerStatementPoolRefused(t *testing.T) {
	t.Parallel()
	ms, ss := servers(t)
	pool := bouncer.Start(t, ss, bouncer.Options{Mode: "statement"})
	master := newDB(t, ms, "pgbst_m")
	slave := newDB(t, ss, "pgbst_s")
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, master, slave)
	direct := writeConfig(t, configFile{master: node{name: "paris", dsn: master.dsn()}, slaves: []node{{name: "lyon", dsn: slave.dsn()}}})
	pooled := writeConfig(t, configFile{master: node{name: "paris", dsn: master.dsn()}, slaves: []node{{name: "lyon", dsn: pool.DSN(slave.name)}}})
	want := []string{"slave lyon", "statement pooling", "pool_mode = session or transaction"}
	r := goreplica(t, nil, "init", "-c", pooled)
	if r.code == 0 {
		t.Errorf("init through a statement pool succeeded\n%s", r)
	}
	requireAll(t, "init", r, want)
	mustRun(t, nil, "init", "-c", direct)
	r = goreplica(t, nil, "run", "-c", pooled)
	if r.code == 0 {
		t.Errorf("run through a statement pool exited 0\n%s", r)
	}
	requireAll(t, "run", r, want)
	r = statusRun(t, nil, "status", "-c", pooled) // exit 4: no daemon runs
	requireAll(t, "status", r, append(want, "WARNING"))
}

func requireAll(t *testing.T, what string, r result, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(r.stdout+r.stderr, w) {
			t.Errorf("%s: output lacks %q\n%s", what, w, r)
		}
	}
}

// TestPgbouncerInFrontOfMaster: through a session pool the master works,
// LISTEN included (the daemon's own test notification comes back); a transaction or statement pool in front of the master
// is refused by init and run and shown by status; a setting the DSN
// passes at start-up that pgbouncer refuses is reported as what it is.
func TestPgbouncerInFrontOfMaster(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	ms, ss := servers(t)
	master := newDB(t, ms, "pgbm_m")
	slave := newDB(t, ss, "pgbm_s")
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, master, slave)

	t.Run("session", func(t *testing.T) {
		pool := bouncer.Start(t, ms, bouncer.Options{Mode: "session", PoolSize: 5})
		cfg := writeConfig(t, configFile{
			master: node{name: "paris", dsn: pool.DSN(master.name)},
			slaves: []node{{name: "lyon", dsn: slave.dsn()}},
			poll:   "1h",
		})
		r := mustRun(t, nil, "init", "-c", cfg)
		requireNoTrouble(t, "init", r.stdout+r.stderr)
		d := startDaemon(t, cfg)
		waitFor(ctx, t, "the daemon says notifications arrive", func(context.Context) (bool, string) {
			out := d.stderr.String()
			return strings.Contains(out, "notifications from the master arrive") || strings.Contains(out, "no notification arrived"), out
		})
		for round := 0; round < 3; round++ {
			insertRows(t, master, 1000*(round+1), 5)
			waitConverged(ctx, t, master, []database{slave}, "t")
		}
		st, r := status(t, cfg)
		if len(st.Slaves) != 1 || st.Slaves[0].State != "running" || strings.Contains(r.stdout, "warnings") {
			t.Errorf("status through a session pool:\n%s", r)
		}
		d.stop()
		out := d.stderr.String()
		requireNoTrouble(t, "goreplica run", out)
		if strings.Contains(out, "no notification arrived") {
			t.Errorf("notifications did not arrive through a session pool:\n%s", out)
		}

		// A startup parameter pgbouncer does not know.
		bad := writeConfig(t, configFile{
			master: node{name: "paris", dsn: pool.DSN(master.name) + " search_path=public"},
			slaves: []node{{name: "lyon", dsn: slave.dsn()}},
		})
		r = goreplica(t, nil, "init", "-c", bad)
		if r.code == 0 {
			t.Errorf("init with a startup parameter pgbouncer refuses succeeded\n%s", r)
		}
		requireAll(t, "init", r, []string{"master paris", "unsupported startup parameter", "ignore_startup_parameters"})
		r = goreplica(t, nil, "status", "-c", bad)
		requireAll(t, "status", r, []string{"master paris", "CHECK ITS DSN", "unsupported startup parameter", "ignore_startup_parameters"})
		// The daemon reports it as an error in its configuration, not as
		// a server it cannot reach.
		d = startDaemon(t, bad)
		waitFor(ctx, t, "the daemon reports the refused parameter", func(context.Context) (bool, string) {
			out := d.stderr.String()
			return strings.Contains(out, "ignore_startup_parameters") && strings.Contains(out, "slave stopped"), out
		})
		d.stop()
		if out := d.stderr.String(); strings.Contains(out, "state=unreachable") {
			t.Errorf("a refused start-up parameter is reported as unreachable:\n%s", out)
		}
	})

	for _, mode := range []string{"transaction", "transaction round robin", "statement"} {
		t.Run(mode, func(t *testing.T) {
			opts := bouncer.Options{Mode: mode}
			if mode == "transaction round robin" {
				// Idle server connections handed out in turn, not the
				// last used first.
				opts = bouncer.Options{Mode: "transaction", PoolSize: 4, Extra: []string{"server_round_robin = 1"}}
			}
			pool := bouncer.Start(t, ms, opts)
			cfg := writeConfig(t, configFile{
				master: node{name: "paris", dsn: pool.DSN(master.name)},
				slaves: []node{{name: "lyon", dsn: slave.dsn()}},
			})
			want := []string{"master paris", "pool_mode = session", "LISTEN"}
			r := goreplica(t, nil, "init", "-c", cfg)
			if r.code == 0 {
				t.Errorf("init with the master behind a %s pool succeeded\n%s", mode, r)
			}
			requireAll(t, "init", r, want)
			r = goreplica(t, nil, "run", "-c", cfg)
			if r.code == 0 {
				t.Errorf("run with the master behind a %s pool exited 0\n%s", mode, r)
			}
			requireAll(t, "run", r, want)
			r = goreplica(t, nil, "status", "-c", cfg)
			requireAll(t, "status", r, append(want, "WARNING"))
			requireNoTrouble(t, "status", r.stdout+r.stderr)
		})
	}
}
