// Package wine runs Windows programs under Wine in a throwaway prefix with a
// running service control manager, for tests of the Windows build. It is for
// tests only and is not a Windows emulation layer of its own.
package wine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// runDebug and runOverrides are the environment of Run: no Wine
	// debug output, and no prompts to install Mono or Gecko.
	runDebug     = "-all"
	runOverrides = "mscoree,mshtml="
	// bootDebug is the WINEDEBUG of the wineboot that starts services.exe,
	// inherited by every service: Wine keeps no event log, and with the
	// eventlog channel on, ReportEvent prints each entry on the Unix
	// standard error of the service's process (see [Prefix.ServiceOutput]).
	bootDebug = "-all,+eventlog"
	// bootOverrides also keeps winemenubuilder from writing menu entries
	// and file associations into $HOME.
	bootOverrides = "mscoree,mshtml=;winemenubuilder.exe=d"

	bootTimeout  = 2 * time.Minute  // copy the template and boot a prefix
	closeTimeout = 30 * time.Second // kill a prefix's processes
	killGrace    = 5 * time.Second  // after wineserver -k, before SIGKILL
	pollEvery    = 50 * time.Millisecond
	logTailBytes = 4096
)

// commands are the programs Available looks for.
var commands = []string{"wine", "wineserver", "wineboot", "x86_64-w64-mingw32-as", "x86_64-w64-mingw32-ld"}

// Available returns nil when Wine prefixes can be made here (wine, wineserver, wineboot, x86_64-w64-mingw32-as and -ld), else an error saying what is missing and how to install it.
func Available() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("wine: prefixes are made on linux only, not %s", runtime.GOOS)
	}
	var missing []string
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("wine: %s not found on PATH; install with "+
			"`apt-get install -y wine wine64 binutils-mingw-w64-x86-64` (Debian 12 ships Wine 8.0)",
			strings.Join(missing, ", "))
	}
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		return fmt.Errorf("wine: /proc is needed to find the processes of a prefix: %w", err)
	}
	return nil
}

// Require skips the test when [Available] fails, or fails it when the
// environment variable CI is set (CI installs Wine: a missing one is a
// broken CI, not a reason to skip).
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (CI is set: not skipping)", err)
		}
		t.Skip(err)
	}
}

// Prefix is a booted Wine prefix: a persistent wineserver, one
// services.exe (the service control manager) and drive C: at
// Dir/drive_c. Its methods are safe for concurrent use.
//
// What Wine 8.0's service control manager does, as measured here:
//   - StartService returns once the service process has called svc.Run
//     (StartServiceCtrlDispatcher); a process that has not done so within
//     10 s is killed and start fails with "Service request timeout.".
//     After that, start pending and stop pending last as long as the
//     service says (checked up to 45 s): poll the status.
//   - A stopped Go service is reported stopped within about 0.1 s of
//     returning from Execute.
//   - A service's working directory is C:\windows: give it absolute paths.
//   - A service process that dies is not noticed: the status stays running
//     (or start pending) and stop fails with "Pipe closed." (or "Invalid
//     service control."); see [Prefix.Processes]. Deleting it still works.
//   - There is no event log and no standard error: see [Prefix.ServiceOutput].
type Prefix struct {
	// Dir is the prefix directory (WINEPREFIX).
	Dir string

	root        string // the test's temp dir: Dir, logs, Run's output files
	servicesLog string // Unix stdout and stderr of services.exe and its services
	bootLog     string // output of wineserver -p and wineserver -k
	serverDir   string // the wineserver's socket directory under /tmp
	watchdog    *watchdog

	mu     sync.Mutex
	closed bool
}

