//go:build linux

// Package nspawn boots a minimal Debian with real systemd as PID 1 in
// systemd-nspawn, for tests that install and drive system services. It does
// not manage images beyond one cached root file system, and it is for tests
// only (Linux, as root).
package nspawn

// How it works, for whoever maintains it:
//
//   - The root file system is debootstrapped once into the cache directory
//     (see rootfs.go) and never written to afterwards: each container gets
//     it as the lower layer of an overlay whose upper layer is in the
//     test's temporary directory (nspawn --overlay=LOWER:UPPER:/). The
//     overlay is mounted in the container's own mount namespace, so a
//     killed test leaves no mount behind, and Path goes through
//     /proc/PID/root of the container's PID 1 (so it works only while the
//     container runs). Measured here: creating the overlay costs nothing
//     and the boot takes 0.3 to 0.4 s; a plain copy of the 250 MB tree
//     takes 0.4 s with the tree in the page cache, 1.6 s without;
//     --ephemeral (a copy on ext4) boots in 0.6 to 1.4 s.
//   - nspawn runs with --register=no --keep-unit, without which it asks a
//     host systemd for a scope and fails when PID 1 is not systemd ("Failed
//     to open system bus"), and without --private-network, so that
//     services reach servers the test started on 127.0.0.1 (and share the
//     host's ports).
//   - There is no machined to ask, so commands are run with nsenter into
//     the namespaces of the container's PID 1, found as the child of
//     nspawn that lives in another PID namespace.
//   - Each nspawn runs in cgroups of its own (see cgroup.go): containers
//     started from one cgroup would share one cgroup tree.
//   - nspawn gets SIGTERM when the test process dies (Pdeathsig), and
//     powers the container off. When nspawn is killed instead, the
//     container's PID 1 lives on as an orphan: Cleanup kills it by PID
//     (checking its start time, so that a reused PID is never hit), which
//     kills everything in its PID namespace, then whatever is left in its
//     cgroups.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	// bootTimeout bounds the wait for `systemctl is-system-running` to say
	// running or degraded (it takes about 0.3 s here).
	bootTimeout = 60 * time.Second

	// powerOffTimeout bounds a clean power-off before nspawn and the
	// container are killed (0.1 to 0.5 s here, unless a service is slow
	// to stop).
	powerOffTimeout = 20 * time.Second

	// killTimeout bounds the wait for killed processes to be gone.
	killTimeout = 10 * time.Second

	// probeTimeout bounds one `systemctl is-system-running` while booting,
	// and the journal dump of a failed test.
	probeTimeout = 10 * time.Second

	// pollInterval is how often a condition is checked again.
	pollInterval = 100 * time.Millisecond

	// logTailBytes is how much of a log a failure shows.
	logTailBytes = 8192

	// containerPath is PATH for commands run in the container.
	containerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// containerEnv is the environment of commands run by Exec: the test's own
// environment (GOFLAGS, CI, HOME...) is not passed in.
var containerEnv = []string{"PATH=" + containerPath, "HOME=/root", "LANG=C.UTF-8", "TERM=dumb"}

// seq numbers the containers of this process, for their machine names.
var seq atomic.Int64

// Container is a booted container. Its methods may be called from several
// goroutines at once.
type Container struct {
	name      string
	log       string // nspawn's output: its messages and the console
	cmd       *exec.Cmd
	done      chan struct{} // closed when nspawn has exited
	leader    int           // host PID of the container's PID 1
	leaderAge string        // its start time, to recognise it
	nsenter   string
	cgroups   []string // the container's own cgroups, see cgroup.go
	logShown  bool     // the end of log was shown already
}

// Available returns nil when containers can be booted here (root, systemd-nspawn, debootstrap, nsenter present), else an error saying what is missing and how to install it.
func Available() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root privileges (run the tests as root)")
	}
	for _, p := range []struct{ cmd, pkg string }{
		{"systemd-nspawn", "systemd-container"},
		{"debootstrap", "debootstrap"},
		{"nsenter", "util-linux"},
		{"unshare", "util-linux"},
	} {
		if _, err := exec.LookPath(lookPath(p.cmd)); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", p.cmd, p.pkg))
		}
	}
	if _, err := os.Stat("/usr/share/keyrings/debian-archive-keyring.gpg"); err != nil {
		missing = append(missing, "the Debian archive keyring for debootstrap (apt-get install debian-archive-keyring)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("nspawn unavailable: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Require skips the test when [Available] fails, or fails it when the
// environment variable CI is set, so that a CI runner cannot pass by
// skipping. Call it before [Boot].
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (CI is set: not skipping)", err)
		}
		t.Skip(err)
	}
}

