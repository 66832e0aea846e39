package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goreplica/goreplica/pgserver"
	"github.com/goreplica/goreplica/pgserver/pgtest"
)

// check runs 'goreplica check' with args and returns its result; the output
// is one line, as the plugin guidelines ask.
func checkRun(t *testing.T, cfg string, args ...string) result {
	t.Helper()
	r := goreplica(t, nil, append([]string{"check", "-c", cfg}, args...)...)
	if strings.Count(r.stdout, "\n") != 1 || !strings.HasPrefix(r.stdout, "GOREPLICA ") {
		t.Fatalf("check prints %q, want one line starting GOREPLICA\n%s", r.stdout, r)
	}
	return r
}

// waitCheck polls 'goreplica check' until it exits with code.
func waitCheck(ctx context.Context, t *testing.T, cfg string, code int, args ...string) result {
	t.Helper()
	var last result
	waitFor(ctx, t, fmt.Sprintf("check %s exits %d", strings.Join(args, " "), code), func(context.Context) (bool, string) {
		last = checkRun(t, cfg, args...)
		return last.code == code, last.String()
	})
	return last
}

// TestCheckNagiosCodes: 'goreplica check' exits 0 when every slave runs
// and is caught up, 1 when a slave lags past --warning, 2 past --critical,
// on a conflict or with no daemon, and 3 when the master cannot be reached,
// with perfdata for each slave's lag.
func TestCheckNagiosCodes(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	ms, ss := servers(t)
	master := newDB(t, ms, "chk_master")
	slaves := []database{newDB(t, ss, "chk_a"), newDB(t, ss, "chk_b")}
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, append([]database{master}, slaves...)...)
	cfg := writeConfig(t, configFile{
		master: node{name: "paris", dsn: master.dsn()},
		slaves: []node{{name: "lyon", dsn: slaves[0].dsn()}, {name: "nice", dsn: slaves[1].dsn()}},
	})
	mustRun(t, nil, "init", "-c", cfg)
	r := checkRun(t, cfg)
	if r.code != 2 || !strings.Contains(r.stdout, "slave lyon stopped") {
		t.Errorf("check with no daemon: want exit 2 naming lyon stopped\n%s", r)
	}
	d := startDaemon(t, cfg)
	execAll(t, `INSERT INTO t SELECT g, 'a' FROM generate_series(1, 10) g`, master)
	waitConverged(ctx, t, master, slaves, "t")
	r = waitCheck(ctx, t, cfg, 0)
	if !regexp.MustCompile(`^GOREPLICA OK - .* \| lag_lyon=0s;30;300;0 pending_lyon=0;;;0 lag_nice=0s;30;300;0 pending_nice=0;;;0\n$`).MatchString(r.stdout) {
		t.Errorf("check output %q, want OK with perfdata lag_lyon=0s;30;300;0 ...", r.stdout)
	}

	// lyon's apply waits on a lock: it runs, but falls behind.
	lockCtx, unlock := context.WithCancel(ctx)
	defer unlock()
	tx, err := slaves[0].db.BeginTx(lockCtx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(lockCtx, `LOCK TABLE t IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	execAll(t, `UPDATE t SET v = 'b' WHERE id = 1`, master)
	r = waitCheck(ctx, t, cfg, 1, "--warning", "1s", "--critical", "1h")
	if !strings.HasPrefix(r.stdout, "GOREPLICA WARNING - slave lyon lag ") || !strings.Contains(r.stdout, ";1;3600;0") {
		t.Errorf("lagging slave: %q", r.stdout)
	}
	r = waitCheck(ctx, t, cfg, 2, "--warning", "1s", "--critical", "2s")
	if !strings.HasPrefix(r.stdout, "GOREPLICA CRITICAL - slave lyon lag ") {
		t.Errorf("lagging slave past critical: %q", r.stdout)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	waitConverged(ctx, t, master, slaves, "t")
	waitCheck(ctx, t, cfg, 0)

	// A conflict on nice.
	execAll(t, `INSERT INTO t VALUES (100, 'slave')`, slaves[1])
	execAll(t, `INSERT INTO t VALUES (100, 'master')`, master)
	r = waitCheck(ctx, t, cfg, 2)
	if !strings.Contains(r.stdout, "slave nice conflict: ") || !strings.Contains(r.stdout, "insert_exists") {
		t.Errorf("conflict: %q", r.stdout)
	}
	d.stop()

	// The master's server is down.
	own := pgtest.Start(t, pgserver.Options{})
	downMaster := newDB(t, own, "chk_down")
	downSlave := newDB(t, ss, "chk_down_s")
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, downMaster, downSlave)
	down := writeFile(t, "down.toml", configFile{
		master: node{name: "paris", dsn: downMaster.dsn() + " connect_timeout=5"},
		slaves: []node{{name: "lyon", dsn: downSlave.dsn()}},
	}.toml())
	mustRun(t, nil, "init", "-c", down)
	if r := checkRun(t, down); r.code != 2 {
		t.Errorf("check before the master goes down, no daemon: want exit 2\n%s", r)
	}
	downMaster.db.Close()
	if err := own.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r = checkRun(t, down)
	if r.code != 3 || !strings.HasPrefix(r.stdout, "GOREPLICA UNKNOWN - master paris cannot be reached") {
		t.Errorf("master down: want exit 3, UNKNOWN\n%s", r)
	}
	if r := checkRun(t, filepath.Join(t.TempDir(), "missing.toml")); r.code != 3 {
		t.Errorf("missing configuration: want exit 3\n%s", r)
	}
}

// TestStatusExitCodesAndUnregister: status exits 0 when every slave runs,
// 4 when one does not, 3 when the master cannot be reached (and --json then
// has an error field); a slave dropped from the configuration is shown and
// 'unregister' removes it.
func TestStatusExitCodesAndUnregister(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	ms, ss := servers(t)
	master := newDB(t, ms, "unreg_master")
	slaves := []database{newDB(t, ss, "unreg_a"), newDB(t, ss, "unreg_b")}
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, append([]database{master}, slaves...)...)
	both := writeConfig(t, configFile{
		master: node{name: "paris", dsn: master.dsn()},
		slaves: []node{{name: "lyon", dsn: slaves[0].dsn()}, {name: "nice", dsn: slaves[1].dsn()}},
	})
	r := mustRun(t, nil, "init", "-c", both)
	if !strings.Contains(r.stdout, "'goreplica run -c "+both+"'") {
		t.Errorf("init's closing hint lacks its -c\n%s", r)
	}
	if r := statusRun(t, nil, "status", "-c", both); r.code != 4 {
		t.Errorf("status with no daemon: exit %d, want 4\n%s", r.code, r)
	}
	one := writeFile(t, "one.toml", configFile{
		master: node{name: "paris", dsn: master.dsn()},
		slaves: []node{{name: "lyon", dsn: slaves[0].dsn()}},
	}.toml())
	d := startDaemon(t, one)
	execAll(t, `INSERT INTO t VALUES (1, 'a')`, master)
	waitConverged(ctx, t, master, slaves[:1], "t")
	var st statusJSON
	waitFor(ctx, t, "status shows lyon running and nice not configured", func(context.Context) (bool, string) {
		var r result
		st, r = status(t, one)
		return r.code == 4 && len(st.Slaves) == 2 && st.Slaves[0].State == "running" &&
			st.Slaves[1].Name == "nice" && st.Slaves[1].State == "not configured" && !st.Slaves[1].Configured, r.String()
	})
	human := statusRun(t, nil, "status", "-c", one)
	if !strings.Contains(human.stdout, "goreplica unregister nice") {
		t.Errorf("status does not say how to unregister nice\n%s", human)
	}
	if r := goreplica(t, nil, "unregister", "-c", one, "lyon"); r.code != 1 || !strings.Contains(r.stderr, "the configuration names it") {
		t.Errorf("unregister of a configured slave: want exit 1\n%s", r)
	}
	r = mustRun(t, nil, "-c", one, "unregister", "nice")
	if !strings.Contains(r.stdout, "slave nice unregistered") {
		t.Errorf("unregister nice\n%s", r)
	}
	waitFor(ctx, t, "status exits 0 with lyon running alone", func(context.Context) (bool, string) {
		st, r := status(t, one)
		return r.code == 0 && len(st.Slaves) == 1, r.String()
	})
	d.stop()

	down := writeConfig(t, configFile{
		master: node{name: "paris", dsn: fmt.Sprintf("host=127.0.0.1 port=%d dbname=x user=postgres sslmode=disable", closedPort(t))},
		slaves: []node{{name: "lyon", dsn: slaves[0].dsn()}},
	})
	st, r = status(t, down)
	if r.code != 3 || st.MasterReachable || st.Error == "" {
		t.Errorf("status --json with the master down: want exit 3 and an error field\n%s", r)
	}
	r = goreplica(t, nil, "status", "--json", "-c", filepath.Join(t.TempDir(), "missing.toml"))
	var e struct {
		Error string `json:"error"`
	}
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &e) != nil || !strings.Contains(e.Error, "missing.toml") {
		t.Errorf("status --json without its configuration: want exit 1 and JSON with an error field\n%s", r)
	}
}
