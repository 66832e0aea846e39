//go:build linux

package nspawn

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testTimeout bounds each command the tests run in a container.
const testTimeout = 30 * time.Second

// remains are what a container could leave behind.
type remains struct {
	name    string       // machine name
	procs   [2][2]string // PID and start time of systemd-nspawn and of the container's PID 1
	cgroups []string     // its cgroup directories
}

// record returns what to look for once c is gone.
func record(t *testing.T, c *Container) remains {
	t.Helper()
	_, nspawnAge, _ := procStat(c.cmd.Process.Pid)
	if len(c.cgroups) == 0 {
		t.Errorf("no cgroup of its own for the container")
	}
	for _, d := range c.cgroups {
		if procs := cgroupProcs(d); !slices.Contains(procs, c.leader) {
			t.Errorf("container PID 1 (%d) not in its cgroup %s, which holds %v", c.leader, d, procs)
		}
	}
	return remains{
		name:    c.name,
		procs:   [2][2]string{{strconv.Itoa(c.cmd.Process.Pid), nspawnAge}, {strconv.Itoa(c.leader), c.leaderAge}},
		cgroups: c.cgroups,
	}
}

// checkGone fails the test if a process of r is still running (nspawn, the
// container's PID 1 or anything whose command line names the machine;
// zombies do not count) or its cgroups, which held all its processes, are
// left. PIDs are compared with their start times, and namespaces are not
// compared at all: the kernel soon reuses both the PIDs and the inode
// numbers of namespaces.
func checkGone(t *testing.T, r remains) {
	t.Helper()
	for _, d := range r.cgroups {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("cgroup %s of container %s left behind", d, r.name)
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, age, ok := procStat(pid)
		if !ok || state == "Z" || state == "X" {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		id := [2]string{e.Name(), age}
		if id == r.procs[0] || id == r.procs[1] || strings.Contains(string(cmdline), r.name) {
			t.Errorf("process %d of container %s still running: %q", pid, r.name, strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
}

// run runs args in c and fails the test unless they exit with code want.
func run(t *testing.T, c *Container, want int, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	out, errOut, code, err := c.Exec(ctx, args...)
	if err != nil || code != want {
		t.Fatalf("%q: code %d (want %d), err %v\nstdout: %s\nstderr: %s", args, code, want, err, out, errOut)
	}
	return strings.TrimSpace(out)
}

// checkRunning fails the test unless systemd in c says it is running: a
// degraded system means that a unit failed, which no unit of this minimal
// system should.
func checkRunning(t *testing.T, c *Container) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	out, _, _, err := c.Exec(ctx, "systemctl", "is-system-running")
	if s := strings.TrimSpace(out); err != nil || s != "running" {
		failed, _, _, _ := c.Exec(ctx, "systemctl", "--failed", "--no-pager")
		t.Errorf("is-system-running: %q, %v; failed units:\n%s", s, err, failed)
	}
}

// waitFor runs args in c until their output contains want, and fails the
// test showing the last output when that takes longer than testTimeout.
func waitFor(t *testing.T, c *Container, want string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last string
	for {
		out, errOut, code, err := c.Exec(ctx, args...)
		last = fmt.Sprintf("code %d, err %v, stdout %q, stderr %q", code, err, out, errOut)
		if err == nil && strings.Contains(out, want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%q: no %q within %v; last: %s", args, want, testTimeout, last)
		case <-tick.C:
		}
	}
}

func TestBoot(t *testing.T) {
	Require(t)
	var r remains
	t.Run("container", func(t *testing.T) {
		start := time.Now()
		c := Boot(t)
		t.Logf("Boot took %v", time.Since(start).Round(time.Millisecond))
		r = record(t, c)

		checkRunning(t, c)
		if h := run(t, c, 0, "cat", "/proc/sys/kernel/hostname"); h != c.name {
			t.Errorf("host name %q, want the machine name %q", h, c.name)
		}
		if pid1 := run(t, c, 0, "cat", "/proc/1/comm"); pid1 != "systemd" {
			t.Errorf("PID 1 is %q, want systemd", pid1)
		}

		t.Run("host network", func(t *testing.T) { checkHostNetwork(t, c) })
		t.Run("files", func(t *testing.T) { checkFiles(t, c) })
		t.Run("unit", func(t *testing.T) { checkUnit(t, c) })
		t.Run("exec timeout", func(t *testing.T) { checkExecTimeout(t, c) })
	})
	if r.name != "" {
		checkGone(t, r)
	}
}

// checkHostNetwork checks that a listener on the host's 127.0.0.1 is
// reachable from inside c.
func checkHostNetwork(t *testing.T, c *Container) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	token := randomHex(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(testTimeout))
		fmt.Fprintln(conn, token)
		// Read the echo so that the connection closes after it.
		_, _ = bufio.NewReader(conn).ReadString('\n')
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	script := fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d && read -r line <&3 && echo "$line" >&3 && echo "$line"`, port)
	if got := run(t, c, 0, "bash", "-c", script); got != token {
		t.Errorf("read %q from the host listener, want %q", got, token)
	}
}

// checkFiles checks WriteFile, CopyFile and Path.
func checkFiles(t *testing.T, c *Container) {
	src := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho hello \"$@\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.CopyFile(src, "/opt/nspawn-test/bin/hello", 0o755); err != nil {
		t.Fatal(err)
	}
	if got := run(t, c, 0, "/opt/nspawn-test/bin/hello", "world"); got != "hello world" {
		t.Errorf("copied script says %q", got)
	}
	// Replacing it (a running binary cannot be truncated) works too.
	if err := c.WriteFile("/opt/nspawn-test/bin/hello", []byte("#!/bin/sh\necho bye\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if got := run(t, c, 0, "stat", "-c", "%a %U", "/opt/nspawn-test/bin/hello"); got != "700 root" {
		t.Errorf("mode and owner %q, want \"700 root\"", got)
	}
	if data, err := os.ReadFile(c.Path("/opt/nspawn-test/bin/hello")); err != nil || string(data) != "#!/bin/sh\necho bye\n" {
		t.Errorf("read through Path: %q, %v", data, err)
	}
	// An absolute link must not lead WriteFile out of the container.
	run(t, c, 0, "ln", "-s", "/tmp", "/opt/nspawn-test/escape")
	if err := c.WriteFile("/opt/nspawn-test/escape/x", []byte("x"), 0o644); err == nil {
		t.Errorf("WriteFile through an absolute link succeeded")
	}
	if _, _, code, err := c.Exec(context.Background(), "/no/such/command"); err != nil || code != 127 {
		t.Errorf("missing command: code %d, err %v; want 127, nil", code, err)
	}
}

// checkExecTimeout checks that Exec returns soon when its context expires,
// and that the command it ran in the container is killed.
func checkExecTimeout(t *testing.T, c *Container) {
	arg := fmt.Sprintf("%d.%d", 1000+time.Now().UnixNano()%1000, os.Getpid()) // seconds, and a mark to find it by
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, code, err := c.Exec(ctx, "sleep", arg)
	if !errors.Is(err, context.DeadlineExceeded) || code != -1 {
		t.Errorf("Exec past its deadline: code %d, err %v; want -1 and DeadlineExceeded", code, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Exec returned %v after its deadline", d)
	}
	want := "sleep\x00" + arg + "\x00"
	var left []int
	gone := waitUntil(testTimeout, func() bool {
		left = nil
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && string(cmdline) == want {
				pid, _ := strconv.Atoi(e.Name())
				left = append(left, pid)
			}
		}
		return len(left) == 0
	})
	if !gone {
		t.Errorf("processes %v (sleep %s) still running after Exec's deadline", left, arg)
	}
	// Nor left a zombie: nobody would reap it here, and the container's
	// power-off would wait for it.
	if z := run(t, c, 0, "sh", "-c", `for s in /proc/[0-9]*/stat; do read -r l <"$s" && case "${l##*) }" in Z*) echo "$l";; esac; done`); z != "" {
		t.Errorf("zombies in the container after Exec's deadline:\n%s", z)
	}

	// A command that leaves a process holding its output: Exec returns
	// soon after the command exits, with its code.
	start = time.Now()
	if got := run(t, c, 0, "sh", "-c", "sleep 20 & echo left"); got != "left" {
		t.Errorf("stdout %q, want \"left\"", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Exec of a command that left a child returned after %v", d)
	}
}

// checkUnit installs, starts and stops a service in c.
func checkUnit(t *testing.T, c *Container) {
	const unit = "nspawn-test.service"
	text := "[Unit]\nDescription=nspawn self-test\n\n[Service]\nExecStart=/bin/sleep infinity\n"
	p := c.Path("/etc/systemd/system/" + unit)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, c, 0, "systemctl", "daemon-reload")
	run(t, c, 0, "systemctl", "start", unit)
	if s := run(t, c, 0, "systemctl", "is-active", unit); s != "active" {
		t.Errorf("is-active after start: %q", s)
	}
	if pid := run(t, c, 0, "systemctl", "show", "-P", "MainPID", unit); pid == "0" {
		t.Errorf("MainPID 0 after start")
	}
	run(t, c, 0, "systemctl", "stop", unit)
	if s := run(t, c, 3, "systemctl", "is-active", unit); s != "inactive" {
		t.Errorf("is-active after stop: %q", s)
	}
	waitFor(t, c, "Stopped "+unit, "journalctl", "--no-pager", "-o", "cat", "-u", unit)
}

// TestParallel boots several containers at once.
func TestParallel(t *testing.T) {
	Require(t)
	const n = 3
	rs := make([]remains, n)
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				c := Boot(t)
				rs[i] = record(t, c)
				if h := run(t, c, 0, "cat", "/proc/sys/kernel/hostname"); h != c.name {
					t.Errorf("hostname %q, want %q", h, c.name)
				}
				checkRunning(t, c)
			})
		}
	})
	for _, r := range rs {
		if r.name != "" {
			checkGone(t, r)
		}
	}
}

// TestIsolation checks that two containers do not share their cgroup tree,
// where the systemd of each would create and remove the cgroups of the
// other's units (see cgroup.go), and that stopping a unit in one leaves the
// unit of the same name running in the other.
func TestIsolation(t *testing.T) {
	Require(t)
	const unit = "nspawn-test.service"
	text := []byte("[Service]\nExecStart=/bin/sleep infinity\n")
	a, b := Boot(t), Boot(t)
	for i, c := range []*Container{a, b} {
		if err := c.WriteFile("/etc/systemd/system/"+unit, text, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, c, 0, "systemctl", "daemon-reload")
		if i == 1 {
			run(t, c, 0, "systemctl", "start", unit)
		}
	}
	// The cgroup of b's unit, in whichever hierarchies are mounted.
	seen := run(t, a, 0, "sh", "-c", "for h in '' /systemd /unified; do d=/sys/fs/cgroup$h/system.slice/"+unit+"; [ -d \"$d\" ] && echo \"$d\"; done; true")
	if seen != "" {
		t.Errorf("the cgroup of a unit running in another container shows in this one:\n%s", seen)
	}
	run(t, a, 0, "systemctl", "start", unit)
	pid := run(t, b, 0, "systemctl", "show", "-P", "MainPID", unit)
	run(t, a, 0, "systemctl", "stop", unit)
	if s := run(t, b, 0, "systemctl", "is-active", unit); s != "active" {
		t.Errorf("in the other container, is-active: %q", s)
	}
	if got := run(t, b, 0, "systemctl", "show", "-P", "MainPID", unit); got != pid {
		t.Errorf("in the other container, MainPID %s became %s", pid, got)
	}
	run(t, b, 0, "test", "-d", "/proc/"+pid)
}

// TestKilledNspawn checks that Cleanup kills the container's PID 1 when
// systemd-nspawn was killed and left it running.
func TestKilledNspawn(t *testing.T) {
	Require(t)
	var r remains
	t.Run("container", func(t *testing.T) {
		c := Boot(t)
		r = record(t, c)
		if err := c.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		select {
		case <-c.done:
		case <-ctx.Done():
			t.Fatalf("systemd-nspawn still running %v after SIGKILL", testTimeout)
		}
		if !c.leaderAlive() {
			t.Skip("the container's PID 1 died with nspawn: nothing left for Cleanup to kill")
		}
		if _, _, _, err := c.Exec(ctx, "true"); err == nil {
			t.Errorf("Exec in a container whose nspawn is gone succeeded")
		}
	})
	if r.name != "" {
		checkGone(t, r)
	}
}

func TestMirror(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	deb822 := write("debian.sources", `Types: deb
# http://snapshot.example/archive
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src deb
URIs: cdrom:/x
 http://mirror.example/debian
Suites: bookworm
  bookworm-updates
Components: contrib main
`)
	if got := deb822Mirror(deb822); got != "http://mirror.example/debian" {
		t.Errorf("deb822Mirror: %q", got)
	}
	disabled := write("off.sources", "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n")
	if got := deb822Mirror(disabled); got != "" {
		t.Errorf("deb822Mirror of a disabled stanza: %q", got)
	}
	list := write("sources.list", `deb http://archive.example/ubuntu jammy main
deb-src http://src.example/debian bookworm main
deb [ arch=amd64 signed-by=/k.gpg ] http://one.example/debian bookworm main # comment
`)
	if got := oneLineMirror(list); got != "http://one.example/debian" {
		t.Errorf("oneLineMirror: %q", got)
	}
	t.Logf("this host's mirror: %s", hostMirror())
}

func randomHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
