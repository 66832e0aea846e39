package replicator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"
)

// compareAll runs Compare and fails the test when it cannot compare.
func (e *env) compareAll(co CompareOptions) []TableComparison {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Compare(ctx, e.opts, co)
	if err != nil {
		e.t.Fatalf("compare: %v", err)
	}
	for _, r := range res {
		if r.Error != "" {
			e.t.Fatalf("compare %s on %s: %s", r.Table, r.Slave, r.Error)
		}
	}
	return res
}

// repair runs Repair and returns its report and statements.
func (e *env) repair(ro RepairOptions) (*RepairReport, []RepairStatement) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var sts []RepairStatement
	rep, err := Repair(ctx, e.opts, ro, func(s RepairStatement) error {
		sts = append(sts, s)
		return nil
	})
	if err != nil {
		e.t.Fatalf("repair %s on %s: %v", ro.Table, ro.Slave, err)
	}
	return rep, sts
}

// runScript runs a printed repair as psql would: one transaction with the
// repair settings.
func (e *env) runScript(slave int, sts []RepairStatement) {
	e.t.Helper()
	var parts []any
	for _, s := range RepairSettings {
		parts = append(parts, s)
	}
	for _, s := range sts {
		parts = append(parts, s.SQL)
	}
	e.tx(e.slaves[slave], parts...)
}

