//go:build unix

package pgserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const exeSuffix = ""

// serverUserName is the account servers run as when the process is root.
const serverUserName = "postgres"

// account is the user the server programs run as when the process is root;
// a nil *account means the current user.
type account struct {
	name     string
	uid, gid uint32
}

var (
	accountMu     sync.Mutex
	accountCached *account
)

// serverAccount returns nil when the process is not root; as root, the
// "postgres" system user, created with useradd when it does not exist.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	accountMu.Lock()
	defer accountMu.Unlock()
	if accountCached != nil {
		return accountCached, nil
	}
	u, err := user.Lookup(serverUserName)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		err = createUser()
		if err == nil {
			u, err = user.Lookup(serverUserName)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("find user %q to run postgres as (PostgreSQL refuses to run as root): %w", serverUserName, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("find user %q to run postgres as: %w", serverUserName, err)
	}
	accountCached = &account{name: serverUserName, uid: uint32(uid), gid: uint32(gid)}
	return accountCached, nil
}

func createUser() error {
	out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
		"--shell", "/usr/sbin/nologin", serverUserName).CombinedOutput()
	if err != nil {
		return fmt.Errorf("useradd --system %s: %w: %s (create the user, or run as a user other than root)",
			serverUserName, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// apply makes cmd run as the account.
func (a *account) apply(cmd *exec.Cmd) {
	if a == nil {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: a.uid, Gid: a.gid}
}

// own hands path, and everything under it, to the account.
func (a *account) own(path string) error {
	if a == nil {
		return nil
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(a.uid), int(a.gid))
	})
}

// canReach reports an error naming the first directory above dir that the
// account cannot traverse (a TMPDIR under /root, say): initdb would fail
// there with a less helpful message.
func (a *account) canReach(dir string) error {
	if a == nil {
		return nil
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		if ok {
			switch {
			case st.Uid == a.uid && perm&0o100 != 0:
			case st.Gid == a.gid && perm&0o010 != 0:
			case perm&0o001 != 0:
			default:
				return fmt.Errorf("user %q cannot enter directory %s (mode %v): set TMPDIR to a directory it can reach", a.name, d, perm)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// killTree sends SIGKILL to the postmaster pid and to its children (the
// backends and auxiliary processes, each in a session of its own) and
// returns the pids it killed. The postmaster is stopped first so that it
// cannot start new children meanwhile.
func killTree(pid int) ([]int, error) {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil, nil
		}
		return nil, err
	}
	kids, err := children(pid)
	pids := append([]int{pid}, kids...)
	for _, p := range pids {
		if kerr := syscall.Kill(p, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
			err = errors.Join(err, fmt.Errorf("kill pid %d: %w", p, kerr))
		}
	}
	return pids, err
}

// children lists the processes whose parent is pid, from /proc where it is
// mounted (Linux), else from ps.
func children(pid int) ([]int, error) {
	if !procMounted() {
		return childrenPS(pid)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list children of pid %d: %w", pid, err)
	}
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(p); ok && ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids, nil
}

func childrenPS(pid int) ([]int, error) {
	out, err := exec.Command("ps", "-A", "-o", "pid=", "-o", "ppid=").Output()
	if err != nil {
		return nil, fmt.Errorf("list children of pid %d: ps: %w", pid, err)
	}
	var kids []int
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		p, err1 := strconv.Atoi(f[0])
		pp, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil && pp == pid {
			kids = append(kids, p)
		}
	}
	return kids, nil
}

// procStat returns the state and parent pid of pid from /proc/<pid>/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err == nil
}

// isPostmasterOf reports whether pid is a live postmaster started on
// dataDir (pg_ctl starts it as "postgres -D dataDir").
func isPostmasterOf(pid int, dataDir string) bool {
	if !alive(pid) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil && !procMounted() {
		b, err = exec.Command("ps", "-o", "args=", "-p", strconv.Itoa(pid)).Output()
	}
	return err == nil && strings.Contains(string(b), dataDir)
}

// waitGone waits up to timeout for all pids to exit and reports whether
// they did.
func waitGone(pids []int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return true
}

// alive reports whether pid is a process that has not exited. A zombie (an
// exited process whose adopting parent has not reaped it yet, common in
// containers whose init does not reap) counts as exited.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	if state, _, ok := procStat(pid); ok {
		return state != 'Z' && state != 'X'
	}
	// No /proc, or the process went between the two looks (the next call
	// will tell): trust kill.
	return true
}

func procMounted() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// watchdogScript waits for a line or the end of its standard input, a pipe
// from the process that started the server. A line is Close saying all is
// done; the end of input without a line means that process died without
// Close (killed, or exited at a "go test -timeout" panic), so the watchdog
// stops the server and removes its directory. $1: pg_ctl, $2: the data
// directory, $3: the temporary directory.
const watchdogScript = `read -r line && exit 0
"$1" stop --pgdata="$2" --mode=immediate --wait --timeout=10 >/dev/null 2>&1
rm -rf "$3"
`

// startWatchdog starts the process that removes the server if this one
// dies without calling Close. It runs as the server's user, in a process
// group of its own so that a Ctrl-C meant for this process does not kill it
// before it has done its work.
func (s *Server) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start watchdog: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "pgserver-watchdog",
		filepath.Join(s.BinDir, "pg_ctl"), s.DataDir, s.root)
	cmd.Stdin = r
	cmd.Dir = "/"
	cmd.Env = s.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.acct.apply(cmd)
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start watchdog: %w", err)
	}
	s.watchdog, s.watchdogIn = cmd, w
	return nil
}

// binDirGlobs are where the distributions install versioned binaries.
func binDirGlobs() []string {
	return []string{"/usr/lib/postgresql/*/bin"}
}

// socketDir is the unix_socket_directories setting for a server in root.
func socketDir(root string) string { return root }
