//go:build linux

package nspawn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

const (
	// suite is the Debian release booted in the containers.
	suite = "bookworm"

	// rootfsName names the cached tree under the cache directory. Bump the
	// version whenever debootstrapArgs or prepare change, so that trees
	// built the old way are left alone instead of being used.
	rootfsName = "debian-bookworm-minbase-v1"

	// defaultCacheDir holds the cached tree unless GOREPLICA_NSPAWN_CACHE
	// names another directory.
	defaultCacheDir = "/var/cache/goreplica-tests"

	// defaultMirror is used when the host's APT configuration names no
	// mirror serving bookworm main (an Ubuntu host, say).
	defaultMirror = "http://deb.debian.org/debian"

	// buildTimeout bounds building the tree, including waiting for another
	// process that is building it (debootstrap takes about 40 s here).
	buildTimeout = 15 * time.Minute

	// lockPoll is how often a process waiting for the build lock retries.
	lockPoll = 200 * time.Millisecond
)

// masked are the units masked in the tree: systemd-firstboot waits for
// answers on the console, the gettys print login prompts nobody reads, and
// the timers would run apt, fstrim or e2scrub at random moments of a test.
var masked = []string{
	"systemd-firstboot.service",
	"getty.target",
	"console-getty.service",
	"apt-daily.timer",
	"apt-daily-upgrade.timer",
	"dpkg-db-backup.timer",
	"e2scrub_all.timer",
	"fstrim.timer",
}

// debootstrapArgs are the arguments of debootstrap before the target and
// the mirror.
var debootstrapArgs = []string{"--variant=minbase", "--include=systemd,systemd-sysv,dbus", suite}

// cacheDir returns the directory holding the cached tree.
func cacheDir() string {
	if d := os.Getenv("GOREPLICA_NSPAWN_CACHE"); d != "" {
		return d
	}
	return defaultCacheDir
}

// rootfs returns the cached root file system, building it first when it is
// missing; built says whether this call built it. Several processes may call
// it at once: one builds under a file lock while the others wait for it.
func rootfs(ctx context.Context) (root string, built bool, err error) {
	dir := cacheDir()
	root = filepath.Join(dir, rootfsName)
	// The tree only ever appears by a rename of a complete build, so its
	// existence means it is complete.
	if _, err := os.Stat(root); err == nil {
		return root, false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("create cache directory: %w", err)
	}
	lock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return "", false, err
	}
	defer lock.Close()
	if _, err := os.Stat(root); err == nil {
		return root, false, nil // built by the process we waited for
	}
	if err := removeStaleBuilds(dir); err != nil {
		return "", false, err
	}
	if err := build(ctx, dir, root, lock); err != nil {
		return "", false, err
	}
	return root, true, nil
}

// lockFile takes an exclusive flock on path, retrying until ctx expires.
// The lock is held until the returned file is closed.
func lockFile(ctx context.Context, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open cache lock: %w", err)
	}
	tick := time.NewTicker(lockPoll)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for %s (another process is building the root file system): %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// removeStaleBuilds removes the temporary directories of builds that were
// interrupted. The caller holds the lock, so no build is running.
func removeStaleBuilds(dir string) error {
	stale, err := filepath.Glob(filepath.Join(dir, ".build-*"))
	if err != nil {
		return fmt.Errorf("list stale builds: %w", err)
	}
	for _, s := range stale {
		if err := removeUnmounted(s); err != nil {
			return err
		}
	}
	return nil
}