// A row changed by hand on a slave, a missing row and an extra row are
// found by compare (in the right key range, among ranges that are equal),
// and repair fixes them: printed and run as a script on one slave, applied
// with Apply on the other; compare then says equal. The daemon runs all
// along.
func TestCompareFindsAndRepairFixes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{slaves: 2, schema: `CREATE TABLE items (id int PRIMARY KEY, name text, price numeric, tags text[]);
		CREATE TABLE "Other Table" (a text, b int, v jsonb, PRIMARY KEY (a, b));
		CREATE TABLE ident (k text PRIMARY KEY, n int GENERATED ALWAYS AS IDENTITY, v text)`})
	e.start(nil)
	e.exec(e.master, `INSERT INTO items SELECT i, 'item ' || i, i * 1.5, ARRAY['x', NULL] FROM generate_series(1, 3000) i;
		INSERT INTO "Other Table" SELECT 'k' || (i % 7), i, jsonb_build_object('i', i) FROM generate_series(1, 500) i;
		INSERT INTO ident (k, v) SELECT 'k' || i, 'v' FROM generate_series(1, 5) i`)
	e.waitConverged(60*time.Second, "items", `"Other Table"`, "ident")

	res := e.compareAll(CompareOptions{ChunkRows: 700})
	if len(res) != 6 {
		t.Fatalf("want 3 tables x 2 slaves, got %+v", res)
	}
	for _, r := range res {
		if !r.Equal || r.MasterRows != r.SlaveRows || r.MasterRows == 0 {
			t.Errorf("before any change: %+v", r)
		}
	}

	for _, s := range e.slaves {
		e.exec(s, `UPDATE items SET name = 'changed by hand' WHERE id = 1234;
			DELETE FROM items WHERE id = 2500;
			INSERT INTO items VALUES (99999, 'extra', 1, '{}');
			UPDATE "Other Table" SET v = '{"i": -1}' WHERE a = 'k3' AND b = 10;
			DELETE FROM ident WHERE k = 'k2'; UPDATE ident SET v = 'by hand' WHERE k = 'k4'`)
	}
	res = e.compareAll(CompareOptions{ChunkRows: 700, Tables: []string{"public.items"}})
	for _, r := range res {
		if r.Equal || r.MasterRows != 3000 || r.SlaveRows != 3000 || r.DiffRanges != 3 {
			t.Errorf("after the changes by hand: %+v", r)
		}
		if !strings.Contains(r.FirstDiff, "id <= '1400'") {
			t.Errorf("the first differing range should hold id 1234: %s", r.FirstDiff)
		}
	}

	want := map[string]string{
		"delete": `DELETE FROM ONLY public.items WHERE id OPERATOR(pg_catalog.=) '99999'::integer`,
		"update": `UPDATE ONLY public.items SET name = 'item 1234', price = '1851.0', tags = '{x,NULL}' WHERE id OPERATOR(pg_catalog.=) '1234'::integer`,
		"insert": `INSERT INTO public.items (id, name, price, tags) VALUES ('2500', 'item 2500', '3750.0', '{x,NULL}') ON CONFLICT (id) DO NOTHING`,
	}
	rep, sts := e.repair(RepairOptions{Slave: "lyon", Table: "public.items", CompareOptions: CompareOptions{ChunkRows: 700}})
	if rep.Missing != 1 || rep.Extra != 1 || rep.Different != 1 || rep.Applied || len(sts) != 3 {
		t.Fatalf("repair found %+v: %+v", rep, sts)
	}
	for _, s := range sts {
		if s.SQL != want[s.Kind] {
			t.Errorf("%s statement:\n got %s\nwant %s", s.Kind, s.SQL, want[s.Kind])
		}
	}
	e.runScript(0, sts)
	_, sts = e.repair(RepairOptions{Slave: "lyon", Table: `"Other Table"`})
	e.runScript(0, sts)
	// An identity column GENERATED ALWAYS: inserted with OVERRIDING SYSTEM
	// VALUE, never set by an UPDATE (which may only set it to DEFAULT).
	_, sts = e.repair(RepairOptions{Slave: "lyon", Table: "ident"})
	wantIdent := []string{`UPDATE ONLY public.ident SET v = 'v' WHERE k OPERATOR(pg_catalog.=) 'k4'::pg_catalog.text`,
		`INSERT INTO public.ident (k, n, v) OVERRIDING SYSTEM VALUE VALUES ('k2', '2', 'v') ON CONFLICT (k) DO NOTHING`}
	if len(sts) != 2 || sts[0].SQL != wantIdent[0] || sts[1].SQL != wantIdent[1] {
		t.Errorf("repair of ident: %+v, want %q", sts, wantIdent)
	}
	e.runScript(0, sts)

	rep, _ = e.repair(RepairOptions{Slave: "nice", Table: "public.items", Apply: true, CompareOptions: CompareOptions{ChunkRows: 700}})
	if !rep.Applied || rep.Missing+rep.Extra+rep.Different != 3 {
		t.Fatalf("repair --apply: %+v", rep)
	}
	rep, _ = e.repair(RepairOptions{Slave: "nice", Table: "public.Other Table", Apply: true})
	if !rep.Applied || rep.Different != 1 {
		t.Fatalf("repair --apply: %+v", rep)
	}
	if rep, _ = e.repair(RepairOptions{Slave: "nice", Table: "ident", Apply: true}); rep.Missing != 1 || rep.Different != 1 {
		t.Fatalf("repair --apply: %+v", rep)
	}
	for _, r := range e.compareAll(CompareOptions{ChunkRows: 700}) {
		if !r.Equal {
			t.Errorf("after repair: %+v", r)
		}
	}
	rep, sts = e.repair(RepairOptions{Slave: "nice", Table: "public.items"})
	if rep.Missing+rep.Extra+rep.Different != 0 || len(sts) != 0 {
		t.Errorf("a repaired table needs no more repair: %+v %+v", rep, sts)
	}
	// The daemon carries on: the repaired rows take later changes.
	e.exec(e.master, `UPDATE items SET name = 'later' WHERE id IN (1234, 2500); DELETE FROM items WHERE id = 1`)
	e.waitConverged(60*time.Second, "items", `"Other Table"`, "ident")
	e.waitState(0, StateRunning)
	e.waitState(1, StateRunning)
}

