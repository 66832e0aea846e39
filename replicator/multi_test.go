package replicator

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// site is one database of a setup where several nodes write.
type site struct {
	name string
	dsn  string
	db   *sql.DB
}

// newSites creates one database per name on the shared slave server (it
// allows prepared transactions, which every node needs as a slave) and
// runs schema in each.
func newSites(t *testing.T, schema string, names ...string) []site {
	t.Helper()
	_, s := servers(t)
	var out []site
	for _, n := range names {
		db, dsn := newDB(t, s, "site_"+n)
		if _, err := db.Exec(schema); err != nil {
			t.Fatal(err)
		}
		out = append(out, site{name: n, dsn: dsn, db: db})
	}
	return out
}

// link installs replication from master to slaves (one configuration) and
// returns its env; mod adjusts the options before Init.
func link(t *testing.T, master site, slaves []site, mod func(*Options)) *env {
	t.Helper()
	e := &env{t: t, logs: &strings.Builder{}, master: master.db}
	e.opts = Options{
		Master:        Node{Name: master.name, DSN: master.dsn},
		Tables:        []string{"public.*"},
		PollInterval:  100 * time.Millisecond,
		PurgeInterval: 200 * time.Millisecond,
		MaxBackoff:    300 * time.Millisecond,
	}
	for _, s := range slaves {
		e.slaves = append(e.slaves, s.db)
		e.opts.Slaves = append(e.opts.Slaves, Node{Name: s.name, DSN: s.dsn, TwoPhase: true})
	}
	if mod != nil {
		mod(&e.opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := Init(ctx, e.opts, triggerSQLStr); err != nil {
		t.Fatalf("init %s: %v", master.name, err)
	}
	return e
}

// waitSame waits until table holds the same rows in every site.
func waitSame(t *testing.T, timeout time.Duration, table string, sites ...site) {
	t.Helper()
	waitFor(t, timeout, func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var sums []string
		for _, s := range sites {
			sum, err := checksum(ctx, s.db, table)
			if err != nil {
				return err.Error()
			}
			sums = append(sums, s.name+": "+sum)
		}
		for _, x := range sums[1:] {
			if x[strings.Index(x, ":"):] != sums[0][strings.Index(sums[0], ":"):] {
				return strings.Join(sums, "; ")
			}
		}
		return ""
	})
}

// waitDrained waits until the change log of every site is empty: every
// change reached every node that wants it, and nothing circulates.
func waitDrained(t *testing.T, timeout time.Duration, sites ...site) {
	t.Helper()
	waitFor(t, timeout, func() string {
		var left []string
		for _, s := range sites {
			if n := queryString(t, s.db, `SELECT count(*) FROM replica.replica_log`); n != "0" {
				left = append(left, fmt.Sprintf("%s: %s log rows (%s)", s.name, n,
					queryString(t, s.db, `SELECT string_agg(coalesce(origin, 'local') || '/' || coalesce(via, '-') || ' ' || n, ', ')
					  FROM (SELECT origin, via, count(*) n FROM replica.replica_log GROUP BY 1, 2) x`)))
			}
		}
		return strings.Join(left, "; ")
	})
}

// noConflicts fails when any site recorded a conflict.
func noConflicts(t *testing.T, sites ...site) {
	t.Helper()
	for _, s := range sites {
		if n := queryString(t, s.db, `SELECT count(*) FROM replica.conflicts`); n != "0" {
			t.Errorf("%s recorded %s conflicts: %s", s.name, n, queryString(t, s.db, `SELECT string_agg(kind || ' ' || statement, '; ') FROM replica.conflicts`))
		}
	}
}

// writeLoad runs a writer on each site until ctx ends: inserts, updates and
// deletes of keys that only that site writes (id % len(sites) = its index),
// one to three statements per transaction.
func writeLoad(ctx context.Context, t *testing.T, sites ...site) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i, s := range sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(i), 7))
			id := func() int { return rnd.IntN(300)*len(sites) + i }
			for ctx.Err() == nil {
				tx, err := s.db.BeginTx(ctx, nil)
				if err != nil {
					return
				}
				for range 1 + rnd.IntN(3) {
					k := id()
					switch rnd.IntN(4) {
					case 0, 1:
						_, err = tx.Exec(`INSERT INTO t VALUES ($1, $2, 0) ON CONFLICT (id) DO UPDATE SET n = t.n + 1`, k, s.name)
					case 2:
						_, err = tx.Exec(`UPDATE t SET n = n + 1, v = v || '.' WHERE id = $1`, k)
					default:
						_, err = tx.Exec(`DELETE FROM t WHERE id = $1`, k)
					}
					if err != nil {
						break
					}
				}
				if err != nil {
					_ = tx.Rollback()
					if ctx.Err() == nil {
						t.Errorf("writer on %s: %v", s.name, err)
					}
					return
				}
				if err := tx.Commit(); err != nil && ctx.Err() == nil {
					t.Errorf("writer on %s: %v", s.name, err)
					return
				}
			}
		}()
	}
	return &wg
}

