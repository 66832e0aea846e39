package replicator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
)

// Tests of invariant 11 (installing goreplica gives no role a right it did
// not have, application DDL keeps working) and invariant 12 (a slave does
// exactly what the master logged, whatever its schema carries).

// roleConn returns a connection of db's pool acting as role (SET ROLE).
func (e *env) roleConn(db *sql.DB, role string) *sql.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(ctx, "SET ROLE "+pq.QuoteIdentifier(role)); err != nil {
		e.t.Fatal(err)
	}
	return conn
}

// newRole creates a login role that is not a superuser, dropped with what it
// owns when the test ends.
func (e *env) newRole(prefix string) string {
	e.t.Helper()
	role := fmt.Sprintf("%s_%d", prefix, dbSeq.Add(1))
	e.exec(e.master, fmt.Sprintf(`CREATE ROLE %s LOGIN NOSUPERUSER`, role))
	e.t.Cleanup(func() {
		e.master.Exec(fmt.Sprintf(`DROP OWNED BY %s CASCADE`, role))
		e.master.Exec(fmt.Sprintf(`DROP ROLE %s`, role))
	})
	return role
}

func connExec(t *testing.T, conn *sql.Conn, q string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := conn.ExecContext(ctx, q)
	return err
}

// Invariant 11: the log trigger functions run no code the tables' users
// control, and run as a role that may do nothing but write the log. A role
// that owns the types of a replicated table defines every hook it can on
// them (casts to text, equality operators, functions and operators on its
// search_path that shadow what a log function calls), each of which tries
// to make it a superuser; then it writes the table.
func TestLogTriggerRunsNoCodeOfTheTablesUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE hooks (id int PRIMARY KEY); CREATE TABLE calls (who text, what text);`})
	evil := e.newRole("evil")
	e.exec(e.master, fmt.Sprintf(`GRANT CREATE, USAGE ON SCHEMA public TO %[1]s; GRANT INSERT, SELECT ON calls TO %[1]s`, evil))
	evilConn := e.roleConn(e.master, evil)
	for _, q := range []string{
		`CREATE TYPE evil_pair AS (a int, b text)`,
		`CREATE TYPE evil_mood AS ENUM ('sad', 'happy')`,
		`CREATE DOMAIN evil_dom AS evil_pair`,
		// Every hook records who ran it and tries to escalate.
		`CREATE FUNCTION public.hook(what text) RETURNS void LANGUAGE plpgsql AS $$
		 BEGIN
		   INSERT INTO public.calls VALUES (current_user, what);
		   BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', session_user); EXCEPTION WHEN OTHERS THEN NULL; END;
		 END $$`,
		`CREATE FUNCTION public.pair_text(evil_pair) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM public.hook('cast pair'); RETURN 'x'; END $$`,
		`CREATE FUNCTION public.mood_text(evil_mood) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM public.hook('cast enum'); RETURN 'x'; END $$`,
		`CREATE FUNCTION public.moods_text(evil_mood[]) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM public.hook('cast array'); RETURN 'x'; END $$`,
		`CREATE CAST (evil_pair AS text) WITH FUNCTION public.pair_text(evil_pair) AS IMPLICIT`,
		`CREATE CAST (evil_mood AS text) WITH FUNCTION public.mood_text(evil_mood) AS ASSIGNMENT`,
		`CREATE CAST (evil_mood[] AS text) WITH FUNCTION public.moods_text(evil_mood[])`,
		`CREATE FUNCTION public.pair_eq(evil_pair, evil_pair) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN PERFORM public.hook('operator'); RETURN true; END $$`,
		`CREATE OPERATOR public.= (LEFTARG = evil_pair, RIGHTARG = evil_pair, FUNCTION = public.pair_eq)`,
		`CREATE FUNCTION public.text_eq(text, text) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN PERFORM public.hook('text operator'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$`,
		`CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.text_eq)`,
		`CREATE FUNCTION public.quote_nullable(evil_pair) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM public.hook('search_path function'); RETURN 'x'; END $$`,
		`CREATE FUNCTION public.format(text, evil_pair) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM public.hook('search_path format'); RETURN 'x'; END $$`,
		`CREATE FUNCTION public.pg_current_xact_id() RETURNS xid8 LANGUAGE plpgsql AS $$ BEGIN PERFORM public.hook('search_path xact'); RETURN '1'; END $$`,
		`CREATE TABLE public.evil (id int PRIMARY KEY, p evil_pair, m evil_mood, ms evil_mood[], d evil_dom, t text)`,
	} {
		if err := connExec(t, evilConn, q); err != nil {
			t.Fatalf("as %s: %s: %v", evil, q, err)
		}
	}
	// The same table on the slave, as pg_dump would make it.
	e.exec(e.slaves[0], `CREATE TYPE evil_pair AS (a int, b text); CREATE TYPE evil_mood AS ENUM ('sad', 'happy');
		CREATE DOMAIN evil_dom AS evil_pair;
		CREATE TABLE public.evil (id int PRIMARY KEY, p evil_pair, m evil_mood, ms evil_mood[], d evil_dom, t text)`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := Init(ctx, e.opts, triggerSQLStr); err != nil {
		t.Fatal(err)
	}
	if owner := queryString(t, e.master, `SELECT string_agg(DISTINCT proowner::regrole::text, ',') FROM pg_proc
		WHERE pronamespace = 'replica'::regnamespace AND (proname ~ '^log_[0-9]+$' OR proname = 'truncate_log')`); owner != "goreplica_log" {
		t.Errorf("log functions are owned by %s, want goreplica_log", owner)
	}
	e.start(nil)
	for _, q := range []string{
		`SET search_path = public, pg_catalog`,
		`INSERT INTO public.evil VALUES (1, ROW(1, 'a'), 'sad', '{sad,happy}', ROW(2, 'b'), 'x'), (2, NULL, NULL, NULL, NULL, NULL)`,
		`UPDATE public.evil SET p = ROW(3, 'c'), m = 'happy', ms = '{happy}', d = ROW(4, 'd'), t = 'y' WHERE id = 1`,
		`UPDATE public.evil SET id = 3 WHERE id = 2`,
		`DELETE FROM public.evil WHERE id = 3`,
	} {
		if err := connExec(t, evilConn, q); err != nil {
			t.Fatalf("as %s: %s: %v", evil, q, err)
		}
	}
	e.waitConverged(30*time.Second, "public.evil")
	if super := queryString(t, e.master, `SELECT rolsuper::text FROM pg_roles WHERE rolname = $1`, evil); super != "false" {
		t.Fatalf("role %s became a superuser by writing a replicated table", evil)
	}
	if calls := queryString(t, e.master, `SELECT string_agg(who || ': ' || what, '; ') FROM calls WHERE who <> $1`, evil); calls != "" {
		t.Fatalf("code of the table's owner ran with other privileges: %s", calls)
	}
}

// Invariant 7: only goreplica's apply transactions mark a change as coming
// from another node, and no session can silence the wake-up of a waiting
// daemon.
func TestOriginAndWakeUpCannotBeForged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	app := e.newRole("app")
	e.exec(e.master, fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON t TO %s`, app))
	conn := e.roleConn(e.master, app)
	for _, q := range []string{
		`BEGIN; SET LOCAL replica.origin = 'lyon'; INSERT INTO t VALUES (1, 'hidden'); COMMIT`,
		`BEGIN; SET LOCAL replica.origin = 'lyon'; TRUNCATE t; COMMIT`,
	} {
		err := connExec(t, conn, q)
		var pe *pq.Error
		if err == nil || !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s: err = %v, want insufficient privilege", q, err)
		}
		_ = connExec(t, conn, `ROLLBACK`)
	}
	// An application that leaves replica.origin set session-wide cannot
	// write to a replicated table at all, rather than silently diverge.
	if err := connExec(t, conn, `SET replica.origin = 'lyon'`); err != nil {
		t.Fatal(err)
	}
	if err := connExec(t, conn, `INSERT INTO t VALUES (2, 'hidden')`); err == nil {
		t.Error("a change marked by a session as coming from slave lyon was logged")
	}
	if err := connExec(t, conn, `RESET replica.origin`); err != nil {
		t.Fatal(err)
	}
	if n := queryString(t, e.master, `SELECT count(*) FROM replica.replica_log WHERE origin IS NOT NULL`); n != "0" {
		t.Fatalf("%s changes logged with a forged origin", n)
	}

	// A session that sets replica.notified still wakes a waiting daemon.
	e.exec(e.master, `UPDATE replica.slaves SET waiting = true`)
	l := pq.NewListener(e.opts.Master.DSN, time.Second, time.Second, nil)
	defer l.Close()
	if err := l.Listen("goreplica"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`SET replica.notified = 'y'`, `INSERT INTO t VALUES (3, 'seen')`} {
		if err := connExec(t, conn, q); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case n := <-l.Notify:
		if n == nil {
			t.Fatal("listener reconnected before the notification")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no NOTIFY from a transaction whose session set replica.notified")
	}
	e.start(nil)
	e.waitConverged(30*time.Second, "t")
}