// Compare says equal while the master is written to all along, and its
// SHARE lock is gone once both snapshots are taken: while the table is
// read chunk by chunk, a writer with a 2 s lock_timeout gets through.
func TestCompareUnderWriteLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE acc (id int PRIMARY KEY, balance int NOT NULL, note text);
		CREATE TABLE hist (id bigint PRIMARY KEY, acc int, delta int);
		INSERT INTO acc SELECT i, 0, NULL FROM generate_series(1, 2000) i`})
	e.start(nil)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writes atomic.Int64
	var hid atomic.Int64
	writeErr := make(chan error, 4)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for ctx.Err() == nil {
				a, b := 1+r.IntN(2000), 1+r.IntN(2000)
				id := hid.Add(1)
				a, b = min(a, b), max(a, b) // one lock order: no deadlock
				err := writeTx(ctx, e, []string{`UPDATE acc SET balance = balance - 1 WHERE id = $1`,
					`UPDATE acc SET balance = balance + 1, note = now()::text WHERE id = $1`,
					`INSERT INTO hist VALUES ($1, $2, -1)`, `DELETE FROM hist WHERE id = $1`},
					[][]any{{a}, {b}, {id, a}, {id - 50}})
				if err != nil && ctx.Err() == nil {
					writeErr <- err
					return
				}
				writes.Add(1)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, 30*time.Second, func() string {
		if n := writes.Load(); n < 200 {
			return fmt.Sprintf("%d writes so far", n)
		}
		return ""
	})
	var probes atomic.Int64
	var probeErr error
	var mu sync.Mutex
	for round := range 3 {
		res := e.compareAll(CompareOptions{ChunkRows: 300, Progress: func(p Progress) {
			// The table is being read: the lock must be gone.
			_, err := e.master.ExecContext(context.Background(), fmt.Sprintf(`BEGIN; SET LOCAL lock_timeout = 2000;
				UPDATE %s SET id = id WHERE id = 1; COMMIT`, p.Table))
			mu.Lock()
			defer mu.Unlock()
			if err != nil && probeErr == nil {
				probeErr = fmt.Errorf("a write to %s while compare reads it: %w", p.Table, err)
			}
			probes.Add(1)
		}})
		for _, r := range res {
			if !r.Equal || r.MasterRows == 0 {
				t.Errorf("round %d under load: %+v", round, r)
			}
		}
		select {
		case err := <-writeErr:
			t.Fatal(err)
		default:
		}
	}
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	if probes.Load() < 6 {
		t.Fatalf("only %d writes were tried while tables were read", probes.Load())
	}
	t.Logf("%d writes on the master during the compares", writes.Load())
}

// A daemon that has just started, heard from (its heartbeat) but whose
// first batch has not committed yet, so that the master still has the
// slave 'stopped': compare waits for it instead of saying that no daemon
// applies.
func TestCompareWaitsForAStartingDaemon(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text)`})
	e.exec(e.master, `INSERT INTO t SELECT i, 'a' FROM generate_series(1, 10) i`)
	release := make(chan struct{})
	var once sync.Once
	e.start(func(slave, step string) error {
		if step == "before-commit" {
			once.Do(func() { <-release })
		}
		return nil
	})
	waitFor(t, 30*time.Second, func() string {
		if got := queryString(t, e.master, `SELECT state || ' ' || (seen_at IS NOT NULL) FROM replica.slaves`); got != "stopped true" {
			return "daemon not heard from before its first batch: " + got
		}
		return ""
	})
	time.AfterFunc(2*time.Second, func() { close(release) })
	e.compareAll(CompareOptions{})
}

