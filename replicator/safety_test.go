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
// control, and run as a role that may do nothing but write the log. The log
// function runs with its caller's search_path, which the table's user
// chooses. A hostile role that owns a replicated table and its types defines
// every hook it can: casts of its types to text, and in a schema of its own
// (and in pg_temp) a look-alike of every function the log function calls,
// every operator it uses (also those that IS DISTINCT FROM and NULLIF find
// by name), the types it names and a collation "C" that ignores case. Each
// tries to make the role a superuser and raises when run by any other role.
// Then it writes the table from sessions whose search_path puts its schema
// before pg_catalog, leaves pg_catalog out, or puts pg_temp first; every
// change must be logged exactly and reach the slave.
func TestLogTriggerRunsNoCodeOfTheTablesUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE hooks (id int PRIMARY KEY)`})
	evil := e.newRole("evil")
	e.exec(e.master, fmt.Sprintf(`GRANT CREATE, USAGE ON SCHEMA public TO %[1]s; CREATE SCHEMA hostile AUTHORIZATION %[1]s`, evil))
	evilConn := e.roleConn(e.master, evil)
	// The table's columns: one of each type of the log function's UPDATE
	// branches, v1 and v2 two values, r1 and r2 how they are logged.
	cols := []struct{ name, typ, v1, r1, v2, r2 string }{
		{"i2", "int2", "2", "'2'", "5", "'5'"},
		{"i8", "int8", "3", "'3'", "6", "'6'"},
		{"o", "oid", "4", "'4'", "7", "'7'"},
		{"b", "bool", "true", "'t'", "false", "'f'"},
		{"u", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
			"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'"},
		{"d", "date", "'2026-12-01'", "'2026-12-01'", "'2026-12-02'", "'2026-12-02'"},
		{"ts", "timestamp", "'2026-12-01 10:11:12'", "'2026-12-01 10:11:12'", "'2026-12-02 10:11:12'", "'2026-12-02 10:11:12'"},
		{"tz", "timestamptz", "'2026-12-01 10:11:12+00'", "'2026-12-01 10:11:12+00'", "'2026-12-02 10:11:12+00'", "'2026-12-02 10:11:12+00'"},
		{"by", "bytea", `'\x00ff'`, `E'\\x00ff'`, `'\x01'`, `E'\\x01'`},
		// Changed in case only: a collation "C" that ignores case would
		// hide the change.
		{"t", "text", "'a'", "'a'", "'A'", "'A'"},
		{"vc", "varchar(10)", "'b'", "'b'", "'B'", "'B'"},
		{"n", "numeric", "1.50", "'1.50'", "1.5", "'1.5'"},
		{"p", "evil_pair", "ROW(1, 'a')", "'(1,a)'", "ROW(1, 'A')", "'(1,A)'"},
		{"m", "evil_mood", "'sad'", "'sad'", "'happy'", "'happy'"},
		{"ms", "evil_mood[]", "'{sad,happy}'", "'{sad,happy}'", "'{happy}'", "'{happy}'"},
		{"dm", "evil_dom", "ROW(2, 'b')", "'(2,b)'", "ROW(2, 'B')", "'(2,B)'"},
		// The table's own case-insensitive collation, on types compared by
		// their text: a change in case only is a change.
		{"ch", "char(3) COLLATE public.ci", "'a'", "'a  '", "'A'", "'A  '"},
		{"ta", "text[] COLLATE public.ci", "'{a}'", "'{a}'", "'{A}'", "'{A}'"},
	}
	var defs, names, types []string
	for _, c := range cols {
		defs = append(defs, c.name+" "+c.typ)
		names = append(names, c.name)
		types = append(types, strings.Fields(c.typ)[0])
	}
	table := fmt.Sprintf(`CREATE TABLE public.evil (id int PRIMARY KEY, %s)`, strings.Join(defs, ", "))
	ran := func(what string) string { return fmt.Sprintf(`PERFORM hostile.ran(%s)`, pq.QuoteLiteral(what)) }
	hostile := []string{
		`GRANT USAGE ON SCHEMA hostile TO PUBLIC`,
		`CREATE TYPE evil_pair AS (a int, b text)`,
		`CREATE TYPE evil_mood AS ENUM ('sad', 'happy')`,
		`CREATE DOMAIN evil_dom AS evil_pair`,
		`CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`,
		fmt.Sprintf(`CREATE FUNCTION hostile.ran(what text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
		 BEGIN
		   IF current_user OPERATOR(pg_catalog.<>) %[1]s THEN
		     BEGIN EXECUTE 'ALTER ROLE ' || %[1]s || ' SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
		     RAISE EXCEPTION 'the log function ran %%, code of role %[2]s, as %%', what, current_user;
		   END IF;
		 END $$`, pq.QuoteLiteral(evil), evil),
		`CREATE FUNCTION hostile.checked(what text, v anyelement) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN PERFORM hostile.ran(what); RETURN true; END $$`,
		`CREATE FUNCTION public.pair_text(evil_pair) RETURNS text LANGUAGE plpgsql AS $$ BEGIN ` + ran("cast pair") + `; RETURN 'x'; END $$`,
		`CREATE FUNCTION public.mood_text(evil_mood) RETURNS text LANGUAGE plpgsql AS $$ BEGIN ` + ran("cast enum") + `; RETURN 'x'; END $$`,
		`CREATE FUNCTION public.moods_text(evil_mood[]) RETURNS text LANGUAGE plpgsql AS $$ BEGIN ` + ran("cast array") + `; RETURN 'x'; END $$`,
		`CREATE CAST (evil_pair AS text) WITH FUNCTION public.pair_text(evil_pair) AS IMPLICIT`,
		`CREATE CAST (evil_mood AS text) WITH FUNCTION public.mood_text(evil_mood) AS ASSIGNMENT`,
		`CREATE CAST (evil_mood[] AS text) WITH FUNCTION public.moods_text(evil_mood[])`,
		`CREATE FUNCTION hostile.pair_eq(evil_pair, evil_pair) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN ` + ran("= on evil_pair") + `; RETURN true; END $$`,
		`CREATE OPERATOR hostile.= (LEFTARG = evil_pair, RIGHTARG = evil_pair, FUNCTION = hostile.pair_eq)`,
		`CREATE COLLATION hostile."C" (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`,
		// The functions a log function calls, with the signatures of its calls.
		`CREATE FUNCTION hostile.substr(text, int) RETURNS text LANGUAGE plpgsql AS $$ BEGIN ` + ran("substr") + `; RETURN pg_catalog.substr($1, $2); END $$`,
		`CREATE FUNCTION hostile.substr(text, int, int) RETURNS text LANGUAGE plpgsql AS $$ BEGIN ` + ran("substr") + `; RETURN pg_catalog.substr($1, $2, $3); END $$`,
		`CREATE FUNCTION hostile.current_setting(text, bool) RETURNS text LANGUAGE plpgsql AS $$ BEGIN ` + ran("current_setting") + `; RETURN pg_catalog.current_setting($1, $2); END $$`,
		`CREATE FUNCTION hostile.set_config(text, text, bool) RETURNS text LANGUAGE plpgsql AS $$ BEGIN ` + ran("set_config") + `; RETURN pg_catalog.set_config($1, $2, $3); END $$`,
		`CREATE FUNCTION hostile.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN ` + ran("pg_notify") + `; END $$`,
		`CREATE FUNCTION hostile.pg_current_xact_id() RETURNS xid8 LANGUAGE plpgsql AS $$ BEGIN ` + ran("pg_current_xact_id") + `; RETURN pg_catalog.pg_current_xact_id(); END $$`,
		`CREATE FUNCTION hostile.pg_current_wal_insert_lsn() RETURNS pg_lsn LANGUAGE plpgsql AS $$ BEGIN ` + ran("pg_current_wal_insert_lsn") + `; RETURN pg_catalog.pg_current_wal_insert_lsn(); END $$`,
		// format of the whole row (INSERT) and of the key (UPDATE, DELETE).
		fmt.Sprintf(`CREATE FUNCTION hostile.format(text, int, %s) RETURNS text LANGUAGE plpgsql AS $$ BEGIN `+ran("format of a row")+`; RETURN 'x'; END $$`, strings.Join(types, ", ")),
		`CREATE FUNCTION hostile.oid_int_ne(oid, int) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN ` + ran("<> on oid and int") + `; RETURN $1 OPERATOR(pg_catalog.<>) $2::pg_catalog.oid; END $$`,
		`CREATE OPERATOR hostile.<> (LEFTARG = oid, RIGHTARG = int, FUNCTION = hostile.oid_int_ne)`,
	}
	// format of each column, and = and <> on the types of the UPDATE
	// branches, on oid and xid8; || on text.
	opTypes := []string{"int2", "int4", "int8", "oid", "bool", "uuid", "date", "timestamp", "timestamptz", "bytea", "text", "varchar", "xid8"}
	var ops []string
	for _, typ := range append([]string{"int4"}, types...) {
		ops = append(ops, fmt.Sprintf(`CREATE FUNCTION hostile.format(text, %s) RETURNS text LANGUAGE plpgsql AS $$ BEGIN `+ran("format of "+typ)+`; RETURN 'x'; END $$`, typ))
	}
	for i, typ := range opTypes {
		for j, op := range []string{"=", "<>"} {
			fn := fmt.Sprintf("hostile.op_%d_%d", i, j)
			ops = append(ops,
				fmt.Sprintf(`CREATE FUNCTION %s(%s, %s) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN %s; RETURN $1 OPERATOR(pg_catalog.%s) $2; END $$`,
					fn, typ, typ, ran(op+" on "+typ), op),
				fmt.Sprintf(`CREATE OPERATOR hostile.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %s)`, op, typ, typ, fn))
		}
	}
	ops = append(ops,
		`CREATE FUNCTION hostile.cat(text, text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN `+ran("|| on text")+`; RETURN $1 OPERATOR(pg_catalog.||) $2; END $$`,
		`CREATE OPERATOR hostile.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.cat)`)
	// Types named as those the log function and its statements name.
	for _, typ := range []string{"text", "oid", "xid8", "int4", "int2", "int8", "bool", "uuid", "date", "bytea", "name", "pg_lsn"} {
		ops = append(ops, fmt.Sprintf(`CREATE DOMAIN hostile.%[1]s AS pg_catalog.%[1]s CHECK (hostile.checked('type hostile.%[1]s', VALUE))`, typ))
	}
	for _, q := range append(append(hostile, ops...), table) {
		if err := connExec(t, evilConn, q); err != nil {
			t.Fatalf("as %s: %s: %v", evil, q, err)
		}
	}
	// The same table on the slave, as pg_dump would make it.
	e.exec(e.slaves[0], `CREATE TYPE evil_pair AS (a int, b text); CREATE TYPE evil_mood AS ENUM ('sad', 'happy');
		CREATE DOMAIN evil_dom AS evil_pair;
		CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
		`+table)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := Init(ctx, e.opts, triggerSQLStr); err != nil {
		t.Fatal(err)
	}
	if owner := queryString(t, e.master, `SELECT string_agg(DISTINCT proowner::regrole::text, ',') FROM pg_proc
		WHERE pronamespace = 'replica'::regnamespace AND (proname ~ '^log_[0-9]+$' OR proname = 'truncate_log')`); owner != "goreplica_log" {
		t.Errorf("log functions are owned by %s, want goreplica_log", owner)
	}
	// A daemon idle-waiting: every transaction notifies. An apply
	// transaction recorded: a forged origin is looked up among them.
	e.exec(e.master, `UPDATE replica.slaves SET waiting = true; INSERT INTO replica.applying VALUES ('3')`)

	var want []string
	values := func(v func(i int) string) string {
		var out []string
		for i := range cols {
			out = append(out, v(i))
		}
		return strings.Join(out, ", ")
	}
	sets := func(v func(i int) string) string {
		var out []string
		for i, c := range cols {
			out = append(out, c.name+" = "+v(i))
		}
		return strings.Join(out, ", ")
	}
	null := func(int) string { return "NULL" }
	for k, path := range []string{"hostile, pg_catalog", "hostile", "pg_temp, hostile, pg_catalog"} {
		conn := e.roleConn(e.master, evil)
		a, b := 100*(k+1)+1, 100*(k+1)+2
		steps := []string{"SET search_path = " + path, "SET TimeZone = 'UTC'"}
		if k > 0 {
			// Types in pg_temp, which is searched first for types (and
			// tables) unless the search_path places it.
			for _, typ := range []string{"text", "oid", "xid8", "int4", "uuid", "bool"} {
				steps = append(steps, fmt.Sprintf(`CREATE DOMAIN pg_temp.%[1]s AS pg_catalog.%[1]s CHECK (hostile.checked('type pg_temp.%[1]s', VALUE))`, typ))
			}
		}
		steps = append(steps,
			fmt.Sprintf(`INSERT INTO public.evil (id, %s) VALUES (%d, %s), (%d, %s)`, strings.Join(names, ", "),
				a, values(func(i int) string { return cols[i].v1 }), b, values(null)),
			fmt.Sprintf(`UPDATE public.evil SET %s WHERE id = %d`, sets(func(i int) string { return cols[i].v2 }), a),
			fmt.Sprintf(`UPDATE public.evil SET %s WHERE id = %d`, sets(func(i int) string { return cols[i].v1 }), b),
			fmt.Sprintf(`UPDATE public.evil SET %s WHERE id = %d`, sets(null), a),
			fmt.Sprintf(`UPDATE public.evil SET %s WHERE id = %d`, sets(null), a), // nothing changes
			fmt.Sprintf(`UPDATE public.evil SET id = %d WHERE id = %d`, b+1, b),
			fmt.Sprintf(`DELETE FROM public.evil WHERE id = %d`, b+1))
		for _, q := range steps {
			if err := connExec(t, conn, q); err != nil {
				t.Fatalf("as %s with search_path %s: %s: %v", evil, path, shorten(q, 100), err)
			}
		}
		// A forged origin is refused by the log function's look-up of the
		// apply transactions, which runs none of the role's code either.
		forge := fmt.Sprintf(`BEGIN; SET LOCAL replica.origin = 'lyon'; INSERT INTO public.evil (id) VALUES (%d); COMMIT`, b+2)
		var pe *pq.Error
		if err := connExec(t, conn, forge); err == nil || !errors.As(err, &pe) || pe.Code != "42501" {
			t.Fatalf("as %s with search_path %s: %s: err = %v, want insufficient privilege", evil, path, forge, err)
		}
		if err := connExec(t, conn, `ROLLBACK`); err != nil {
			t.Fatal(err)
		}
		key := func(id int) string { return fmt.Sprintf(" WHERE id OPERATOR(pg_catalog.=) '%d'::integer", id) }
		want = append(want,
			fmt.Sprintf(`INSERT INTO public.evil (id, %s) VALUES ('%d', %s) ON CONFLICT (id) DO NOTHING`, strings.Join(names, ", "),
				a, values(func(i int) string { return cols[i].r1 })),
			fmt.Sprintf(`INSERT INTO public.evil (id, %s) VALUES ('%d', %s) ON CONFLICT (id) DO NOTHING`, strings.Join(names, ", "),
				b, values(null)),
			"UPDATE ONLY public.evil SET "+sets(func(i int) string { return cols[i].r2 })+key(a),
			"UPDATE ONLY public.evil SET "+sets(func(i int) string { return cols[i].r1 })+key(b),
			"UPDATE ONLY public.evil SET "+sets(null)+key(a),
			fmt.Sprintf("UPDATE ONLY public.evil SET id = '%d'", b+1)+key(b),
			"DELETE FROM ONLY public.evil"+key(b+1))
	}
	if got := queryString(t, e.master, `SELECT string_agg(sql, E'\n' ORDER BY lsn) FROM replica.replica_log WHERE tbl = 'public.evil'`); got != strings.Join(want, "\n") {
		t.Errorf("logged:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	e.start(nil)
	e.waitConverged(30*time.Second, "public.evil")
	if super := queryString(t, e.master, `SELECT rolsuper::text FROM pg_roles WHERE rolname = $1`, evil); super != "false" {
		t.Fatalf("role %s became a superuser by writing a replicated table", evil)
	}
}

// An installation of schema version 4, whose log functions pin their
// search_path, gets them generated again when goreplica is upgraded: the
// new ones carry no SET search_path (unless a column's text output depends
// on it) and log the same statements.
func TestUpgradeRegeneratesLogFunctions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE r (id int PRIMARY KEY, c regclass)`})
	e.exec(e.master, `DO $$ DECLARE f regprocedure; BEGIN
		FOR f IN SELECT oid FROM pg_proc WHERE pronamespace = 'replica'::regnamespace AND proname ~ '^log_[0-9]+$' LOOP
		  EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', f);
		END LOOP; END $$; UPDATE replica.version SET version = 4`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := install(ctx, e.master, triggerSQLStr); err != nil {
		t.Fatal(err)
	}
	config := func(table string) string {
		return queryString(t, e.master, `SELECT coalesce(array_to_string(proconfig, '; '), '') FROM pg_proc WHERE oid = format('replica.%I()', 'log_' || $1::regclass::oid)::regprocedure`, table)
	}
	if c := config("t"); c != "" {
		t.Errorf("table t's log function after the upgrade: %s, want no SET clause", c)
	}
	if c := config("r"); !strings.HasPrefix(c, "search_path=pg_catalog, pg_temp") {
		t.Errorf("table r's log function after the upgrade: %q, want its search_path pinned (a regclass prints by it)", c)
	}
	if v := queryString(t, e.master, `SELECT version::text FROM replica.version`); v != fmt.Sprint(schemaVersion) {
		t.Errorf("version %s after the upgrade, want %d", v, schemaVersion)
	}
	e.exec(e.master, `INSERT INTO t VALUES (1, 'a'); UPDATE t SET v = 'b'; INSERT INTO r VALUES (1, 'public.t')`)
	if got := queryString(t, e.master, `SELECT string_agg(sql, E'\n' ORDER BY lsn) FROM replica.replica_log`); got != `INSERT INTO public.t (id, v) VALUES ('1', 'a') ON CONFLICT (id) DO NOTHING
UPDATE ONLY public.t SET v = 'b' WHERE id OPERATOR(pg_catalog.=) '1'::integer
INSERT INTO public.r (id, c) VALUES ('1', 'public.t') ON CONFLICT (id) DO NOTHING` {
		t.Errorf("logged after the upgrade:\n%s", got)
	}
	e.start(nil)
	e.waitConverged(30*time.Second, "t", "r")
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

	// A session that sets replica.notify_tick (the tick of its last look-up
	// of the waiting flag) to anything but the current tick still wakes a
	// waiting daemon: junk, a past tick, a far future one.
	e.exec(e.master, `UPDATE replica.slaves SET waiting = true`)
	l := pq.NewListener(e.opts.Master.DSN, time.Second, time.Second, nil)
	defer l.Close()
	if err := l.Listen("goreplica"); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"y", "100", "99999999999999", ""} {
		for _, q := range []string{`SET replica.notify_tick = ` + pq.QuoteLiteral(v), fmt.Sprintf(`INSERT INTO t VALUES (%d, 'seen')`, 3+i)} {
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
			t.Fatalf("no NOTIFY from a transaction whose session set replica.notify_tick = %q", v)
		}
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
