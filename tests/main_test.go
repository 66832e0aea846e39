// Package tests holds black-box tests: they build the goreplica binary once
// and drive it as a user would (config files, verbs, signals), against real
// throwaway PostgreSQL servers, reading what it prints.
package tests

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/goreplica/goreplica/pgserver"
	"github.com/goreplica/goreplica/pgserver/pgtest"
)

// binPath is the goreplica binary TestMain builds.
var binPath string

// verbTimeout bounds one run of a short verb (init, status, uninstall...).
const verbTimeout = 60 * time.Second

// stopTimeout is how long 'goreplica run' may take to exit after SIGINT or
// SIGTERM: a user waits a few seconds, not more.
const stopTimeout = 10 * time.Second

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "goreplica-tests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "goreplica")
	args := []string{"build", "-o", binPath}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/goreplica/goreplica")
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "go %s: %v\n", strings.Join(args, " "), err)
		return 1
	}
	code := m.Run()
	closeShared()
	return code
}

// Shared servers: most tests create their own databases on one master
// server and one slave server (max_prepared_transactions > 0). Tests that
// stop a server start their own.
var (
	sharedOnce   sync.Once
	sharedMaster *pgserver.Server
	sharedSlave  *pgserver.Server
	sharedErr    error
	dbSeq        atomic.Int64
)

// slaveSettings are the settings of every slave server: two-phase commit
// needs prepared transactions.
var slaveSettings = map[string]string{"max_prepared_transactions": "20"}

func servers(t *testing.T) (master, slave *pgserver.Server) {
	t.Helper()
	pgtest.RequireBinaries(t, pgserver.Options{})
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), pgtest.Timeout)
		defer cancel()
		var wg sync.WaitGroup
		var errM, errS error
		wg.Add(2)
		go func() { defer wg.Done(); sharedMaster, errM = pgserver.Start(ctx, pgserver.Options{}) }()
		go func() {
			defer wg.Done()
			sharedSlave, errS = pgserver.Start(ctx, pgserver.Options{Settings: slaveSettings})
		}()
		wg.Wait()
		sharedErr = errors.Join(errM, errS)
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedMaster, sharedSlave
}

func closeShared() {
	for _, s := range []*pgserver.Server{sharedMaster, sharedSlave} {
		if s != nil {
			if err := s.Close(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}
	}
}

// database is one database of a test: its name, its server, and a pool.
type database struct {
	name string
	srv  *pgserver.Server
	db   *sql.DB
}

func (d database) dsn() string { return d.srv.DSN(d.name) }

// newDB creates a database with a unique name on s.
func newDB(t *testing.T, s *pgserver.Server, prefix string) database {
	t.Helper()
	name := fmt.Sprintf("%s_%d", prefix, dbSeq.Add(1))
	return database{name: name, srv: s, db: pgtest.DB(t, s, name)}
}

// exec runs statements on each database, failing the test on error.
func execAll(t *testing.T, sqlText string, dbs ...database) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
	defer cancel()
	for _, d := range dbs {
		if _, err := d.db.ExecContext(ctx, sqlText); err != nil {
			t.Fatalf("database %s: %v\n%s", d.name, err, sqlText)
		}
	}
}

// node is a [master] or [[slave]] section.
type node struct {
	name     string
	dsn      string
	twoPhase *bool // nil: key absent
}

// configFile is what writeConfig puts in a TOML file.
type configFile struct {
	master node
	slaves []node
	tables []string // default ["public.*"]
	// poll is replicate.poll_interval; default "200ms" so tests wait little.
	poll string
	// copy is replicate.copy; default "skip": the slaves were given the
	// tables and rows before init, as with pg_dump.
	copy string
	// noCreate sets replicate.create = false.
	noCreate bool
}

func boolp(b bool) *bool { return &b }

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`).Replace(s) + `"`
}

func (c configFile) toml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[master]\nname = %s\ndsn = %s\n", tomlString(c.master.name), tomlString(c.master.dsn))
	for _, s := range c.slaves {
		fmt.Fprintf(&b, "\n[[slave]]\nname = %s\ndsn = %s\n", tomlString(s.name), tomlString(s.dsn))
		if s.twoPhase != nil {
			fmt.Fprintf(&b, "two_phase = %t\n", *s.twoPhase)
		}
	}
	tables := c.tables
	if len(tables) == 0 {
		tables = []string{"public.*"}
	}
	quoted := make([]string, len(tables))
	for i, p := range tables {
		quoted[i] = tomlString(p)
	}
	poll := c.poll
	if poll == "" {
		poll = "200ms"
	}
	fmt.Fprintf(&b, "\n[replicate]\ntables = [%s]\npoll_interval = %s\npurge_interval = \"2s\"\nmax_backoff = \"1s\"\n",
		strings.Join(quoted, ", "), tomlString(poll))
	cp := c.copy
	if cp == "" {
		cp = "skip"
	}
	fmt.Fprintf(&b, "copy = %s\ncreate = %t\n", tomlString(cp), !c.noCreate)
	return b.String()
}