// A slave with events of a table not applied and no daemon: compare says
// so at once instead of waiting or reporting a false difference.
func TestCompareWithoutDaemonSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE quiet (id int PRIMARY KEY)`})
	e.exec(e.master, `INSERT INTO t VALUES (1, 'a')`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Compare(ctx, e.opts, CompareOptions{})
	if err != nil || len(res) != 2 || !strings.Contains(res[0].Error, "slave lyon has not applied anything from master paris yet") {
		t.Fatalf("compare before the daemon ever ran: %+v %v", res, err)
	}
	run := e.start(nil)
	e.waitConverged(30*time.Second, "t")
	run.stop()
	e.exec(e.master, `INSERT INTO t VALUES (2, 'b')`)
	res, err = Compare(ctx, e.opts, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		switch r.Table {
		case "public.t":
			if r.Equal || !strings.Contains(r.Error, "1 of its events are not applied yet and no daemon applies to the slave") {
				t.Errorf("a table with pending events and no daemon: %+v", r)
			}
		case "public.quiet":
			if !r.Equal || r.Error != "" {
				t.Errorf("a table with nothing pending compares without the daemon: %+v", r)
			}
		}
	}
	if !errors.Is(func() error {
		_, err := Repair(ctx, e.opts, RepairOptions{Slave: "lyon", Table: "public.t"}, func(RepairStatement) error { return nil })
		return err
	}(), ErrNotCaughtUp) {
		t.Error("repair of a table with pending events and no daemon must fail with ErrNotCaughtUp")
	}
	if _, err := Compare(ctx, e.opts, CompareOptions{Tables: []string{"public.nope"}}); err == nil || !strings.Contains(err.Error(), "public.nope") {
		t.Errorf("an unknown table: %v", err)
	}
}

// Every built-in type round-trips through repair: rows missing on the
// slave are inserted, rows whose every column differs are updated, extra
// rows deleted, and the slave's values then equal the master's exactly;
// tables keyed by each type that can be a key are repaired by key too.
func TestRepairEveryType(t *testing.T) {
	t.Parallel()
	ms, _ := servers(t)
	probe, _ := newDB(t, ms, "probe")
	rows, err := probe.Query(`SELECT t.typname,
		   EXISTS (SELECT 1 FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod
		      WHERE a.amname = 'btree' AND c.opcdefault AND (c.opcintype = t.oid OR (c.opcintype = 'anyrange'::regtype AND t.typtype = 'r')
		         OR (c.opcintype = 'anymultirange'::regtype AND t.typtype = 'm')))
		FROM pg_type t
		WHERE t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype IN ('b', 'r', 'm') AND t.typisdefined
		  AND t.typarray <> 0 AND t.typname !~ '^_' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var cols, vals, keyTables []string
	var schema strings.Builder
	for rows.Next() {
		var ty string
		var keyable bool
		if err := rows.Scan(&ty, &keyable); err != nil {
			t.Fatal(err)
		}
		v, ok := builtinSamples[ty]
		if !ok {
			continue // TestEveryBuiltinTypeUnderHostileSettings lists what is missing
		}
		q := `"` + ty + `"`
		lit := quoteLit(v) + "::pg_catalog." + q
		cols = append(cols, fmt.Sprintf(`"c_%s" pg_catalog.%s, "a_%s" pg_catalog.%s[]`, ty, q, ty, q))
		vals = append(vals, lit, "ARRAY["+lit+", NULL]")
		if keyable {
			name := "k_" + ty
			keyTables = append(keyTables, name)
			fmt.Fprintf(&schema, "CREATE TABLE %s (k pg_catalog.%s PRIMARY KEY, v text);\n", name, q)
		}
	}
	rows.Close()
	fmt.Fprintf(&schema, "CREATE TABLE every (id int PRIMARY KEY, %s);\n", strings.Join(cols, ", "))
	// Keys whose operators live outside pg_catalog (citext), alone and
	// beside a built-in type: ranges are bounded and ordered by the key
	// index's own operators, whatever the search_path.
	schema.WriteString(`CREATE EXTENSION IF NOT EXISTS citext;
		CREATE TABLE k_ci (k citext PRIMARY KEY, v text); CREATE TABLE k_mixed (a int, c citext, v text, PRIMARY KEY (a, c));
		CREATE TYPE r_pair AS (a int, b text); CREATE TYPE r_mood AS ENUM ('sad', 'happy'); CREATE DOMAIN r_pos AS int CHECK (VALUE > 0);
		CREATE TABLE k_user (k r_pair PRIMARY KEY, m r_mood, p r_pos, a r_mood[], v text);`)
	extra := []string{"k_ci", "k_mixed", "k_user"}
	e := newEnv(t, setup{schema: schema.String(), twoPhase: []bool{false}})
	e.start(nil)
	// The rows are replicated, then changed by hand on the slave.
	e.exec(e.master, fmt.Sprintf(`INSERT INTO every VALUES (1, %s); INSERT INTO every VALUES (2, %s); INSERT INTO every (id) VALUES (3)`,
		strings.Join(vals, ", "), strings.Join(vals, ", ")))
	var keyed strings.Builder
	for _, kt := range keyTables {
		ty := strings.TrimPrefix(kt, "k_")
		fmt.Fprintf(&keyed, "INSERT INTO %s VALUES (%s::pg_catalog.\"%s\", 'master');\n", kt, quoteLit(builtinSamples[ty]), ty)
	}
	keyed.WriteString(`INSERT INTO k_ci SELECT CASE WHEN i % 2 = 0 THEN upper(w) ELSE w END, 'm' FROM
			(SELECT i, chr(97 + i) || 'x' AS w FROM generate_series(0, 20) i) s;
		INSERT INTO k_mixed SELECT i % 3, CASE WHEN i % 2 = 0 THEN 'B' ELSE 'a' END || i, 'm' FROM generate_series(1, 20) i;
		INSERT INTO k_user SELECT ROW(i, 'b "' || i)::r_pair, 'happy', i, ARRAY['sad', NULL]::r_mood[], 'm' FROM generate_series(1, 6) i;`)
	e.exec(e.master, keyed.String())
	all := append(append([]string{"every"}, keyTables...), extra...)
	e.waitConverged(60*time.Second, all...)
	// On the slave: row 1 missing, row 2 all NULL, row 3 all set, row 4
	// extra; each keyed table's row changed, plus an extra row of another key.
	e.exec(e.slaves[0], fmt.Sprintf(`DELETE FROM every WHERE id = 1; UPDATE every SET (%[1]s) = (SELECT %[1]s FROM every WHERE id = 3) WHERE id = 2;
		UPDATE every SET (%[1]s) = (%[2]s) WHERE id = 3;
		INSERT INTO every (id) VALUES (4)`, colNames(cols), strings.Join(vals, ", ")))
	for _, kt := range append(keyTables, extra...) {
		e.exec(e.slaves[0], fmt.Sprintf("UPDATE %s SET v = 'slave'", kt))
	}
	e.exec(e.slaves[0], `DELETE FROM k_ci WHERE k = 'DX'; INSERT INTO k_ci VALUES ('zZ', 's'); DELETE FROM k_mixed WHERE c = 'b4';
		INSERT INTO k_mixed VALUES (1, 'ZZ', 's');
		DELETE FROM k_user WHERE (k).a = 2; UPDATE k_user SET m = 'sad', p = 99, a = '{}' WHERE (k).a = 3;`)
	// Sessions on either side that print values otherwise, and a slave
	// whose search_path holds nothing: compare and repair pin their own.
	for i, db := range []*sql.DB{e.master, e.slaves[0]} {
		name := pq.QuoteIdentifier(queryString(t, db, `SELECT current_database()`))
		for _, set := range []string{"DateStyle = 'German, DMY'", "IntervalStyle = 'iso_8601'", "extra_float_digits = -15",
			"TimeZone = 'Pacific/Chatham'", "bytea_output = 'escape'"} {
			e.exec(db, fmt.Sprintf("ALTER DATABASE %s SET %s", name, set))
		}
		if i == 1 {
			e.exec(db, fmt.Sprintf("ALTER DATABASE %s SET search_path = pg_temp", name))
		}
	}

	for _, table := range all {
		rep, sts := e.repair(RepairOptions{Slave: "lyon", Table: "public." + table, Apply: true})
		if !rep.Applied || len(sts) == 0 {
			t.Errorf("table %s: nothing repaired: %+v", table, rep)
		}
	}
	if rep, _ := e.repair(RepairOptions{Slave: "lyon", Table: "public.every"}); rep.Missing+rep.Extra+rep.Different != 0 {
		t.Errorf("every: still differs after repair: %+v", rep)
	}
	for _, r := range e.compareAll(CompareOptions{ChunkRows: 3}) {
		if !r.Equal {
			t.Errorf("after repair: %+v", r)
		}
	}
	for _, c := range strings.Split(colNames(cols), ", ") {
		q := fmt.Sprintf("SELECT string_agg(coalesce(%s::text, 'NULL'), ' | ' ORDER BY id) FROM public.every", c)
		if want, got := canonicalText(t, e.master, q), canonicalText(t, e.slaves[0], q); got != want {
			t.Errorf("column %s: slave has %s, master has %s", c, got, want)
		}
	}
}

