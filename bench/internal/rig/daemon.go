package rig

import (
	"context"
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

// Build builds the goreplica binary from the module holding the current
// directory into dir and returns its path.
func Build(ctx context.Context, dir string) (string, error) {
	gomod, err := RepoFile("trigger.sql")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "goreplica")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build goreplica: %w\n%s", err, out)
	}
	return bin, nil
}

// Config is the part of a goreplica configuration the benchmarks vary.
type Config struct {
	MasterDSN string
	Slave     string
	SlaveDSN  string
	TwoPhase  bool
	Poll      time.Duration
	// BatchInterval is written as batch_interval when set ("0s", "10ms").
	BatchInterval string
}

// Write writes the configuration as TOML to path.
func (c Config) Write(path string) error {
	poll := c.Poll
	if poll == 0 {
		poll = time.Second
	}
	text := fmt.Sprintf(`[master]
name = "master"
dsn = %q

[[slave]]
name = %q
dsn = %q
two_phase = %v

[replicate]
tables = ["public.test"]
poll_interval = %q
purge_interval = "1m"
max_backoff = "1s"
copy = "skip"
`, c.MasterDSN, c.Slave, c.SlaveDSN, c.TwoPhase, poll.String())
	if c.BatchInterval != "" {
		text += fmt.Sprintf("batch_interval = %q\n", c.BatchInterval)
	}
	return os.WriteFile(path, []byte(text), 0o600)
}

// Init runs goreplica init -c cfg.
func Init(ctx context.Context, bin, cfg string) error {
	out, err := exec.CommandContext(ctx, bin, "init", "-c", cfg).CombinedOutput()
	if err != nil {
		return fmt.Errorf("goreplica init -c %s: %w\n%s", cfg, err, out)
	}
	return nil
}

// Daemon is a running `goreplica run`.
type Daemon struct {
	cmd  *exec.Cmd
	Log  string
	done chan error
}

// StartDaemon starts `goreplica run -c cfg`, its log going to logPath.
func StartDaemon(bin, cfg, logPath string) (*Daemon, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "-c", cfg)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start goreplica run: %w", err)
	}
	d := &Daemon{cmd: cmd, Log: logPath, done: make(chan error, 1)}
	go func() {
		d.done <- cmd.Wait()
		f.Close()
	}()
	return d, nil
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Exited reports whether the daemon has exited, with its error.
func (d *Daemon) Exited() (bool, error) {
	select {
	case err := <-d.done:
		d.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Usage is what the daemon used so far: peak resident memory (VmHWM) and
// CPU time (user + system).
type Usage struct {
	PeakRSSKB int64
	CPU       time.Duration
}

// Usage reads /proc/<pid>/status and /proc/<pid>/stat.
func (d *Daemon) Usage() (Usage, error) {
	var u Usage
	pid := strconv.Itoa(d.Pid())
	st, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return u, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			u.PeakRSSKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	u.CPU, err = ProcessCPU(d.Pid())
	return u, err
}

// ProcessCPU is the CPU time (user + system) process pid has used so far,
// from /proc/<pid>/stat.
func ProcessCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which is in parentheses): utime and
	// stime are the 14th and 15th fields of the whole line.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) <= 12 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// Stop sends SIGTERM and waits for the daemon to exit (SIGKILL after 15s).
func (d *Daemon) Stop() error {
	if exited, _ := d.Exited(); exited {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil // killed by our signal
		}
		return err
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("goreplica run (pid %d) did not stop within 15s of SIGTERM; killed", d.Pid())
	}
}

// Tail returns the last n bytes of the daemon's log.
func (d *Daemon) Tail(n int) string {
	b, _ := os.ReadFile(d.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// WaitContext waits for cond to return true, polling every interval, until
// ctx ends.
func WaitContext(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
