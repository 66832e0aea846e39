package replicator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/goreplica/goreplica/pgserver"
)

// corpusSchema holds every kind of value and identifier invariant 8 names.
const corpusSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "odd"');
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Mixed ""Quoted"" Tâble" (
  "select" int PRIMARY KEY,
  "Col With Space" text,
  "ünïcödé" text,
  "quote""d" text
);
CREATE TABLE corpus (
  id int PRIMARY KEY,
  t text, b bytea, ia int[], ta text[], j json, jb jsonb,
  n numeric, n2 numeric(40,20), f8 float8, f4 float4,
  ts timestamp, tz timestamptz, d date, iv interval, tm time,
  dom posint, en mood, comp pair, bo bool, u uuid, ip inet, pt point,
  gen int GENERATED ALWAYS AS (id * 2) STORED
);
CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
`

func TestRoundTripEveryValueAndIdentifier(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: corpusSchema, slaves: 2, twoPhase: []bool{true, false}, tables: []string{"public.*", "Odd Schema.*"}})
	e.start(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := e.hostileConn(ctx)
	values := []string{
		`(1, 'plain', '\x00ff', '{1,NULL,3}', '{"a b","c\"d",NULL,"NULL","e\\f"}', '{"k": [1, 2.50, "x"]}', '{"k": 1e-7}',
		  '123456789012345678901234567890.123456789012345678901234567890', '1.10000000000000000000', 1e-300, 3.4028235e38,
		  'infinity', '-infinity', 'infinity', '1 year 2 mons 3 days 04:05:06.789', '23:59:59.999999',
		  1, 'happy', ROW(1, 'x,y"z'), true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '(1.5,-2)')`,
		`(2, E'quotes '' " and backslash \\ and\nnewline\ttab', '\x', '{}', '{}', 'null', '[]',
		  'NaN', -0.00000000000000000001, 'NaN', '-Infinity',
		  '-infinity', '2024-02-29 23:59:59.999999+05:45', '-infinity', '-178000000 years', '00:00',
		  2147483647, 'it''s "odd"', ROW(NULL, NULL), false, '00000000-0000-0000-0000-000000000000', '::1', '(0,0)')`,
		`(3, 'ünïcödé ✓ 日本語 🐘', NULL, NULL, NULL, NULL, NULL, NULL, NULL, '-0', 5e-45, NULL, NULL, NULL, NULL, NULL,
		  NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		`(4, '', '\xdeadbeef', '{{1,2},{3,4}}', '{"{}"}', '"just a string"', '{"nested": {"deep": [null, true]}}',
		  0, 0, 1.7976931348623157e308, 'Infinity', '1999-12-31 23:59:59.5', '1970-01-01 00:00:00+00', '0001-01-01 BC',
		  '-1 day +02:03:04', '12:00', 42, 'sad', ROW(-1, ''), NULL, NULL, '10.0.0.0/8', '(-1e-300,1e300)')`,
	}
	const insert = `INSERT INTO corpus (id, t, b, ia, ta, j, jb, n, n2, f8, f4, ts, tz, d, iv, tm, dom, en, comp, bo, u, ip, pt) VALUES `
	for _, v := range values {
		if _, err := conn.ExecContext(ctx, insert+v); err != nil {
			t.Fatalf("insert %s: %v", v[:20], err)
		}
	}
	// The same rows again (ids 101-104) in one transaction: the daemon
	// applies them as one multi-row INSERT.
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if _, err := tx.ExecContext(ctx, insert+"(10"+v[1:]); err != nil {
			t.Fatalf("insert 10%s: %v", v[1:20], err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE corpus SET n = 1.0 WHERE id = 4`,              // same value, other scale: must replicate
		`UPDATE corpus SET f8 = '-0' WHERE id = 4`,            // 1.79e308 -> -0
		`UPDATE corpus SET pt = '(9,9)' WHERE id = 1`,         // a type without equality
		`UPDATE corpus SET t = t WHERE id = 1`,                // no change: nothing logged
		`UPDATE corpus SET id = 10, t = 'moved' WHERE id = 2`, // key change
		`DELETE FROM corpus WHERE id = 3`,
		`INSERT INTO "Odd Schema"."Mixed ""Quoted"" Tâble" VALUES (1, 'a', 'b', 'c"d'), (2, NULL, E'\\', '''')`,
		`UPDATE "Odd Schema"."Mixed ""Quoted"" Tâble" SET "quote""d" = 'changed', "select" = 3 WHERE "select" = 2`,
		`INSERT INTO ident (v) VALUES ('one'), ('two')`,
		`DELETE FROM ident WHERE v = 'one'`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	e.waitConverged(30*time.Second, "corpus", `"Odd Schema"."Mixed ""Quoted"" Tâble"`, "ident")

	// Row by row, column by column, in text form under default settings.
	cols := []string{"t", "b", "ia", "ta", "j", "jb", "n", "n2", "f8", "f4", "ts", "tz", "d", "iv", "tm", "dom", "en", "comp", "bo", "u", "ip", "pt", "gen"}
	for _, id := range []int{1, 4, 10, 101, 102, 103, 104} {
		for _, c := range cols {
			q := fmt.Sprintf("SELECT %s::text FROM corpus WHERE id = $1", pq.QuoteIdentifier(c))
			want := queryString(t, e.master, q, id)
			for i, s := range e.slaves {
				if got := queryString(t, s, q, id); got != want {
					t.Errorf("slave %d: corpus id %d column %s = %q, master has %q", i, id, c, got, want)
				}
			}
		}
	}
	if n := queryString(t, e.master, `SELECT count(*) FROM replica.replica_log WHERE sql LIKE 'UPDATE public.corpus SET t = %'`); n != "0" {
		t.Errorf("an UPDATE that changed nothing logged %s statements", n)
	}
}

// hostileConn returns a master connection whose settings change how values
// print (and read), to show that the log does not depend on them; extra
// settings follow those.
func (e *env) hostileConn(ctx context.Context, extra ...string) *sql.Conn {
	e.t.Helper()
	conn, err := e.master.Conn(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	for _, q := range append([]string{"SET DateStyle = 'SQL, DMY'", "SET IntervalStyle = 'sql_standard'",
		"SET extra_float_digits = -15", "SET TimeZone = 'Asia/Kathmandu'", "SET bytea_output = 'escape'"}, extra...) {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
	}
	return conn
}

func TestTruncateIsReplicated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	e.start(nil)
	e.exec(e.master, `INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g`)
	e.waitConverged(20*time.Second, "t")
	e.exec(e.master, `TRUNCATE t`)
	e.exec(e.master, `INSERT INTO t VALUES (1, 'after')`)
	e.waitConverged(20*time.Second, "t")
	if got := queryString(t, e.slaves[0], `SELECT string_agg(v, ',') FROM t`); got != "after" {
		t.Fatalf("slave has %q after TRUNCATE and INSERT, want \"after\"", got)
	}
}

// Invariant 2: a long transaction that writes early and commits late, while
// later transactions are replicated, is not skipped.
func TestLongTransactionCommittingLateIsNotSkipped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	e.start(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	long, err := e.master.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := long.ExecContext(ctx, `INSERT INTO t VALUES (0, 'long')`); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i++ {
		e.exec(e.master, `INSERT INTO t VALUES ($1, 'short')`, i)
	}
	// The short transactions reach the slave while the long one is open.
	waitFor(t, 20*time.Second, func() string {
		if n := queryString(t, e.slaves[0], `SELECT count(*) FROM t`); n != "50" {
			return "slave has " + n + " rows, want 50"
		}
		return ""
	})
	if err := long.Commit(); err != nil {
		t.Fatal(err)
	}
	e.waitConverged(20*time.Second, "t")
}

// Invariant 4: changes to the same row are applied in the master's order,
// across transactions and inside one, whatever the batching.
func TestSameRowChangesKeepTheirOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE counter (id int PRIMARY KEY, n int, who text);`})
	e.exec(e.master, `INSERT INTO counter SELECT g, 0, '' FROM generate_series(1, 5) g`)
	e.start(nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				id := 1 + (i % 5)
				if _, err := e.master.Exec(`UPDATE counter SET n = n + 1, who = $2 WHERE id = $1`, id, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// Delete and re-insert one key many times inside single transactions.
	for i := range 20 {
		e.tx(e.master, `DELETE FROM counter WHERE id = 5`, `INSERT INTO counter VALUES (5, $1, 'reborn')`, 1000+i, `UPDATE counter SET who = who || '!' WHERE id = 5`)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.waitConverged(30*time.Second, "counter")
}

// Invariant 3: a source transaction is applied whole or not at all: a
// reader on the slave never sees a transfer half done.
func TestTransactionsApplyWhole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL);`})
	e.exec(e.master, `INSERT INTO account SELECT g, 100 FROM generate_series(1, 10) g`)
	e.start(nil)
	e.waitConverged(30*time.Second, "account")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop := make(chan struct{})
	bad := make(chan string, 1)
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var sum int
			if err := e.slaves[0].QueryRowContext(ctx, `SELECT sum(balance) FROM account`).Scan(&sum); err == nil && sum != 1000 {
				select {
				case bad <- fmt.Sprintf("slave shows a total of %d", sum):
				default:
				}
			}
		}
	}()
	for i := range 300 {
		from, to := 1+i%10, 1+(i*7+3)%10
		e.tx(e.master, `UPDATE account SET balance = balance - 5 WHERE id = $1`, from, `UPDATE account SET balance = balance + 5 WHERE id = $1`, to)
	}
	e.waitConverged(30*time.Second, "account")
	close(stop)
	readers.Wait()
	select {
	case b := <-bad:
		t.Fatalf("a transaction was applied in part: %s", b)
	default:
	}
}

// Invariant 1: a crash at any step around PREPARE, the master ack and
// COMMIT PREPARED, then a restart, converges exactly: nothing lost, nothing
// applied twice (a second apply of an INSERT would be a conflict).
func TestCrashAtEveryStepConvergesExactly(t *testing.T) {
	for _, step := range []string{"before-commit", "after-prepare", "after-ack", "after-commit"} {
		for _, twoPhase := range []bool{true, false} {
			if !twoPhase && (step == "after-prepare" || step == "after-ack") {
				continue
			}
			t.Run(fmt.Sprintf("%s/two_phase=%v", step, twoPhase), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`, twoPhase: []bool{twoPhase}})
				e.exec(e.master, `INSERT INTO t SELECT g, 'first' FROM generate_series(1, 100) g`)
				crashed := make(chan struct{})
				var once sync.Once
				r := e.start(func(slave, s string) error {
					if s != step {
						return nil
					}
					var err error
					once.Do(func() { err = errCrash; close(crashed) })
					return err
				})
				select {
				case <-crashed:
				case <-time.After(30 * time.Second):
					t.Fatal("the batch never reached step " + step)
				}
				r.stop()
				// More work while the daemon is dead.
				e.exec(e.master, `INSERT INTO t SELECT g, 'second' FROM generate_series(101, 150) g`)
				e.exec(e.master, `UPDATE t SET v = 'updated' WHERE id % 10 = 0`)
				e.start(nil)
				e.waitConverged(30*time.Second, "t")
				e.waitClean(0)
			})
		}
	}
}

// Invariants 9 and 10: a slave that is down does not stop the others, and
// replication resumes by itself when it is back; so it does after a master
// restart.
func TestOutagesOfSlaveAndMaster(t *testing.T) {
	t.Parallel()
	ms := ownServer(t, nil)
	s1 := ownServer(t, slaveSettings)
	s2 := ownServer(t, slaveSettings)
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`, masterServer: ms,
		slaveServers: []*pgserver.Server{s1, s2}})
	e.start(nil)
	e.exec(e.master, `INSERT INTO t SELECT g, 'a' FROM generate_series(1, 100) g`)
	e.waitConverged(30*time.Second, "t")

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := s2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	e.exec(e.master, `INSERT INTO t SELECT g, 'b' FROM generate_series(101, 200) g`)
	e.waitSlavesConverged(30*time.Second, e.slaves[:1], "t")
	waitFor(t, 20*time.Second, func() string {
		st, err := GetStatus(ctx, e.opts)
		if err != nil {
			return err.Error()
		}
		if st.Slaves[1].State != StateUnreachable || st.Slaves[1].PendingEvents == 0 {
			return fmt.Sprintf("status of the stopped slave: %+v", st.Slaves[1])
		}
		return ""
	})
	if err := s2.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitConverged(60*time.Second, "t")

	// The master restarts; writes after it are replicated without a
	// restart of the daemon (and NOTIFY works again, poll or not).
	if err := ms.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.insertWhenUp(ctx, 1000, "after master restart")
	e.waitConverged(60*time.Second, "t")

	// A master crash (kill -9) too.
	if err := ms.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := ms.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.insertWhenUp(ctx, 1001, "after master crash")
	e.waitConverged(60*time.Second, "t")
}

// insertWhenUp inserts a row into t on the master as soon as it accepts it.
func (e *env) insertWhenUp(ctx context.Context, id int, v string) {
	e.t.Helper()
	waitFor(e.t, 30*time.Second, func() string {
		if _, err := e.master.ExecContext(ctx, `INSERT INTO t VALUES ($1, $2)`, id, v); err != nil {
			return err.Error()
		}
		return ""
	})
}

// A conflict stops that slave only, with an error naming slave, table, key
// and txid; once the row is fixed the slave applies again by itself.
func TestConflictStopsOnlyThatSlave(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`, slaves: 2})
	e.start(nil)
	e.exec(e.master, `INSERT INTO t SELECT g, 'a' FROM generate_series(1, 10) g`)
	e.waitConverged(30*time.Second, "t")
	e.exec(e.slaves[0], `DELETE FROM t WHERE id = 7`)
	e.exec(e.master, `UPDATE t SET v = 'b' WHERE id = 7`)
	e.exec(e.master, `INSERT INTO t VALUES (11, 'c')`)
	e.waitSlavesConverged(30*time.Second, e.slaves[1:], "t")
	msg := e.waitState(0, StateConflict).LastError
	for _, want := range []string{"update_missing", "lyon", "public.t", "id = '7'", "txid"} {
		if !strings.Contains(msg, want) {
			t.Errorf("conflict error %q does not name %q", msg, want)
		}
	}
	if n := queryString(t, e.slaves[0], `SELECT count(*) FROM t WHERE id = 11`); n != "0" {
		t.Error("the batch holding the conflict was applied in part")
	}
	e.exec(e.slaves[0], `INSERT INTO t VALUES (7, 'a')`)
	e.waitConverged(30*time.Second, "t")
}

// waitClean waits until status shows slave i running, caught up, with no
// error and nothing in doubt.
func (e *env) waitClean(i int) {
	e.t.Helper()
	waitFor(e.t, 20*time.Second, func() string {
		st, err := GetStatus(context.Background(), e.opts)
		if err != nil {
			return err.Error()
		}
		s := st.Slaves[i]
		if s.State != StateRunning || s.PendingEvents != 0 || len(s.InDoubt) != 0 || s.LastError != "" {
			return fmt.Sprintf("status %+v", s)
		}
		return ""
	})
}

// waitState waits until status shows slave i in state, and returns its status.
func (e *env) waitState(i int, state string) SlaveStatus {
	e.t.Helper()
	var st *Status
	waitFor(e.t, 20*time.Second, func() string {
		var err error
		if st, err = GetStatus(context.Background(), e.opts); err != nil {
			return err.Error()
		}
		if st.Slaves[i].State != state {
			return fmt.Sprintf("slave %s: %+v", st.Slaves[i].Name, st.Slaves[i])
		}
		return ""
	})
	return st.Slaves[i]
}

// Consecutive INSERTs are applied as one multi-row INSERT; when one of its
// rows conflicts, the batch is applied again one statement per row, so that
// the conflict names that row, and nothing of the batch is kept.
func TestConflictInJoinedInsertNamesTheRow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	e.exec(e.slaves[0], `INSERT INTO t VALUES (7, 'already there')`)
	e.start(nil)
	e.tx(e.master, `INSERT INTO t SELECT g, 'a' FROM generate_series(1, 6) g`, `INSERT INTO t VALUES (7, 'b')`,
		`INSERT INTO t SELECT g, 'c' FROM generate_series(8, 20) g`)
	msg := e.waitState(0, StateConflict).LastError
	for _, want := range []string{"insert_exists", "public.t", "key ('7', 'b')", "INSERT INTO public.t (id, v) VALUES ('7', 'b') ON CONFLICT (id) DO NOTHING"} {
		if !strings.Contains(msg, want) {
			t.Errorf("conflict error %q does not name %q", msg, want)
		}
	}
	if n := queryString(t, e.slaves[0], `SELECT count(*) FROM t`); n != "1" {
		t.Errorf("the slave holds %s rows, want only its own: the batch holding the conflict was applied in part", n)
	}
	e.logMu.Lock()
	joined := strings.Contains(e.logs.String(), "applying the batch again one statement per row")
	e.logMu.Unlock()
	if !joined {
		t.Error("the conflicting INSERT was not applied as part of a joined INSERT first")
	}
	e.exec(e.slaves[0], `DELETE FROM t WHERE id = 7`)
	e.waitConverged(30*time.Second, "t")
}

// With a poll interval of an hour, changes still arrive: NOTIFY wakes the
// daemon, including right after it went idle.
func TestNotifyWakesTheDaemon(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`, poll: time.Hour})
	e.start(nil)
	waitFor(t, 20*time.Second, func() string {
		if queryString(t, e.master, `SELECT bool_and(waiting)::text FROM replica.slaves`) != "true" {
			return "daemon not idle yet"
		}
		return ""
	})
	for i := range 20 {
		e.exec(e.master, `INSERT INTO t VALUES ($1, 'x')`, i)
		e.waitConverged(10*time.Second, "t")
	}
}

// Invariant 6: the trigger changes nothing the application sees.
func TestTriggerKeepsLastvalAndValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id serial PRIMARY KEY, v text, big text);`})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := e.master.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 1; i <= 3; i++ {
		var id, last int
		if err := conn.QueryRowContext(ctx, `INSERT INTO t (v, big) VALUES ('x', repeat('y', 100000)) RETURNING id`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRowContext(ctx, `SELECT lastval()`).Scan(&last); err != nil {
			t.Fatal(err)
		}
		if last != id {
			t.Fatalf("lastval() = %d after inserting id %d", last, id)
		}
	}
	// A large row with the daemon idle (NOTIFY sent) works: the payload is empty.
	e.start(nil)
	waitFor(t, 20*time.Second, func() string {
		if queryString(t, e.master, `SELECT bool_and(waiting)::text FROM replica.slaves`) != "true" {
			return "daemon not idle yet"
		}
		return ""
	})
	if _, err := conn.ExecContext(ctx, `UPDATE t SET big = repeat('z', 1000000)`); err != nil {
		t.Fatal(err)
	}
	e.waitConverged(30*time.Second, "t")
}

// Invariant 7: application roles write replicated tables but cannot write
// the log or reach anything that injects SQL into it.
func TestApplicationRoleCannotWriteTheLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	role := fmt.Sprintf("app_%d", dbSeq.Add(1))
	e.exec(e.master, fmt.Sprintf(`CREATE ROLE %s LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON t TO %s; GRANT CREATE ON SCHEMA public TO %s`, role, role, role))
	t.Cleanup(func() {
		e.master.Exec(fmt.Sprintf(`DROP OWNED BY %s`, role))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := e.master.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET ROLE `+role); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO t VALUES (1, 'app')`); err != nil {
		t.Fatalf("application role cannot write a replicated table: %v", err)
	}
	relid := queryString(t, e.master, `SELECT 't'::regclass::oid::text`)
	for _, q := range []string{
		`INSERT INTO replica.replica_log (lsn, txid, tbl, op, sql) VALUES ('0/0', '1', 'x', 'I', 'DROP TABLE t')`,
		`UPDATE replica.replica_log SET sql = 'DROP TABLE t'`,
		`DELETE FROM replica.replica_log`,
		`SELECT replica.capture('t')`,
		`SELECT replica.apply('{x}', '{I}', '{"DROP TABLE t"}')`,
		`UPDATE replica.slaves SET acked_snapshot = pg_current_snapshot()`,
		`CREATE TABLE mine (id int PRIMARY KEY)`,
		`CREATE TRIGGER inject AFTER INSERT ON mine FOR EACH ROW EXECUTE FUNCTION replica.log_` + relid + `()`,
		`CREATE TRIGGER inject2 AFTER TRUNCATE ON mine EXECUTE FUNCTION replica.truncate_log()`,
	} {
		_, err := conn.ExecContext(ctx, q)
		if strings.HasPrefix(q, "CREATE TABLE") {
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		var pe *pq.Error
		if err == nil || !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("application role ran %q: err = %v, want permission denied", q, err)
		}
	}
	if n := queryString(t, e.master, `SELECT count(*) FROM replica.replica_log`); n != "1" {
		t.Fatalf("log has %s rows, want the 1 of the application's insert", n)
	}
}

func TestInitReportsEveryProblem(t *testing.T) {
	t.Parallel()
	m, _ := servers(t)
	noPrep := ownServer(t, nil)
	master, mdsn := newDB(t, m, "master")
	slave, sdsn := newDB(t, noPrep, "slave")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{
		`CREATE TABLE a (id int PRIMARY KEY, v text, w int)`,
		`CREATE TABLE b (id int PRIMARY KEY)`,
		`CREATE TABLE nokey (v text)`,
	} {
		if _, err := master.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := slave.ExecContext(ctx, `CREATE TABLE a (id int PRIMARY KEY, v int)`); err != nil {
		t.Fatal(err)
	}
	opts := Options{Master: Node{Name: "paris", DSN: mdsn}, Slaves: []Node{{Name: "lyon", DSN: sdsn, TwoPhase: true}},
		Tables: []string{"public.*"}}
	_, err := Init(ctx, opts, triggerSQLStr)
	if err == nil || !strings.Contains(err.Error(), "max_prepared_transactions") {
		t.Fatalf("init with max_prepared_transactions = 0: %v", err)
	}
	opts.Slaves[0].TwoPhase = false
	_, err = Init(ctx, opts, triggerSQLStr)
	if err == nil {
		t.Fatal("init succeeded with a slave missing tables and columns")
	}
	for _, want := range []string{`table "public"."b" does not exist`, `v text missing or of another type`, `w integer missing`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("init error does not say %q:\n%v", want, err)
		}
	}
	opts.Tables = []string{"public.nokey"}
	if _, err = Init(ctx, opts, triggerSQLStr); err == nil || !strings.Contains(err.Error(), "no primary key") {
		t.Errorf("init of a keyless table named exactly: %v", err)
	}
	var installed bool
	if err := master.QueryRowContext(ctx, sqlSchemaExists).Scan(&installed); err != nil || installed {
		t.Errorf("a failed init installed something on the master (%v, %v)", installed, err)
	}
}

// After ALTER TABLE on the master (and the slave), new columns replicate:
// the DDL event trigger regenerates the log function in the same
// transaction.
func TestColumnAddedOnLiveMaster(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	e.start(nil)
	e.exec(e.master, `INSERT INTO t VALUES (1, 'a')`)
	e.waitConverged(20*time.Second, "t")
	e.exec(e.slaves[0], `ALTER TABLE t ADD COLUMN extra text`)
	e.exec(e.master, `ALTER TABLE t ADD COLUMN extra text; INSERT INTO t VALUES (2, 'b', 'new column')`)
	// A column is dropped on a slave once the slave has applied the changes
	// that still name it (README, schema changes).
	e.waitConverged(20*time.Second, "t")
	e.exec(e.master, `ALTER TABLE t DROP COLUMN v; UPDATE t SET extra = 'changed' WHERE id = 1`)
	e.exec(e.slaves[0], `ALTER TABLE t DROP COLUMN v`)
	e.waitConverged(20*time.Second, "t")
}

// Without a superuser there is no DDL event trigger: a column added in one
// transaction with replica.capture (what init's warning says to do) is in
// every change logged from then on.
func TestColumnAddedWithCaptureWithoutSuperuser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`, masterOwner: true})
	var evt bool
	if err := e.master.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'replica_ddl')`).Scan(&evt); err != nil || evt {
		t.Fatalf("a DDL event trigger was installed by a role that is not a superuser (err %v)", err)
	}
	e.start(nil)
	e.exec(e.master, `INSERT INTO t VALUES (1, 'a')`)
	e.waitConverged(20*time.Second, "t")
	e.exec(e.slaves[0], `ALTER TABLE t ADD COLUMN extra text`)
	e.tx(e.master, `ALTER TABLE t ADD COLUMN extra text`, `SELECT replica.capture('t')`,
		`INSERT INTO t VALUES (2, 'b', 'new column')`, `UPDATE t SET extra = 'set' WHERE id = 1`)
	e.waitConverged(20*time.Second, "t")
}

// Invariant 5: two masters replicating to databases of one slave server
// under the same slave name use distinct GIDs.
func TestTwoSetupsShareASlaveServer(t *testing.T) {
	t.Parallel()
	a := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	b := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	a.start(nil)
	b.start(nil)
	for i := range 200 {
		a.exec(a.master, `INSERT INTO t VALUES ($1, 'a')`, i)
		b.exec(b.master, `INSERT INTO t VALUES ($1, 'b')`, i)
	}
	a.waitConverged(30*time.Second, "t")
	b.waitConverged(30*time.Second, "t")
}

// The daemon's bookkeeping on the master does not wait for WAL flushes,
// unless the master's DSN says otherwise.
func TestMasterSessionsCommitAsynchronously(t *testing.T) {
	t.Parallel()
	ms, _ := servers(t)
	_, dsn := newDB(t, ms, "async")
	for _, tt := range []struct{ dsn, want string }{{dsn, "off"}, {dsn + " synchronous_commit=local", "local"}} {
		r, err := New(Options{Master: Node{Name: "paris", DSN: tt.dsn}})
		if err != nil {
			t.Fatal(err)
		}
		got := queryString(t, r.master, `SHOW synchronous_commit`)
		r.Close()
		if got != tt.want {
			t.Errorf("DSN %q: synchronous_commit = %s on the daemon's master sessions, want %s", tt.dsn, got, tt.want)
		}
	}
}

// Purge gives the log statistics when it has had many changes and none
// (autovacuum off, or not yet round): without them the planner reads the
// whole log on every poll.
func TestPurgeAnalyzesALogWithoutStatistics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	e.exec(e.master, `ALTER TABLE replica.replica_log SET (autovacuum_enabled = off)`)
	e.exec(e.master, `INSERT INTO t SELECT g, 'x' FROM generate_series(1, 1500) g`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Statistics of changes reach the shared counters within a second.
	for queryString(t, e.master, `SELECT n_mod_since_analyze > 1000 FROM pg_stat_all_tables WHERE relid = 'replica.replica_log'::regclass`) != "true" {
		select {
		case <-ctx.Done():
			t.Fatal("the log's changes never showed in pg_stat_all_tables")
		case <-time.After(100 * time.Millisecond):
		}
	}
	r, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, e.master, `SELECT last_analyze IS NOT NULL FROM pg_stat_all_tables WHERE relid = 'replica.replica_log'::regclass`); got != "true" {
		t.Error("purge did not analyze a log of 1,500 changes that had no statistics")
	}
	if got := queryString(t, e.master, `SELECT reltuples FROM pg_class WHERE oid = 'replica.replica_log'::regclass`); got != "1500" {
		t.Errorf("the log's reltuples = %s after purge, want 1500 (nothing acknowledged it)", got)
	}
}

// The daemon's looks for a waiting event (the linger's poll, the lag alert)
// read the log's index from the slave's position, whatever the planner
// knows of the log: with EXISTS it read the whole log on each poll, as a
// first match is expected soon in a sequential scan when matches are
// thought spread over the pages (new events are at the log's end).
func TestLogLookupsReadTheIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	e.exec(e.master, `ALTER TABLE replica.replica_log SET (autovacuum_enabled = off)`)
	registered := queryString(t, e.master, `SELECT acked_snapshot::text FROM replica.slaves WHERE name = 'lyon'`)
	for i := 0; i < 20000; i += 1000 {
		e.exec(e.master, fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP INSERT INTO t VALUES (i, 'x'); COMMIT; END LOOP; END $$`, i+1, i+1000))
	}
	// The slave has applied all of it: nothing is new.
	e.exec(e.master, `UPDATE replica.slaves SET acked_snapshot = pg_current_snapshot()`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := e.master.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	explain := func(q string, args ...any) string {
		t.Helper()
		rows, err := conn.QueryContext(ctx, "EXPLAIN (COSTS OFF) "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(plan, "\n")
	}
	if _, err := conn.ExecContext(ctx, `PREPARE any_new AS `+sqlAnyNew); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `PREPARE summary AS `+sqlRangeSummary); err != nil {
		t.Fatal(err)
	}
	snap := queryString(t, e.master, `SELECT acked_snapshot::text FROM replica.slaves WHERE name = 'lyon'`)
	// A backlog's summary, as loadSummary runs it: from the registration
	// to now, 20,000 transactions.
	summary := func() string {
		t.Helper()
		if _, err := conn.ExecContext(ctx, `BEGIN READ ONLY`); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
				t.Fatal(err)
			}
		}()
		if _, err := conn.ExecContext(ctx, sqlSummaryPlan); err != nil {
			t.Fatal(err)
		}
		return explain(`EXECUTE summary(` + pq.QuoteLiteral(registered) + `, pg_current_snapshot(), 'lyon', true)`)
	}
	for _, stats := range []string{"none", "analyzed"} {
		if stats == "analyzed" {
			e.exec(e.master, `ANALYZE replica.replica_log`)
		}
		for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
			if _, err := conn.ExecContext(ctx, `SET plan_cache_mode = `+mode); err != nil {
				t.Fatal(err)
			}
			for name, plan := range map[string]string{
				"sqlAnyNew": explain(`EXECUTE any_new(` + pq.QuoteLiteral(snap) + `, 'lyon', true)`),
				"sqlLag":    explain(sqlLag),
			} {
				if strings.Contains(plan, "Seq Scan on replica_log") {
					t.Errorf("%s reads the whole log (statistics: %s, %s):\n%s", name, stats, mode, plan)
				}
			}
			if plan := summary(); !strings.Contains(plan, "GroupAggregate") || !strings.Contains(plan, "Index Scan using replica_log_txid") || strings.Contains(plan, "Sort") {
				t.Errorf("sqlRangeSummary is not a GroupAggregate over the log's index (statistics: %s, %s):\n%s", stats, mode, plan)
			}
		}
	}
}

// The log trigger renders values under the settings a slave reads them
// with, and gives the caller's own back at once: in the same transaction,
// after it, and at the session level, whether they were set for the session
// or for the transaction.
func TestLogTriggerGivesTheCallersSettingsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, d date, iv interval, f float8, m money, ts timestamp);`})
	e.start(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := e.hostileConn(ctx, "SET lc_monetary = 'C.UTF-8'")
	show := func() string {
		var out []string
		for _, n := range []string{"DateStyle", "IntervalStyle", "extra_float_digits", "lc_monetary"} {
			var v string
			if err := conn.QueryRowContext(ctx, "SELECT current_setting($1)", n).Scan(&v); err != nil {
				t.Fatal(err)
			}
			out = append(out, n+"="+v)
		}
		return strings.Join(out, " ")
	}
	session := show()
	for _, q := range []string{
		`INSERT INTO t VALUES (1, '2026-12-01', '1 day 02:03:04', 0.1, 12.34, '2026-12-01 10:00')`,
		`BEGIN`,
		`SET LOCAL DateStyle = 'German, DMY'`, `SET LOCAL extra_float_digits = 0`, `SET LOCAL IntervalStyle = 'iso_8601'`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	local := show()
	for _, q := range []string{
		`INSERT INTO t VALUES (2, '2026-12-02', '-1 mon 3 days', 1e-300, -5, '2026-12-02 11:00')`,
		`UPDATE t SET f = f * 3, d = d + 1, iv = iv * 2, m = m + 1::money, ts = ts + interval '1 hour'`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if got := show(); got != local {
			t.Errorf("after %s in the transaction: %s, want the transaction's %s", q, got, local)
		}
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if got := show(); got != session {
		t.Errorf("after the transaction: %s, want the session's %s", got, session)
	}
	if _, err := conn.ExecContext(ctx, `DELETE FROM t WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if got := show(); got != session {
		t.Errorf("after a DELETE: %s, want the session's %s", got, session)
	}
	e.waitConverged(30*time.Second, "t")
	for _, c := range []string{"d", "iv", "f", "m", "ts"} {
		q := fmt.Sprintf(`SELECT string_agg(%s::text, ',' ORDER BY id) FROM t`, c)
		if want, got := queryString(t, e.master, q), queryString(t, e.slaves[0], q); got != want {
			t.Errorf("column %s: slave has %q, master %q", c, got, want)
		}
	}
}