// removeUnmounted removes dir unless something is mounted below it:
// removing a tree with /proc, /sys or a bind mount of the host's /dev in
// it would delete host files.
func removeUnmounted(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("remove %s: still mounted: %s (unmount them, then retry)", dir, strings.Join(mounts, " "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// mountsUnder returns the mount points of this mount namespace at or below dir.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		// Field 5 is the mount point, with space, tab, newline and
		// backslash octal-escaped; our directory names have none.
		mp := fields[4]
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			found = append(found, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return found, nil
}

// build debootstraps the tree into a temporary directory of dir, prepares
// it and renames it to root. lock is passed to debootstrap so that the lock
// stays held while any of its processes runs, even if this process dies.
func build(ctx context.Context, dir, root string, lock *os.File) error {
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return fmt.Errorf("create build directory: %w", err)
	}
	target := filepath.Join(tmp, "root")
	logPath := filepath.Join(tmp, "debootstrap.log")
	if err := debootstrap(ctx, target, logPath, lock); err != nil {
		if rmErr := removeUnmounted(tmp); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
		return err
	}
	if err := prepare(target); err != nil {
		return errors.Join(err, removeUnmounted(tmp))
	}
	// Write the tree to disk before it is renamed into place: else a
	// crash could leave a complete-looking tree with lost files, and the
	// first container to power off would wait (about 10 s here) for its
	// sync(2) to write the 250 MB.
	syscall.Sync()
	if err := os.Rename(target, root); err != nil {
		return errors.Join(fmt.Errorf("install root file system: %w", err), removeUnmounted(tmp))
	}
	// Keep the last build's log next to the tree for whoever wonders
	// what is in it.
	_ = os.Rename(logPath, filepath.Join(dir, rootfsName+".log"))
	return removeUnmounted(tmp)
}

// debootstrap runs debootstrap into target, with its output in logPath. It
// runs in a mount namespace of its own, so that the /proc and /sys it mounts
// in the target vanish with it even when it is killed, and as PID 1 of a PID
// namespace of its own, so that killing it kills all its processes:
// unshare gets SIGKILL when this process dies, and passes it on.
func debootstrap(ctx context.Context, target, logPath string, lock *os.File) error {
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create debootstrap log: %w", err)
	}
	defer logFile.Close()
	mirror := hostMirror()
	args := append([]string{"--mount", "--propagation=private", "--pid", "--fork", "--kill-child", lookPath("debootstrap")}, debootstrapArgs...)
	args = append(args, target, mirror)
	cmd := exec.Command(lookPath("unshare"), args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = []string{"PATH=" + containerPath, "HOME=/root", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
	cmd.ExtraFiles = []*os.File{lock}
	// Its own process group keeps a ^C of the terminal away from it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	done, err := startPinned(cmd)
	if err != nil {
		return fmt.Errorf("start debootstrap: %w", err)
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill() // and so, through --kill-child, all of debootstrap
		<-done
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("debootstrap %s from %s: %w; end of %s:\n%s", suite, mirror, err, logPath, tail(logPath, logTailBytes))
	}
	return nil
}

// prepare masks the units in masked and removes /etc/hostname, so that
// each container's host name is its machine name.
func prepare(root string) error {
	units := filepath.Join(root, "etc/systemd/system")
	for _, u := range masked {
		link := filepath.Join(units, u)
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("mask %s: %w", u, err)
		}
		if err := os.Symlink("/dev/null", link); err != nil {
			return fmt.Errorf("mask %s: %w", u, err)
		}
	}
	// Drop the enablement links of masked units (and the tty1 getty),
	// which would only make systemd log that they are masked.
	wants, err := filepath.Glob(filepath.Join(units, "*.wants", "*"))
	if err != nil {
		return fmt.Errorf("list enabled units: %w", err)
	}
	for _, w := range wants {
		if b := filepath.Base(w); slices.Contains(masked, b) || strings.HasPrefix(b, "getty@") {
			if err := os.Remove(w); err != nil {
				return fmt.Errorf("disable %s: %w", b, err)
			}
		}
	}
	if err := os.Remove(filepath.Join(root, "etc/hostname")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove /etc/hostname: %w", err)
	}
	return nil
}

// hostMirror returns the first mirror of the host's APT configuration that
// serves bookworm main, or defaultMirror.
func hostMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		if m := deb822Mirror(f); m != "" {
			return m
		}
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, lists...) {
		if m := oneLineMirror(f); m != "" {
			return m
		}
	}
	return defaultMirror
}

// deb822Mirror returns the first URI of a stanza of the deb822 sources file
// path that serves binary packages of bookworm main, or "".
func deb822Mirror(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	stanza := map[string]string{}
	var key string
	check := func() string {
		defer clear(stanza)
		if strings.EqualFold(stanza["enabled"], "no") ||
			!slices.Contains(strings.Fields(stanza["types"]), "deb") ||
			!slices.Contains(strings.Fields(stanza["suites"]), suite) ||
			!slices.Contains(strings.Fields(stanza["components"]), "main") {
			return ""
		}
		for _, u := range strings.Fields(stanza["uris"]) {
			if usableMirror(u) {
				return u
			}
		}
		return ""
	}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.TrimSpace(line) == "":
			if m := check(); m != "" {
				return m
			}
		case line[0] == ' ' || line[0] == '\t':
			if key != "" {
				stanza[key] += " " + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			key = strings.ToLower(strings.TrimSpace(k))
			stanza[key] = strings.TrimSpace(v)
		}
	}
	return check()
}

// oneLineMirror returns the URI of the first "deb URI bookworm ... main"
// line of the one-line sources file path, or "".
func oneLineMirror(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(data)) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options: [ key=value ... ]
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 3 && f[1] == suite && slices.Contains(f[2:], "main") && usableMirror(f[0]) {
			return f[0]
		}
	}
	return ""
}

// usableMirror reports whether debootstrap can fetch from the URI u.
func usableMirror(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "file:/")
}
