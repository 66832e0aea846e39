//go:build linux

package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goreplica/goreplica/tests/internal/nspawn"
)

// The .deb as a Debian administrator uses it, in a Debian booted with
// real systemd: dpkg -i installs the binary, the configuration (a
// conffile owned by the goreplica user) and the unit print-unit prints,
// neither enabled nor started; once the configuration points at the
// servers, systemctl start replicates as user goreplica; an upgrade keeps
// the edited configuration and restarts the running unit on the new
// binary; dpkg -r stops it and keeps the configuration; dpkg --purge
// leaves no file behind.
func TestDebPackage(t *testing.T) {
	nspawn.Require(t)
	t.Parallel()
	ctx := testContext(t, 10*time.Minute)
	ms, ss := servers(t)
	master, slave := newDB(t, ms, "deb_master"), newDB(t, ss, "deb_slave")
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, master, slave)
	cf := configFile{master: node{name: "m", dsn: master.dsn()}, slaves: []node{{name: "lyon", dsn: slave.dsn()}}}
	mustRun(t, nil, "init", "-c", writeConfig(t, cf))

	// Two releases of the same commit: 1.0.0, then the upgrade 1.0.1.
	dir1, names1 := buildRelease(t, "1.0.0", "linux/amd64")
	dir2, names2 := buildRelease(t, "1.0.1", "linux/amd64")
	deb1 := artifact(t, dir1, names1, "_amd64.deb")
	deb2 := artifact(t, dir2, names2, "_amd64.deb")

	c := nspawn.Boot(t)
	for src, dst := range map[string]string{deb1: "/root/goreplica-1.deb", deb2: "/root/goreplica-2.deb"} {
		if err := c.CopyFile(src, dst, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := func(args ...string) result { t.Helper(); return inContainer(ctx, t, c, args...) }
	must := func(args ...string) string { t.Helper(); return mustInContainer(ctx, t, c, args...).stdout }
	const (
		unit   = "goreplica.service"
		cfg    = "/etc/goreplica/goreplica.toml"
		logDir = "/var/log/goreplica"
	)

	// Install.
	r := in("dpkg", "-i", "/root/goreplica-1.deb")
	t.Logf("dpkg -i: %s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("dpkg -i\n%s", r)
	}
	if v := must("goreplica", "version"); !strings.HasPrefix(v, "goreplica 1.0.0 (commit ") {
		t.Errorf("goreplica version after install: %q", v)
	}
	if got, want := must("cat", "/usr/lib/systemd/system/"+unit), must("goreplica", "service", "print-unit", "-c", cfg, "--user", "goreplica"); got != want {
		t.Errorf("the packaged unit differs from print-unit's:\n%s\nprint-unit:\n%s", got, want)
	}
	if r := in("systemd-analyze", "verify", unit); r.code != 0 || strings.TrimSpace(r.stdout+r.stderr) != "" {
		t.Errorf("systemd-analyze verify %s: want exit 0 and no output\n%s", unit, r)
	}
	if s := strings.TrimSpace(in("systemctl", "is-enabled", unit).stdout); s != "disabled" {
		t.Errorf("systemctl is-enabled after install: %q, want disabled", s)
	}
	if s := strings.TrimSpace(in("systemctl", "is-active", unit).stdout); s != "inactive" {
		t.Errorf("systemctl is-active after install: %q, want inactive", s)
	}
	for path, want := range map[string]string{cfg: "640 goreplica goreplica", logDir: "750 goreplica goreplica", "/usr/bin/goreplica": "755 root root"} {
		if got := strings.TrimSpace(must("stat", "-c", "%a %U %G", path)); got != want {
			t.Errorf("stat %s: %q, want %q", path, got, want)
		}
	}
	if got := strings.TrimSpace(must("getent", "passwd", "goreplica")); !strings.HasSuffix(got, ":/nonexistent:/usr/sbin/nologin") {
		t.Errorf("getent passwd goreplica: %q, want a system user without home or shell", got)
	}
	sample, err := os.ReadFile("../sample.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := must("cat", cfg); got != string(sample) {
		t.Errorf("%s is not sample.toml:\n%s", cfg, got)
	}
	if got := must("dpkg-query", "-W", "-f=${Conffiles}", "goreplica"); !strings.Contains(got, cfg+" ") {
		t.Errorf("dpkg-query conffiles: %q, want %s", got, cfg)
	}

	// The administrator edits the configuration in place (its owner and
	// mode stay), with a log file in the package's log directory.
	edited := cf.toml() + "\n# edited by the administrator\n[log]\nfile = " + tomlString(logDir+"/goreplica.log") + "\n"
	if err := c.WriteFile("/root/edited.toml", []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	must("cp", "/root/edited.toml", cfg)
	if r := in("systemctl", "start", unit); r.code != 0 {
		t.Fatalf("systemctl start\n%s\n%s", r, in("journalctl", "--no-pager", "-u", unit))
	}
	if r := in("goreplica", "service", "status"); r.code != 0 || r.stdout != "service goreplica: running\n" {
		t.Errorf("goreplica service status of the packaged unit: want exit 0 and 'running'\n%s", r)
	}
	pid := mainPID(ctx, t, c, unit)
	if u := strings.TrimSpace(must("stat", "-c", "%U", "/proc/"+strconv.Itoa(pid))); u != "goreplica" {
		t.Errorf("the daemon runs as %q, want goreplica", u)
	}
	execAll(t, `INSERT INTO t SELECT g, 'deb 1.0.0' FROM generate_series(1, 50) g`, master)
	waitConverged(ctx, t, master, []database{slave}, "t")
	if r := in("grep", "-c", "goreplica starting", logDir+"/goreplica.log"); r.code != 0 {
		t.Errorf("the daemon wrote no log file in %s\n%s", logDir, r)
	}

	// Upgrade: the edited configuration stays, the unit restarts on the
	// new binary.
	r = in("dpkg", "-i", "/root/goreplica-2.deb")
	t.Logf("dpkg -i (upgrade): %s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("dpkg -i (upgrade)\n%s", r)
	}
	if got := must("cat", cfg); got != edited {
		t.Errorf("the upgrade changed the edited configuration:\n%s", got)
	}
	waitFor(ctx, t, "the unit running again after the upgrade, in a new process", func(context.Context) (bool, string) {
		now := mainPID(ctx, t, c, unit)
		active := strings.TrimSpace(in("systemctl", "is-active", unit).stdout)
		return now != 0 && now != pid && active == "active", fmt.Sprintf("MainPID %d (was %d), %s", now, pid, active)
	})
	pid = mainPID(ctx, t, c, unit)
	// A process still running the replaced binary shows "(deleted)".
	if exe := strings.TrimSpace(must("readlink", "/proc/"+strconv.Itoa(pid)+"/exe")); exe != "/usr/bin/goreplica" {
		t.Errorf("after the upgrade the daemon runs %q, want the new /usr/bin/goreplica", exe)
	}
	if v := must("goreplica", "version"); !strings.HasPrefix(v, "goreplica 1.0.1 ") {
		t.Errorf("goreplica version after the upgrade: %q", v)
	}
	execAll(t, `UPDATE t SET v = 'deb 1.0.1'`, master)
	waitConverged(ctx, t, master, []database{slave}, "t")

	// Remove: the unit is stopped, the configuration stays.
	r = in("dpkg", "-r", "goreplica")
	t.Logf("dpkg -r: %s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("dpkg -r\n%s", r)
	}
	if r := in("test", "-e", "/proc/"+strconv.Itoa(pid)); r.code == 0 {
		t.Errorf("the daemon (PID %d) still runs after dpkg -r", pid)
	}
	if n := preparedCount(t, slave); n != 0 {
		t.Errorf("after dpkg -r stopped the daemon, the slave holds %d prepared transactions", n)
	}
	if got := in("cat", cfg).stdout; got != edited {
		t.Errorf("dpkg -r did not keep the configuration: %q", got)
	}
	if r := in("test", "-e", "/usr/bin/goreplica"); r.code == 0 {
		t.Errorf("/usr/bin/goreplica is still there after dpkg -r")
	}

	// Purge: nothing is left.
	r = in("dpkg", "--purge", "goreplica")
	t.Logf("dpkg --purge: %s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("dpkg --purge\n%s", r)
	}
	left := must("find", "/etc", "/usr", "/var", "/run/systemd", "-name", "*goreplica*", "-not", "-path", "/var/log/journal/*")
	if strings.TrimSpace(left) != "" {
		t.Errorf("files left after dpkg --purge:\n%s", left)
	}
	if r := in("dpkg-query", "-W", "goreplica"); r.code == 0 {
		t.Errorf("dpkg still knows the package after --purge\n%s", r)
	}
	t.Logf("packages: %s, %s", filepath.Base(deb1), filepath.Base(deb2))
}