// Boot boots a fresh container for the test and powers it off (then kills anything left) in t.Cleanup. The container shares the host's network namespace (NO --private-network) so that services inside reach servers the test started on 127.0.0.1. Boot returns once `systemctl is-system-running` says running or degraded (with a bounded wait; on timeout fail the test showing the end of the nspawn log).
func Boot(t testing.TB) *Container {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	buildCtx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	start := time.Now()
	root, built, err := rootfs(buildCtx)
	if err != nil {
		t.Fatalf("nspawn: root file system: %v", err)
	}
	if built {
		t.Logf("nspawn: built %s in %v", root, time.Since(start).Round(time.Millisecond))
	}

	dir := t.TempDir()
	upper := filepath.Join(dir, "upper")
	if err := os.Mkdir(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Container{
		name:    machineName(),
		log:     filepath.Join(dir, "nspawn.log"),
		done:    make(chan struct{}),
		nsenter: lookPath("nsenter"),
	}
	logFile, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	c.cgroups, err = createCgroups(c.name)
	if err != nil {
		for _, d := range c.cgroups {
			_ = removeCgroup(d)
		}
		t.Fatalf("nspawn: %v", err)
	}
	// A shell moves itself into the cgroups, then becomes nspawn.
	c.cmd = exec.Command("/bin/sh", "-c", cgroupScript, "sh", lookPath("systemd-nspawn"),
		"--directory="+root,
		"--overlay="+overlayPath(root)+":"+overlayPath(upper)+":/",
		"--machine="+c.name,
		"--boot",
		"--register=no", "--keep-unit",
		"--console=passive",
		"--link-journal=no",
		"--settings=no",
	)
	c.cmd.Stdout = logFile
	c.cmd.Stderr = logFile
	// TERM=dumb keeps colour codes out of the console log.
	c.cmd.Env = []string{"PATH=" + containerPath, "TERM=dumb", "NSPAWN_CGROUPS=" + strings.Join(c.cgroups, " ")}
	// Its own process group keeps a ^C of the terminal away from it (the
	// test process, not the terminal, powers it off); SIGTERM (a clean
	// power-off) when the test process dies without cleaning up.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	start = time.Now()
	waited, err := startPinned(c.cmd)
	if err != nil {
		for _, d := range c.cgroups {
			_ = removeCgroup(d)
		}
		t.Fatalf("nspawn: start systemd-nspawn: %v", err)
	}
	go func() {
		<-waited // its error says nothing the log does not
		close(c.done)
	}()
	t.Cleanup(func() { c.close(t) })

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	state, err := c.waitRunning(ctx)
	if err != nil {
		c.logShown = true
		t.Fatalf("nspawn: boot %s: %v (last `systemctl is-system-running`: %q); end of %s:\n%s",
			c.name, err, state, c.log, tail(c.log, logTailBytes))
	}
	t.Logf("nspawn: %s (PID 1 is host PID %d) %s after %v", c.name, c.leader, state, time.Since(start).Round(time.Millisecond))
	if state == "degraded" {
		out, _, _, _ := c.Exec(ctx, "systemctl", "--failed", "--no-pager")
		t.Logf("nspawn: failed units in %s:\n%s", c.name, out)
	}
	return c
}

// waitRunning waits until the container's PID 1 is known and
// `systemctl is-system-running` says running or degraded, and returns what
// it said last.
func (c *Container) waitRunning(ctx context.Context) (state string, err error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if c.leader == 0 {
			c.leader, c.leaderAge = findLeader(c.cmd.Process.Pid)
		}
		if c.leader != 0 {
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			out, errOut, _, err := c.Exec(pctx, "systemctl", "is-system-running")
			cancel()
			state = strings.TrimSpace(out + errOut)
			if err == nil && (state == "running" || state == "degraded") {
				return state, nil
			}
		}
		select {
		case <-c.done:
			return state, errors.New("systemd-nspawn exited")
		case <-ctx.Done():
			return state, ctx.Err()
		case <-tick.C:
		}
	}
}

