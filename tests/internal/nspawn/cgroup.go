//go:build linux

package nspawn

// With --keep-unit, nspawn puts the container into the subgroups "payload"
// and "supervisor" of the cgroup it was started in. Containers started from
// the same cgroup would then share one tree, and their systemds would trip
// over each other's units: a unit failing with "Failed to attach to cgroup
// /system.slice/systemd-remount-fs.service: No such file or directory"
// (status=219/CGROUP) while another container removed it, and stopping a
// unit in one container killing the processes of the same unit in another.
// So each nspawn is started in a cgroup of its own, a child of the test
// process's cgroup, in each hierarchy that tracks processes (the v1
// name=systemd one and the unified one, whichever are mounted).

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// cgroupPrefix starts the names of the containers' cgroups (and machines).
const cgroupPrefix = "goreplica-"

// cgroupScript moves the shell into the cgroups listed in NSPAWN_CGROUPS,
// then runs its arguments.
const cgroupScript = `for d in $NSPAWN_CGROUPS; do echo $$ >"$d/cgroup.procs" || exit 125; done
unset NSPAWN_CGROUPS
exec "$@"`

// processCgroupRoots returns the directories of this process's cgroups in
// the hierarchies that track processes.
func processCgroupRoots() ([]string, error) {
	own := map[string]string{} // "name=systemd" or "" (unified) -> path
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	for line := range strings.Lines(string(data)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) == 3 && (parts[1] == "" || parts[1] == "name=systemd") {
			own[parts[1]] = parts[2]
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var roots []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		mountPoint, fsType, opts := fields[4], fields[sep+1], fields[sep+3]
		var key string
		switch {
		case fsType == "cgroup2":
			key = ""
		case fsType == "cgroup" && slices.Contains(strings.Split(opts, ","), "name=systemd"):
			key = "name=systemd"
		default:
			continue
		}
		path, ok := own[key]
		if !ok || seen[key] {
			continue
		}
		seen[key] = true
		roots = append(roots, filepath.Join(mountPoint, path))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return roots, nil
}

// createCgroups creates the cgroup name in each of this process's
// process-tracking cgroups and returns their directories. It first removes
// the empty cgroups that tests which died without cleaning up left there.
func createCgroups(name string) ([]string, error) {
	roots, err := processCgroupRoots()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, root := range roots {
		removeStaleCgroups(root)
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return dirs, fmt.Errorf("create cgroup: %w", err)
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// removeStaleCgroups removes the container cgroups in root whose test
// process is gone, when they hold no process (rmdir refuses otherwise).
func removeStaleCgroups(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), cgroupPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		_ = removeCgroup(filepath.Join(root, e.Name()))
	}
}

// cgroupProcs returns the processes in the cgroup dir and its descendants.
func cgroupProcs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroup removes the cgroup dir and its descendants, deepest first.
// It fails if one of them still holds a process.
func removeCgroup(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove cgroup: %w", err)
	}
	var errs []error
	for _, d := range slices.Backward(dirs) {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
