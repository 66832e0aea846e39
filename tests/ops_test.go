package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goreplica/goreplica/pgserver"
	"github.com/goreplica/goreplica/pgserver/pgtest"
)

// slaveLine returns the line of 'goreplica status' (human form) for slave
// name, or "".
func slaveLine(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return l
		}
	}
	return ""
}

func TestStatusRunningStoppedLag(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	ms, ss := servers(t)
	master := newDB(t, ms, "status_master")
	slaves := []database{newDB(t, ss, "status_a"), newDB(t, ss, "status_b")}
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, append([]database{master}, slaves...)...)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: master.dsn()},
		slaves: []node{{name: "a", dsn: slaves[0].dsn()}, {name: "b", dsn: slaves[1].dsn(), twoPhase: boolp(false)}},
	})
	mustRun(t, nil, "init", "-c", cfg)

	// No daemon has ever run: stopped.
	st, r := status(t, cfg)
	if len(st.Slaves) != 2 || !st.MasterReachable {
		t.Fatalf("status after init:\n%s", r)
	}
	for _, s := range st.Slaves {
		if s.State != "stopped" || s.PendingEvents != 0 || s.LastError != "" {
			t.Errorf("slave %s before any daemon ran: state %q, pending %d, last_error %q; want stopped, 0, \"\"\n%s",
				s.Name, s.State, s.PendingEvents, s.LastError, r)
		}
	}
	// The JSON keys a monitoring script reads.
	var raw map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	list, _ := raw["slaves"].([]any)
	for _, item := range list {
		obj, _ := item.(map[string]any)
		for _, key := range []string{"name", "state", "lag_seconds", "pending_events", "last_error"} {
			if _, ok := obj[key]; !ok {
				t.Errorf("status --json: slaves[] lacks key %q\n%s", key, r)
			}
		}
	}

	d := startDaemon(t, cfg)
	execAll(t, `INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g`, master)
	waitConverged(ctx, t, master, slaves, "t")
	waitAllCaughtUp(ctx, t, cfg, 2)

	// Idle and caught up: lag is zero by the master's clock, however long
	// ago the last change was. Watched for a few seconds of idleness.
	for idleSince := time.Now(); time.Since(idleSince) < 3*time.Second; {
		st, r = status(t, cfg)
		for _, s := range st.Slaves {
			if s.LagSeconds != 0 || s.State != "running" {
				t.Fatalf("slave %s: state %s, lag_seconds %v on an idle, caught-up master, want running with lag 0\n%s", s.Name, s.State, s.LagSeconds, r)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	human := mustRun(t, nil, "status", "-c", cfg)
	for _, name := range []string{"a", "b"} {
		l := slaveLine(human.stdout, name)
		if !regexp.MustCompile(`^\S+\s+running\s+0\.0s\s+0\s`).MatchString(l) {
			t.Errorf("status line of slave %s is %q, want it running with lag 0.0s and 0 pending\n%s", name, l, human)
		}
	}
	for _, col := range []string{"SLAVE", "STATE", "LAG", "PENDING", "LAST ERROR"} {
		if !strings.Contains(human.stdout, col) {
			t.Errorf("status lacks column %s\n%s", col, human)
		}
	}

	// The daemon stops: both slaves show stopped, and the changes made
	// meanwhile show as pending, with a lag.
	d.stop()
	execAll(t, `UPDATE t SET v = 'changed' WHERE id <= 7`, master)
	st, r = status(t, cfg)
	for _, s := range st.Slaves {
		if s.State != "stopped" || s.PendingEvents != 7 || s.LagSeconds <= 0 || s.LastError != "" {
			t.Errorf("slave %s with the daemon stopped: state %q, pending %d, lag %v, last_error %q; want stopped, 7, > 0, \"\"\n%s",
				s.Name, s.State, s.PendingEvents, s.LagSeconds, s.LastError, r)
		}
	}
	human = statusRun(t, nil, "status", "-c", cfg)
	if human.code != 4 {
		t.Errorf("status exits %d with no daemon running, want 4\n%s", human.code, human)
	}
	if l := slaveLine(human.stdout, "a"); !strings.Contains(l, "stopped") {
		t.Errorf("status line of slave a is %q, want stopped\n%s", l, human)
	}

	// Started again, it catches up.
	startDaemon(t, cfg)
	waitConverged(ctx, t, master, slaves, "t")
	waitAllCaughtUp(ctx, t, cfg, 2)
}

// TestSlaveDownWhileRunning: a slave server that goes away does not stop the
// other slave; status shows it unreachable; once back it catches up by
// itself, without a restart of the daemon.
func TestSlaveDownWhileRunning(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	ms, ss := servers(t)
	own := pgtest.Start(t, pgserver.Options{Settings: slaveSettings})
	master := newDB(t, ms, "down_master")
	up, down := newDB(t, ss, "down_up"), newDB(t, own, "down_down")
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, master, up, down)
	// Passwords come from the environment; the servers trust every
	// connection, so they are accepted and ignored. They must never be
	// printed, also not in the errors of an outage.
	const password = "0utage-pa55word-never-printed"
	env := []string{"GR_TEST_PASSWORD=" + password}
	withPW := func(d database) string { return d.dsn() + " password=${GR_TEST_PASSWORD}" }
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: withPW(master)},
		slaves: []node{{name: "up", dsn: withPW(up)}, {name: "down", dsn: withPW(down)}},
	})
	var outputs []string
	run := func(args ...string) result {
		t.Helper()
		r := mustRun(t, env, append(args, "-c", cfg)...)
		outputs = append(outputs, r.String())
		return r
	}
	statusWithEnv := func() (statusJSON, result) {
		t.Helper()
		st, r := status(t, cfg, env...)
		outputs = append(outputs, r.String())
		return st, r
	}
	run("init")
	d := startDaemon(t, cfg, env...)
	execAll(t, `INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g`, master)
	waitConverged(ctx, t, master, []database{up, down}, "t")

	if err := own.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	execAll(t, `INSERT INTO t SELECT g, 'while down' FROM generate_series(101, 200) g; UPDATE t SET v = 'updated' WHERE id % 3 = 0; DELETE FROM t WHERE id % 10 = 0`, master)
	waitConverged(ctx, t, master, []database{up}, "t")
	waitFor(ctx, t, "status shows slave down unreachable, slave up caught up", func(context.Context) (bool, string) {
		d.requireAlive()
		st, r := statusWithEnv()
		ok := len(st.Slaves) == 2
		for _, s := range st.Slaves {
			switch s.Name {
			case "down":
				ok = ok && s.State == "unreachable" && s.PendingEvents > 0
			case "up":
				ok = ok && s.State == "running" && s.PendingEvents == 0 && s.LastError == ""
			}
		}
		return ok, r.stdout
	})
	human := statusRun(t, env, "status", "-c", cfg)
	if human.code != 4 {
		t.Errorf("status exits %d with a slave unreachable, want 4\n%s", human.code, human)
	}
	if l := slaveLine(human.stdout, "down"); !strings.Contains(l, "unreachable") {
		t.Errorf("status line of slave down is %q, want unreachable\n%s", l, human)
	}
	if l := slaveLine(human.stdout, "up"); !strings.Contains(l, "running") {
		t.Errorf("status line of slave up is %q, want running\n%s", l, human)
	}

	if err := own.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	execAll(t, `INSERT INTO t VALUES (1000, 'after restart')`, master)
	waitConverged(ctx, t, master, []database{up, down}, "t")
	waitFor(ctx, t, "status: every slave running and caught up", func(context.Context) (bool, string) {
		st, r := statusWithEnv()
		ok := len(st.Slaves) == 2
		for _, s := range st.Slaves {
			ok = ok && s.State == "running" && s.PendingEvents == 0 && len(s.InDoubt) == 0 && s.LastError == ""
		}
		return ok, r.stdout
	})
	d.stop()
	outputs = append(outputs, d.stderr.String())
	if !strings.Contains(d.stderr.String(), "slave=down") {
		t.Errorf("the daemon's log does not mention the outage of slave down:\n%s", d.stderr.String())
	}
	for _, out := range outputs {
		if strings.Contains(out, password) {
			t.Errorf("output prints the password:\n%s", out)
		}
	}
}

