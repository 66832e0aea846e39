//go:build linux

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goreplica/goreplica/tests/internal/nspawn"
)

// inContainer runs a command in c and returns its result, failing the test
// when it cannot be run.
func inContainer(ctx context.Context, t *testing.T, c *nspawn.Container, args ...string) result {
	t.Helper()
	stdout, stderr, code, err := c.Exec(ctx, args...)
	if err != nil {
		t.Fatalf("in container: %s: %v", strings.Join(args, " "), err)
	}
	return result{args: args, stdout: stdout, stderr: stderr, code: code}
}

// mustInContainer is inContainer for a command that must succeed.
func mustInContainer(ctx context.Context, t *testing.T, c *nspawn.Container, args ...string) result {
	t.Helper()
	r := inContainer(ctx, t, c, args...)
	if r.code != 0 {
		t.Fatalf("in container: exit %d, want 0\n%s", r.code, r)
	}
	return r
}

// mainPID returns the main process of a unit, 0 when it has none.
func mainPID(ctx context.Context, t *testing.T, c *nspawn.Container, unit string) int {
	t.Helper()
	r := mustInContainer(ctx, t, c, "systemctl", "show", "--property=MainPID", "--value", unit)
	pid, err := strconv.Atoi(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("MainPID of %s: %q", unit, r.stdout)
	}
	return pid
}

// journalEntries returns the journal entries of a unit (journalctl -o json).
func journalEntries(ctx context.Context, t *testing.T, c *nspawn.Container, unit string) []map[string]any {
	t.Helper()
	r := mustInContainer(ctx, t, c, "journalctl", "--no-pager", "-o", "json", "-u", unit)
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if l == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("journalctl -o json line %q: %v", l, err)
		}
		out = append(out, e)
	}
	return out
}

func journalText(entries []map[string]any) string {
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%v\n", e["MESSAGE"])
	}
	return b.String()
}

