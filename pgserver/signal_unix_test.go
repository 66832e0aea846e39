//go:build unix

package pgserver_test

import (
	"os/exec"
	"syscall"
	"testing"
)

// setpgid puts cmd in a process group of its own, like a shell job.
func setpgid(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// TestWatchdogInterrupt sends SIGINT to the process group of a process
// holding a server, as Ctrl-C on "go test" does: the watchdog, in a group
// of its own, must survive it and remove the server.
func TestWatchdogInterrupt(t *testing.T) {
	t.Parallel()
	helper := startOrphan(t)
	if err := syscall.Kill(-helper.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	helper.waitCleanedUp(t)
}