// close powers the container off, or kills it when that takes longer than
// powerOffTimeout, and makes sure its PID 1 is gone.
func (c *Container) close(t testing.TB) {
	t.Helper()
	if t.Failed() && c.running() {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		out, errOut, _, err := c.Exec(ctx, "journalctl", "--no-pager", "-n", "100")
		cancel()
		t.Logf("nspawn: end of the journal of %s (err %v):\n%s%s", c.name, err, out, errOut)
	}
	select {
	case <-c.done:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM) // nspawn powers the container off
	}
	start := time.Now()
	timer := time.NewTimer(powerOffTimeout)
	defer timer.Stop()
	select {
	case <-c.done:
		t.Logf("nspawn: %s powered off in %v", c.name, time.Since(start).Round(time.Millisecond))
	case <-timer.C:
		t.Logf("nspawn: %s did not power off within %v: killing it", c.name, powerOffTimeout)
		_ = c.cmd.Process.Kill()
		c.killLeader()
		select {
		case <-c.done:
		case <-time.After(killTimeout):
			t.Errorf("nspawn: systemd-nspawn (PID %d) of %s still running %v after SIGKILL", c.cmd.Process.Pid, c.name, killTimeout)
		}
	}
	// A killed nspawn leaves the container's PID 1 running.
	if c.leaderAlive() {
		c.killLeader()
		if !waitUntil(killTimeout, func() bool { return !c.leaderAlive() }) {
			t.Errorf("nspawn: PID 1 of %s (host PID %d) still running %v after SIGKILL", c.name, c.leader, killTimeout)
		}
	}
	// nspawn removes this directory when it exits, unless it is killed.
	_ = os.Remove(filepath.Join("/run/systemd/nspawn/propagate", c.name))
	c.removeCgroups(t)
	if t.Failed() && !c.logShown {
		t.Logf("nspawn: end of %s:\n%s", c.log, tail(c.log, logTailBytes))
	}
}

// removeCgroups kills what is left in the container's cgroups, then
// removes them.
func (c *Container) removeCgroups(t testing.TB) {
	t.Helper()
	for _, d := range c.cgroups {
		var left []int
		gone := waitUntil(killTimeout, func() bool {
			left = cgroupProcs(d)
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			return len(left) == 0
		})
		if !gone {
			t.Errorf("nspawn: processes %v of %s still in %s %v after SIGKILL", left, c.name, d, killTimeout)
			continue
		}
		if err := removeCgroup(d); err != nil {
			t.Errorf("nspawn: %v", err)
		}
	}
}

// waitUntil calls cond every pollInterval until it returns true or timeout
// has passed, and returns its last result.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// running reports whether nspawn and the container's PID 1 are running.
func (c *Container) running() bool {
	select {
	case <-c.done:
		return false
	default:
		return c.leaderAlive()
	}
}

// leaderAlive reports whether the container's PID 1 is running (a zombie
// is not).
func (c *Container) leaderAlive() bool {
	if c.leader == 0 {
		return false
	}
	state, age, ok := procStat(c.leader)
	return ok && age == c.leaderAge && state != "Z" && state != "X"
}

// killLeader kills the container's PID 1, and so every process of its PID
// namespace, unless its PID now belongs to another process.
func (c *Container) killLeader() {
	if c.leaderAlive() {
		_ = syscall.Kill(c.leader, syscall.SIGKILL)
	}
}

// Exec runs a command inside the container (via nsenter into the container's PID 1 namespaces: mount, uts, ipc, net, pid) and returns stdout, stderr and exit code; err only when it could not be run or ctx expired.
func (c *Container) Exec(ctx context.Context, args ...string) (stdout, stderr string, code int, err error) {
	if len(args) == 0 {
		return "", "", -1, errors.New("exec: no command")
	}
	if c.leader == 0 || !c.running() {
		return "", "", -1, fmt.Errorf("exec %q: container %s is not running", args, c.name)
	}
	cmd := exec.CommandContext(ctx, c.nsenter, append([]string{
		"--target=" + strconv.Itoa(c.leader),
		"--mount", "--uts", "--ipc", "--net", "--pid",
		"--root", "--wd", "--",
	}, args...)...)
	cmd.Env = containerEnv
	var o, e bytes.Buffer
	cmd.Stdout = &o
	cmd.Stderr = &e
	// nsenter forks the command into the container's PID namespace and
	// does not pass signals on, so a cancel kills the rest of its process
	// group, but not nsenter, which then reaps the command and exits (and
	// is killed after WaitDelay if not). Were nsenter killed first, the
	// command would become a child of the host's PID 1, which may never
	// reap it (this machine's does not), and a zombie in the container
	// makes its power-off wait 10 s. Do not wait long either for the
	// output of processes the command left running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		for _, pid := range processGroup(cmd.Process.Pid) {
			if pid != cmd.Process.Pid {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	}
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return o.String(), e.String(), -1, fmt.Errorf("exec %q: %w", args, ctx.Err())
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		return o.String(), e.String(), 0, nil // it exited 0, its children hold the output
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return o.String(), e.String(), code, nil
	}
	if err != nil {
		return o.String(), e.String(), -1, fmt.Errorf("exec %q: %w", args, err)
	}
	return o.String(), e.String(), 0, nil
}

