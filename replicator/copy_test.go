package replicator

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSnapshotCovers(t *testing.T) {
	tests := []struct {
		p, c string
		want bool
	}{
		{"100:100:", "100:100:", true},
		{"105:110:107", "100:104:101,102", true},  // taken later
		{"100:104:101,102", "105:110:107", false}, // taken earlier
		{"101:105:102", "100:103:100,102", true},  // 101 visible in both, 102 in neither
		{"100:105:101", "100:103:100", false},     // 101 visible in c, running in p
		{"100:100:", "100:101:100", true},         // nothing visible in c that p lacks
	}
	for _, tt := range tests {
		t.Run(tt.p+"/"+tt.c, func(t *testing.T) {
			p, err := parseSnapshot(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			c, err := parseSnapshot(tt.c)
			if err != nil {
				t.Fatal(err)
			}
			if got := covers(p, c); got != tt.want {
				t.Errorf("covers(%s, %s) = %v, want %v", tt.p, tt.c, got, tt.want)
			}
		})
	}
}

func TestMergeSQL(t *testing.T) {
	got := mergeSQL(`public.t`, []string{"id", "v"}, []string{"id"})
	want := `INSERT INTO public.t ("id", "v") OVERRIDING SYSTEM VALUE SELECT "id", "v" FROM pg_temp.goreplica_merge ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v"`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := mergeSQL(`public.k`, []string{"a"}, []string{"a"}); !strings.HasSuffix(got, "DO NOTHING") {
		t.Errorf("key-only table: %s", got)
	}
}

// copyOpts returns the env's options with copies and table creation on.
func (e *env) copyOpts(mode string) Options {
	o := e.opts
	o.Copy, o.Create = mode, true
	return o
}

func (e *env) initAgain(o Options) *InitReport {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Init(ctx, o, triggerSQLStr)
	if err != nil {
		e.t.Fatalf("init: %v", err)
	}
	return rep
}

// tableState returns a table's state on slave i as status shows it.
func (e *env) tableState(i int, table string) TableStatus {
	e.t.Helper()
	st := e.statusOf(i)
	for _, t := range st.Tables {
		if t.Name == table {
			return t
		}
	}
	return TableStatus{Name: table, State: "absent"}
}

func (e *env) waitTableState(i int, table, state string) {
	e.t.Helper()
	waitFor(e.t, 60*time.Second, func() string {
		if t := e.tableState(i, table); t.State != state {
			return fmt.Sprintf("table %s on slave %d: %+v, want %s", table, i, t, state)
		}
		return ""
	})
}

// writer changes rows of big(id, grp, v, payload) until stopped: inserts,
// updates, deletes and key changes, each in a transaction of its own.
type writer struct {
	stop chan struct{}
	done chan struct{}
	n    atomic.Int64
	err  error
}

func startWriter(t *testing.T, db *sql.DB, maxID int) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	next := maxID + 1
	rnd := rand.New(rand.NewPCG(1, 2))
	go func() {
		defer close(w.done)
		ctx := context.Background()
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			id := 1 + rnd.IntN(next)
			var q string
			var args []any
			switch w.n.Load() % 4 {
			case 0:
				q, args = `INSERT INTO big (id, grp, v, payload) VALUES ($1, $2, 'new', NULL) ON CONFLICT (id, grp) DO NOTHING`, []any{next, next % 3}
				next++
			case 1:
				q, args = `UPDATE big SET v = v || '+', payload = now()::text WHERE id = $1`, []any{id}
			case 2:
				q, args = `DELETE FROM big WHERE id = $1`, []any{id}
			case 3:
				// A key change: the row moves to a new id.
				q, args = `UPDATE big SET id = $2 WHERE id = $1`, []any{id, next}
				next++
			}
			if _, err := db.ExecContext(ctx, q, args...); err != nil {
				w.err = err
				return
			}
			w.n.Add(1)
		}
	}()
	return w
}

func (w *writer) finish(t *testing.T) int64 {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
	return w.n.Load()
}

// bigTable creates and fills table big on the master; withEnum gives
// column m the type mood, which must then exist.
func bigTable(rows int, withEnum bool) string {
	m := "text"
	if withEnum {
		m = "mood"
	}
	return fmt.Sprintf(`CREATE TABLE big (id int NOT NULL, grp int NOT NULL DEFAULT 0, v text NOT NULL DEFAULT 'x', payload text,
                  m %s, at timestamptz DEFAULT now(), b bytea, PRIMARY KEY (id, grp));
INSERT INTO big (id, grp, v, payload, m, at, b)
SELECT g, g %% 3, 'row ' || g, CASE WHEN g %% 7 = 0 THEN NULL ELSE repeat(E'tab\t nl\n bs\\ ', g %% 4) END,
       (ARRAY['sad', 'ok', 'happy'])[1 + g %% 3]::%s, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 s',
       decode(md5(g::text), 'hex')
  FROM generate_series(1, %d) g;
ANALYZE big`, m, m, rows)
}