// goreplica installed as a real systemd unit, driven by real systemd
// (booted in systemd-nspawn) through goreplica's service verbs: install,
// start, status, replication while it runs, structured journal entries,
// restart, restart by systemd after a crash, a second instance beside the
// first, stop with the batch finished and the stop mail sent, uninstall.
func TestSystemdUnit(t *testing.T) {
	nspawn.Require(t)
	t.Parallel()
	ctx := testContext(t, 5*time.Minute)
	ms, ss := servers(t)
	type pair struct {
		name          string // service name
		master, slave database
		cfg           string // path inside the container
	}
	pairs := []pair{
		{name: "goreplica-paris", master: newDB(t, ms, "sd_master"), slave: newDB(t, ss, "sd_slave"), cfg: "/etc/goreplica/paris.toml"},
		{name: "goreplica-oslo", master: newDB(t, ms, "sd_master2"), slave: newDB(t, ss, "sd_slave2"), cfg: "/etc/goreplica/oslo.toml"},
	}
	for _, p := range pairs {
		execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, p.master, p.slave)
		mustRun(t, nil, "init", "-c", writeConfig(t, configFile{
			master: node{name: "m", dsn: p.master.dsn()},
			slaves: []node{{name: "lyon", dsn: p.slave.dsn()}},
		}))
	}

	mail := newMailbox(t)
	c := nspawn.Boot(t)
	if err := c.CopyFile(binPath, "/usr/local/bin/goreplica", 0o755); err != nil {
		t.Fatal(err)
	}
	for i, p := range pairs {
		slaveDSN := p.slave.dsn()
		if i == 1 {
			// The second instance takes its slave's DSN from its environment
			// file, as a secret would.
			if err := c.WriteFile("/etc/goreplica/"+p.name+".env", []byte("OSLO_SLAVE_DSN="+slaveDSN+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			slaveDSN = "${OSLO_SLAVE_DSN}"
		}
		cfg := configFile{
			master: node{name: "m", dsn: p.master.dsn()},
			slaves: []node{{name: "lyon", dsn: slaveDSN}},
		}.toml()
		if i == 0 {
			cfg += mail.section()
		}
		if err := c.WriteFile(p.cfg, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	gr := func(args ...string) result {
		return inContainer(ctx, t, c, append([]string{"/usr/local/bin/goreplica"}, args...)...)
	}
	first := pairs[0]
	unit := first.name + ".service"

	r := gr("service", "install", "-c", first.cfg, "--name", first.name)
	if r.code != 0 || !strings.Contains(r.stdout, "service "+first.name+" installed (linux-systemd)") {
		t.Fatalf("install: want exit 0 and 'installed (linux-systemd)'\n%s", r)
	}
	if r := inContainer(ctx, t, c, "systemd-analyze", "verify", "/etc/systemd/system/"+unit); r.code != 0 || strings.TrimSpace(r.stdout+r.stderr) != "" {
		t.Errorf("systemd-analyze verify of the installed unit: want exit 0 and no output\n%s", r)
	}
	if r := inContainer(ctx, t, c, "systemctl", "is-enabled", unit); strings.TrimSpace(r.stdout) != "enabled" {
		t.Errorf("unit not enabled at boot\n%s", r)
	}
	if r := gr("service", "status", "--name", first.name); r.code != 3 || r.stdout != "service "+first.name+": stopped\n" {
		t.Errorf("status after install: want exit 3 and 'stopped'\n%s", r)
	}
	if r := gr("service", "install", "-c", first.cfg, "--name", first.name); r.code == 0 || !strings.Contains(r.stderr, "already installed") {
		t.Errorf("a second install under the same name: want an error saying it is already installed\n%s", r)
	}

	if r := gr("service", "start", "--name", first.name); r.code != 0 || r.stdout != "service "+first.name+": running\n" {
		t.Fatalf("start: want exit 0 and 'running'\n%s", r)
	}
	if r := gr("service", "status", "--name", first.name); r.code != 0 || r.stdout != "service "+first.name+": running\n" {
		t.Errorf("status after start: want exit 0 and 'running'\n%s", r)
	}
	mail.waitMail(ctx, t, "started: m -> lyon")
	execAll(t, `INSERT INTO t SELECT g, 'before restart' FROM generate_series(1, 50) g`, first.master)
	waitConverged(ctx, t, first.master, []database{first.slave}, "t")

	// The journal holds the daemon's lines with their attributes as fields.
	waitFor(ctx, t, "the journal has the daemon's start and a line with a SLAVE field", func(context.Context) (bool, string) {
		entries := journalEntries(ctx, t, c, unit)
		started, slaveField := false, false
		for _, e := range entries {
			msg, _ := e["MESSAGE"].(string)
			started = started || strings.HasPrefix(msg, "goreplica starting")
			slaveField = slaveField || e["SLAVE"] == "lyon"
		}
		return started && slaveField, journalText(entries)
	})
	if r := mustInContainer(ctx, t, c, "journalctl", "--no-pager", "-u", unit, "SLAVE=lyon", "-o", "cat"); !strings.Contains(r.stdout, "connected") {
		t.Errorf("journalctl SLAVE=lyon does not select the slave's lines\n%s", r)
	}

	pid := mainPID(ctx, t, c, unit)
	if r := gr("service", "restart", "--name", first.name); r.code != 0 {
		t.Fatalf("restart\n%s", r)
	}
	if now := mainPID(ctx, t, c, unit); now == pid || now == 0 {
		t.Errorf("restart: MainPID %d before, %d after; want a new process", pid, now)
	}
	execAll(t, `UPDATE t SET v = 'after restart'`, first.master)
	waitConverged(ctx, t, first.master, []database{first.slave}, "t")

	// A crash: systemd starts it again by itself (Restart=on-failure,
	// RestartSec=5), and replication goes on.
	pid = mainPID(ctx, t, c, unit)
	mustInContainer(ctx, t, c, "bash", "-c", "kill -KILL "+strconv.Itoa(pid))
	waitFor(ctx, t, "status says the killed daemon waits to be restarted", func(context.Context) (bool, string) {
		r := gr("service", "status", "--name", first.name)
		return r.code == 3 && r.stdout == "service "+first.name+": restarting after a failure\n", r.String()
	})
	waitFor(ctx, t, "systemd restarts the killed daemon", func(context.Context) (bool, string) {
		now := mainPID(ctx, t, c, unit)
		r := inContainer(ctx, t, c, "systemctl", "is-active", unit)
		return now != 0 && now != pid && strings.TrimSpace(r.stdout) == "active", fmt.Sprintf("MainPID %d, %s", now, r.stdout)
	})
	execAll(t, `DELETE FROM t WHERE id <= 10`, first.master)
	waitConverged(ctx, t, first.master, []database{first.slave}, "t")

	// A second instance, another configuration, beside the first.
	second := pairs[1]
	r = gr("service", "install", "-c", second.cfg, "--name", second.name)
	if r.code != 0 || !strings.Contains(r.stdout, "warning: the configuration refers to OSLO_SLAVE_DSN, not set here") {
		t.Fatalf("install a second instance: want exit 0 and a warning that OSLO_SLAVE_DSN is not set here\n%s", r)
	}
	// Its configuration breaks before it starts: Type=notify makes start
	// fail and say where to look; once the file is mended it starts.
	good, err := os.ReadFile(c.Path(second.cfg))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile(second.cfg, []byte("[master]\nname = \"oslo\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := gr("service", "start", "--name", second.name); r.code == 0 || !strings.Contains(r.stderr, "journalctl -u "+second.name+".service") {
		t.Errorf("start with a broken configuration: want a failure that names journalctl\n%s", r)
	}
	if text := journalText(journalEntries(ctx, t, c, second.name+".service")); !strings.Contains(text, "master.dsn: required") {
		t.Errorf("the journal does not say what is wrong with the configuration:\n%s", text)
	}
	if err := c.WriteFile(second.cfg, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := gr("service", "start", "--name", second.name); r.code != 0 {
		t.Fatalf("start a second instance\n%s", r)
	}
	execAll(t, `INSERT INTO t SELECT g, 'second' FROM generate_series(1, 20) g`, second.master)
	execAll(t, `INSERT INTO t SELECT g, 'first' FROM generate_series(1000, 1020) g`, first.master)
	waitConverged(ctx, t, second.master, []database{second.slave}, "t")
	waitConverged(ctx, t, first.master, []database{first.slave}, "t")
	for _, p := range pairs {
		if r := gr("service", "status", "--name", p.name); r.code != 0 {
			t.Errorf("two instances: %s not running\n%s", p.name, r)
		}
	}

	// Stop under load: the daemon finishes its batch and leaves no
	// prepared transaction behind.
	writer, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; writer.Err() == nil; i++ {
			if _, err := first.master.db.ExecContext(writer, `INSERT INTO t VALUES ($1, 'during stop')`, 10000+i); err != nil {
				return
			}
		}
	}()
	r = gr("service", "stop", "--name", first.name)
	cancel()
	<-done
	if r.code != 0 || r.stdout != "service "+first.name+": stopped\n" {
		t.Errorf("stop: want exit 0 and 'stopped'\n%s", r)
	}
	mail.waitMail(ctx, t, "goreplica stopped")
	if n := preparedCount(t, first.slave); n != 0 {
		t.Errorf("after the service stopped, the slave holds %d prepared transactions", n)
	}
	if text := journalText(journalEntries(ctx, t, c, unit)); !strings.Contains(text, "goreplica stopped") {
		t.Errorf("the journal lacks the daemon's stop line\n%s", text)
	}
	if r := inContainer(ctx, t, c, "systemctl", "show", "--property=Result", "--value", unit); strings.TrimSpace(r.stdout) != "success" {
		t.Errorf("unit result after stop: %s, want success (a clean exit)", r.stdout)
	}

	for _, p := range pairs {
		if r := gr("service", "uninstall", "--name", p.name); r.code != 0 {
			t.Errorf("uninstall %s\n%s", p.name, r)
		}
		if r := gr("service", "status", "--name", p.name); r.code != 4 || r.stdout != "service "+p.name+": not installed\n" {
			t.Errorf("status after uninstall: want exit 4 and 'not installed'\n%s", r)
		}
	}
	if r := inContainer(ctx, t, c, "test", "-e", "/etc/systemd/system/"+unit); r.code == 0 {
		t.Errorf("the unit file is still there after uninstall")
	}
}