// Invariant 11: after a superuser's init, every role's DDL keeps working:
// on tables goreplica does not replicate, on temporary tables, and on the
// replicated tables the role owns, whose log functions follow the DDL in
// its own transaction (a new column, a new key, a renamed schema).
func TestEveryRoleKeepsItsDDL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text);`, tables: []string{"app.*"}})
	owner := e.newRole("owner")
	e.exec(e.master, fmt.Sprintf(`ALTER TABLE app.t OWNER TO %[1]s; GRANT USAGE, CREATE ON SCHEMA app TO %[1]s; GRANT CREATE ON SCHEMA public TO %[1]s`, owner))
	e.start(nil)
	conn := e.roleConn(e.master, owner)
	for _, q := range []string{
		`CREATE TABLE public.own (id int PRIMARY KEY)`,
		`ALTER TABLE public.own ADD COLUMN v text`,
		`CREATE TEMP TABLE scratch (id int)`,
		`ALTER TABLE scratch ADD COLUMN v text`,
		`INSERT INTO app.t VALUES (1, 'a')`,
		// A migration on a replicated table, in one transaction.
		`BEGIN; ALTER TABLE app.t ADD COLUMN extra text; INSERT INTO app.t VALUES (2, 'b', 'new column'); COMMIT`,
		// A key moved to other columns: logged by the new key from then on.
		`BEGIN; ALTER TABLE app.t ADD COLUMN k int; UPDATE app.t SET k = id * 10;
		        ALTER TABLE app.t DROP CONSTRAINT t_pkey; ALTER TABLE app.t ALTER COLUMN k SET NOT NULL;
		        ALTER TABLE app.t ADD PRIMARY KEY (k); COMMIT`,
	} {
		if err := connExec(t, conn, q); err != nil {
			t.Fatalf("as %s: %s: %v", owner, q, err)
		}
	}
	e.exec(e.slaves[0], `ALTER TABLE app.t ADD COLUMN extra text; ALTER TABLE app.t ADD COLUMN k int`)
	e.waitConverged(30*time.Second, "app.t")
	e.exec(e.slaves[0], `ALTER TABLE app.t DROP CONSTRAINT t_pkey; ALTER TABLE app.t ADD PRIMARY KEY (k)`)
	if err := connExec(t, conn, `UPDATE app.t SET id = 7 WHERE k = 10`); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, e.master, `SELECT sql FROM replica.replica_log WHERE sql LIKE 'UPDATE ONLY app.t SET id = ''7''%'`); !strings.Contains(got, "WHERE k OPERATOR") {
		t.Errorf("after the key moved, an UPDATE is logged as %q, want it keyed by k", got)
	}
	// A renamed schema, on both sides.
	e.exec(e.master, `ALTER SCHEMA app RENAME TO shop`)
	e.exec(e.slaves[0], `ALTER SCHEMA app RENAME TO shop`)
	if err := connExec(t, conn, `INSERT INTO shop.t (id, v, k) VALUES (3, 'c', 30)`); err != nil {
		t.Fatal(err)
	}
	e.waitConverged(30*time.Second, "shop.t")
}

// Invariant 12: foreign-key actions and user triggers on a slave do not
// act again on what the master logged: a cascade on the master logged the
// rows it deleted or changed, and an audit trigger on the slave would write
// again what the master's own trigger wrote (and replicated).
func TestSlaveDoesOnlyWhatTheMasterLogged(t *testing.T) {
	t.Parallel()
	const schema = `
