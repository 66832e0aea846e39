//go:build linux

package wine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a live process of a prefix.
type process struct {
	pid  int
	args string
}

func (p process) String() string { return strconv.Itoa(p.pid) + " " + p.args }

// prefixProcesses returns the live processes whose environment says
// WINEPREFIX=prefix: the wineserver, services.exe, the services and any
// other program of the prefix. Zombies do not count: the PID 1 of a
// container may never reap the orphans wine leaves.
func prefixProcesses(prefix string) ([]process, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	want := []byte("WINEPREFIX=" + prefix)
	var ps []process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		env, err := os.ReadFile(filepath.Join(dir, "environ"))
		if err != nil {
			continue // gone, or not ours
		}
		found := false
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				found = true
				break
			}
		}
		if !found || !alive(dir) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		args := strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		ps = append(ps, process{pid: pid, args: args})
	}
	return ps, nil
}

// alive reports whether the process of /proc/<pid> dir is neither a zombie
// nor dead.
func alive(dir string) bool {
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(stat[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// processDir returns the working directory of a process, "" when unknown.
// That of a wineserver is its socket directory, /tmp/wine-XXXXXX/server-*.
func processDir(pid int) string {
	d, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd"))
	if err != nil || !strings.Contains(d, "/server-") {
		return ""
	}
	return d
}

// killPrefixProcesses sends SIGKILL to every live process of the prefix.
func killPrefixProcesses(prefix string) error {
	ps, err := prefixProcesses(prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ps {
		if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %v: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// watchdogScript waits for a line or the end of its standard input, a pipe
// from this process. A line says all is done; the end of input without a
// line means this process died before its cleanups (killed, or exited at a
// "go test -timeout" panic), so the watchdog kills the prefix's wineserver
// and what it started, removes the wineserver's socket directory (see
// serverDirOf) and then the directory. $1: the prefix, $2: the directory to
// remove. WINEPREFIX is not in the watchdog's own environment: it is not a
// process of the prefix.
const watchdogScript = `read -r line && exit 0
WINEPREFIX="$1" wineserver -k >/dev/null 2>&1
name=$(cat "$1/wineserver" 2>/dev/null) || name=
case $name in
wine-*/*|wine-) ;;
wine-*)
	if id=$(stat -c '%d %i' "$1" 2>/dev/null); then
		rm -rf "${TMPDIR:-/tmp}/$name/server-$(printf '%x-%x' $id)"
		rmdir "${TMPDIR:-/tmp}/$name" 2>/dev/null
	fi ;;
esac
rm -rf "$2"
`

// serverDirOf returns the socket directory of the wineserver of prefix,
// as Wine 8.0 names it: $TMPDIR (default /tmp), then the name kept in the
// prefix's file "wineserver" (wine-XXXXXX, shared by the copies of a
// template), then server-<device>-<inode> of the prefix, in hexadecimal.
// It returns "" when the prefix has no such file.
func serverDirOf(prefix string) string {
	b, err := os.ReadFile(filepath.Join(prefix, "wineserver"))
	name := strings.TrimSpace(string(b))
	if err != nil || !strings.HasPrefix(name, "wine-") || strings.ContainsAny(name, "/\\") {
		return ""
	}
	fi, err := os.Stat(prefix)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return filepath.Join(os.TempDir(), name, fmt.Sprintf("server-%x-%x", uint64(st.Dev), uint64(st.Ino)))
}

// watchdogWait bounds waiting for a watchdog to do its work or exit.
const watchdogWait = time.Minute

type watchdog struct {
	cmd *exec.Cmd
	w   *os.File
}

// startWatchdog starts the process that kills the wineserver of prefix and
// removes dir if this process dies first. It runs in a process group of its
// own, so that a Ctrl-C meant for the tests does not kill it before it has
// done its work.
func startWatchdog(prefix, dir string) (*watchdog, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "wine-watchdog", prefix, dir)
	cmd.Stdin = r
	cmd.Dir = "/"
	cmd.Env = hostEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	return &watchdog{cmd: cmd, w: w}, nil
}

// dismiss tells the watchdog that all is done and waits for it to exit.
func (wd *watchdog) dismiss() {
	// Errors are moot: a watchdog that is already gone has nothing to do.
	_, _ = wd.w.Write([]byte("done\n"))
	wd.finish()
}

// fire makes the watchdog do its work now and waits for it.
func (wd *watchdog) fire() { wd.finish() }

func (wd *watchdog) finish() {
	_ = wd.w.Close()
	done := make(chan struct{})
	go func() {
		_ = wd.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(watchdogWait):
		_ = wd.cmd.Process.Kill()
	}
}