// TestStopSignals: SIGINT and SIGTERM stop 'goreplica run' within seconds,
// with exit status 0, even in the middle of a stream of changes, and leave
// no prepared transaction behind; nothing is lost when it starts again.
func TestStopSignals(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	ms, ss := servers(t)
	master := newDB(t, ms, "sig_master")
	slaves := []database{newDB(t, ss, "sig_2pc"), newDB(t, ss, "sig_1pc")}
	execAll(t, `CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL DEFAULT 0)`, append([]database{master}, slaves...)...)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: master.dsn()},
		slaves: []node{{name: "twophase", dsn: slaves[0].dsn(), twoPhase: boolp(true)}, {name: "onephase", dsn: slaves[1].dsn(), twoPhase: boolp(false)}},
	})
	mustRun(t, nil, "init", "-c", cfg)

	// A writer keeps the daemon busy while it is being stopped.
	wctx, stopWriter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	writeErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; wctx.Err() == nil; i++ {
			_, err := master.db.ExecContext(wctx, `INSERT INTO t SELECT $1::int8 * 1000 + g FROM generate_series(1, 50) g`, i)
			if err == nil {
				_, err = master.db.ExecContext(wctx, `UPDATE t SET v = v + 1 WHERE id > ($1::int8 - 2) * 1000 AND id % 7 = $1::int8 % 7`, i)
			}
			if err != nil && wctx.Err() == nil {
				writeErr <- err
				return
			}
		}
	}()
	defer func() { stopWriter(); wg.Wait() }()

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		var base int
		if err := slaves[0].db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&base); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, cfg)
		waitFor(ctx, t, "the daemon applies changes", func(ctx context.Context) (bool, string) {
			d.requireAlive()
			select {
			case err := <-writeErr:
				t.Fatalf("writer: %v", err)
			default:
			}
			var n int
			if err := slaves[0].db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
				return false, err.Error()
			}
			return n > base+500, fmt.Sprintf("%d rows on the slave, %d when the daemon started", n, base)
		})
		start := time.Now()
		if code := d.signal(sig); code != 0 {
			t.Errorf("goreplica run exited %d after %v, want 0\nstderr:\n%s", code, sig, d.stderr.String())
		}
		t.Logf("%v: exited in %v", sig, time.Since(start).Round(time.Millisecond))
		for _, s := range slaves {
			if n := preparedCount(t, s); n != 0 {
				t.Errorf("after %v: slave database %s holds %d prepared transactions", sig, s.name, n)
			}
		}
	}
	stopWriter()
	wg.Wait()
	select {
	case err := <-writeErr:
		t.Fatalf("writer: %v", err)
	default:
	}
	d := startDaemon(t, cfg)
	waitConverged(ctx, t, master, slaves, "t")
	waitAllCaughtUp(ctx, t, cfg, 2)
	d.stop()
}