const multiSchema = `CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL)`

// Two sites that both write, each the master of the other (two
// configurations run at once): every change reaches the other site and
// never comes back. Under a load on partitioned keys both converge row by
// row, no conflict is met (a change that came back would be one), and the
// logs drain to empty.
func TestTwoSitesWriteWithoutLoops(t *testing.T) {
	t.Parallel()
	s := newSites(t, multiSchema, "paris", "lyon")
	a := link(t, s[0], s[1:], nil)
	b := link(t, s[1], s[:1], nil)
	a.start(nil)
	b.start(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	writeLoad(ctx, t, s...).Wait()
	waitSame(t, 60*time.Second, "t", s...)
	waitDrained(t, 60*time.Second, s...)
	noConflicts(t, s...)
	if n := queryString(t, s[0].db, `SELECT count(*) FROM t WHERE v = 'lyon'`); n == "0" {
		t.Error("no row written at lyon reached paris")
	}
	a.waitClean(0)
	b.waitClean(0)
}

// A star: a central office and two sites, each site feeding the central and
// the central feeding each site, with the default forwarding. A row
// written at site 1 reaches site 2 through the central, and nothing comes
// back to where it was made or received from.
func TestStarForwardsBetweenSites(t *testing.T) {
	t.Parallel()
	s := newSites(t, multiSchema, "central", "site1", "site2")
	central := link(t, s[0], s[1:], nil)
	site1 := link(t, s[1], s[:1], nil)
	site2 := link(t, s[2], s[:1], nil)
	for _, e := range []*env{central, site1, site2} {
		e.start(nil)
	}
	s[1].db.Exec(`INSERT INTO t VALUES (1, 'site1', 0)`)
	s[2].db.Exec(`INSERT INTO t VALUES (2, 'site2', 0)`)
	s[0].db.Exec(`INSERT INTO t VALUES (3, 'central', 0)`)
	waitSame(t, 30*time.Second, "t", s...)
	if got := queryString(t, s[2].db, `SELECT v FROM t WHERE id = 1`); got != "site1" {
		t.Errorf("site2 holds %q for the row written at site1", got)
	}
	s[1].db.Exec(`UPDATE t SET n = 5 WHERE id = 2`)
	s[2].db.Exec(`DELETE FROM t WHERE id = 1`)
	waitSame(t, 30*time.Second, "t", s...)
	waitDrained(t, 60*time.Second, s...)
	noConflicts(t, s...)
}

// A full mesh: every node feeds every other itself, with forward = false,
// so that no change arrives twice.
func TestFullMeshWithoutForwarding(t *testing.T) {
	t.Parallel()
	s := newSites(t, multiSchema, "a", "b", "c")
	noForward := func(o *Options) {
		for i := range o.Slaves {
			o.Slaves[i].NoForward = true
		}
	}
	for i := range s {
		var others []site
		for j := range s {
			if j != i {
				others = append(others, s[j])
			}
		}
		link(t, s[i], others, noForward).start(nil)
	}
	for i, x := range s {
		x.db.Exec(`INSERT INTO t VALUES ($1, $2, 0)`, i, x.name)
	}
	waitSame(t, 30*time.Second, "t", s...)
	waitDrained(t, 60*time.Second, s...)
	noConflicts(t, s...)
}

// recorder is an Alerter that keeps the alerts.
type recorder struct {
	mu     sync.Mutex
	alerts []Alert
}

func (r *recorder) Alert(a Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alerts = append(r.alerts, a)
}

func (r *recorder) conflicts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range r.alerts {
		if a.Kind == AlertConflict {
			out = append(out, a.Summary)
		}
	}
	return out
}

