package replicator

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/goreplica/goreplica/notify"
	"github.com/goreplica/goreplica/pgserver"
	"github.com/goreplica/goreplica/pgserver/pgtest"
)

// Most tests share two servers (a master server and a slave server) and
// create their own databases on them; tests that stop or kill a server start
// their own.
var (
	sharedOnce    sync.Once
	sharedMaster  *pgserver.Server
	sharedSlave   *pgserver.Server
	sharedErr     error
	dbSeq         atomic.Int64
	triggerSQLStr string
)

func TestMain(m *testing.M) {
	b, err := os.ReadFile("../trigger.sql")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	triggerSQLStr = string(b)
	code := m.Run()
	for _, s := range []*pgserver.Server{sharedMaster, sharedSlave} {
		if s != nil {
			s.Close()
		}
	}
	os.Exit(code)
}

var slaveSettings = map[string]string{"max_prepared_transactions": "20"}

// servers returns the shared master and slave servers, starting them once.
func servers(t *testing.T) (*pgserver.Server, *pgserver.Server) {
	t.Helper()
	requireBinaries(t)
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if sharedMaster, sharedErr = pgserver.Start(ctx, pgserver.Options{}); sharedErr != nil {
			return
		}
		sharedSlave, sharedErr = pgserver.Start(ctx, pgserver.Options{Settings: slaveSettings})
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedMaster, sharedSlave
}

func requireBinaries(t *testing.T) { pgtest.RequireBinaries(t, pgserver.Options{}) }

// ownServer starts a server for one test.
func ownServer(t *testing.T, settings map[string]string) *pgserver.Server {
	t.Helper()
	requireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := pgserver.Start(ctx, pgserver.Options{Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(s.LogFile())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("server log %s:\n%s", s.LogFile(), b)
		}
		s.Close()
	})
	return s
}

// env is one replication setup: a master database and its slaves.
type env struct {
	t      *testing.T
	opts   Options
	master *sql.DB
	slaves []*sql.DB
	logs   *strings.Builder
	logMu  sync.Mutex
}

type setup struct {
	schema       string             // run on the master and every slave before init
	slaves       int                // default 1
	masterServer *pgserver.Server   // default: shared
	slaveServers []*pgserver.Server // default: shared, one database each
	twoPhase     []bool             // default: all true
	tables       []string
	poll         time.Duration
	// masterOwner runs the schema and Init on the master as a role of its
	// own that owns the database but is not a superuser.
	masterOwner bool
	// slaveOwner does the same on every slave; slaveGrant then runs there
	// as a superuser, %s standing for that role.
	slaveOwner bool
	slaveGrant string
	// batchEvents bounds a slave transaction (Options.BatchEvents).
	batchEvents int64
}

func newDB(t *testing.T, s *pgserver.Server, prefix string) (*sql.DB, string) {
	t.Helper()
	name := fmt.Sprintf("%s_%d", prefix, dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", s.DSN(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, s.DSN(name)
}

// newEnv creates the databases, the schema, and runs Init.
func newEnv(t *testing.T, su setup) *env {
	t.Helper()
	ms, ss := su.masterServer, su.slaveServers
	if ms == nil || (ss == nil && su.slaves > 0) || ss == nil {
		m, s := servers(t)
		if ms == nil {
			ms = m
		}
		if ss == nil {
			n := max(su.slaves, 1)
			for range n {
				ss = append(ss, s)
			}
		}
	}
	e := &env{t: t, logs: &strings.Builder{}}
	var mdsn string
	e.master, mdsn = newDB(t, ms, "master")
	if su.masterOwner {
		e.master, mdsn = e.ownedBy(e.master, mdsn)
	}
	e.opts = Options{
		Master:        Node{Name: "paris", DSN: mdsn},
		Tables:        su.tables,
		PollInterval:  su.poll,
		BatchEvents:   su.batchEvents,
		PurgeInterval: 200 * time.Millisecond,
		MaxBackoff:    300 * time.Millisecond,
	}
	if len(e.opts.Tables) == 0 {
		e.opts.Tables = []string{"public.*"}
	}
	if e.opts.PollInterval == 0 {
		e.opts.PollInterval = 100 * time.Millisecond
	}
	names := []string{"lyon", "nice", "lille", "brest"}
	for i, s := range ss {
		db, dsn := newDB(t, s, "slave")
		if su.slaveOwner {
			super := db
			db, dsn = e.ownedBy(db, dsn)
			if su.slaveGrant != "" {
				e.exec(super, fmt.Sprintf(su.slaveGrant, queryString(t, db, `SELECT current_user`)))
			}
		}
		e.slaves = append(e.slaves, db)
		tp := true
		if i < len(su.twoPhase) {
			tp = su.twoPhase[i]
		}
		e.opts.Slaves = append(e.opts.Slaves, Node{Name: names[i], DSN: dsn, TwoPhase: tp})
	}
	if su.schema != "" {
		e.exec(e.master, su.schema)
		for _, s := range e.slaves {
			e.exec(s, su.schema)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := Init(ctx, e.opts, triggerSQLStr); err != nil {
		t.Fatalf("init: %v", err)
	}
	return e
}

// ownedBy gives the database of db (reached with dsn) to a new role that is
// not a superuser, and returns a pool and a DSN connected as that role.
func (e *env) ownedBy(db *sql.DB, dsn string) (*sql.DB, string) {
	e.t.Helper()
	var name string
	if err := db.QueryRow(`SELECT current_database()`).Scan(&name); err != nil {
		e.t.Fatal(err)
	}
	role := name + "_owner"
	e.exec(db, fmt.Sprintf(`CREATE ROLE %s LOGIN NOSUPERUSER; ALTER DATABASE %s OWNER TO %s; ALTER SCHEMA public OWNER TO %s`, role, name, role, role))
	dsn = strings.Replace(dsn, "user="+pgserver.Superuser, "user="+role, 1)
	owner, err := sql.Open("postgres", dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { owner.Close() })
	return owner, dsn
}

func (e *env) exec(db *sql.DB, q string, args ...any) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, q, args...); err != nil {
		e.t.Fatalf("%s: %v", shorten(q, 300), err)
	}
}

// tx runs statements in one transaction; each string is a statement and
// the non-string values after it are its parameters.
func (e *env) tx(db *sql.DB, parts ...any) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer tx.Rollback()
	for i := 0; i < len(parts); {
		q := parts[i].(string)
		var args []any
		for i++; i < len(parts); i++ {
			if _, ok := parts[i].(string); ok {
				break
			}
			args = append(args, parts[i])
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		e.t.Fatal(err)
	}
}

// logWriter collects the replicator's log for failure reports.
type logWriter struct{ e *env }

func (w logWriter) Write(p []byte) (int, error) {
	w.e.logMu.Lock()
	defer w.e.logMu.Unlock()
	return w.e.logs.Write(p)
}

// running is a Replicator running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	r      *Replicator
	l      *notify.Listener
	once   sync.Once
}