// New makes a fresh prefix in the test's temp dir, boots it in the order that leaves exactly one services.exe under a persistent wineserver, installs the bcryptprimitives.dll forwarder into system32, and in t.Cleanup kills the wineserver (wineserver -k) and anything it started, then removes the prefix.
func New(t testing.TB) *Prefix {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	// wineboot --init and the wait for its wineserver to exit (about 10 s)
	// run once per test process, into a template that each test copies
	// (cp -a of about 700 MB, 0.3 to 1.7 s) and boots (about 0.5 s): every
	// test still gets its own wineserver, services.exe, registry and
	// drive C:, and nothing one test leaves can break the next.
	tpl, built, err := sharedTemplate()
	if err != nil {
		t.Fatal(err)
	}
	if built {
		t.Logf("wine: template prefix %s made in %v (wineboot --init %v)", tpl.prefix, tpl.took.Round(time.Millisecond), tpl.initTook.Round(time.Millisecond))
	}
	root := t.TempDir()
	p := &Prefix{
		Dir:         filepath.Join(root, "prefix"),
		root:        root,
		servicesLog: filepath.Join(root, "services.log"),
		bootLog:     filepath.Join(root, "boot.log"),
	}
	p.watchdog, err = startWatchdog(p.Dir, root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.close(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	start := time.Now()
	if err := copyTree(ctx, tpl.prefix, p.Dir); err != nil {
		t.Fatal(err)
	}
	copied := time.Since(start)
	if err := p.boot(ctx, tpl.dll); err != nil {
		t.Fatal(err)
	}
	t.Logf("wine: prefix %s booted in %v (copy %v)", p.Dir, time.Since(start).Round(time.Millisecond), copied.Round(time.Millisecond))
	return p
}

// boot starts a persistent wineserver, then a plain wineboot that starts
// exactly one services.exe, and installs the forwarder DLL. A wineboot
// --init under a persistent server would leave two services.exe, and SCM
// calls would go to either.
func (p *Prefix) boot(ctx context.Context, dll string) error {
	if err := runLogged(ctx, p.env(runDebug, bootOverrides), p.Dir, p.bootLog, "wineserver", "-p"); err != nil {
		return fmt.Errorf("boot wine prefix %s: %w", p.Dir, err)
	}
	// services.exe and what it starts inherit this output: a file, never a
	// pipe, which they would hold open for ever.
	if err := runLogged(ctx, p.env(bootDebug, bootOverrides), p.Dir, p.servicesLog, "wineboot"); err != nil {
		return fmt.Errorf("boot wine prefix %s: %w", p.Dir, err)
	}
	procs, err := waitProcesses(ctx, p.Dir, func(ps []process) bool {
		return count(ps, "wineserver") == 1 && count(ps, `\services.exe`) == 1
	})
	if err != nil {
		return fmt.Errorf("boot wine prefix %s: want one wineserver and one services.exe: %w; end of %s:\n%s",
			p.Dir, err, p.servicesLog, tail(p.servicesLog))
	}
	for _, pr := range procs {
		if strings.Contains(pr.args, "wineserver") {
			p.serverDir = processDir(pr.pid)
		}
	}
	sys32 := p.HostPath(`C:\windows\system32\bcryptprimitives.dll`)
	if err := copyFile(dll, sys32); err != nil {
		return fmt.Errorf("boot wine prefix %s: install the forwarder DLL: %w", p.Dir, err)
	}
	return nil
}

// Run runs `wine args...` in the prefix (WINEDEBUG=-all, WINEDLLOVERRIDES="mscoree,mshtml=", stdin /dev/null, output to files, not pipes, so that services started by it never hold a pipe open) and returns stdout, stderr (without Wine's 'wine32 is missing' notice) and the exit code; err only when it could not be run or ctx expired.
func (p *Prefix) Run(ctx context.Context, args ...string) (stdout, stderr string, code int, err error) {
	if len(args) == 0 {
		return "", "", -1, errors.New("run wine: no program given")
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return "", "", -1, fmt.Errorf("run wine %s: prefix %s is closed", args[0], p.Dir)
	}
	outF, err := os.CreateTemp(p.root, "run-*.stdout")
	if err != nil {
		return "", "", -1, fmt.Errorf("run wine %s: %w", args[0], err)
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	errF, err := os.CreateTemp(p.root, "run-*.stderr")
	if err != nil {
		return "", "", -1, fmt.Errorf("run wine %s: %w", args[0], err)
	}
	defer os.Remove(errF.Name())
	defer errF.Close()

	cmd := exec.CommandContext(ctx, "wine", args...)
	cmd.Env = p.env(runDebug, runOverrides)
	cmd.Dir = filepath.Join(p.Dir, "drive_c") // the Windows working directory is C:\
	cmd.Stdout, cmd.Stderr = outF, errF       // stdin is /dev/null
	runErr := cmd.Run()
	o, oerr := os.ReadFile(outF.Name())
	e, eerr := os.ReadFile(errF.Name())
	stdout, stderr = string(o), filterStderr(string(e))
	if err := errors.Join(oerr, eerr); err != nil {
		return stdout, stderr, -1, fmt.Errorf("run wine %s: read output: %w", args[0], err)
	}
	if runErr == nil {
		return stdout, stderr, 0, nil
	}
	if ctx.Err() != nil {
		return stdout, stderr, -1, fmt.Errorf("run wine %s: %w", args[0], ctx.Err())
	}
	var exitErr *exec.ExitError
	if errors.As(runErr, &exitErr) {
		return stdout, stderr, exitErr.ExitCode(), nil
	}
	return stdout, stderr, -1, fmt.Errorf("run wine %s: %w", args[0], runErr)
}

// HostPath returns the host path of a Windows path on drive C: (C:\goreplica\x.log -> <prefix>/drive_c/goreplica/x.log).
func (p *Prefix) HostPath(winPath string) string {
	if len(winPath) < 2 || winPath[1] != ':' || (winPath[0] != 'C' && winPath[0] != 'c') {
		panic(fmt.Sprintf("wine: HostPath(%q): not a path on drive C:", winPath))
	}
	rest := strings.ReplaceAll(winPath[2:], `\`, "/")
	return filepath.Join(p.Dir, "drive_c", filepath.FromSlash(rest))
}

// CopyIn copies the host file src to winPath on drive C: (such as
// C:\goreplica\goreplica.exe), making its directories; the copy keeps the
// permission bits of src.
func (p *Prefix) CopyIn(src, winPath string) error {
	if err := copyFile(src, p.HostPath(winPath)); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, winPath, err)
	}
	return nil
}

// ServiceOutput returns what Wine has printed so far on the Unix standard
// error of services.exe and the services it started (one file for all):
// above all their event log entries, for Wine keeps no event log. Each
// ReportEvent prints a line such as `0168:trace:eventlog:ReportEventW
// L"text"` (information; warn: for a warning, err: for an error). What a
// service itself writes to os.Stdout or os.Stderr is not there: a service
// has no standard handles (GetStdHandle returns 0), under Wine as on
// Windows, so a Go service's panic is lost unless the program sends it to
// a file with runtime/debug.SetCrashOutput.
func (p *Prefix) ServiceOutput() string {
	b, err := os.ReadFile(p.servicesLog)
	if err != nil {
		return fmt.Sprintf("(read service output: %v)", err)
	}
	return string(b)
}

// Processes returns the live processes of the prefix, one "pid command
// line" each (host pids; zombies left out): the wineserver, services.exe,
// Wine's own services, and the programs and services started in it, such
// as `1234 C:\goreplica\goreplica.exe run -c C:\goreplica\goreplica.toml
// --service goreplica`. Wine's SCM does not notice a service process that
// died (its status stays running or start pending), so this is how a test
// sees that it is gone.
func (p *Prefix) Processes() ([]string, error) {
	ps, err := prefixProcesses(p.Dir)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ps))
	for i, pr := range ps {
		out[i] = pr.String()
	}
	return out, nil
}

// close kills the wineserver and every process of the prefix, then removes
// the wineserver's socket directory and the prefix.
func (p *Prefix) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var errs []error
	killCtx, killCancel := context.WithTimeout(ctx, killGrace)
	// Its exit status is moot: what counts is that the processes go.
	_ = runLogged(killCtx, p.env(runDebug, runOverrides), p.Dir, p.bootLog, "wineserver", "-k")
	_, err := waitProcesses(killCtx, p.Dir, func(ps []process) bool { return len(ps) == 0 })
	killCancel()
	if err != nil {
		// Whatever survived wineserver -k (a process that lost its server).
		if err := killPrefixProcesses(p.Dir); err != nil {
			errs = append(errs, err)
		}
		if _, err := waitProcesses(ctx, p.Dir, func(ps []process) bool { return len(ps) == 0 }); err != nil {
			errs = append(errs, fmt.Errorf("kill the processes of wine prefix %s: %w", p.Dir, err))
		}
	}
	if p.serverDir != "" {
		if err := os.RemoveAll(p.serverDir); err != nil {
			errs = append(errs, fmt.Errorf("remove wineserver directory: %w", err))
		}
		_ = os.Remove(filepath.Dir(p.serverDir)) // shared by the copies of a template: only when empty
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(p.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove wine prefix: %w", err))
		}
	}
	if len(errs) > 0 {
		// Leave the rest to the watchdog: it kills the server again and
		// removes the directory when this process exits.
		errs = append(errs, fmt.Errorf("end of %s:\n%s", p.servicesLog, tail(p.servicesLog)))
		return errors.Join(errs...)
	}
	p.watchdog.dismiss()
	return nil
}

// env returns the host environment (see hostEnv) plus the prefix's WINE*
// variables.
func (p *Prefix) env(debug, overrides string) []string {
	return wineEnv(p.Dir, debug, overrides)
}

func wineEnv(prefix, debug, overrides string) []string {
	env := hostEnv()
	return append(env,
		"WINEPREFIX="+prefix,
		"WINEARCH=win64",
		"WINEDEBUG="+debug,
		"WINEDLLOVERRIDES="+overrides,
	)
}

// hostEnv returns this process's environment without WINE* variables, and
// without DISPLAY and WAYLAND_DISPLAY: the prefixes are headless, no
// window opens on a developer's desktop.
func hostEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WINE") && !strings.HasPrefix(kv, "DISPLAY=") && !strings.HasPrefix(kv, "WAYLAND_DISPLAY=") {
			env = append(env, kv)
		}
	}
	return env
}

