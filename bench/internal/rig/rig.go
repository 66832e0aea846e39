// Package rig is the bench harness shared by goreplica's benchmarks: it
// starts durable throwaway PostgreSQL servers, runs pgbench on them (pinned to
// one CPU when asked), reads knobs from the environment and summarises
// repeated measurements. It measures nothing by itself and asserts nothing:
// the benchmarks print figures, they never pass or fail on speed.
package rig

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goreplica/goreplica/pgserver"
	"github.com/lib/pq"
)

//go:embed scripts/*.sql
var scripts embed.FS

// BaseSettings are the postgresql.conf settings of every bench server, those
// of the anchor benchmarks: no autovacuum and no checkpoint during a run, so
// that runs of different variants see the same server. fsync and
// synchronous_commit keep PostgreSQL's defaults (the servers are Durable).
var BaseSettings = map[string]string{
	"autovacuum":                "off",
	"max_wal_size":              "8GB",
	"checkpoint_timeout":        "30min",
	"shared_buffers":            "512MB",
	"max_locks_per_transaction": "256",
}

// Start starts a durable server with BaseSettings plus extra, and creates
// database db in it.
func Start(ctx context.Context, db string, extra map[string]string) (*pgserver.Server, error) {
	return StartIn(ctx, "", db, extra)
}

