package pgserver_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/goreplica/goreplica/pgserver"
	"github.com/goreplica/goreplica/pgserver/pgtest"
)

// testTimeout bounds each test; a start takes a second or two.
const testTimeout = 2 * time.Minute

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func open(t *testing.T, s *pgserver.Server, dbname string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", s.DSN(dbname))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func queryString(ctx context.Context, t *testing.T, db *sql.DB, query string) string {
	t.Helper()
	var v string
	if err := db.QueryRowContext(ctx, query).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

func mustExec(ctx context.Context, t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func logText(t *testing.T, s *pgserver.Server) string {
	t.Helper()
	b, err := os.ReadFile(s.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTwoServersInParallel starts two servers at once: each gets its own
// port and directory and keeps its own data.
func TestTwoServersInParallel(t *testing.T) {
	t.Parallel()
	pgtest.RequireBinaries(t, pgserver.Options{})
	ctx := testContext(t)

	servers := make([]*pgserver.Server, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Go(func() { servers[i], errs[i] = pgserver.Start(ctx, pgserver.Options{}) })
	}
	wg.Wait()
	for i, s := range servers {
		if s != nil {
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Error(err)
				}
			})
		}
		if errs[i] != nil {
			t.Fatalf("server %d: %v", i, errs[i])
		}
	}
	a, b := servers[0], servers[1]
	if a.Port == b.Port || a.DataDir == b.DataDir {
		t.Fatalf("servers share port or directory: %d %s, %d %s", a.Port, a.DataDir, b.Port, b.DataDir)
	}
	for i, s := range servers {
		db := pgtest.DB(t, s, "app")
		mustExec(ctx, t, db, "CREATE TABLE who (name text)")
		mustExec(ctx, t, db, "INSERT INTO who VALUES ($1)", "server"+strconv.Itoa(i))
	}
	for i, s := range servers {
		got := queryString(ctx, t, open(t, s, "app"), "SELECT string_agg(name, ',') FROM who")
		if want := "server" + strconv.Itoa(i); got != want {
			t.Errorf("server %d (port %d) holds %q, want %q", i, s.Port, got, want)
		}
	}
}

// TestKillRestart crashes the server: what was committed before the kill
// is there after the restart, what was not committed is not.
func TestKillRestart(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := pgtest.Start(t, pgserver.Options{})
	db := pgtest.DB(t, s, "app")
	mustExec(ctx, t, db, "CREATE TABLE t (id int PRIMARY KEY)")
	mustExec(ctx, t, db, "INSERT INTO t VALUES (1)")
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}

	port := s.Port
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("commit after Kill succeeded: the server was not killed")
	}
	if err := open(t, s, "app").PingContext(ctx); err == nil {
		t.Fatal("connected after Kill")
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Port != port {
		t.Errorf("port after Restart = %d, want %d", s.Port, port)
	}
	if got := queryString(ctx, t, open(t, s, "app"), "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"); got != "1" {
		t.Errorf("rows after Kill and Restart = %q, want %q", got, "1")
	}
	if log := logText(t, s); !strings.Contains(log, "automatic recovery in progress") {
		t.Errorf("server log shows no crash recovery after Kill:\n%s", log)
	}

	// A second crash right after the first recovery, still on the same port.
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := queryString(ctx, t, open(t, s, "app"), "SELECT count(*) FROM t"); got != "1" {
		t.Errorf("rows after the second Kill and Restart = %s, want 1", got)
	}
}