// runLogged runs a host command with stdin /dev/null and its output
// appended to logFile (never a pipe: wine processes it starts inherit it).
func runLogged(ctx context.Context, env []string, dir, logFile, name string, args ...string) error {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	if _, err := os.Stat(dir); err == nil {
		cmd.Dir = dir
	}
	cmd.Stdout, cmd.Stderr = f, f
	start := time.Now()
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("%s %s (after %v): %w; end of %s:\n%s",
			name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err, logFile, tail(logFile))
	}
	return nil
}

// wine32Notice are the lines the wine script of Debian prints on stderr when
// only the 64-bit Wine is installed and WINEDEBUG does not start with -all.
var wine32Notice = map[string]bool{
	"it looks like wine32 is missing, you should install it.":    true,
	"multiarch needs to be enabled first.  as root, please":      true,
	`execute "dpkg --add-architecture i386 && apt-get update &&`: true,
	`apt-get install wine32:i386"`:                               true,
	`as root, please execute "apt-get install wine32:i386"`:      true,
}

func filterStderr(s string) string {
	if !strings.Contains(s, "wine32") {
		return s
	}
	lines := strings.SplitAfter(s, "\n")
	kept := lines[:0]
	for _, l := range lines {
		if !wine32Notice[strings.TrimRight(l, "\r\n")] {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "")
}

// copyTree copies the directory src to dst (which must not exist) with
// cp -a: symbolic links (dosdevices/c: -> ../drive_c), modes and times kept.
func copyTree(ctx context.Context, src, dst string) error {
	out, err := exec.CommandContext(ctx, "cp", "-a", "--", src, dst).CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("copy wine prefix %s to %s: %w: %s", src, dst, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tail returns the last few KB of the file at path.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return string(b)
}

// count returns how many of ps have a command line containing s.
func count(ps []process, s string) int {
	n := 0
	for _, p := range ps {
		if strings.Contains(p.args, s) {
			n++
		}
	}
	return n
}

// waitProcesses polls the live processes of the prefix until ok accepts
// them, and returns them; when ctx ends first, the error lists what was
// last seen.
func waitProcesses(ctx context.Context, prefix string, ok func([]process) bool) ([]process, error) {
	for {
		ps, err := prefixProcesses(prefix)
		if err == nil && ok(ps) {
			return ps, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return nil, fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
			}
			return nil, fmt.Errorf("%w; processes last seen: %v", ctx.Err(), ps)
		case <-time.After(pollEvery):
		}
	}
}