// StartIn is Start with the server's files under dir (default: the
// temporary directory).
func StartIn(ctx context.Context, dir, db string, extra map[string]string) (*pgserver.Server, error) {
	settings := map[string]string{}
	for k, v := range BaseSettings {
		settings[k] = v
	}
	for k, v := range extra {
		settings[k] = v
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := pgserver.Start(sctx, pgserver.Options{Durable: true, Settings: settings, Dir: dir})
	if err != nil {
		return nil, err
	}
	if db != "" {
		if err := s.CreateDatabase(sctx, db); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// Open opens a lib/pq pool on database db of s.
func Open(s *pgserver.Server, db string) (*sql.DB, error) {
	c, err := pq.NewConnector(s.DSN(db))
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// Exec runs each statement in turn, stopping at the first error.
func Exec(ctx context.Context, db *sql.DB, stmts ...string) error {
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", firstLine(q), err)
		}
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// Scripts writes the pgbench scripts to a new directory the server's user
// can read (pgbench runs as "postgres" when this process is root) and returns
// it with a function that removes it.
func Scripts() (string, func(), error) {
	dir, err := os.MkdirTemp("", "goreplica-bench-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o755); err != nil {
		cleanup()
		return "", nil, err
	}
	entries, err := scripts.ReadDir("scripts")
	if err != nil {
		cleanup()
		return "", nil, err
	}
	for _, e := range entries {
		b, err := scripts.ReadFile("scripts/" + e.Name())
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644)
		}
		if err != nil {
			cleanup()
			return "", nil, err
		}
	}
	return dir, cleanup, nil
}

// Pgbench describes one pgbench run (always -n -M prepared).
type Pgbench struct {
	Dir          string // directory of the scripts (see Scripts)
	Script       string // file name in Dir
	DB           string
	Clients      int
	Transactions int           // per client (-t); 0: use Duration
	Duration     time.Duration // -T
	Rate         int           // -R, 0: as fast as possible
	Vars         map[string]string
	Sync         string // synchronous_commit for the sessions; "" = server default
	PinCPU       string // non-empty: run pgbench under taskset -c PinCPU
	TCP          bool   // connect over TCP to 127.0.0.1 instead of the Unix socket
}

// Result is what one pgbench run reported.
type Result struct {
	TPS    float64
	Output string
}

var tpsRe = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without`)

// Run runs pgbench against s and returns its tps.
func (p Pgbench) Run(ctx context.Context, s *pgserver.Server) (Result, error) {
	jobs := min(p.Clients, runtime.NumCPU())
	args := []string{"-n", "-M", "prepared", "-f", p.Script, "-c", strconv.Itoa(p.Clients), "-j", strconv.Itoa(jobs)}
	if p.Transactions > 0 {
		args = append(args, "-t", strconv.Itoa(p.Transactions))
	} else {
		args = append(args, "-T", strconv.Itoa(int(p.Duration/time.Second)))
	}
	if p.Rate > 0 {
		args = append(args, "-R", strconv.Itoa(p.Rate))
	}
	keys := make([]string, 0, len(p.Vars))
	for k := range p.Vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-D", k+"="+p.Vars[k])
	}
	args = append(args, p.DB)
	cmd := s.Command(ctx, "pgbench", args...)
	cmd.Dir = p.Dir
	if !p.TCP {
		// The server's Unix socket lives beside its data directory.
		cmd.Env = append(cmd.Env, "PGHOST="+filepath.Dir(s.DataDir))
	}
	if p.Sync != "" {
		cmd.Env = append(cmd.Env, "PGOPTIONS=-c synchronous_commit="+p.Sync)
	}
	if p.PinCPU != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return Result{}, fmt.Errorf("pin pgbench: %w", err)
		}
		cmd.Args = append([]string{"taskset", "-c", p.PinCPU, cmd.Path}, cmd.Args[1:]...)
		cmd.Path = ts
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Result{Output: string(out)}, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	m := tpsRe.FindSubmatch(out)
	if m == nil {
		return Result{Output: string(out)}, fmt.Errorf("pgbench %s: no tps in output:\n%s", strings.Join(args, " "), out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	return Result{TPS: tps, Output: string(out)}, nil
}

// Pin sets the CPU affinity of the server's postmaster and all its current
// children (backends, background processes) to cpus, a taskset CPU list
// such as "0" or "0-1". Backends started later inherit the postmaster's.
func Pin(s *pgserver.Server, cpus string) error {
	b, err := os.ReadFile(filepath.Join(s.DataDir, "postmaster.pid"))
	if err != nil {
		return fmt.Errorf("pin server: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pm := strings.TrimSpace(line)
	pids := []string{pm}
	out, _ := exec.Command("ps", "-o", "pid=", "--ppid", pm).Output()
	pids = append(pids, strings.Fields(string(out))...)
	for _, p := range pids {
		// A backend that exits meanwhile is not an error.
		_ = exec.Command("taskset", "-a", "-p", "-c", cpus, p).Run()
	}
	return nil
}

// AllCPUs is the taskset list of every CPU, "0-(n-1)".
func AllCPUs() string { return fmt.Sprintf("0-%d", runtime.NumCPU()-1) }

// Median returns the median of xs (mean of the two middle values for an
// even count); NaN-free inputs assumed, 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Percentile returns the p-th percentile (0-100) of sorted xs, nearest rank.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	k := int(float64(len(sorted))*p/100+0.999999) - 1
	k = max(0, min(k, len(sorted)-1))
	return sorted[k]
}

// Knobs reads benchmark knobs from the environment and remembers the ones
// that were set, to print the command that reproduces a run.
type Knobs struct {
	set []string
}

// Int returns the integer environment variable name, or def.
func (k *Knobs) Int(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		fmt.Fprintf(os.Stderr, "%s=%q is not a positive integer; using %d\n", name, v, def)
		return def
	}
	k.set = append(k.set, name+"="+v)
	return n
}

// String returns the environment variable name, or def.
func (k *Knobs) String(name, def string) string {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	k.set = append(k.set, name+"="+shellQuote(v))
	return v
}

// Ints returns a space-separated list of integers from name, or def.
func (k *Knobs) Ints(name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Fields(v) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "%s=%q: %q is not a positive integer; using the default\n", name, v, f)
			return def
		}
		out = append(out, n)
	}
	k.set = append(k.set, name+"="+shellQuote(v))
	return out
}

// Command returns the command line that reproduces this run, for example
// "RUNS=1 go run ./bench/trigger".
func (k *Knobs) Command(pkg string) string {
	return strings.TrimSpace(strings.Join(k.set, " ") + " go run " + pkg)
}

func shellQuote(v string) string {
	if regexp.MustCompile(`^[A-Za-z0-9_.,:/=+-]+$`).MatchString(v) {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// RepoFile returns the path of name (such as "trigger.sql") at the root of
// the goreplica module: the first directory, from the current one upwards,
// holding both go.mod and name.
func RepoFile(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return p, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found in the current directory or above: run from the goreplica repository", name)
		}
		dir = parent
	}
}

// TriggerSQL returns trigger.sql, the schema goreplica installs.
func TriggerSQL() (string, error) {
	path, err := RepoFile("trigger.sql")
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	return string(b), err
}

// Header prints what every benchmark prints first: the date, the machine
// and the command.
func Header(title, command string) {
	host, _ := os.Hostname()
	fmt.Printf("# %s\n# date: %s  host: %s  cpus: %d  go: %s\n# command: %s\n",
		title, time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.Version(), command)
}

// Logf prints a progress line on stderr, stamped with the time.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Main runs a benchmark's run function until it ends or the process is
// interrupted (Ctrl-C, SIGTERM: run's context is cancelled, and it removes
// its servers), and exits 1 with the error prefixed by name.
func Main(name string, run func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+": "+err.Error())
		os.Exit(1)
	}
}