// TestStopRestart stops the server cleanly, and starts it again with its
// data on the same port.
func TestStopRestart(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := pgtest.Start(t, pgserver.Options{})
	db := pgtest.DB(t, s, "app")
	mustExec(ctx, t, db, "CREATE TABLE t AS SELECT 42 AS answer")
	db.Close()

	port := s.Port
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := open(t, s, "app").PingContext(ctx); err == nil {
		t.Fatal("connected after Stop")
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := queryString(ctx, t, open(t, s, "app"), "SELECT answer::text FROM t"); got != "42" {
		t.Errorf("after Stop and Restart: answer = %s, want 42", got)
	}
	// Restart of a running server stops it first.
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Port != port {
		t.Errorf("port after Restart = %d, want %d", s.Port, port)
	}
	if got := queryString(ctx, t, open(t, s, "app"), "SELECT answer::text FROM t"); got != "42" {
		t.Errorf("after a second Restart: answer = %s, want 42", got)
	}
}

// TestClose checks that Close leaves nothing behind: no directory, nothing
// listening on the port, and that the server is unusable afterwards.
func TestClose(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := pgtest.Start(t, pgserver.Options{}) // its cleanup closes again
	root := filepath.Dir(s.DataDir)
	if _, err := os.Stat(filepath.Join(s.DataDir, "PG_VERSION")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s after Close: %v", root, err)
	}
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Errorf("%s accepts connections after Close", addr)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"Restart": s.Restart(ctx),
		"Stop":    s.Stop(ctx),
		"Kill":    s.Kill(),
	} {
		if !errors.Is(err, pgserver.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// TestCloseAfterKill checks that Close of a crashed server works too.
func TestCloseAfterKill(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t, pgserver.Options{})
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory after Close: %v", err)
	}
}

func TestSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts pgserver.Options
		want map[string]string
	}{
		{
			name: "defaults",
			want: map[string]string{
				"max_prepared_transactions": "0",
				"max_connections":           "100",
				"fsync":                     "off",
				"full_page_writes":          "off",
				"listen_addresses":          "127.0.0.1",
				"server_encoding":           "UTF8",
				"lc_collate":                "C",
			},
		},
		{
			name: "durable with settings",
			opts: pgserver.Options{
				Durable: true,
				Settings: map[string]string{
					"max_prepared_transactions": "10",
					"Application_Name":          "it's a \\ test",
				},
			},
			want: map[string]string{
				"max_prepared_transactions": "10",
				"fsync":                     "on",
				"full_page_writes":          "on",
				"application_name":          "it's a \\ test",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			s := pgtest.Start(t, tt.opts)
			db := open(t, s, "postgres")
			for name, want := range tt.want {
				if got := queryString(ctx, t, db, "SHOW "+name); got != want {
					t.Errorf("SHOW %s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestPreparedTransactions is what max_prepared_transactions is for.
func TestPreparedTransactions(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := pgtest.Start(t, pgserver.Options{Settings: map[string]string{"max_prepared_transactions": "10"}})
	db := pgtest.DB(t, s, "app")
	mustExec(ctx, t, db, "CREATE TABLE t (id int)")
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"BEGIN", "INSERT INTO t VALUES (1)", "PREPARE TRANSACTION 'g1'"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// A prepared transaction survives a crash.
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	db = open(t, s, "app")
	mustExec(ctx, t, db, "COMMIT PREPARED 'g1'")
	if got := queryString(ctx, t, db, "SELECT count(*) FROM t"); got != "1" {
		t.Errorf("rows after COMMIT PREPARED = %s, want 1", got)
	}
}

// TestNamesAndCommand creates a database whose name needs quoting and
// reaches it through DSN, URL and psql, and runs pgbench.
func TestNamesAndCommand(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := pgtest.Start(t, pgserver.Options{})
	name := `My "odd" db's \name/?#%`
	if err := s.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	if got := queryString(ctx, t, open(t, s, name), "SELECT current_database()"); got != name {
		t.Errorf("through DSN: current_database() = %q, want %q", got, name)
	}
	out, err := s.Command(ctx, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-c", "SELECT current_database()", s.URL(name)).CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != name {
		t.Errorf("through URL and psql: current_database() = %q, want %q", got, name)
	}
	// PGHOST, PGPORT and PGUSER lead psql to the server without arguments.
	out, err = s.Command(ctx, "psql", "-X", "-A", "-t", "-c", "SELECT current_user").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != pgserver.Superuser {
		t.Errorf("psql from the environment: %v: %q", err, out)
	}

	if err := s.CreateDatabase(ctx, "bench"); err != nil {
		t.Fatal(err)
	}
	out, err = s.Command(ctx, "pgbench", "--initialize", "--scale=1", "--quiet", s.URL("bench")).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench --initialize: %v: %s", err, out)
	}
	if got := queryString(ctx, t, open(t, s, "bench"), "SELECT count(*) FROM pgbench_accounts"); got != "100000" {
		t.Errorf("pgbench_accounts holds %s rows, want 100000", got)
	}

	if err := s.CreateDatabase(ctx, name); err == nil {
		t.Error("creating an existing database succeeded")
	}
}

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

// TestLog checks that Options.Log receives the server log, up to the
// shutdown, and nothing after Close.
func TestLog(t *testing.T) {
	t.Parallel()
	var buf lockedBuffer
	s := pgtest.Start(t, pgserver.Options{Log: &buf})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := buf.String()
	for _, want := range []string{"ready to accept connections", "immediate shutdown request"} {
		if !strings.Contains(got, want) {
			t.Errorf("Options.Log lacks %q; got:\n%s", want, got)
		}
	}
	time.Sleep(300 * time.Millisecond) // longer than the copy interval
	if after := buf.String(); after != got {
		t.Errorf("Options.Log written after Close: %q", after[len(got):])
	}
}

// TestStartFailure checks that a server that cannot start leaves nothing
// behind and that the error shows why.
func TestStartFailure(t *testing.T) {
	pgtest.RequireBinaries(t, pgserver.Options{})
	ctx := testContext(t)
	tmp := t.TempDir()
	// As root the server runs as "postgres", which must reach the directory.
	for _, d := range []string{tmp, filepath.Dir(tmp)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", tmp)

	s, err := pgserver.Start(ctx, pgserver.Options{Settings: map[string]string{"shared_buffers": "plenty"}})
	if err == nil {
		s.Close()
		t.Fatal("Start with an invalid setting succeeded")
	}
	for _, want := range []string{"pg_ctl", tmp, `invalid value for parameter "shared_buffers"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left in TMPDIR after a failed Start: %v", left)
	}

	_, err = pgserver.Start(ctx, pgserver.Options{Settings: map[string]string{"port": "5432", "bad name": "x"}})
	if err == nil || !strings.Contains(err.Error(), `"port"`) || !strings.Contains(err.Error(), `"bad name"`) {
		t.Errorf("Start with reserved and invalid setting names: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left in TMPDIR after a failed Start: %v", left)
	}
}

// TestUnreachableTempDir checks the error when, as root, the postgres user
// cannot reach TMPDIR.
func TestUnreachableTempDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root switches to the postgres user")
	}
	pgtest.RequireBinaries(t, pgserver.Options{})
	tmp := t.TempDir()
	if err := os.Chmod(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	s, err := pgserver.Start(testContext(t), pgserver.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Start succeeded in a directory the postgres user cannot enter")
	}
	if !strings.Contains(err.Error(), "TMPDIR") {
		t.Errorf("error does not say what to do: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left in TMPDIR after a failed Start: %v", left)
	}
}

func TestBinariesAvailable(t *testing.T) {
	found := pgtest.RequireBinaries(t, pgserver.Options{})
	for _, p := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(found, p)); err != nil {
			t.Errorf("BinariesAvailable returned %s: %v", found, err)
		}
	}

	empty := t.TempDir()
	_, err := pgserver.BinariesAvailable(pgserver.Options{BinDir: empty})
	if !errors.Is(err, pgserver.ErrNoBinaries) {
		t.Fatalf("empty BinDir: %v, want ErrNoBinaries", err)
	}
	for _, want := range []string{empty, "initdb", "apt-get install postgresql-15"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := pgserver.Start(testContext(t), pgserver.Options{BinDir: empty}); !errors.Is(err, pgserver.ErrNoBinaries) {
		t.Errorf("Start with an empty BinDir: %v, want ErrNoBinaries", err)
	}

	t.Setenv("PGBIN", empty)
	if _, err := pgserver.BinariesAvailable(pgserver.Options{}); !errors.Is(err, pgserver.ErrNoBinaries) || !strings.Contains(err.Error(), "$PGBIN") {
		t.Errorf("PGBIN without binaries: %v, want ErrNoBinaries naming $PGBIN", err)
	}
	t.Setenv("PGBIN", found)
	if got, err := pgserver.BinariesAvailable(pgserver.Options{}); err != nil || got != found {
		t.Errorf("PGBIN=%s: %q, %v", found, got, err)
	}
	// Options.BinDir wins over PGBIN.
	if _, err := pgserver.BinariesAvailable(pgserver.Options{BinDir: empty}); err == nil {
		t.Error("Options.BinDir did not win over PGBIN")
	}
}

// TestWatchdog kills a process that started a server without closing it,
// as "go test -timeout" or a kill -9 would: the server must go away with it.
func TestWatchdog(t *testing.T) {
	if os.Getenv("PGSERVER_TEST_ORPHAN") != "" {
		orphanServer()
		return
	}
	if runtime.GOOS == "windows" {
		t.Skip("no watchdog on Windows")
	}
	t.Parallel()
	helper := startOrphan(t)
	if err := helper.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	helper.waitCleanedUp(t)
}

// orphan is a helper process (this test binary) holding a server.
type orphan struct {
	cmd  *exec.Cmd
	port int
	root string
	ctx  context.Context
}

// startOrphan starts a helper process that starts a server and then waits
// to be killed, and returns when the server is up.
func startOrphan(t *testing.T) *orphan {
	t.Helper()
	pgtest.RequireBinaries(t, pgserver.Options{})
	ctx := testContext(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestWatchdog$")
	cmd.Env = append(os.Environ(), "PGSERVER_TEST_ORPHAN=1")
	setpgid(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	o := &orphan{cmd: cmd, ctx: ctx}
	if _, err := fmt.Fscan(out, &o.port, &o.root); err != nil {
		t.Fatalf("reading port and directory from the helper process: %v", err)
	}
	return o
}

// waitCleanedUp waits until the server of the helper process is gone.
func (o *orphan) waitCleanedUp(t *testing.T) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port))
	for {
		_, statErr := os.Stat(o.root)
		c, dialErr := net.DialTimeout("tcp", addr, time.Second)
		if c != nil {
			c.Close()
		}
		if errors.Is(statErr, os.ErrNotExist) && dialErr != nil {
			return
		}
		if o.ctx.Err() != nil {
			t.Fatalf("server of a killed process still there: %s: %v; %s: %v", o.root, statErr, addr, dialErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// orphanServer starts a server, prints its port and directory, and waits to
// be killed.
func orphanServer() {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	s, err := pgserver.Start(ctx, pgserver.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(s.Port, filepath.Dir(s.DataDir))
	<-ctx.Done()
	os.Exit(3) // without Close
}

// TestStalePID checks that a postmaster.pid left by a postmaster that died
// unnoticed, naming a pid now used by another program, neither stops the
// server from starting again nor gets that program killed.
func TestStalePID(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs sleep(1)")
	}
	t.Parallel()
	ctx := testContext(t)
	s := pgtest.Start(t, pgserver.Options{})
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	other := exec.CommandContext(ctx, "sleep", "600")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- other.Wait() }()
	t.Cleanup(func() {
		other.Process.Kill()
		<-exited
	})
	pidFile := filepath.Join(s.DataDir, "postmaster.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(other.Process.Pid)+"\n"+s.DataDir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(other.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Fatalf("the program named by a stale postmaster.pid was killed: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

// BenchmarkStart measures Start alone (initdb, pg_ctl start, first
// connection); Close is not timed.
func BenchmarkStart(b *testing.B) {
	pgtest.RequireBinaries(b, pgserver.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for range b.N {
		s, err := pgserver.Start(ctx, pgserver.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
