package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goreplica/goreplica/pgserver"
	"github.com/goreplica/goreplica/pgserver/pgtest"
)

// TestInitWithoutPreparedTransactions: a two-phase slave on a server with
// max_prepared_transactions = 0 (PostgreSQL's default) is refused by init
// with the setting to change, and nothing is installed; two_phase = false
// is accepted there.
func TestInitWithoutPreparedTransactions(t *testing.T) {
	t.Parallel()
	ms, _ := servers(t)
	master := newDB(t, ms, "noprep_master")
	// The master's server keeps PostgreSQL's default of 0.
	slave := newDB(t, ms, "noprep_slave")
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY)`, master, slave)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: master.dsn()},
		slaves: []node{{name: "s", dsn: slave.dsn()}},
	})
	r := goreplica(t, nil, "init", "-c", cfg)
	if r.code == 0 {
		t.Fatalf("init accepted a two-phase slave without prepared transactions\n%s", r)
	}
	for _, want := range []string{"slave s", "max_prepared_transactions", "two_phase = false"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("init's error lacks %q\n%s", want, r)
		}
	}
	for _, d := range []database{master, slave} {
		if hasReplicaSchema(t, d) || userTriggers(t, d) != 0 {
			t.Errorf("database %s: a failed init installed something", d.name)
		}
	}
	cfg = writeConfig(t, configFile{
		master: node{name: "m", dsn: master.dsn()},
		slaves: []node{{name: "s", dsn: slave.dsn(), twoPhase: boolp(false)}},
	})
	mustRun(t, nil, "init", "-c", cfg)
}

// TestInitAgainCapturesNewTable: a table created on the master and the
// slaves while the daemon runs is replicated once init has run again, with
// no restart of the daemon.
func TestInitAgainCapturesNewTable(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 90*time.Second)
	ms, ss := servers(t)
	master := newDB(t, ms, "newtbl_master")
	slaves := []database{newDB(t, ss, "newtbl_a"), newDB(t, ss, "newtbl_b")}
	all := append([]database{master}, slaves...)
	execAll(t, `CREATE TABLE old (id int PRIMARY KEY, v text)`, all...)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: master.dsn()},
		slaves: []node{{name: "a", dsn: slaves[0].dsn()}, {name: "b", dsn: slaves[1].dsn(), twoPhase: boolp(false)}},
	})
	mustRun(t, nil, "init", "-c", cfg)
	d := startDaemon(t, cfg)
	execAll(t, `INSERT INTO old VALUES (1, 'one')`, master)
	waitConverged(ctx, t, master, slaves, "old")

	execAll(t, `CREATE TABLE fresh (id int PRIMARY KEY, v text)`, all...)
	r := mustRun(t, nil, "init", "-c", cfg)
	if !strings.Contains(r.stdout, "fresh") {
		t.Errorf("init does not say it captures the new table\n%s", r)
	}
	execAll(t, `INSERT INTO fresh SELECT g, 'v' || g FROM generate_series(1, 20) g; UPDATE old SET v = 'uno'`, master)
	waitConverged(ctx, t, master, slaves, "old", "fresh")
	waitAllCaughtUp(ctx, t, cfg, 2)
	d.requireAlive()
	d.stop()
}

// TestSecondDaemonAppliesNothing: a second 'goreplica run' on the same
// configuration (started by mistake) must not apply anything twice; the
// slaves end equal to the master.
func TestSecondDaemonAppliesNothing(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 90*time.Second)
	ms, ss := servers(t)
	master := newDB(t, ms, "twod_master")
	slaves := []database{newDB(t, ss, "twod_a"), newDB(t, ss, "twod_b")}
	all := append([]database{master}, slaves...)
	// A counter table: an update applied twice, or skipped, shows in the
	// checksum.
	execAll(t, `CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL)`, all...)
	execAll(t, `INSERT INTO c SELECT g, 0 FROM generate_series(1, 10) g`, all...)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: master.dsn()},
		slaves: []node{{name: "a", dsn: slaves[0].dsn()}, {name: "b", dsn: slaves[1].dsn(), twoPhase: boolp(false)}},
	})
	mustRun(t, nil, "init", "-c", cfg)
	first := startDaemon(t, cfg)
	second := startDaemon(t, cfg)
	for i := 0; i < 200; i++ {
		execAll(t, fmt.Sprintf(`UPDATE c SET n = n + 1 WHERE id = %d`, i%10+1), master)
	}
	waitConverged(ctx, t, master, slaves, "c")
	waitFor(ctx, t, "the second daemon says another process applies", func(context.Context) (bool, string) {
		out := first.stderr.String() + second.stderr.String()
		return strings.Contains(out, "another goreplica process"), out
	})
	first.requireAlive()
	second.requireAlive()
	// The mistaken second daemon goes away: the first one still applies,
	// and status says so.
	second.stop()
	for i := 0; i < 20; i++ {
		execAll(t, fmt.Sprintf(`UPDATE c SET n = n + 1 WHERE id = %d`, i%10+1), master)
	}
	waitConverged(ctx, t, master, slaves, "c")
	waitAllCaughtUp(ctx, t, cfg, 2)
	first.stop()
}

// TestPasswordFileNeverPrinted: a password read from password_file (the
// other way to keep secrets out of the configuration) is not printed
// either, in the key=value and the URL forms of a DSN.
func TestPasswordFileNeverPrinted(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 90*time.Second)
	ms, ss := servers(t)
	master := newDB(t, ms, "pwf_master")
	slave := newDB(t, ss, "pwf_slave")
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY)`, master, slave)
	const password = "fr0m-a-file-s3cret"
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "goreplica.toml", fmt.Sprintf(`[master]
name = "m"
dsn = %s
password_file = %s

[[slave]]
name = "s"
dsn = %s
password_file = %s

[replicate]
poll_interval = "200ms"
`, tomlString(master.dsn()), tomlString(pwFile),
		tomlString(fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", ss.Host, ss.Port, slave.name)), tomlString(pwFile)))
	var outputs []string
	for _, args := range [][]string{{"init"}, {"status"}, {"status", "--json"}} {
		r := statusRun(t, []string{"GOREPLICA_LOG_LEVEL=debug"}, append(args, "-c", cfg)...)
		outputs = append(outputs, r.String())
	}
	d := startDaemon(t, cfg, "GOREPLICA_LOG_LEVEL=debug")
	execAll(t, `INSERT INTO t VALUES (1)`, master)
	waitConverged(ctx, t, master, []database{slave}, "t")
	d.stop()
	outputs = append(outputs, d.stderr.String())
	for _, out := range outputs {
		if strings.Contains(out, password) {
			t.Errorf("output prints the password from password_file:\n%s", out)
		}
	}
}

// TestMasterDownWhileRunning: the master server goes away and comes back;
// status says the master is unreachable meanwhile, and the daemon, never
// restarted, replicates the changes made after the master's return.
func TestMasterDownWhileRunning(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	_, ss := servers(t)
	own := pgtest.Start(t, pgserver.Options{})
	master := newDB(t, own, "mdown_master")
	slaves := []database{newDB(t, ss, "mdown_a"), newDB(t, ss, "mdown_b")}
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, append([]database{master}, slaves...)...)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: master.dsn()},
		slaves: []node{{name: "a", dsn: slaves[0].dsn()}, {name: "b", dsn: slaves[1].dsn(), twoPhase: boolp(false)}},
	})
	mustRun(t, nil, "init", "-c", cfg)
	d := startDaemon(t, cfg)
	execAll(t, `INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g`, master)
	waitConverged(ctx, t, master, slaves, "t")

	if err := own.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	st, r := status(t, cfg)
	if st.MasterReachable || st.Error == "" || r.code != 3 {
		t.Errorf("status --json with the master down: want master_reachable false, an error field and exit 3\n%s", r)
	}
	human := statusRun(t, nil, "status", "-c", cfg)
	if !strings.Contains(human.stdout, "master m: UNREACHABLE") || human.code != 3 {
		t.Errorf("status does not say the master is unreachable\n%s", human)
	}
	d.requireAlive()

	if err := own.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	execAll(t, `INSERT INTO t SELECT g, 'after' FROM generate_series(101, 200) g; UPDATE t SET v = 'changed' WHERE id % 2 = 0`, master)
	waitConverged(ctx, t, master, slaves, "t")
	waitAllCaughtUp(ctx, t, cfg, 2)
	d.stop()
}

// TestPgbenchFullTPCB: the full TPC-B-like script updates the single
// branch and ten tellers from every client: the same rows change in
// concurrent transactions, and each slave must end with the master's
// values (changes to a row applied in the master's order).
func TestPgbenchFullTPCB(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	ms, ss := servers(t)
	master := newDB(t, ms, "tpcb_master")
	slaves := []database{newDB(t, ss, "tpcb_2pc"), newDB(t, ss, "tpcb_1pc")}
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
	mustRun(t, nil, "init", "-c", cfg)
	d := startDaemon(t, cfg)
	out := pgbench(ctx, t, master, "-c", "4", "-j", "2", "-T", "10", "-n", master.name)
	t.Logf("pgbench:\n%s", lastLines(out, 6))
	waitConverged(ctx, t, master, slaves, pgbenchTables...)
	waitAllCaughtUp(ctx, t, cfg, len(slaves))
	d.stop()
}
