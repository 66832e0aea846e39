package wine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goreplica/goreplica/pgserver"
	"github.com/goreplica/goreplica/pgserver/pgtest"
)

const (
	buildTimeout = 5 * time.Minute  // cross-compile the probe; about 15 s with a cold build cache
	verbTimeout  = time.Minute      // one svcprobe verb under wine; about 0.15 s
	waitTimeout  = 30 * time.Second // heartbeats, SELECT 1, the stop
	waitEvery    = 100 * time.Millisecond
	// pendingDelay is how long the probe stays start pending and stop
	// pending, so that the test sees those states.
	pendingDelay = 1500 * time.Millisecond
)

// buildProbe cross-compiles testdata/svcprobe for windows/amd64.
func buildProbe(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	exe := filepath.Join(t.TempDir(), "svcprobe.exe")
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", exe, "./testdata/svcprobe")
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=windows GOARCH=amd64 go build ./testdata/svcprobe: %v\n%s", err, out)
	}
	t.Logf("svcprobe.exe cross-compiled in %v", time.Since(start).Round(time.Millisecond))
	return exe
}

// waitFor polls check until it reports ok, and returns how long that took;
// after timeout the test fails with what was last seen.
func waitFor(t *testing.T, what string, timeout time.Duration, check func() (ok bool, seen string)) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	for {
		ok, seen := check()
		if ok {
			return time.Since(start)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v; last seen:\n%s", what, timeout, seen)
		case <-time.After(waitEvery):
		}
	}
}

// TestServiceCycle runs the Windows service probe through the whole cycle
// under Wine's service control manager: install, start, heartbeats and a
// SELECT 1 on the host's PostgreSQL from inside the service, stop,
// uninstall; then a probe that panics; then checks that the prefix's
// cleanup left nothing behind.
func TestServiceCycle(t *testing.T) {
	Require(t)
	total := time.Now()
	pg := pgtest.Start(t, pgserver.Options{})
	exe := buildProbe(t)

	var dir, serverDir string
	var cleanupStart time.Time
	t.Run("cycle", func(t *testing.T) {
		bootStart := time.Now()
		p := New(t)
		dir, serverDir = p.Dir, p.serverDir
		if want := serverDirOf(p.Dir); serverDir != want {
			t.Errorf("wineserver runs in %q, serverDirOf (used by the watchdog) says %q", serverDir, want)
		}
		t.Logf("timing: New %v", time.Since(bootStart).Round(time.Millisecond))
		serviceCycle(t, p, exe, pg)
		crashCycle(t, p)
		cleanupStart = time.Now()
	})
	if !cleanupStart.IsZero() {
		t.Logf("timing: cleanup %v", time.Since(cleanupStart).Round(time.Millisecond))
	}
	t.Logf("timing: total %v (PostgreSQL, build, prefix, cycle, crash, cleanup)", time.Since(total).Round(time.Millisecond))
	if dir == "" {
		return
	}
	ps, err := prefixProcesses(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) > 0 {
		t.Errorf("after cleanup, processes of the prefix still run: %v", ps)
	}
	for _, d := range []string{dir, serverDir} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after cleanup, %s still exists (stat: %v)", d, err)
		}
	}
}

