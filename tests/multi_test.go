package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// twoSites makes two databases that both write, paris and lyon, and the
// configurations of both directions (paris -> lyon, lyon -> paris) with
// extra appended to each; init runs for both.
func twoSites(t *testing.T, schema, extra string) (paris, lyon database, a, b string) {
	t.Helper()
	_, ss := servers(t)
	paris, lyon = newDB(t, ss, "paris"), newDB(t, ss, "lyon")
	execAll(t, schema, paris, lyon)
	a = writeFile(t, "paris.toml", configFile{master: node{name: "paris", dsn: paris.dsn()},
		slaves: []node{{name: "lyon", dsn: lyon.dsn()}}}.toml()+extra)
	b = writeFile(t, "lyon.toml", configFile{master: node{name: "lyon", dsn: lyon.dsn()},
		slaves: []node{{name: "paris", dsn: paris.dsn()}}}.toml()+extra)
	mustRun(t, nil, "init", "-c", a)
	mustRun(t, nil, "init", "-c", b)
	return paris, lyon, a, b
}

// load writes on every site until ctx ends, each site its own keys (id %
// len(sites) = its index): inserts, updates and deletes, a few per
// transaction.
func load(ctx context.Context, t *testing.T, sites ...database) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i, s := range sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				k := (n*7919%500)*len(sites) + i
				_, err := s.db.ExecContext(ctx, `WITH i AS (INSERT INTO t VALUES ($1, $2, 0) ON CONFLICT (id) DO UPDATE SET n = t.n + 1 RETURNING id)
					UPDATE t SET n = t.n + 1 WHERE id = $3`, k, s.name, (k+len(sites)*3)%(500*len(sites)))
				if err == nil && n%5 == 4 {
					_, err = s.db.ExecContext(ctx, `DELETE FROM t WHERE id = $1`, k)
				}
				if err != nil && ctx.Err() == nil {
					t.Errorf("writer on %s: %v", s.name, err)
					return
				}
			}
		}()
	}
	return &wg
}

// conflictsJSON runs 'goreplica conflicts --json' and returns its records.
func conflictsJSON(t *testing.T, cfg string) []map[string]any {
	t.Helper()
	r := mustRun(t, nil, "conflicts", "-c", cfg, "--json")
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("conflicts --json: %v\n%s", err, r)
	}
	return out
}

// Two sites that both write, each replicating to the other. One process
// runs both configurations (run -c a -c b); then two daemons, one per
// direction, under a write load on both sites, and one of them is killed
// (SIGKILL) mid-load and started again: both sites converge row by row,
// both logs drain to empty (nothing circulates), and nothing was applied
// twice (a change applied again would be an insert_exists or a
// delete_missing conflict, recorded with the skip policy).
func TestTwoSitesUnderLoadWithKilledDaemon(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	paris, lyon, a, b := twoSites(t, `CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL)`, `on_conflict = "skip"`+"\n")

	both := startRun(t, nil, "run", "-c", a, "-c", b)
	execAll(t, `INSERT INTO t VALUES (-1, 'paris', 0)`, paris)
	execAll(t, `INSERT INTO t VALUES (-2, 'lyon', 0)`, lyon)
	waitConverged(ctx, t, paris, []database{lyon}, "t")
	if n := queryInt(t, paris, `SELECT count(*) FROM t`); n != 2 {
		t.Fatalf("paris holds %d rows, want 2", n)
	}
	both.stop()

	da, db := startDaemon(t, a), startDaemon(t, b)
	lctx, stopLoad := context.WithCancel(ctx)
	writers := load(lctx, t, paris, lyon)
	time.Sleep(3 * time.Second) // the load runs a while before the kill (pacing, not waiting for a condition)
	da.kill()
	time.Sleep(2 * time.Second) // lyon keeps writing while paris's daemon is down
	da = startDaemon(t, a)
	time.Sleep(3 * time.Second)
	stopLoad()
	writers.Wait()

	waitConverged(ctx, t, paris, []database{lyon}, "t")
	waitFor(ctx, t, "both logs empty", func(context.Context) (bool, string) {
		np, nl := queryInt(t, paris, `SELECT count(*) FROM replica.replica_log`), queryInt(t, lyon, `SELECT count(*) FROM replica.replica_log`)
		return np == 0 && nl == 0, fmt.Sprintf("paris log %d rows, lyon log %d rows", np, nl)
	})
	for _, cfg := range []string{a, b} {
		if got := conflictsJSON(t, cfg); len(got) != 0 {
			t.Errorf("conflicts recorded with %s: %v", cfg, got)
		}
	}
	if n := queryInt(t, lyon, `SELECT count(*) FROM t WHERE v LIKE 'paris%'`); n == 0 {
		t.Error("no row written at paris reached lyon")
	}
	da.requireAlive()
	db.requireAlive()
}