// TestCopyWhileTheMasterWrites copies a table of 1,000,000 rows, created
// from the master's catalog on an empty slave, while a writer inserts,
// updates, deletes and moves keys, and checks row by row that the slave
// ends equal; meanwhile a table already replicated keeps applying.
func TestCopyWhileTheMasterWrites(t *testing.T) {
	const rows = 1000000
	e := newEnv(t, setup{schema: `CREATE TABLE other (id int PRIMARY KEY, v text)`, tables: []string{"public.*"}})
	for _, db := range append([]*sql.DB{e.master}, e.slaves...) {
		e.exec(db, `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`)
	}
	e.exec(e.master, bigTable(rows, true))

	// The copy waits at its first fetch until the test lets it go on.
	release := make(chan struct{})
	var paused sync.Once
	pausedCh := make(chan struct{})
	hook := func(slave, step string) error {
		if step == "copy-progress" {
			paused.Do(func() { close(pausedCh) })
			<-release
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
	e.start(hook)
	// Registered after the daemon's stop, so run before it: a failing test
	// never leaves the copy held and the daemon unable to stop.
	var released sync.Once
	release1 := func() { released.Do(func() { close(release) }) }
	t.Cleanup(release1)
	w := startWriter(t, e.master, rows)
	rep := e.initAgain(e.copyOpts(CopyTruncate))
	if len(rep.Created) != 1 || !strings.Contains(rep.Created[0], `"public"."big"`) {
		t.Errorf("created: %v", rep.Created)
	}
	if len(rep.Copies) != 1 || rep.Copies[0] != "lyon: public.big (truncate)" {
		t.Errorf("copies: %v", rep.Copies)
	}
	select {
	case <-pausedCh:
	case <-time.After(60 * time.Second):
		t.Fatal("the copy never started")
	}
	// While the copy of big is held, other applies.
	e.exec(e.master, `INSERT INTO other VALUES (1, 'during the copy')`)
	e.waitConverged(20*time.Second, "other")
	if st := e.tableState(0, "public.big"); st.State != TableCopying || st.RowsTotal < rows/2 {
		t.Errorf("big while copying: %+v", st)
	}
	// compare does not compare a table still copying, and says why.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Compare(ctx, e.opts, CompareOptions{Tables: []string{"public.big", "public.other"}})
	if err != nil || len(res) != 2 {
		t.Fatalf("compare while a table copies: %+v, %v", res, err)
	}
	for _, r := range res {
		if r.Table == "public.big" && (r.Equal || !strings.Contains(r.Error, "initial copy is not done (state copying")) {
			t.Errorf("compare of a table being copied: %+v", r)
		}
		if r.Table == "public.other" && (!r.Equal || r.Error != "") {
			t.Errorf("compare of a table that applies while another copies: %+v", r)
		}
	}
	release1()
	e.waitTableState(0, "public.big", TableOK)
	n := w.finish(t)
	if n < 50 {
		t.Errorf("only %d writes during the copy", n)
	}
	e.waitConverged(60*time.Second, "big", "other")
	st := e.tableState(0, "public.big")
	if st.Mode != CopyTruncate || st.RowsCopied < rows/2 {
		t.Errorf("big after the copy: %+v", st)
	}
	// Purge may now drop what the copy held.
	var holds int
	if err := e.master.QueryRow(`SELECT count(*) FROM replica.holds`).Scan(&holds); err != nil || holds != 0 {
		t.Errorf("holds left: %d, %v", holds, err)
	}
}

// TestCopyResumesAfterAStop stops the daemon in the middle of a copy and
// after the copy committed but before the table caught up: a new daemon
// finishes the job and the slave ends equal.
func TestCopyResumesAfterAStop(t *testing.T) {
	e := newEnv(t, setup{})
	e.exec(e.master, bigTable(12000, false))
	e.initAgain(e.copyOpts(CopyTruncate))

	// First run: dies in the middle of the copy.
	e.runUntilCrashAt("copy-progress")
	if st := e.tableState(0, "public.big"); st.State != TableCopying {
		t.Fatalf("after a crash in the copy: %+v", st)
	}
	e.exec(e.master, `UPDATE big SET v = 'changed' WHERE id % 100 = 0`)

	// Second run: the copy commits, then the daemon dies before the
	// catch-up commits.
	e.runUntilCrashAt("before-catch-up-commit")
	if st := e.tableState(0, "public.big"); st.State != TableCatchingUp {
		t.Fatalf("after a crash in the catch-up: %+v", st)
	}
	e.exec(e.master, `DELETE FROM big WHERE id % 100 = 1`)

	e.start(nil)
	e.waitTableState(0, "public.big", TableOK)
	e.waitConverged(30*time.Second, "big")
}

// runUntilCrashAt runs a daemon until it dies, as if killed, at step.
func (e *env) runUntilCrashAt(step string) {
	e.t.Helper()
	var crashed atomic.Bool
	r := e.start(func(slave, s string) error {
		if s == step && crashed.CompareAndSwap(false, true) {
			return errCrash
		}
		return nil
	})
	waitFor(e.t, 30*time.Second, func() string {
		if !crashed.Load() {
			return "the daemon has not reached " + step
		}
		return ""
	})
	r.stop()
}

// TestCopyMergeKeepsTheSlavesRows merges the master's rows into a slave
// table that holds other rows and a stale copy of one.
func TestCopyMergeKeepsTheSlavesRows(t *testing.T) {
	e := newEnv(t, setup{})
	for _, db := range append([]*sql.DB{e.master}, e.slaves...) {
		e.exec(db, `CREATE TABLE m (id int PRIMARY KEY, v text)`)
	}
	e.exec(e.master, `INSERT INTO m SELECT g, 'master ' || g FROM generate_series(1, 100) g`)
	e.exec(e.slaves[0], `INSERT INTO m VALUES (5, 'stale'), (1000, 'slave only')`)
	rep := e.initAgain(e.copyOpts(CopyMerge))
	if len(rep.Copies) != 1 || rep.Copies[0] != "lyon: public.m (merge)" {
		t.Errorf("copies: %v", rep.Copies)
	}
	e.start(nil)
	e.waitTableState(0, "public.m", TableOK)
	e.exec(e.master, `UPDATE m SET v = 'changed' WHERE id = 5`)
	waitFor(t, 20*time.Second, func() string {
		got := queryString(t, e.slaves[0], `SELECT count(*) || ' ' || (SELECT v FROM m WHERE id = 5) || ' ' || (SELECT v FROM m WHERE id = 1000) FROM m`)
		if want := "101 changed slave only"; got != want {
			return fmt.Sprintf("slave: %q, want %q", got, want)
		}
		return ""
	})
	if st := e.tableState(0, "public.m"); st.Mode != CopyMerge || st.RowsCopied != 100 {
		t.Errorf("state: %+v", st)
	}
}

// TestAddAndRemoveWhileRunning adds a table to a running daemon, which
// copies it, then removes it: the slave keeps its rows and no later
// change of it is applied, pending ones included.
func TestAddAndRemoveWhileRunning(t *testing.T) {
	e := newEnv(t, setup{schema: `CREATE TABLE kept (id int PRIMARY KEY)`, tables: []string{"public.kept"}})
	r := e.start(nil)
	e.exec(e.master, `CREATE TABLE added (id int PRIMARY KEY, v numeric(10,2) NOT NULL DEFAULT 1.50)`)
	e.exec(e.master, `INSERT INTO added (id) SELECT generate_series(1, 500)`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Add(ctx, e.copyOpts(CopyTruncate), []string{"public.added"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tables) != 1 || rep.Tables[0] != "public.added" || len(rep.Warnings) != 1 {
		t.Errorf("add: %+v", rep)
	}
	e.exec(e.master, `UPDATE added SET v = 2 WHERE id <= 10`)
	e.waitTableState(0, "public.added", TableOK)
	e.waitConverged(20*time.Second, "added")
	if def := queryString(t, e.slaves[0], `SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'added'::regclass`); def != "1.50" {
		t.Errorf("slave's default: %q", def)
	}

	// Remove while a change is pending: the daemon is stopped so that it
	// stays pending.
	r.stop()
	e.exec(e.master, `DELETE FROM added WHERE id = 1`)
	removed, err := Remove(ctx, e.opts, []string{"public.added"})
	if err != nil || len(removed) != 1 {
		t.Fatalf("remove: %v %v", removed, err)
	}
	// The daemon now looks for new tables often, with a pattern that
	// matches the removed one: it captures a table created meanwhile, and
	// leaves the removed one out (until add or init).
	e.opts.Tables = []string{"public.*"}
	e.opts.Create, e.opts.CaptureNew, e.opts.checkEvery = true, true, 100*time.Millisecond
	e.exec(e.master, `CREATE TABLE fresh (id int PRIMARY KEY)`)
	e.start(nil)
	e.waitTableState(0, "public.fresh", TableOK)
	e.exec(e.master, `DELETE FROM added WHERE id = 2; INSERT INTO kept VALUES (1)`)
	e.waitConverged(20*time.Second, "kept")
	if n := queryString(t, e.slaves[0], `SELECT count(*) FROM added`); n != "500" {
		t.Errorf("slave rows after remove: %s, want 500", n)
	}
	if n := queryString(t, e.master, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'added'::regclass`); n != "0" {
		t.Errorf("triggers left on the master: %s", n)
	}
	if _, err := Remove(ctx, e.opts, []string{"public.added"}); err == nil || !strings.Contains(err.Error(), "public.added is not replicated") {
		t.Errorf("remove again: %v", err)
	}
}

// TestInitNamesWhatASlaveLacks: a table whose type is missing on the slave
// is not created, and init says which type; with create = false the
// missing table is reported.
func TestInitNamesWhatASlaveLacks(t *testing.T) {
	e := newEnv(t, setup{})
	e.exec(e.master, `CREATE TYPE colour AS ENUM ('red'); CREATE TABLE paint (id int PRIMARY KEY, c colour)`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := Init(ctx, e.copyOpts(CopyTruncate), triggerSQLStr)
	if err == nil || !strings.Contains(err.Error(), `slave lyon: table "public"."paint" cannot be created: type public.colour (column "c") missing`) {
		t.Errorf("init: %v", err)
	}
	o := e.copyOpts(CopyTruncate)
	o.Create = false
	_, err = Init(ctx, o, triggerSQLStr)
	if err == nil || !strings.Contains(err.Error(), `slave lyon: table "public"."paint" does not exist`) {
		t.Errorf("init without create: %v", err)
	}
}

// TestDaemonCapturesNewTables: a table created on the master after init
// that the patterns match is captured, created on the slave and copied
// by the running daemon; a new partition no pattern matches is reported.
func TestDaemonCapturesNewTables(t *testing.T) {
	e := newEnv(t, setup{schema: `CREATE TABLE m (at date NOT NULL, id int NOT NULL, PRIMARY KEY (at, id)) PARTITION BY RANGE (at);
CREATE TABLE m_2026_01 PARTITION OF m FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')`,
		tables: []string{"public.m_*", "public.lat*"}})
	e.opts.Copy, e.opts.Create, e.opts.CaptureNew, e.opts.checkEvery = CopySkip, true, true, 100*time.Millisecond
	al := &alerts{}
	e.opts.Alerter = al
	e.start(nil)
	e.exec(e.master, `CREATE TABLE late (id int PRIMARY KEY, v text);
INSERT INTO late SELECT g, 'v' || g FROM generate_series(1, 300) g;
CREATE TABLE m_2026_02 PARTITION OF m FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE TABLE other_2026_03 PARTITION OF m FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
INSERT INTO m VALUES ('2026-02-03', 1), ('2026-01-03', 2)`)
	e.waitTableState(0, "public.late", TableOK)
	e.waitTableState(0, "public.m_2026_02", TableOK)
	e.exec(e.master, `UPDATE late SET v = 'after' WHERE id < 10; INSERT INTO m VALUES ('2026-02-04', 3)`)
	e.waitConverged(20*time.Second, "late", "m_2026_01", "m_2026_02")
	waitFor(t, 20*time.Second, func() string {
		if s := al.find("other_2026_03"); s == "" {
			return "no alert names public.other_2026_03"
		}
		return ""
	})
}

// alerts records the alerts raised.
type alerts struct {
	mu  sync.Mutex
	all []Alert
}

func (a *alerts) Alert(al Alert) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, al)
}

// find returns the first alert whose text holds s, as text, or "".
func (a *alerts) find(s string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, al := range a.all {
		if text := string(al.Kind) + " " + al.Summary + " " + al.Body; strings.Contains(text, s) {
			return text
		}
	}
	return ""
}

// TestCopyBuildsIndexesAfterTheLoad: a truncate-mode copy drops a slave
// table's indexes and the constraints they back, loads the rows and builds
// them again, exactly as they were (names, uniqueness, deferrability,
// partial and expression indexes, an exclusion constraint); a table that a
// foreign key refers to keeps its indexes through the load.
func TestCopyBuildsIndexesAfterTheLoad(t *testing.T) {
	e := newEnv(t, setup{})
	const ddl = `CREATE TABLE ix (id int, u int, d int, r int4range, v text,
  CONSTRAINT ix_pkey PRIMARY KEY (id), CONSTRAINT ix_u UNIQUE (u), CONSTRAINT ix_d UNIQUE (d) DEFERRABLE INITIALLY DEFERRED,
  CONSTRAINT ix_r EXCLUDE USING gist (r WITH &&));
CREATE INDEX ix_partial ON ix (v) WHERE v <> 'x';
CREATE INDEX ix_expr ON ix (lower(v) text_pattern_ops, u DESC NULLS LAST);
CREATE TABLE ref (id int PRIMARY KEY, v text)`
	for _, db := range append([]*sql.DB{e.master}, e.slaves...) {
		e.exec(db, ddl)
	}
	e.exec(e.slaves[0], `CREATE TABLE child (id int PRIMARY KEY, ref int REFERENCES ref); INSERT INTO ix VALUES (-1, -1, -1, '[-10,-9)', 'stale')`)
	e.exec(e.master, `INSERT INTO ix SELECT g, g, g, int4range(g * 10, g * 10 + 5), 'v' || g FROM generate_series(1, 2000) g;
INSERT INTO ref SELECT g, 'r' || g FROM generate_series(1, 100) g`)
	const defs = `SELECT string_agg(x, E'\n' ORDER BY x) FROM (
  SELECT pg_get_indexdef(indexrelid) AS x FROM pg_index WHERE indrelid IN ('ix'::regclass, 'ref'::regclass)
  UNION ALL SELECT conname || ' ' || pg_get_constraintdef(oid) || ' ' || condeferrable || condeferred FROM pg_constraint
   WHERE conrelid IN ('ix'::regclass, 'ref'::regclass)) s`
	const oids = `SELECT string_agg(indexrelid::regclass || '=' || indexrelid::oid, ' ' ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = $1::regclass`
	before := queryString(t, e.slaves[0], defs)
	ixBefore, refBefore := queryString(t, e.slaves[0], oids, "ix"), queryString(t, e.slaves[0], oids, "ref")
	e.initAgain(e.copyOpts(CopyTruncate))
	e.start(nil)
	e.waitTableState(0, "public.ix", TableOK)
	e.waitTableState(0, "public.ref", TableOK)
	e.waitConverged(20*time.Second, "ix", "ref")
	if after := queryString(t, e.slaves[0], defs); after != before {
		t.Errorf("indexes and constraints after the copy:\n%s\nbefore:\n%s", after, before)
	}
	if after := queryString(t, e.slaves[0], oids, "ix"); after == ixBefore {
		t.Errorf("ix's indexes were not built after the load: %s", after)
	}
	if after := queryString(t, e.slaves[0], oids, "ref"); after != refBefore {
		t.Errorf("ref, which a foreign key refers to, had its indexes rebuilt: %s, before %s", after, refBefore)
	}
	// The rebuilt constraints hold.
	if _, err := e.slaves[0].Exec(`INSERT INTO ix VALUES (5000, 1, 5000, '[0,1)', 'dup u')`); err == nil {
		t.Error("a duplicate of the unique u was accepted after the rebuild")
	}
}

// TestNextFetch: the copy's fetches start at one row, grow at most
// fourfold, hold about copyFetchBytes at the longest line seen, and never
// more than copyFetch rows.
func TestNextFetch(t *testing.T) {
	tests := []struct{ prev, longest, want int }{
		{1, 100, 4},
		{4, 100, 16},
		{4096, 100, copyFetch},
		{copyFetch, 100, copyFetch},
		{copyFetch, 10000, copyFetchBytes / 10000},
		{1, 100 << 20, 1},                  // a 100 MB value: one row at a time
		{copyFetch, 100 << 20, 1},          // even after small rows
		{1, 0, 4},                          // empty lines so far
		{16, copyFetchBytes / 8, 8},        // eight such lines fill a fetch
		{2, copyFetchBytes / 1000, 8},      // growth bounded
		{copyFetch, copyFetchBytes + 1, 1}, // a line over the budget
	}
	for _, tt := range tests {
		if got := nextFetch(tt.prev, tt.longest); got != tt.want {
			t.Errorf("nextFetch(%d, %d) = %d, want %d", tt.prev, tt.longest, got, tt.want)
		}
	}
}
