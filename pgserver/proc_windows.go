//go:build windows

package pgserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

const exeSuffix = ".exe"

// account would be the user servers run as; on Windows pg_ctl itself drops
// administrator rights (it starts postgres with a restricted token), so
// servers run as the current user.
type account struct{}

func serverAccount() (*account, error)   { return nil, nil }
func (a *account) apply(*exec.Cmd)       {}
func (a *account) own(string) error      { return nil }
func (a *account) canReach(string) error { return nil }

// killTree kills the postmaster and returns its pid; its backends exit
// when they see it gone.
func killTree(pid int) ([]int, error) {
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil, nil // no such process
	}
	defer p.Release()
	if err := p.Kill(); err != nil && alive(pid) {
		return nil, err
	}
	return []int{pid}, nil
}

// isPostmasterOf reports whether pid is alive: the command line of another
// process is not at hand on Windows, so a recycled pid goes unnoticed.
func isPostmasterOf(pid int, _ string) bool { return alive(pid) }

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

// alive reports whether pid is a running process.
func alive(pid int) bool {
	h, err := syscall.OpenProcess(syscall.SYNCHRONIZE, false, uint32(pid))
	if err != nil {
		return false // no such process (or not ours to see: not our server)
	}
	defer syscall.CloseHandle(h)
	ev, err := syscall.WaitForSingleObject(h, 0)
	return err == nil && ev == syscall.WAIT_TIMEOUT
}

// startWatchdog does nothing on Windows: a server whose process dies
// without Close stays running.
func (s *Server) startWatchdog() error { return nil }

// binDirGlobs are where the EDB installers put the binaries.
func binDirGlobs() []string {
	pf := os.Getenv("ProgramFiles")
	if pf == "" {
		pf = `C:\Program Files`
	}
	return []string{filepath.Join(pf, "PostgreSQL", "*", "bin")}
}

// socketDir is the unix_socket_directories setting: none on Windows.
func socketDir(string) string { return "" }
