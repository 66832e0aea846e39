package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goreplica/goreplica/tests/internal/wine"
)

// buildWindows cross-compiles goreplica.exe into dir.
func buildWindows(t *testing.T, dir string) string {
	t.Helper()
	exe := filepath.Join(dir, "goreplica.exe")
	cmd := exec.Command("go", "build", "-o", exe, "github.com/goreplica/goreplica")
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=windows go build: %v\n%s", err, out)
	}
	return exe
}

// The Windows build installed and run as a real Windows service, under
// Wine's service control manager: install, status, start, replication
// while it runs (the Windows binary reaching PostgreSQL on the host),
// its log file and event log entries, stop with nothing left in doubt,
// uninstall.
func TestWindowsService(t *testing.T) {
	wine.Require(t)
	t.Parallel()
	ctx := testContext(t, 5*time.Minute)
	ms, ss := servers(t)
	master, slave := newDB(t, ms, "win_master"), newDB(t, ss, "win_slave")
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, master, slave)
	cf := configFile{master: node{name: "m", dsn: master.dsn()}, slaves: []node{{name: "lyon", dsn: slave.dsn()}}}
	mustRun(t, nil, "init", "-c", writeConfig(t, cf))

	exe := buildWindows(t, t.TempDir())
	p := wine.New(t)
	const (
		dir     = `C:\goreplica`
		bin     = dir + `\goreplica.exe`
		cfgPath = dir + `\goreplica.toml`
		logPath = dir + `\logs\goreplica.log`
		name    = "goreplica-test"
	)
	if err := p.CopyIn(exe, bin); err != nil {
		t.Fatal(err)
	}
	text := cf.toml() + "\n[log]\nfile = " + tomlString(logPath) + "\n"
	if err := os.WriteFile(p.HostPath(cfgPath), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	gr := func(args ...string) result {
		t.Helper()
		stdout, stderr, code, err := p.Run(ctx, append([]string{bin}, args...)...)
		if err != nil {
			t.Fatalf("wine goreplica.exe %s: %v", strings.Join(args, " "), err)
		}
		return result{args: args, stdout: stdout, stderr: stderr, code: code}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("services.exe output:\n%s", p.ServiceOutput())
			b, _ := os.ReadFile(p.HostPath(logPath))
			t.Logf("goreplica log file:\n%s", b)
		}
	})

	r := gr("service", "install", "-c", cfgPath, "--name", name)
	if r.code != 0 || !strings.Contains(r.stdout, "service "+name+" installed (windows-service)") {
		t.Fatalf("install: want exit 0 and 'installed (windows-service)'\n%s", r)
	}
	if r := gr("service", "status", "--name", name); r.code != 3 || r.stdout != "service "+name+": stopped\n" {
		t.Errorf("status after install: want exit 3 and 'stopped'\n%s", r)
	}
	stdout, _, _, err := p.Run(ctx, "reg", "query", `HKLM\System\CurrentControlSet\Services\`+name)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"run -c " + cfgPath + " --service " + name, "Start"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the service's registry key lacks %q:\n%s", want, stdout)
		}
	}

	// A configuration that breaks after install: start fails and says where
	// to look, and the event log has the reason.
	if err := os.WriteFile(p.HostPath(cfgPath), []byte("[master]\nname = \"m\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = gr("service", "start", "--name", name)
	if r.code == 0 || !strings.Contains(r.stderr, "stopped as it started") || !strings.Contains(r.stderr, "Application event log, source "+name) {
		t.Errorf("start with a broken configuration: want a failure that points at the event log\n%s", r)
	}
	var reason bool
	for _, l := range strings.Split(p.ServiceOutput(), "\n") {
		reason = reason || (strings.Contains(l, "err:eventlog:ReportEventW") && strings.Contains(l, "master.dsn: required"))
	}
	if !reason {
		t.Errorf("no event log error saying what is wrong with the configuration:\n%s", p.ServiceOutput())
	}
	if err := os.WriteFile(p.HostPath(cfgPath), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := gr("service", "start", "--name", name); r.code != 0 || r.stdout != "service "+name+": running\n" {
		t.Fatalf("start: want exit 0 and 'running'\n%s", r)
	}
	execAll(t, `INSERT INTO t SELECT g, 'from windows' FROM generate_series(1, 100) g`, master)
	waitConverged(ctx, t, master, []database{slave}, "t")
	execAll(t, `UPDATE t SET v = 'updated' WHERE id % 2 = 0; DELETE FROM t WHERE id > 90`, master)
	waitConverged(ctx, t, master, []database{slave}, "t")
	if r := gr("service", "status", "--name", name); r.code != 0 || r.stdout != "service "+name+": running\n" {
		t.Errorf("status while replicating: want exit 0 and 'running'\n%s", r)
	}

	r = gr("service", "stop", "--name", name)
	if r.code != 0 || r.stdout != "service "+name+": stopped\n" {
		t.Errorf("stop: want exit 0 and 'stopped'\n%s", r)
	}
	if n := preparedCount(t, slave); n != 0 {
		t.Errorf("after the service stopped, the slave holds %d prepared transactions", n)
	}
	b, err := os.ReadFile(p.HostPath(logPath))
	if err != nil {
		t.Fatalf("the service wrote no log file: %v", err)
	}
	for _, want := range []string{"msg=\"goreplica starting\"", "slave=lyon", "msg=\"goreplica stopped\""} {
		if !strings.Contains(string(b), want) {
			t.Errorf("log file lacks %s:\n%s", want, b)
		}
	}
	// Wine keeps no event log: it traces each ReportEvent in the services'
	// output, warnings and errors as warn: and err: lines.
	var entry bool
	for _, l := range strings.Split(p.ServiceOutput(), "\n") {
		entry = entry || (strings.Contains(l, "ReportEventW") && strings.Contains(l, "goreplica starting"))
	}
	if !entry {
		t.Errorf("no event log entry for the start:\n%s", p.ServiceOutput())
	}

	if r := gr("service", "uninstall", "--name", name); r.code != 0 {
		t.Errorf("uninstall\n%s", r)
	}
	if r := gr("service", "status", "--name", name); r.code != 4 || r.stdout != "service "+name+": not installed\n" {
		t.Errorf("status after uninstall: want exit 4 and 'not installed'\n%s", r)
	}
}