CREATE TABLE parent (id int PRIMARY KEY, code text UNIQUE);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE,
                    parent_code text REFERENCES parent (code) ON UPDATE CASCADE ON DELETE SET NULL);
CREATE TABLE grandchild (id int PRIMARY KEY, child_id int REFERENCES child ON DELETE CASCADE);
CREATE TABLE audit (id serial PRIMARY KEY, what text);
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit (what) VALUES (TG_OP || ' ' || TG_TABLE_NAME); RETURN NULL; END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON child FOR EACH ROW EXECUTE FUNCTION audit();
`
	for _, tt := range []struct {
		name  string
		owner bool // slaves connect as a database owner that is not a superuser, granted SET on the parameter
	}{{"superuser", false}, {"granted role", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			su := setup{schema: schema, slaves: 2, twoPhase: []bool{true, false}}
			if tt.owner {
				su.slaveOwner, su.slaveGrant = true, `GRANT SET ON PARAMETER session_replication_role TO %s`
			}
			e := newEnv(t, su)
			e.start(nil)
			e.exec(e.master, `INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 5) g;
				INSERT INTO child SELECT g, g % 5 + 1, 'p' || (g % 5 + 1) FROM generate_series(1, 20) g;
				INSERT INTO grandchild SELECT g, g % 20 + 1 FROM generate_series(1, 40) g`)
			e.waitConverged(30*time.Second, "parent", "child", "grandchild", "audit")
			e.exec(e.master, `DELETE FROM parent WHERE id = 1`)                                      // cascades two levels down
			e.exec(e.master, `UPDATE parent SET code = 'renamed' WHERE id = 2`)                      // cascades an update
			e.tx(e.master, `DELETE FROM parent WHERE id = 3`, `INSERT INTO parent VALUES (3, 'p3')`) // and back in one transaction
			e.exec(e.master, `DELETE FROM grandchild WHERE id > 30; UPDATE child SET parent_id = 4 WHERE id = 2`)
			e.waitConverged(30*time.Second, "parent", "child", "grandchild", "audit")
			for i := range e.slaves {
				e.waitState(i, StateRunning)
			}
		})
	}
}

// A slave whose role may not set session_replication_role is refused at
// init when its copies of the chosen tables carry foreign-key actions or
// user triggers, with what to do.
func TestInitRefusesSlaveThatWouldActAgain(t *testing.T) {
	t.Parallel()
	m, s := servers(t)
	master, mdsn := newDB(t, m, "master")
	slave, sdsn := newDB(t, s, "slave")
	e := &env{t: t, master: master}
	owner, odsn := e.ownedBy(slave, sdsn)
	const schema = `CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY, p int REFERENCES p ON DELETE CASCADE);
		CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
		CREATE TRIGGER side AFTER INSERT ON c FOR EACH ROW EXECUTE FUNCTION f();`
	e.exec(master, schema)
	e.exec(owner, schema)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := Init(ctx, Options{Master: Node{Name: "paris", DSN: mdsn}, Slaves: []Node{{Name: "lyon", DSN: odsn, TwoPhase: true}}, Tables: []string{"public.*"}}, triggerSQLStr)
	if err == nil {
		t.Fatal("init accepted a slave whose foreign keys would cascade again")
	}
	for _, want := range []string{"slave lyon", "foreign key c_p_fkey on c (ON DELETE c)", "trigger side on c", "GRANT SET ON PARAMETER session_replication_role"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("init error %q does not say %q", err, want)
		}
	}
}

// Invariant 12: a TRUNCATE of tables a foreign key ties together is applied
// as the one statement it was on the master.
func TestTruncateOfRelatedTables(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY, p int REFERENCES p);
		CREATE TABLE "Other t" (id int PRIMARY KEY, c int REFERENCES c);`})
	e.start(nil)
	fill := `INSERT INTO p SELECT generate_series(1, 10); INSERT INTO c SELECT g, g FROM generate_series(1, 10) g;
		INSERT INTO "Other t" SELECT g, g FROM generate_series(1, 10) g`
	e.exec(e.master, fill)
	e.waitConverged(30*time.Second, "p", "c", `"Other t"`)
	e.exec(e.master, `TRUNCATE p, c, "Other t"`)
	e.exec(e.master, fill)
	e.exec(e.master, `TRUNCATE p CASCADE`)
	e.exec(e.master, `INSERT INTO p VALUES (1)`)
	e.waitConverged(30*time.Second, "p", "c", `"Other t"`)
	e.waitState(0, StateRunning)
}

