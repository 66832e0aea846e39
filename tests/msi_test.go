package tests

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/goreplica/goreplica/tests/internal/wine"
)

// The MSI as a Windows administrator uses it, under Wine: msiexec /i
// installs goreplica.exe under Program Files and the sample configuration
// under ProgramData, adds nothing to PATH, and registers the service as
// `goreplica service install` does, stopped; once the configuration points
// at the servers the service starts and replicates; a newer MSI upgrades
// the program, keeps the configuration and registers the service again;
// msiexec /x stops
// and removes the service and the program, and keeps the configuration.
func TestMSI(t *testing.T) {
	wine.Require(t)
	t.Parallel()
	ctx := testContext(t, 10*time.Minute)
	ms, ss := servers(t)
	master, slave := newDB(t, ms, "msi_master"), newDB(t, ss, "msi_slave")
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, master, slave)
	cf := configFile{master: node{name: "m", dsn: master.dsn()}, slaves: []node{{name: "lyon", dsn: slave.dsn()}}}
	mustRun(t, nil, "init", "-c", writeConfig(t, cf))

	dir, names := buildRelease(t, "1.0.0", "windows/amd64")
	msi := artifact(t, dir, names, ".msi")
	exe := artifact(t, dir, names, ".exe")
	p := wine.New(t)
	const (
		setup  = `C:\setup\goreplica.msi`
		setup2 = `C:\setup\goreplica-1.0.1.msi`
		bin    = `C:\Program Files\goreplica\goreplica.exe`
		cfg    = `C:\ProgramData\goreplica\goreplica.toml`
		name   = "goreplica"
	)
	if err := p.CopyIn(msi, setup); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) result {
		t.Helper()
		stdout, stderr, code, err := p.Run(ctx, args...)
		if err != nil {
			t.Fatalf("wine %s: %v", strings.Join(args, " "), err)
		}
		return result{args: args, stdout: stdout, stderr: stderr, code: code}
	}
	gr := func(args ...string) result { t.Helper(); return run(append([]string{bin}, args...)...) }
	msiexec := func(args ...string) {
		t.Helper()
		log := `C:\setup\msiexec.log`
		r := run(append([]string{"msiexec", "/qn", "/l*v", log}, args...)...)
		if r.code != 0 {
			b, _ := os.ReadFile(p.HostPath(log))
			t.Fatalf("msiexec %s: exit %d\n%s\nlog:\n%s", strings.Join(args, " "), r.code, r, b)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("services.exe output:\n%s", p.ServiceOutput())
		}
	})

	msiexec("/i", setup)
	want, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p.HostPath(bin)); err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s is not the release's goreplica.exe (err %v)", bin, err)
	}
	sample, err := os.ReadFile("../sample.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p.HostPath(cfg)); err != nil || !bytes.Equal(got, sample) {
		t.Errorf("%s is not sample.toml (err %v)", cfg, err)
	}
	if r := gr("version"); r.code != 0 || !strings.HasPrefix(r.stdout, "goreplica 1.0.0 (commit ") {
		t.Errorf("goreplica.exe version\n%s", r)
	}
	env := run("reg", "query", `HKLM\System\CurrentControlSet\Control\Session Manager\Environment`, "/v", "PATH")
	if strings.Contains(strings.ToLower(env.stdout), "goreplica") {
		t.Errorf("the MSI changed PATH:\n%s", env.stdout)
	}
	// Registered as service install registers it, and not started.
	if r := gr("service", "status", "--name", name); r.code != 3 || r.stdout != "service "+name+": stopped\n" {
		t.Errorf("status after msiexec /i: want exit 3 and 'stopped'\n%s", r)
	}
	reg := run("reg", "query", `HKLM\System\CurrentControlSet\Services\`+name)
	t.Logf("reg query of the service:\n%s", reg.stdout)
	for _, want := range []string{`"` + bin + `" run -c ` + cfg + ` --service ` + name, "Start    REG_DWORD    0x2", "goreplica (" + name + ")"} {
		if !strings.Contains(reg.stdout, want) {
			t.Errorf("the service's registry key lacks %q:\n%s", want, reg.stdout)
		}
	}

	// The administrator edits the configuration, then starts the service.
	edited := cf.toml() + "\n# edited by the administrator\n"
	if err := os.WriteFile(p.HostPath(cfg), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := gr("service", "start", "--name", name); r.code != 0 || r.stdout != "service "+name+": running\n" {
		t.Fatalf("start: want exit 0 and 'running'\n%s", r)
	}
	execAll(t, `INSERT INTO t SELECT g, 'from the msi' FROM generate_series(1, 50) g`, master)
	waitConverged(ctx, t, master, []database{slave}, "t")

	// Upgrade to 1.0.1: the newer MSI replaces the program, keeps the
	// edited configuration, registers the service again and leaves it
	// stopped; started again, it replicates.
	dir2, names2 := buildRelease(t, "1.0.1", "windows/amd64")
	if err := p.CopyIn(artifact(t, dir2, names2, ".msi"), setup2); err != nil {
		t.Fatal(err)
	}
	msiexec("/i", setup2)
	if r := gr("version"); r.code != 0 || !strings.HasPrefix(r.stdout, "goreplica 1.0.1 (commit ") {
		t.Errorf("goreplica.exe version after the upgrade\n%s", r)
	}
	if got, err := os.ReadFile(p.HostPath(cfg)); err != nil || string(got) != edited {
		t.Errorf("the upgrade did not keep the edited %s (err %v):\n%s", cfg, err, got)
	}
	if r := gr("service", "status", "--name", name); r.code != 3 || r.stdout != "service "+name+": stopped\n" {
		t.Errorf("status after the upgrade: want exit 3 and 'stopped'\n%s", r)
	}
	if r := gr("service", "start", "--name", name); r.code != 0 || r.stdout != "service "+name+": running\n" {
		t.Fatalf("start after the upgrade: want exit 0 and 'running'\n%s", r)
	}
	execAll(t, `UPDATE t SET v = 'after the msi upgrade'`, master)
	waitConverged(ctx, t, master, []database{slave}, "t")

	// Uninstall: the running service is stopped and removed, the program
	// goes, the configuration stays.
	msiexec("/x", setup2)
	if n := preparedCount(t, slave); n != 0 {
		t.Errorf("after msiexec /x stopped the service, the slave holds %d prepared transactions", n)
	}
	if r := run("sc", "query", name); r.code == 0 || strings.Contains(r.stdout, "STATE") {
		t.Errorf("the service is still registered after msiexec /x:\n%s", r)
	} else {
		t.Logf("sc query after msiexec /x: exit %d: %s", r.code, strings.TrimSpace(r.stdout+r.stderr))
	}
	if ps, err := p.Processes(); err != nil || containsAny(ps, "goreplica.exe") {
		t.Errorf("processes after msiexec /x: %v (err %v), want no goreplica.exe", ps, err)
	}
	if _, err := os.Stat(p.HostPath(bin)); !os.IsNotExist(err) {
		t.Errorf("%s after msiexec /x: %v, want it gone", bin, err)
	}
	if got, err := os.ReadFile(p.HostPath(cfg)); err != nil || string(got) != edited {
		t.Errorf("msiexec /x did not keep the edited %s (err %v):\n%s", cfg, err, got)
	}
}

func containsAny(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), strings.ToLower(s)) {
			return true
		}
	}
	return false
}