// Path returns the host path of a path inside the container (for writing config files and copying binaries in).
func (c *Container) Path(p string) string {
	return filepath.Join("/proc", strconv.Itoa(c.leader), "root", p)
}

// WriteFile writes data to the file p inside the container, creating the
// missing parent directories, and sets its mode to mode. It replaces an
// existing file by a rename, so that a service never reads half a file. p
// is resolved within the container's root: unlike with [Container.Path],
// an absolute symbolic link in the container cannot lead to a host file
// (it is an error instead).
func (c *Container) WriteFile(p string, data []byte, mode os.FileMode) error {
	return c.install(p, bytes.NewReader(data), mode)
}

// CopyFile copies the host file src to the file p inside the container,
// like [Container.WriteFile]: replacing a running binary works.
func (c *Container) CopyFile(src, p string, mode os.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy into container: %w", err)
	}
	defer f.Close()
	return c.install(p, f, mode)
}

// install writes r to p in the container through a temporary file renamed
// into place.
func (c *Container) install(p string, r io.Reader, mode os.FileMode) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("write %s in container %s: %w", p, c.name, err)
		}
	}()
	if !c.running() {
		return errors.New("container is not running")
	}
	root, err := os.OpenRoot(c.Path("/"))
	if err != nil {
		return err
	}
	defer root.Close()
	rel := strings.TrimPrefix(filepath.Clean("/"+p), "/")
	if rel == "" {
		return errors.New("not a file name")
	}
	if err := root.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(rel), "."+filepath.Base(rel)+".nspawn-tmp")
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	err = errors.Join(err, f.Close())
	if err == nil {
		err = root.Chmod(tmp, mode)
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		_ = root.Remove(tmp)
	}
	return err
}

// machineName returns a machine name (and host name) unique among the
// containers of all processes running now.
func machineName() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s%d-%d-%s", cgroupPrefix, os.Getpid(), seq.Add(1), hex.EncodeToString(b))
}

// overlayPath escapes p for nspawn's --overlay list.
func overlayPath(p string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(p)
}

// lookPath returns the path of the command name, also looking in the sbin
// directories that a non-login root PATH may lack; name itself when it is
// not found.
func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range filepath.SplitList(containerPath) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}

// startPinned starts cmd from a goroutine locked to its OS thread and
// returns a channel that receives the result of cmd.Wait. The kernel sends
// Pdeathsig when the thread that started the child exits, not the process,
// and Go may end a thread, so the thread is kept until the child exits.
func startPinned(cmd *exec.Cmd) (<-chan error, error) {
	started := make(chan error, 1)
	waited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread ends with this goroutine, after
		// the child has exited.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return waited, nil
}

// findLeader returns the host PID and start time of the child of the nspawn
// process pid that lives in another PID namespace: the container's PID 1.
func findLeader(pid int) (leader int, age string) {
	self, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return 0, ""
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, ""
	}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fields, ok := procStatFields(p)
		if !ok || len(fields) < 20 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p))
		if err != nil || ns == self {
			continue
		}
		return p, fields[19]
	}
	return 0, ""
}

// processGroup returns the processes of the process group pgid.
func processGroup(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fields, ok := procStatFields(pid); ok && len(fields) > 2 && fields[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStat returns the state and start time of the process pid.
func procStat(pid int) (state, age string, ok bool) {
	fields, ok := procStatFields(pid)
	if !ok || len(fields) < 20 {
		return "", "", false
	}
	return fields[0], fields[19], true
}

// procStatFields returns the fields of /proc/pid/stat after the command
// name: fields[0] is the state, fields[1] the parent PID, fields[2] the
// process group, fields[19] the start time.
func procStatFields(pid int) ([]string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(string(data[i+1:])), true
}

// tail returns the last n bytes of the file path, or why it cannot.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		if _, err := f.Seek(-n, io.SeekEnd); err != nil {
			return err.Error()
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err.Error()
	}
	return string(data)
}