// Invariant 12: every logged statement touches the rows the master's
// statement touched, and no others: a parent of an inheritance tree and its
// children, partitions, and rows that move between partitions.
func TestInheritanceAndPartitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `
CREATE TABLE p (id int PRIMARY KEY, v text);
CREATE TABLE c (extra text, PRIMARY KEY (id)) INHERITS (p);
CREATE TABLE m (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);
CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2);`})
	e.start(nil)
	e.exec(e.master, `INSERT INTO p VALUES (1, 'parent'), (2, 'parent'); INSERT INTO c VALUES (1, 'child', 'x'), (2, 'child', 'y');
		INSERT INTO m VALUES (1, 1, 'a'), (2, 1, 'b'), (1, 2, 'c')`)
	e.waitConverged(30*time.Second, "ONLY p", "c", "m1", "m2")
	e.exec(e.master, `UPDATE p SET v = 'both' WHERE id = 1`) // the parent's row and the child's
	e.exec(e.master, `UPDATE ONLY p SET v = 'parent only' WHERE id = 2`)
	e.exec(e.master, `DELETE FROM p WHERE id = 2`)
	e.exec(e.master, `UPDATE m SET k = 2 WHERE id = 2 AND k = 1`) // moves to m2
	e.exec(e.master, `UPDATE m SET v = 'all'`)
	e.waitConverged(30*time.Second, "ONLY p", "c", "m1", "m2")
	e.waitState(0, StateRunning)
}

