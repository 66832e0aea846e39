package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tablesJSON is the tables part of 'goreplica status --json'.
type tablesJSON struct {
	Slaves []struct {
		Name   string `json:"name"`
		Tables []struct {
			Name       string `json:"name"`
			State      string `json:"state"`
			Mode       string `json:"mode"`
			RowsCopied int64  `json:"rows_copied"`
			RowsTotal  int64  `json:"rows_total"`
			Error      string `json:"error"`
		} `json:"tables"`
	} `json:"slaves"`
}

func tableStates(t *testing.T, cfg string) (tablesJSON, string) {
	t.Helper()
	r := statusRun(t, nil, "status", "--json", "-c", cfg)
	var st tablesJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("decode status --json: %v\n%s", err, r)
	}
	return st, r.stdout
}

// liveWriter inserts, updates, deletes and moves keys of acc until stopped.
func liveWriter(ctx context.Context, t *testing.T, d database, maxID int) (stop func() int64) {
	var n atomic.Int64
	done := make(chan error, 1)
	quit := make(chan struct{})
	go func() {
		rnd := rand.New(rand.NewPCG(3, 4))
		next := maxID + 1
		for {
			select {
			case <-quit:
				done <- nil
				return
			default:
			}
			id := 1 + rnd.IntN(next)
			var err error
			switch n.Load() % 4 {
			case 0:
				_, err = d.db.ExecContext(ctx, `INSERT INTO acc VALUES ($1, 1, 0, 'new')`, next)
				next++
			case 1:
				_, err = d.db.ExecContext(ctx, `UPDATE acc SET balance = balance + 1, note = note || '+' WHERE id = $1`, id)
			case 2:
				_, err = d.db.ExecContext(ctx, `DELETE FROM acc WHERE id = $1`, id)
			case 3:
				_, err = d.db.ExecContext(ctx, `UPDATE acc SET id = $2 WHERE id = $1`, id, next)
				next++
			}
			if err != nil {
				done <- err
				return
			}
			n.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	return func() int64 {
		close(quit)
		if err := <-done; err != nil {
			t.Fatalf("writer: %v", err)
		}
		return n.Load()
	}
}

// TestStartReplicatingALiveDatabase drives the initial copy as a user
// does: a slave with an empty database, init, run, a writer that never
// stops, a daemon killed with SIGKILL in the middle of the copy and
// started again, wait's exit codes (a timeout, a table whose copy fails,
// success), add and remove.
func TestStartReplicatingALiveDatabase(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	ms, ss := servers(t)
	master, slave := newDB(t, ms, "live_master"), newDB(t, ss, "live_slave")
	const rows = 20000
	execAll(t, fmt.Sprintf(`CREATE TABLE acc (id int PRIMARY KEY, branch int NOT NULL DEFAULT 1, balance int NOT NULL, note text);
INSERT INTO acc SELECT g, g %% 10, g, 'note ' || g FROM generate_series(1, %d) g;
CREATE TABLE side (id int PRIMARY KEY, v text)`, rows), master)
	cfg := writeConfig(t, configFile{master: node{name: "paris", dsn: master.dsn()}, slaves: []node{{name: "lyon", dsn: slave.dsn()}}, copy: "truncate"})

	r := mustRun(t, nil, "init", "-c", cfg)
	for _, want := range []string{`created on slave lyon: "public"."acc"`, "slave lyon: public.acc: copied online by the daemon, copy mode truncate"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("init's output lacks %q\n%s", want, r)
		}
	}
	stop := liveWriter(ctx, t, master, rows)

	// The copy blocks on a lock the test holds on the slave's table.
	lock, err := slave.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.ExecContext(ctx, `LOCK TABLE acc IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	waitFor(ctx, t, "the copy waiting for the slave's table", func(ctx context.Context) (bool, string) {
		var n int
		err := slave.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE relation = 'acc'::regclass AND NOT granted`).Scan(&n)
		return err == nil && n > 0, fmt.Sprint(n, err)
	})
	if r := goreplica(t, nil, "wait", "--timeout", "1s", "-c", cfg); r.code != 1 || !strings.Contains(r.stdout, "slave lyon: table public.acc: copying") {
		t.Errorf("wait during the copy: want exit 1 naming the table\n%s", r)
	}
	st, out := tableStates(t, cfg)
	if len(st.Slaves) != 1 || len(st.Slaves[0].Tables) != 2 || st.Slaves[0].Tables[0].Name != "public.acc" || st.Slaves[0].Tables[0].State != "copying" {
		t.Errorf("status during the copy:\n%s", out)
	}
	d.kill()
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	execAll(t, `INSERT INTO side VALUES (1, 'while the daemon was dead')`, master)

	startDaemon(t, cfg)
	if r := goreplica(t, nil, "wait", "--timeout", "90s", "-c", cfg); r.code != 0 {
		t.Fatalf("wait: want exit 0\n%s", r)
	}
	if n := stop(); n < 20 {
		t.Errorf("only %d writes during the copy", n)
	}
	waitConverged(ctx, t, master, []database{slave}, "acc", "side")
	st, out = tableStates(t, cfg)
	if a := st.Slaves[0].Tables[0]; a.State != "ok" || a.Mode != "truncate" || a.RowsCopied < rows/2 || a.RowsTotal != a.RowsCopied {
		t.Errorf("status after the copy:\n%s", out)
	}

	// A table whose copy fails: wait names it and exits 1; remove ends it.
	execAll(t, `CREATE TABLE bad (id int PRIMARY KEY, v int); INSERT INTO bad VALUES (1, 5)`, master)
	execAll(t, `CREATE TABLE bad (id int PRIMARY KEY, v int CHECK (v < 0))`, slave)
	r = mustRun(t, nil, "add", "-c", cfg, "public.bad")
	if !strings.Contains(r.stdout, "capturing public.bad") {
		t.Errorf("add's output\n%s", r)
	}
	waitFor(ctx, t, "wait saying the copy of bad failed", func(context.Context) (bool, string) {
		r := goreplica(t, nil, "wait", "--timeout", "20s", "-c", cfg)
		return r.code == 1 && strings.Contains(r.stdout, "slave lyon: table public.bad: error:") && strings.Contains(r.stdout, "bad_v_check"), r.String()
	})
	r = mustRun(t, nil, "remove", "-c", cfg, "public.bad")
	if !strings.Contains(r.stdout, "no longer replicating public.bad") {
		t.Errorf("remove's output\n%s", r)
	}
	execAll(t, `UPDATE bad SET v = 6`, master)
	if r := goreplica(t, nil, "wait", "--timeout", "30s", "-c", cfg); r.code != 0 {
		t.Errorf("wait after remove: want exit 0\n%s", r)
	}
}