// A real conflict between two sites: both insert the same key in the same
// second (the most common one when keys are not partitioned), and paris
// updates another row that lyon deleted meanwhile. paris's daemon applies
// to lyon first, then lyon's to paris, each with the policy under test.
func TestConflictPolicies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy string
		// what each site holds for row 100 at the end, and for row 7
		paris100, lyon100 string
		paris7, lyon7     string
		recorded          string // on lyon, then on paris
	}{
		// Each site keeps its own row 100; lyon's DELETE of row 7 reaches
		// paris, paris's UPDATE of it is dropped at lyon.
		{PolicySkip, "paris", "lyon", "gone", "gone", "insert_exists skip, update_missing skip | insert_exists skip"},
		// lyon takes paris's row 100, and paris keeps it (its resync reads
		// lyon's current row, now paris's). Row 7: lyon gets back the row
		// paris still had when the conflict was resolved, while lyon's
		// DELETE, no conflict at paris, removes it there: an update
		// crossing a delete leaves each site with the other's decision,
		// recorded on lyon.
		{PolicyResync, "paris", "paris", "gone", "paris", "insert_exists resync, update_missing resync | insert_exists resync"},
		// Both stop at their first conflict: nothing of either batch
		// applies, each conflict is recorded once (the workers retry).
		{PolicyStop, "paris", "lyon", "paris", "gone", "insert_exists stop | insert_exists stop"},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			t.Parallel()
			s := newSites(t, multiSchema+`; INSERT INTO t VALUES (7, 'both', 0)`, "paris", "lyon")
			paris, lyon := s[0], s[1]
			policy := func(o *Options) {
				o.OnConflict = PolicyStop
				o.OnConflictTables = map[string]string{"public.*": tt.policy}
			}
			a := link(t, paris, s[1:], policy)
			b := link(t, lyon, s[:1], policy)
			ra, rb := &recorder{}, &recorder{}
			a.opts.Alerter, b.opts.Alerter = ra, rb
			a.exec(paris.db, `INSERT INTO t VALUES (100, 'paris', 0)`)
			a.exec(lyon.db, `INSERT INTO t VALUES (100, 'lyon', 0)`)
			a.exec(lyon.db, `DELETE FROM t WHERE id = 7`)
			a.exec(paris.db, `UPDATE t SET n = 1, v = 'paris' WHERE id = 7`)
			alerts := 2
			a.start(nil)
			if tt.policy == PolicyStop {
				alerts = 1 // the stop, not each retry
				a.waitState(0, StateConflict)
				b.start(nil)
				b.waitState(0, StateConflict)
				time.Sleep(time.Second) // a few retries (pacing, not waiting for a condition)
			} else {
				waitFor(t, 30*time.Second, func() string {
					return pendingOf(t, a)
				})
				b.start(nil)
				waitFor(t, 30*time.Second, func() string {
					return pendingOf(t, b)
				})
			}
			row := func(db *sql.DB, id int) string {
				v := queryString(t, db, `SELECT (SELECT v FROM t WHERE id = $1)`, id)
				if v == "" {
					return "gone"
				}
				return v
			}
			got := fmt.Sprintf("%s %s %s %s", row(paris.db, 100), row(lyon.db, 100), row(paris.db, 7), row(lyon.db, 7))
			want := fmt.Sprintf("%s %s %s %s", tt.paris100, tt.lyon100, tt.paris7, tt.lyon7)
			if got != want {
				t.Errorf("rows 100 and 7 at paris and lyon: %s, want %s", got, want)
			}
			rec := func(db *sql.DB) string {
				return queryString(t, db, `SELECT string_agg(kind || ' ' || policy, ', ' ORDER BY id) FROM replica.conflicts`)
			}
			if got := rec(lyon.db) + " | " + rec(paris.db); got != tt.recorded {
				t.Errorf("replica.conflicts on lyon | paris: %s, want %s", got, tt.recorded)
			}
			if got := queryString(t, lyon.db, `SELECT master_name || ' ' || tbl || ' ' || key || ' ' || operation || ' ' || (txid::text <> '') || ' ' || (statement LIKE 'INSERT INTO public.t %')
			  FROM replica.conflicts ORDER BY id LIMIT 1`); got != "paris public.t ('100', 'paris', '0') insert true true" {
				t.Errorf("lyon's first conflict is recorded as %q", got)
			}
			if n := len(ra.conflicts()); n != alerts {
				t.Errorf("paris's daemon raised %d conflict alerts, want %d: %v", n, alerts, ra.conflicts())
			}
			if tt.policy != PolicyStop {
				a.waitClean(0)
				b.waitClean(0)
			}
		})
	}
}

// pendingOf returns "" once env e's slave has applied everything and runs.
func pendingOf(t *testing.T, e *env) string {
	st, err := GetStatus(context.Background(), e.opts)
	if err != nil {
		return err.Error()
	}
	if s := st.Slaves[0]; s.State != StateRunning || s.PendingEvents != 0 {
		return fmt.Sprintf("%+v", s)
	}
	return ""
}