func serviceCycle(t *testing.T, p *Prefix, exe string, pg *pgserver.Server) {
	const (
		name  = "goreplicaprobe"
		exeW  = `C:\svcprobe\svcprobe.exe`
		hbW   = `C:\svcprobe\hb.txt`
		runRE = "RUNNING"
	)
	if err := p.CopyIn(exe, exeW); err != nil {
		t.Fatal(err)
	}
	hb := p.HostPath(hbW)
	run := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
		defer cancel()
		out, errOut, code, err := p.Run(ctx, args...)
		if err != nil {
			t.Fatalf("wine %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
		}
		if strings.Contains(errOut, "wine32") {
			t.Errorf("wine %s: the wine32 notice was not filtered: %q", strings.Join(args, " "), errOut)
		}
		return out + errOut, code
	}
	probe := func(verb string, args ...string) string {
		t.Helper()
		out, code := run(append([]string{exeW, verb, "-name", name}, args...)...)
		if code != 0 {
			ps, err := p.Processes()
			t.Fatalf("svcprobe %s: exit code %d: %s\nprocesses of the prefix (err %v):\n%s\nservice output:\n%s",
				verb, code, out, err, strings.Join(ps, "\n"), p.ServiceOutput())
		}
		return strings.TrimSpace(out)
	}
	expect := func(got, want string) {
		t.Helper()
		if !strings.HasPrefix(got, want) {
			t.Fatalf("got %q, want %q...\nservice output:\n%s", got, want, p.ServiceOutput())
		}
	}
	readHB := func() string {
		b, err := os.ReadFile(hb)
		if err != nil {
			return err.Error()
		}
		return string(b)
	}

	// state polls the probe's status until it is want, and returns how
	// long that took and the states seen on the way, as "a -> b".
	state := func(want string) (time.Duration, string) {
		t.Helper()
		var seen []string
		took := waitFor(t, "status "+want, waitTimeout, func() (bool, string) {
			st, _, _ := strings.Cut(strings.TrimPrefix(probe("status"), "status: "), " pid=")
			if len(seen) == 0 || seen[len(seen)-1] != st {
				seen = append(seen, st)
			}
			return st == want, strings.Join(seen, " -> ")
		})
		return took, strings.Join(seen, " -> ")
	}

	cycle := time.Now()
	pending := pendingDelay.String()
	expect(probe("install", "-hb", hbW, "-pghost", pg.Host, "-pgport", strconv.Itoa(pg.Port),
		"-startdelay", pending, "-stopdelay", pending), "install: ok")
	expect(probe("status"), "status: stopped")
	expect(probe("start"), "start: ok")
	took, seen := state("running")
	t.Logf("running %v after start returned: %s", took.Round(time.Millisecond), seen)
	if !strings.Contains(seen, "start pending -> running") {
		t.Errorf("states after start: %s, want start pending -> running", seen)
	}
	started := time.Now()

	up := waitFor(t, "3 heartbeats and the SELECT 1 line in "+hb, waitTimeout, func() (bool, string) {
		s := readHB()
		if strings.Contains(s, "select1 error") {
			t.Fatalf("the service could not query PostgreSQL on %s:%d:\n%s", pg.Host, pg.Port, s)
		}
		return strings.Count(s, "\nheartbeat ") >= 3 && strings.Contains(s, "\nselect1=1 "), s
	})
	s := readHB()
	first, _, _ := strings.Cut(s, "\n")
	if !strings.Contains(first, `"--service" "`+name+`"`) {
		t.Errorf("first line does not show the --service flag: %s", first)
	}
	t.Logf("heartbeats and SELECT 1 %v after running; %s", up.Round(time.Millisecond), first)
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "select1") || strings.HasPrefix(l, "eventlog ") {
			t.Log(l)
		}
	}

	if ps, err := p.Processes(); err != nil || containing(ps, exeW+" run --service "+name) != 1 {
		t.Errorf("processes of the prefix: %v (err %v), want one %s run --service %s", ps, err, exeW, name)
	}
	if out, _ := run("sc", "query", name); !strings.Contains(out, runRE) {
		t.Errorf("wine sc query %s: no %s in:\n%s", name, runRE, out)
	}
	key := `HKLM\System\CurrentControlSet\Services\` + name
	if out, _ := run("reg", "query", key, "/v", "ImagePath"); !strings.Contains(out, "--service "+name) {
		t.Errorf("wine reg query %s: ImagePath without --service %s:\n%s", key, name, out)
	} else {
		t.Logf("wine reg query: %s", strings.Join(strings.Fields(out), " "))
	}
	// Wine keeps no event log: ReportEvent prints to the service's stderr.
	waitFor(t, "the probe's event log entries in the service output", waitTimeout, func() (bool, string) {
		out := p.ServiceOutput()
		for _, want := range []string{
			`trace:eventlog:ReportEventW L"svcprobe-event ` + name + ` info"`,
			`warn:eventlog:ReportEventW L"svcprobe-event ` + name + ` warning"`,
			`err:eventlog:ReportEventW L"svcprobe-event ` + name + ` error"`,
		} {
			if !strings.Contains(out, want) {
				return false, out
			}
		}
		return true, out
	})

	ran := time.Since(started)
	expect(probe("stop"), "stop: sent")
	// mgr's Control does not wait for the service to stop: poll Query.
	took, seen = state("stopped")
	t.Logf("stopped %v after stop returned (ran %v): %s", took.Round(time.Millisecond), ran.Round(time.Millisecond), seen)
	if !strings.Contains(seen, "stop pending -> stopped") {
		t.Errorf("states after stop: %s, want stop pending -> stopped", seen)
	}
	if s := readHB(); !strings.HasSuffix(s, "\nstopped\n") {
		t.Errorf("heartbeat file does not end with stopped:\n%s", s)
	} else {
		t.Logf("heartbeat file: %d heartbeats, then stopped", strings.Count(s, "\nheartbeat "))
	}
	expect(probe("uninstall"), "uninstall: ok")
	expect(probe("status"), "status: not installed")
	t.Logf("timing: cycle %v (install to uninstalled, with 2 x %v pending)", time.Since(cycle).Round(time.Millisecond), pendingDelay)
	if ps, err := p.Processes(); err != nil || containing(ps, exeW) != 0 {
		t.Errorf("after uninstall, processes %v (err %v), want no %s", ps, err, exeW)
	}
}

// containing returns how many of the command lines ps contain s.
func containing(ps []string, s string) int {
	n := 0
	for _, p := range ps {
		if strings.Contains(p, s) {
			n++
		}
	}
	return n
}

// crashCycle starts a probe that panics once running, and checks what a
// test can see of it under Wine: the crash output that the service sent to
// a file, and its process gone, while Wine's SCM goes on reporting it
// running (logged, not checked: that is Wine's shortcoming).
func crashCycle(t *testing.T, p *Prefix) {
	const (
		name = "goreplicacrash"
		exeW = `C:\svcprobe\svcprobe.exe`
		hbW  = `C:\svcprobe\crash.txt`
	)
	probe := func(verb string, args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
		defer cancel()
		out, errOut, code, err := p.Run(ctx, append([]string{exeW, verb, "-name", name}, args...)...)
		if err != nil {
			t.Fatalf("svcprobe %s: %v", verb, err)
		}
		return strings.TrimSpace(out + errOut), code
	}
	if out, code := probe("install", "-hb", hbW, "-panic"); code != 0 {
		t.Fatalf("install: %s", out)
	}
	if out, code := probe("start"); code != 0 {
		t.Fatalf("start: %s", out)
	}
	crash := p.HostPath(hbW + ".crash")
	waitFor(t, "the panic in "+crash, waitTimeout, func() (bool, string) {
		b, err := os.ReadFile(crash)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(string(b), "panic: svcprobe: deliberate panic") && strings.Contains(string(b), "main.(*handler).Execute"), string(b)
	})
	waitFor(t, "the crashed service's process to go", waitTimeout, func() (bool, string) {
		ps, err := p.Processes()
		return err == nil && containing(ps, exeW) == 0, fmt.Sprint(ps, err)
	})
	st, _ := probe("status")
	stop, _ := probe("stop")
	t.Logf("after the service crashed: %s; %s", st, stop)
	if out, code := probe("uninstall"); code != 0 {
		t.Errorf("uninstall of the crashed service: %s", out)
	}
}

// helperEnv makes the test binary, run by TestWatchdog, make a prefix and
// exit at once without its cleanups, as at a "go test -timeout" panic.
const helperEnv = "WINE_TEST_HELPER_DIE"

func TestHelperNewThenDie(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("run by TestWatchdog")
	}
	p := New(t)
	tpl, _, _ := sharedTemplate()
	fmt.Printf("PREFIX=%s\nTEMPLATE=%s\n", p.Dir, tpl.base)
	os.Exit(3)
}

// TestWatchdog checks that a test process dying without its cleanups
// leaves no wine process and no prefix behind: the watchdogs kill the
// wineserver and remove the prefix and the template.
func TestWatchdog(t *testing.T) {
	Require(t)
	if testing.Short() {
		t.Skip("boots a template prefix in a child process (about 12 s)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout+templateTimeout)
	defer cancel()
	out := filepath.Join(t.TempDir(), "helper.out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperNewThenDie$", "-test.v")
	// Whatever the watchdogs miss lands in this test's temp dir.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), helperEnv+"=1", "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	b, _ := os.ReadFile(out)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Fatalf("helper: %v, want exit code 3; output:\n%s", err, b)
	}
	var prefix, template string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PREFIX="); ok {
			prefix = v
		}
		if v, ok := strings.CutPrefix(l, "TEMPLATE="); ok {
			template = v
		}
	}
	if prefix == "" || template == "" {
		t.Fatalf("helper printed no PREFIX= and TEMPLATE= lines:\n%s", b)
	}
	took := waitFor(t, "the watchdogs to clean up after the helper", waitTimeout, func() (bool, string) {
		ps, err := prefixProcesses(prefix)
		if err != nil {
			return false, err.Error()
		}
		var left []string
		for _, d := range []string{prefix, template} {
			if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
				left = append(left, d)
			}
		}
		// The wineserver's socket directory, $TMPDIR/wine-XXXXXX/server-*.
		ents, _ := os.ReadDir(tmp)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "wine-") {
				left = append(left, filepath.Join(tmp, e.Name()))
			}
		}
		return len(ps) == 0 && len(left) == 0, fmt.Sprintf("processes %v, directories %v", ps, left)
	})
	t.Logf("watchdogs cleaned up %v after the helper exited", took.Round(time.Millisecond))
}

func TestHostPath(t *testing.T) {
	p := &Prefix{Dir: "/x/prefix"}
	for in, want := range map[string]string{
		`C:\goreplica\x.log`:  "/x/prefix/drive_c/goreplica/x.log",
		`c:/goreplica/x.log`:  "/x/prefix/drive_c/goreplica/x.log",
		`C:\`:                 "/x/prefix/drive_c",
		`C:\a\..\b\Name.TOML`: "/x/prefix/drive_c/b/Name.TOML",
	} {
		if got := p.HostPath(in); got != want {
			t.Errorf("HostPath(%q) = %q, want %q", in, got, want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error(`HostPath("D:\\x") did not panic`)
		}
	}()
	p.HostPath(`D:\x`)
}

func TestFilterStderr(t *testing.T) {
	in := "it looks like wine32 is missing, you should install it.\n" +
		"multiarch needs to be enabled first.  as root, please\n" +
		"execute \"dpkg --add-architecture i386 && apt-get update &&\n" +
		"apt-get install wine32:i386\"\n" +
		"svcprobe: error: boom\n"
	if got, want := filterStderr(in), "svcprobe: error: boom\n"; got != want {
		t.Errorf("filterStderr = %q, want %q", got, want)
	}
	if got := filterStderr("no notice\n"); got != "no notice\n" {
		t.Errorf("filterStderr changed %q", got)
	}
}