// A real conflict: both sites insert the same keys within the same second,
// under on_conflict = "skip". Each site keeps its own rows, every conflict
// is recorded on the slave and listed by 'goreplica conflicts', and the
// conflict mail goes out once per slave for the throttle window.
func TestConflictsRecordedAndMailedOncePerWindow(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	mb := newMailbox(t)
	paris, lyon, a, b := twoSites(t, `CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL)`,
		"on_conflict = \"stop\"\n[replicate.on_conflict_tables]\n\"public.t\" = \"skip\"\n"+mb.section()+"min_interval = \"1h\"\n")
	for i := 1; i <= 3; i++ {
		execAll(t, fmt.Sprintf(`INSERT INTO t VALUES (%d, 'paris', 0)`, i), paris)
		execAll(t, fmt.Sprintf(`INSERT INTO t VALUES (%d, 'lyon', 0)`, i), lyon)
	}
	d := startRun(t, nil, "run", "-c", a, "-c", b)
	for _, cfg := range []string{a, b} {
		waitFor(ctx, t, "three conflicts recorded", func(context.Context) (bool, string) {
			got := conflictsJSON(t, cfg)
			return len(got) == 3, fmt.Sprint(got)
		})
	}
	got := conflictsJSON(t, a)
	if got[0]["slave"] != "lyon" || got[0]["master"] != "paris" || got[0]["policy"] != "skip" || got[0]["kind"] != "insert_exists" ||
		got[0]["table"] != "public.t" || got[0]["operation"] != "insert" || !strings.Contains(fmt.Sprint(got[0]["statement"]), "VALUES ('1', 'paris', '0')") {
		t.Errorf("first conflict on lyon: %v", got[0])
	}
	if n := queryInt(t, lyon, `SELECT count(*) FROM t WHERE v = 'lyon'`); n != 3 {
		t.Errorf("lyon keeps %d of its own 3 rows under skip", n)
	}
	r := mustRun(t, nil, "conflicts", "-c", b, "--slave", "paris")
	if !strings.Contains(r.stdout, "insert_exists") || !strings.Contains(r.stdout, "skip") || strings.Count(r.stdout, "\n") != 4 {
		t.Errorf("conflicts --slave paris:\n%s", r)
	}
	for _, slave := range []string{"lyon", "paris"} {
		mb.waitMail(ctx, t, "conflict on "+slave)
	}
	// The other conflicts fall in the same window: held back, counted in
	// the next mail (an hour later).
	time.Sleep(2 * time.Second) // give held-back mails a chance to (wrongly) go out
	n := 0
	for _, m := range mb.mails() {
		if strings.Contains(m, "conflict on") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d conflict mails, want one per slave in the throttle window", n)
	}
	d.requireAlive()
}

// A slave stopped on a conflict (policy stop) resumes after 'goreplica
// skip', which refuses another transaction than the one it stopped on.
func TestSkipVerbResumesAStoppedSlave(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	paris, lyon, a, _ := twoSites(t, `CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)`, "")
	execAll(t, `INSERT INTO t VALUES (1, 'lyon''s own')`, lyon)
	d := startDaemon(t, a)
	execAll(t, `INSERT INTO t VALUES (1, 'paris')`, paris)
	execAll(t, `INSERT INTO t VALUES (2, 'after')`, paris)
	var txid string
	waitFor(ctx, t, "lyon stopped on a conflict", func(context.Context) (bool, string) {
		st, r := status(t, a)
		if len(st.Slaves) == 1 && st.Slaves[0].State == "conflict" {
			recs := conflictsJSON(t, a)
			if len(recs) == 1 {
				txid = fmt.Sprint(recs[0]["txid"])
				return true, ""
			}
		}
		return false, r.String()
	})
	if r := goreplica(t, nil, "skip", "-c", a, "--slave", "lyon", "--txid", "1"); r.code == 0 || !strings.Contains(r.stderr, "stopped on transaction "+txid) {
		t.Errorf("skip of the wrong transaction:\n%s", r)
	}
	if r := goreplica(t, nil, "skip", "-c", a); r.code != 2 || !strings.Contains(r.stderr, "--slave NAME is required") {
		t.Errorf("skip without --slave:\n%s", r)
	}
	r := mustRun(t, nil, "skip", "-c", a, "--slave", "lyon", "--txid", txid)
	if !strings.Contains(r.stdout, "transaction "+txid+" of master paris") {
		t.Errorf("skip says:\n%s", r)
	}
	waitAllCaughtUp(ctx, t, a, 1)
	if got := queryInt(t, lyon, `SELECT count(*) FROM t WHERE (id, v) IN ((1, 'lyon''s own'), (2, 'after'))`); got != 2 {
		t.Errorf("lyon holds %d of the rows it should", got)
	}
	recs := conflictsJSON(t, a)
	if len(recs) != 2 || recs[1]["policy"] != "skip_transaction" || recs[1]["by"] == "" {
		t.Errorf("conflicts after the skip: %v", recs)
	}
	d.requireAlive()
}

// queryInt runs a query that returns one integer.
func queryInt(t *testing.T, d database, q string) int64 {
	t.Helper()
	var n int64
	if err := d.db.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s on %s: %v", q, d.name, err)
	}
	return n
}

// Every verb but run reads one configuration: a second -c is refused with
// the reason, never silently dropped.
func TestOnlyRunTakesSeveralConfigs(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"status", "-c", "a.toml", "-c", "b.toml"}, {"-c", "a.toml", "-c", "b.toml", "init"},
		{"skip", "-c", "a.toml", "-c", "b.toml", "--slave", "x"}, {"service", "install", "-c", "a.toml", "-c", "b.toml"}} {
		r := goreplica(t, nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "-c given more than once: this verb reads one configuration") {
			t.Errorf("want a usage error naming the second -c\n%s", r)
		}
	}
}
