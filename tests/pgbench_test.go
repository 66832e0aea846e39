package tests

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// pgbenchTables are the tables 'pgbench -i' creates; pgbench_history gets a
// primary key (pgbench creates it without one) so that it is replicated too.
var pgbenchTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"}

func TestPgbenchWithGracefulRestart(t *testing.T) {
	t.Parallel()
	testPgbench(t, true)
}

func TestPgbenchWithKilledDaemon(t *testing.T) {
	t.Parallel()
	testPgbench(t, false)
}

// testPgbench replicates a TPC-B-like pgbench run (-N: accounts and
// history) from a master to two slaves, one applying with two-phase commit
// and one without, while the daemon is stopped (SIGTERM when graceful, else
// SIGKILL) and started again halfway through; then every slave must equal
// the master and status must show every slave caught up.
func testPgbench(t *testing.T, graceful bool) {
	ctx := testContext(t, 3*time.Minute)
	ms, ss := servers(t)
	master := newDB(t, ms, "pgbench_master")
	slaves := []database{newDB(t, ss, "pgbench_2pc"), newDB(t, ss, "pgbench_1pc")}

	pgbench(ctx, t, master, "-i", "-s", "1", "-q", master.name)
	execAll(t, `ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY`, master)
	for _, s := range slaves {
		copyDatabase(ctx, t, master, s)
	}

	cfg := writeConfig(t, configFile{
		master: node{name: "bank", dsn: master.dsn()},
		slaves: []node{
			{name: "two-phase", dsn: slaves[0].dsn(), twoPhase: boolp(true)},
			{name: "one-phase", dsn: slaves[1].dsn(), twoPhase: boolp(false)},
		},
	})
	r := mustRun(t, nil, "init", "-c", cfg)
	for _, tbl := range pgbenchTables {
		if !strings.Contains(r.stdout, tbl) {
			t.Errorf("init does not say it captures %s:\n%s", tbl, r)
		}
	}

	d := startDaemon(t, cfg)
	const seconds = 20
	load := ms.Command(ctx, "pgbench", "-N", "-c", "4", "-j", "2", "-T", itoa(seconds), "-n", master.name)
	load.Dir = os.TempDir()
	var loadOut bytes.Buffer
	load.Stdout, load.Stderr = &loadOut, &loadOut
	started := time.Now()
	if err := load.Start(); err != nil {
		t.Fatalf("start pgbench: %v", err)
	}
	loadDone := make(chan error, 1)
	go func() { loadDone <- load.Wait() }()

	// Halfway through, once the slaves have received some of the load,
	// interrupt the daemon and start it again.
	waitFor(ctx, t, "slaves receive pgbench transactions", func(ctx context.Context) (bool, string) {
		d.requireAlive()
		for _, s := range slaves {
			var n int64
			if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM pgbench_history`).Scan(&n); err != nil {
				return false, err.Error()
			}
			if n == 0 {
				return false, "slave database " + s.name + " has no pgbench_history row yet"
			}
		}
		return time.Since(started) > seconds/2*time.Second, ""
	})
	if graceful {
		d.stop()
		for _, s := range slaves {
			if n := preparedCount(t, s); n != 0 {
				t.Errorf("slave database %s holds %d prepared transactions after SIGTERM", s.name, n)
			}
		}
	} else {
		d.kill()
		t.Logf("after SIGKILL the two-phase slave holds %d prepared transactions", preparedCount(t, slaves[0]))
		if n := preparedCount(t, slaves[1]); n != 0 {
			t.Errorf("slave without two-phase commit holds %d prepared transactions", n)
		}
	}
	d = startDaemon(t, cfg)

	select {
	case err := <-loadDone:
		if err != nil {
			t.Fatalf("pgbench: %v\n%s", err, loadOut.String())
		}
	case <-ctx.Done():
		t.Fatalf("pgbench did not finish: %v", ctx.Err())
	}
	t.Logf("pgbench:\n%s", lastLines(loadOut.String(), 6))

	waitConverged(ctx, t, master, slaves, pgbenchTables...)
	waitAllCaughtUp(ctx, t, cfg, len(slaves))
	var history int64
	if err := master.db.QueryRowContext(ctx, `SELECT count(*) FROM pgbench_history`).Scan(&history); err != nil {
		t.Fatal(err)
	}
	if history < 100 {
		t.Errorf("pgbench made only %d transactions: the test did not load the replicator", history)
	}
	d.stop()
	for _, s := range slaves {
		if n := preparedCount(t, s); n != 0 {
			t.Errorf("slave database %s holds %d prepared transactions after a clean stop", s.name, n)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pgbench runs pgbench against d's server and returns its output.
func pgbench(ctx context.Context, t *testing.T, d database, args ...string) string {
	t.Helper()
	cmd := d.srv.Command(ctx, "pgbench", args...)
	cmd.Dir = os.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}
