//go:build unix

package replicator

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Invariant 1 across a crash of the master: a slave never commits a change
// the master could still lose. The application commits with
// synchronous_commit = off and the master's WAL writer is stopped, so that
// only the daemon's flush before the slave's commit makes the change survive
// the crash; without it the slave would keep a row the master lost, and the
// master would reuse its transaction id for the next transaction, which the
// slave's position counts as applied and would skip.
func TestSlaveNeverAheadOfMasterCrash(t *testing.T) {
	t.Parallel()
	ms := ownServer(t, nil)
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`, masterServer: ms, slaves: 2,
		twoPhase: []bool{true, false}})
	e.start(nil)
	e.exec(e.master, `INSERT INTO t VALUES (1, 'synchronous')`)
	e.waitConverged(30*time.Second, "t")
	walWriter, err := strconv.Atoi(queryString(t, e.master, `SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'`))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(walWriter, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop the WAL writer: %v", err)
	}
	e.tx(e.master, `SET LOCAL synchronous_commit = off`, `INSERT INTO t VALUES (2, 'asynchronous')`)
	e.waitConverged(30*time.Second, "t")
	if err := ms.Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := ms.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.insertWhenUp(ctx, 3, "after the crash")
	e.waitConverged(60*time.Second, "t")
	if n := queryString(t, e.master, `SELECT count(*) FROM t`); n != "3" {
		t.Errorf("the master has %s rows after the crash, want 3: the slaves had row 2 before the master's WAL held it", n)
	}
}