// colNames lists the column names of column definitions ("c" type, "a" type[]).
func colNames(defs []string) string {
	var names []string
	for _, d := range defs {
		for _, part := range strings.Split(d, ", ") {
			names = append(names, strings.Fields(part)[0])
		}
	}
	return strings.Join(slices.Clip(names), ", ")
}

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// writeTx runs statements, each with its arguments, in one transaction.
func writeTx(ctx context.Context, e *env, stmts []string, args [][]any) error {
	tx, err := e.master.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i, q := range stmts {
		if _, err := tx.ExecContext(ctx, q, args[i]...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// A slave slower than maxLockHold to apply a table's last changes does not
// keep the table locked on the master: while the daemon takes twice
// maxLockHold to apply a batch under compare's lock, the lock is released
// (and not taken again until that batch is in), and compare gives up after
// CatchUpTimeout saying why.
func TestCompareLockStaysShortWithSlowSlave(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id serial PRIMARY KEY, v text)`})
	const sqlLocked = `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'public.t'::regclass AND mode = 'ShareLock' AND granted)`
	release := make(chan struct{})
	var slowed, stillLocked atomic.Int64
	var sawLock atomic.Bool
	locked := func() bool { // called by the worker: no t.Fatal there
		var b bool
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return e.master.QueryRowContext(ctx, sqlLocked).Scan(&b) == nil && b
	}
	e.start(func(slave, step string) error {
		if step != "before-commit" {
			return nil
		}
		// From the first batch applied under compare's lock on, every
		// batch takes long: the slave never catches up, whenever compare
		// takes its lock (a fast daemon could otherwise apply everything
		// between compare's unlocked wait and its lock).
		if !sawLock.Load() {
			if !locked() {
				return nil
			}
			sawLock.Store(true)
		}
		slowed.Add(1)
		select {
		case <-time.After(2 * maxLockHold):
		case <-release:
			return nil
		}
		if locked() {
			stillLocked.Add(1)
		}
		return nil
	})
	t.Cleanup(func() { close(release) })
	e.exec(e.master, `INSERT INTO t (v) VALUES ('a')`)
	e.waitConverged(30*time.Second, "t")

	// A change in flight when compare asks for its lock: the lock waits
	// for it, and the slave must then apply it under the lock.
	inFlight, err := e.master.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer inFlight.Rollback()
	if _, err := inFlight.Exec(`INSERT INTO t (v) VALUES ('in flight')`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			var waiting bool
			if err := e.master.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'public.t'::regclass AND mode = 'ShareLock' AND NOT granted)`).Scan(&waiting); err != nil {
				t.Error(err)
				break
			}
			if waiting {
				break
			}
			if time.Now().After(deadline) {
				t.Error("compare never asked for its lock")
				break
			}
		}
		if err := inFlight.Commit(); err != nil {
			t.Error(err)
		}
		// And changes after it, for compare's later attempts.
		for ctx.Err() == nil {
			_, _ = e.master.ExecContext(ctx, `INSERT INTO t (v) VALUES ('w')`)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var res []TableComparison
	go func() {
		defer wg.Done()
		defer cancel()
		res, err = Compare(context.Background(), e.opts, CompareOptions{CatchUpTimeout: 3 * maxLockHold})
	}()
	wg.Wait()
	if err != nil || len(res) != 1 {
		t.Fatalf("compare: %+v %v", res, err)
	}
	if !strings.Contains(res[0].Error, ErrNotCaughtUp.Error()) {
		t.Errorf("compare with a slave slower than the lock may wait: %+v", res[0])
	}
	if slowed.Load() == 0 {
		t.Fatal("no batch was applied while compare held its lock")
	}
	if n := stillLocked.Load(); n > 0 {
		t.Errorf("the table was still locked on the master after %s of a slow batch (%d times)", 2*maxLockHold, n)
	}
	t.Logf("%d slow batches; %s", slowed.Load(), res[0].Error)
}