// writeConfig writes c to a file in the test's temporary directory and
// returns its path.
func writeConfig(t *testing.T, c configFile) string {
	t.Helper()
	return writeFile(t, "goreplica.toml", c.toml())
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// result is what a finished goreplica command printed and returned.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("goreplica %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// goreplica runs the binary with args and extra environment variables
// (NAME=value) and returns its output and exit code. It fails the test if
// the command cannot be run or does not finish within verbTimeout.
func goreplica(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%v: did not finish within %v\n%s", args, verbTimeout, r)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run goreplica %v: %v", args, err)
	}
	return r
}

// mustRun runs a verb that must succeed.
func mustRun(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := goreplica(t, env, args...)
	if r.code != 0 {
		t.Fatalf("expected exit 0\n%s", r)
	}
	return r
}

// baseEnv is the environment of every goreplica process: the test's,
// without the variables that would change what it reads.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOREPLICA_") || strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// lockedBuffer is a bytes.Buffer safe for a writer process and a reader test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// daemon is a 'goreplica run' process.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *lockedBuffer
	stdout *lockedBuffer
	done   chan struct{}
	err    error // of Wait, valid once done is closed
}

// startDaemon starts 'goreplica run -c cfg'. The process is killed when the
// test ends if it still runs; when the test failed its output is logged.
func startDaemon(t *testing.T, cfg string, env ...string) *daemon {
	t.Helper()
	return startRun(t, env, "run", "-c", cfg)
}

// startRun starts 'goreplica ARGS...' as startDaemon does (several
// configurations: "run", "-c", a, "-c", b).
func startRun(t *testing.T, env []string, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, stderr: &lockedBuffer{}, stdout: &lockedBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(binPath, args...)
	d.cmd.Env = append(baseEnv(), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start goreplica run: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if strings.Contains(d.stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in goreplica run (pid %d)", d.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("goreplica run (pid %d) stderr:\n%s", d.cmd.Process.Pid, d.stderr.String())
		}
	})
	return d
}

// running reports whether the process has not exited.
func (d *daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// signal sends sig and waits up to stopTimeout for the process to exit; it
// returns the exit code. The test fails if the process does not exit in
// time (it is then killed).
func (d *daemon) signal(sig syscall.Signal) int {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("send %v to goreplica run: %v (exited: %v)\nstderr:\n%s", sig, err, !d.running(), d.stderr.String())
	}
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.t.Fatalf("goreplica run still running %v after %v: killed\nstderr:\n%s", stopTimeout, sig, d.stderr.String())
	}
	return d.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and requires a clean exit (status 0) within stopTimeout.
func (d *daemon) stop() {
	d.t.Helper()
	if code := d.signal(syscall.SIGTERM); code != 0 {
		d.t.Fatalf("goreplica run exited %d after SIGTERM, want 0\nstderr:\n%s", code, d.stderr.String())
	}
}

// kill sends SIGKILL, as a crash of the daemon's machine process would, and
// waits for the process to be gone.
func (d *daemon) kill() {
	d.t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		d.t.Fatalf("kill goreplica run: %v", err)
	}
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		d.t.Fatalf("goreplica run still running %v after SIGKILL", stopTimeout)
	}
}

// requireAlive fails the test if the daemon exited.
func (d *daemon) requireAlive() {
	d.t.Helper()
	if !d.running() {
		d.t.Fatalf("goreplica run exited unexpectedly: %v\nstderr:\n%s", d.err, d.stderr.String())
	}
}