// A DEFERRABLE primary key is refused at init with the reason; other
// deferrable unique constraints replicate, key shifts included.
func TestDeferrableKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `
CREATE TABLE pos (id int PRIMARY KEY, list int, place int, UNIQUE (list, place) DEFERRABLE);
CREATE TABLE later (id int PRIMARY KEY, place int UNIQUE DEFERRABLE INITIALLY DEFERRED);`})
	e.start(nil)
	e.exec(e.master, `INSERT INTO pos SELECT g, 1, g FROM generate_series(1, 50) g; INSERT INTO later SELECT g, g FROM generate_series(1, 50) g`)
	e.exec(e.master, `UPDATE pos SET place = place + 1`)
	e.exec(e.master, `UPDATE later SET place = 51 - place`)
	// A swap that passes through a duplicate, checked at commit.
	e.tx(e.master, `UPDATE later SET place = 49 WHERE id = 1`, `UPDATE later SET place = 50 WHERE id = 2`)
	e.waitConverged(30*time.Second, "pos", "later")

	ms, _ := servers(t)
	master, mdsn := newDB(t, ms, "master")
	e.exec(master, `CREATE TABLE shift (id int PRIMARY KEY DEFERRABLE, v text)`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := Init(ctx, Options{Master: Node{Name: "paris", DSN: mdsn}, Tables: []string{"public.shift"}}, triggerSQLStr)
	if err == nil || !strings.Contains(err.Error(), `"shift"`) || !strings.Contains(err.Error(), "DEFERRABLE") {
		t.Fatalf("init with a DEFERRABLE primary key: %v, want a refusal naming the table and the reason", err)
	}
}