// 'goreplica skip' resumes a slave stopped on a conflict by leaving out that
// one source transaction, whether the daemon runs or not, and records it;
// it refuses a transaction the slave did not stop on.
func TestSkipResumesStoppedSlave(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := Skip(ctx, e.opts, "lyon", "", "test"); err == nil || !strings.Contains(err.Error(), "not stopped on a conflict") {
		t.Errorf("skip of a slave that never stopped: %v", err)
	}
	e.exec(e.slaves[0], `INSERT INTO t VALUES (7, 'the slave''s own')`)
	run := e.start(nil)
	e.tx(e.master, `INSERT INTO t VALUES (6, 'with 7')`, `INSERT INTO t VALUES (7, 'conflict')`)
	e.exec(e.master, `INSERT INTO t VALUES (8, 'after')`)
	msg := e.waitState(0, StateConflict).LastError
	stopped := queryString(t, e.slaves[0], `SELECT txid::text FROM replica.conflicts WHERE policy = 'stop'`)
	if !strings.Contains(msg, "txid "+stopped) {
		t.Fatalf("the stop recorded transaction %s, the error says %s", stopped, msg)
	}
	// The daemon stopped: skip it all the same, and start again.
	run.stop()
	if _, err := Skip(ctx, e.opts, "lyon", "12345", "test"); err == nil || !strings.Contains(err.Error(), "stopped on transaction "+stopped+" (table public.t, insert_exists), not on 12345") {
		t.Errorf("skip of another transaction: %v", err)
	}
	sk, err := Skip(ctx, e.opts, "lyon", stopped, "alice@host")
	if err != nil {
		t.Fatal(err)
	}
	if sk.TxID != stopped || sk.Table != "public.t" {
		t.Errorf("skipped %+v", sk)
	}
	e.start(nil)
	e.waitState(0, StateRunning)
	waitFor(t, 30*time.Second, func() string {
		if got := queryString(t, e.slaves[0], `SELECT string_agg(id || ' ' || v, ', ' ORDER BY id) FROM t`); got != "7 the slave's own, 8 after" {
			return "slave holds " + got
		}
		return ""
	})
	// Again with the daemon running: it takes the skip at its next retry.
	e.exec(e.slaves[0], `INSERT INTO t VALUES (9, 'the slave''s own')`)
	e.exec(e.master, `INSERT INTO t VALUES (9, 'conflict')`)
	e.exec(e.master, `INSERT INTO t VALUES (10, 'after')`)
	e.waitState(0, StateConflict)
	if _, err := Skip(ctx, e.opts, "lyon", "", "bob@host"); err != nil {
		t.Fatal(err)
	}
	e.waitState(0, StateRunning)
	waitFor(t, 30*time.Second, func() string {
		if got := queryString(t, e.slaves[0], `SELECT string_agg(id::text, ',' ORDER BY id) FROM t`); got != "7,8,9,10" {
			return "slave holds " + got
		}
		return ""
	})
	if got := queryString(t, e.slaves[0], `SELECT string_agg(policy || ' ' || operation || ' ' || coalesce(by_whom, '-'), ', ' ORDER BY id) FROM replica.conflicts`); got != "stop insert -, skip_transaction transaction alice@host, stop insert -, skip_transaction transaction bob@host" {
		t.Errorf("replica.conflicts holds %s", got)
	}
	if _, err := Skip(ctx, e.opts, "lyon", "", "test"); err == nil {
		t.Error("a second skip was accepted")
	}
	recs, err := Conflicts(ctx, e.opts, "")
	if err != nil || len(recs) != 4 || recs[1].By != "alice@host" || recs[0].Kind != "insert_exists" {
		t.Errorf("Conflicts: %+v, %v", recs, err)
	}
}

// init warns when two sites that write share a sequence that would hand
// out the same ids, with the statements that fix it; once applied, the
// warning is gone.
func TestInitWarnsOfSharedSequences(t *testing.T) {
	t.Parallel()
	s := newSites(t, `CREATE TABLE t (id serial PRIMARY KEY, v text)`, "paris", "lyon")
	link(t, s[0], s[1:], nil)
	b := link(t, s[1], s[:1], nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Init(ctx, b.opts, triggerSQLStr)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(rep.Warnings, "\n")
	for _, want := range []string{"sequence public.t_id_seq hands out the same ids on master lyon (next 1, increment 1) and on slave paris",
		"on lyon ALTER SEQUENCE public.t_id_seq INCREMENT BY 10 RESTART WITH 11", "on paris ALTER SEQUENCE public.t_id_seq INCREMENT BY 10 RESTART WITH 12"} {
		if !strings.Contains(w, want) {
			t.Errorf("init's warnings lack %q:\n%s", want, w)
		}
	}
	b.exec(s[1].db, `ALTER SEQUENCE public.t_id_seq INCREMENT BY 10 RESTART WITH 11`)
	b.exec(s[0].db, `ALTER SEQUENCE public.t_id_seq INCREMENT BY 10 RESTART WITH 12`)
	if rep, err = Init(ctx, b.opts, triggerSQLStr); err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(rep.Warnings, "\n"); strings.Contains(w, "sequence") {
		t.Errorf("init still warns once the offsets differ:\n%s", w)
	}
}