// TestPasswordNeverPrinted: a password given through ${ENV} in a DSN appears
// in no output: not of init, status, a failed connection, or the daemon's
// log (at debug level). The servers trust every connection, so the password
// is accepted and ignored.
func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	ms, ss := servers(t)
	master := newDB(t, ms, "pw_master")
	slaves := []database{newDB(t, ss, "pw_a"), newDB(t, ss, "pw_b")}
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, append([]database{master}, slaves...)...)
	const password = "Sup3r-S3cret-pa55word"
	env := []string{"GR_TEST_PASSWORD=" + password, "GOREPLICA_LOG_LEVEL=debug"}
	withPW := func(d database) string { return d.dsn() + " password=${GR_TEST_PASSWORD}" }
	urlWithPW := fmt.Sprintf("postgres://postgres:${GR_TEST_PASSWORD}@%s/%s?sslmode=disable",
		net.JoinHostPort(ss.Host, itoa(ss.Port)), slaves[1].name)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: withPW(master)},
		slaves: []node{{name: "a", dsn: withPW(slaves[0])}, {name: "b", dsn: urlWithPW}},
	})
	check := func(what, out string) {
		t.Helper()
		if strings.Contains(out, password) {
			t.Errorf("%s prints the password:\n%s", what, out)
		}
	}
	for _, args := range [][]string{{"init"}, {"status"}, {"status", "--json"}} {
		r := goreplica(t, env, append(args, "-c", cfg)...)
		if r.code != 0 && (args[0] != "status" || r.code != 4) {
			t.Fatalf("expected exit 0 (4 for status: no daemon runs)\n%s", r)
		}
		check(strings.Join(args, " "), r.stdout+r.stderr)
	}
	d := startDaemon(t, cfg, env...)
	execAll(t, `INSERT INTO t VALUES (1, 'x')`, master)
	waitConverged(ctx, t, master, slaves, "t")
	d.stop()
	check("goreplica run", d.stderr.String()+d.stdout.String())

	// A slave that cannot be reached, and a master that cannot: errors name
	// the node, never its password.
	closed := closedPort(t)
	bad := writeConfig(t, configFile{
		master: node{name: "m", dsn: withPW(master)},
		slaves: []node{{name: "a", dsn: withPW(slaves[0])}, {name: "gone", dsn: fmt.Sprintf("host=127.0.0.1 port=%d dbname=x user=postgres sslmode=disable password=${GR_TEST_PASSWORD}", closed)}},
	})
	for _, args := range [][]string{{"init"}, {"status"}, {"status", "--json"}, {"uninstall", "--yes"}} {
		r := goreplica(t, env, append(args, "-c", bad)...)
		check(strings.Join(args, " ")+" with an unreachable slave", r.stdout+r.stderr)
	}
	noMaster := writeConfig(t, configFile{
		master: node{name: "m", dsn: fmt.Sprintf("postgres://postgres:${GR_TEST_PASSWORD}@127.0.0.1:%d/x?sslmode=disable", closed)},
		slaves: []node{{name: "a", dsn: withPW(slaves[0])}},
	})
	for _, args := range [][]string{{"init"}, {"status"}, {"status", "--json"}} {
		r := goreplica(t, env, append(args, "-c", noMaster)...)
		check(strings.Join(args, " ")+" with an unreachable master", r.stdout+r.stderr)
	}
	// The daemon waits for an unreachable master (it may start before the
	// database does), logging its attempts.
	dNoMaster := startDaemon(t, noMaster, env...)
	waitFor(ctx, t, "the daemon logs its failed connection to the master", func(context.Context) (bool, string) {
		dNoMaster.requireAlive()
		out := dNoMaster.stderr.String()
		return strings.Contains(out, "connection refused"), out
	})
	dNoMaster.kill()
	check("goreplica run with an unreachable master", dNoMaster.stderr.String())

	// A configuration error quotes no DSN.
	badKey := writeFile(t, "bad.toml", fmt.Sprintf("[master]\nname = \"m\"\ndsn = %s\npasword = \"x\"\n[[slave]]\nname = \"a\"\ndsn = %s\n",
		tomlString(withPW(master)), tomlString(withPW(slaves[0]))))
	r := goreplica(t, env, "status", "-c", badKey)
	if r.code == 0 {
		t.Errorf("status accepted an unknown key\n%s", r)
	}
	check("a configuration error", r.stdout+r.stderr)
}

// closedPort returns a TCP port of 127.0.0.1 nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestStopWhileMasterUnreachable: a daemon started before its master is up
// (a service starting at boot) still stops within seconds on SIGTERM or
// SIGINT, with exit status 0.
func TestStopWhileMasterUnreachable(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	ms, ss := servers(t)
	slave := newDB(t, ss, "nomaster_slave")
	_ = ms
	closed := closedPort(t)
	cfg := writeConfig(t, configFile{
		master: node{name: "m", dsn: fmt.Sprintf("host=127.0.0.1 port=%d dbname=x user=postgres sslmode=disable", closed)},
		slaves: []node{{name: "a", dsn: slave.dsn()}},
	})
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		d := startDaemon(t, cfg, "GOREPLICA_LOG_LEVEL=debug")
		waitFor(ctx, t, "the daemon logs its failed connection to the master", func(context.Context) (bool, string) {
			d.requireAlive()
			out := d.stderr.String()
			return strings.Contains(out, "connection refused"), out
		})
		if code := d.signal(sig); code != 0 {
			t.Errorf("goreplica run exited %d after %v, want 0\nstderr:\n%s", code, sig, d.stderr.String())
		}
	}
}