// waitFor polls cond every interval until it returns true or ctx ends; then
// the test fails with what cond last described.
func waitFor(ctx context.Context, t *testing.T, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	last := "(not checked yet)"
	for {
		ok, desc := cond(ctx)
		if ok {
			return
		}
		if desc != "" {
			last = desc
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not reached in time; last seen: %s", what, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tableSum is a table's contents reduced to a row count and an md5 of its
// rows' text, in a fixed order.
type tableSum struct {
	rows int64
	md5  string
}

func (s tableSum) String() string { return fmt.Sprintf("%d rows, md5 %s", s.rows, s.md5) }

// checksum computes a table's tableSum.
func checksum(ctx context.Context, db *sql.DB, table string) (tableSum, error) {
	var s tableSum
	var md5 sql.NullString
	q := fmt.Sprintf(`SELECT count(*), md5(string_agg(t::text, E'\n' ORDER BY t::text)) FROM %s t`, pq.QuoteIdentifier(table))
	if err := db.QueryRowContext(ctx, q).Scan(&s.rows, &md5); err != nil {
		return s, fmt.Errorf("checksum %s: %w", table, err)
	}
	s.md5 = md5.String
	return s, nil
}

// waitConverged polls until every table has the same checksum on every
// slave as on the master, and fails with the last difference seen.
func waitConverged(ctx context.Context, t *testing.T, master database, slaves []database, tables ...string) {
	t.Helper()
	waitFor(ctx, t, "slaves equal to the master", func(ctx context.Context) (bool, string) {
		var diffs []string
		for _, tbl := range tables {
			m, err := checksum(ctx, master.db, tbl)
			if err != nil {
				return false, "master: " + err.Error()
			}
			for _, s := range slaves {
				got, err := checksum(ctx, s.db, tbl)
				if err != nil {
					diffs = append(diffs, fmt.Sprintf("slave database %s: %v", s.name, err))
					continue
				}
				if got != m {
					diffs = append(diffs, fmt.Sprintf("table %s: master %v, slave database %s %v", tbl, m, s.name, got))
				}
			}
		}
		return len(diffs) == 0, strings.Join(diffs, "; ")
	})
}

// statusJSON is the part of 'goreplica status --json' the tests read.
type statusJSON struct {
	Master          string `json:"master"`
	MasterReachable bool   `json:"master_reachable"`
	Error           string `json:"error"`
	Slaves          []struct {
		Name          string   `json:"name"`
		State         string   `json:"state"`
		Configured    bool     `json:"configured"`
		LagSeconds    float64  `json:"lag_seconds"`
		PendingEvents int64    `json:"pending_events"`
		LastError     string   `json:"last_error"`
		InDoubt       []string `json:"in_doubt"`
	} `json:"slaves"`
}

// statusRun runs a status command line: it exits 0 when every slave runs,
// 3 when the master cannot be reached, 4 when a slave does not run; any
// other exit code fails the test.
func statusRun(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := goreplica(t, env, args...)
	if r.code != 0 && r.code != 3 && r.code != 4 {
		t.Fatalf("expected exit 0, 3 or 4\n%s", r)
	}
	return r
}

// status runs 'goreplica status --json' and decodes it.
func status(t *testing.T, cfg string, env ...string) (statusJSON, result) {
	t.Helper()
	r := statusRun(t, env, "status", "--json", "-c", cfg)
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("decode status --json: %v\n%s", err, r)
	}
	return st, r
}

// waitAllCaughtUp polls 'status --json' until every slave runs with no
// pending event, no in-doubt transaction and no error.
func waitAllCaughtUp(ctx context.Context, t *testing.T, cfg string, slaves int) {
	t.Helper()
	waitFor(ctx, t, "status: every slave running and caught up", func(context.Context) (bool, string) {
		st, r := status(t, cfg)
		if len(st.Slaves) != slaves {
			return false, r.stdout
		}
		for _, s := range st.Slaves {
			if s.State != "running" || s.PendingEvents != 0 || len(s.InDoubt) != 0 || s.LastError != "" {
				return false, r.stdout
			}
		}
		return true, ""
	})
}

// preparedCount is the number of prepared transactions of a database.
func preparedCount(t *testing.T, d database) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
	defer cancel()
	var n int
	if err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// copyDatabase copies schema and data from one database to another with
// pg_dump | psql, as a user prepares a slave from a quiet master.
func copyDatabase(ctx context.Context, t *testing.T, from, to database) {
	t.Helper()
	dump := from.srv.Command(ctx, "pg_dump", "--no-owner", "--no-privileges", "-d", from.name)
	dump.Dir = os.TempDir()
	var dumpErr bytes.Buffer
	dump.Stderr = &dumpErr
	out, err := dump.Output()
	if err != nil {
		t.Fatalf("pg_dump %s: %v\n%s", from.name, err, dumpErr.String())
	}
	restore := to.srv.Command(ctx, "psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-d", to.name)
	restore.Dir = os.TempDir()
	restore.Stdin = bytes.NewReader(out)
	if b, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("psql %s < dump of %s: %v\n%s", to.name, from.name, err, b)
	}
}

// hasSchema reports whether schema replica exists in d.
func hasReplicaSchema(t *testing.T, d database) bool {
	t.Helper()
	var ok bool
	if err := d.db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'replica')`).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// catalogObjects lists the triggers, event triggers and functions outside
// the system schemas of d, each with a hash of its definition.
func catalogObjects(t *testing.T, d database) []string {
	t.Helper()
	const q = `
SELECT 'trigger ' || tgrelid::regclass::text || ' ' || tgname || ' ' || tgfoid::regprocedure::text || ' ' || tgenabled::text || ' ' || md5(pg_get_triggerdef(oid))
  FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'event trigger ' || evtname || ' ' || evtevent || ' ' || evtfoid::regprocedure::text || ' ' || evtenabled::text FROM pg_event_trigger
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) || ' ' || p.prosecdef::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1`
	rows, err := d.db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// userTriggers counts the non-internal triggers and event triggers of d.
func userTriggers(t *testing.T, d database) int {
	t.Helper()
	var n int
	if err := d.db.QueryRow(`SELECT (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal) + (SELECT count(*) FROM pg_event_trigger)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func itoa(i int) string { return strconv.Itoa(i) }

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