// start runs a Replicator until the test ends (or stop is called).
func (e *env) start(hook func(slave, step string) error) *running {
	e.t.Helper()
	opts := e.opts
	opts.Logger = slog.New(slog.NewTextHandler(logWriter{e}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l, err := notify.Listen(opts.Master.DSN, opts.Logger)
	if err != nil {
		e.t.Fatal(err)
	}
	opts.Waker = l
	r, err := New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	r.hook = hook
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{cancel: cancel, done: make(chan struct{}), r: r, l: l}
	go func() {
		defer close(run.done)
		_ = r.Run(ctx)
	}()
	e.t.Cleanup(run.stop)
	e.t.Cleanup(func() {
		if e.t.Failed() {
			e.logMu.Lock()
			out := e.logs.String()
			e.logMu.Unlock()
			// The first lines and the last ones: the first error is usually the cause.
			if len(out) > 12000 {
				out = out[:6000] + "\n...\n" + out[len(out)-6000:]
			}
			e.t.Logf("replicator log (end):\n%s", out)
		}
	})
	return run
}

func (r *running) stop() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
		r.l.Close()
		r.r.Close()
	})
}

// checksum is a table's content as one comparable string.
func checksum(ctx context.Context, db *sql.DB, table string) (string, error) {
	var n int64
	var sum string
	err := db.QueryRowContext(ctx, fmt.Sprintf(
		`SELECT count(*), coalesce(md5(string_agg(x::text, E'\n' ORDER BY x::text)), '') FROM %s x`, table)).Scan(&n, &sum)
	return fmt.Sprintf("%d rows, md5 %s", n, sum), err
}

// waitConverged polls until every slave's copy of every table equals the
// master's, failing with what was last seen.
func (e *env) waitConverged(timeout time.Duration, tables ...string) {
	e.t.Helper()
	e.waitSlavesConverged(timeout, e.slaves, tables...)
}

func (e *env) waitSlavesConverged(timeout time.Duration, slaves []*sql.DB, tables ...string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last := ""
	for {
		diff := ""
		for _, tbl := range tables {
			want, err := checksum(ctx, e.master, tbl)
			if err != nil {
				diff = err.Error()
				break
			}
			for i, s := range slaves {
				got, err := checksum(ctx, s, tbl)
				if err != nil {
					got = err.Error()
				}
				if got != want {
					diff += fmt.Sprintf("slave %d table %s: %s, master: %s; ", i, tbl, got, want)
				}
			}
		}
		if diff == "" {
			return
		}
		last = diff
		select {
		case <-ctx.Done():
			e.t.Fatalf("slaves did not converge within %s: %s", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitFor polls cond until it returns "" (done) or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %s", timeout, last)
}

func queryString(t *testing.T, db *sql.DB, q string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var s sql.NullString
	if err := db.QueryRowContext(ctx, q, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s.String
}