// Installs into several databases of one server at once create the
// cluster-wide goreplica_log role once, without failing one another.
func TestConcurrentInitsOnOneServer(t *testing.T) {
	t.Parallel()
	srv := ownServer(t, slaveSettings)
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		db, dsn := newDB(t, srv, fmt.Sprintf("concurrent%d", i))
		if _, err := db.Exec(`CREATE TABLE t (id int PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err := Init(ctx, Options{Master: Node{Name: "paris", DSN: dsn}, Tables: []string{"public.*"}}, triggerSQLStr)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("init: %v", err)
		}
	}
}

// A slave that is itself a master (A -> B -> C) records the changes it
// applies with their true origin, and forwards them. Its daemon waits for
// a NOTIFY, which B's log triggers must not send inside a prepared apply
// transaction (PREPARE TRANSACTION refuses one that did): the daemon
// applying to B wakes it after the commit.
func TestChainKeepsTheTrueOrigin(t *testing.T) {
	t.Parallel()
	const schema = `CREATE TABLE t (id int PRIMARY KEY, v text);`
	ab := newEnv(t, setup{schema: schema, poll: time.Hour})
	_, s := servers(t)
	c, cdsn := newDB(t, s, "slave")
	ab.exec(c, schema)
	bc := &env{t: t, logs: &strings.Builder{}, master: ab.slaves[0], slaves: []*sql.DB{c}, opts: ab.opts}
	bc.opts.Master = Node{Name: "lyon", DSN: ab.opts.Slaves[0].DSN}
	bc.opts.Slaves = []Node{{Name: "nice", DSN: cdsn, TwoPhase: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := Init(ctx, bc.opts, triggerSQLStr); err != nil {
		t.Fatal(err)
	}
	ab.start(nil)
	ab.exec(ab.master, `INSERT INTO t SELECT g, 'from paris' FROM generate_series(1, 50) g; UPDATE t SET v = 'changed' WHERE id < 10`)
	ab.waitConverged(30*time.Second, "t")
	// lyon's own daemon is not running yet: its log is all there.
	if got := queryString(t, bc.master, `SELECT string_agg(coalesce(origin, 'local') || ' ' || n, ', ' ORDER BY origin)
		FROM (SELECT origin, count(*) AS n FROM replica.replica_log GROUP BY origin) o`); got != "paris 59" {
		t.Errorf("lyon's log holds %q, want the 59 changes it applied, from paris", got)
	}
	bc.start(nil)
	bc.exec(bc.master, `INSERT INTO t VALUES (100, 'from lyon')`)
	bc.waitConverged(30*time.Second, "t")
	// Both daemons idle, waiting for notifications (an hour's poll): a
	// change on A reaches C through B.
	waitFor(t, 20*time.Second, func() string {
		if queryString(t, ab.master, `SELECT bool_and(waiting)::text FROM replica.slaves`) != "true" ||
			queryString(t, bc.master, `SELECT bool_and(waiting)::text FROM replica.slaves`) != "true" {
			return "daemons not idle yet"
		}
		return ""
	})
	ab.exec(ab.master, `INSERT INTO t VALUES (200, 'from paris, idle')`)
	bc.waitConverged(30*time.Second, "t")
	ab.waitState(0, StateRunning)
}
