package replicator

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPickSubBatch(t *testing.T) {
	tx := func(lsn, txid uint64, events int64) txSummary {
		return txSummary{key: txKey{lsn, txid}, events: events, bytes: events * 100}
	}
	txs := []txSummary{tx(10, 5, 3), tx(10, 7, 3), tx(20, 2, 10), tx(30, 9, 1), tx(31, 1, 1)}
	tests := []struct {
		name      string
		cut       txKey
		maxEvents int64
		maxBytes  int64
		i, j      int
	}{
		{"from the start", txKey{}, 6, 1 << 20, 0, 2},
		{"a transaction larger than the bound goes alone", txKey{10, 7}, 6, 1 << 20, 2, 3},
		{"same position, later txid", txKey{10, 5}, 100, 1 << 20, 1, 5},
		{"bytes bound", txKey{}, 100, 650, 0, 2},
		{"past the last", txKey{31, 1}, 100, 1 << 20, 5, 5},
		{"between keys", txKey{25, 0}, 1, 1 << 20, 3, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, j := pickSubBatch(txs, tt.cut, tt.maxEvents, tt.maxBytes)
			if i != tt.i || j != tt.j {
				t.Fatalf("pickSubBatch = %d, %d; want %d, %d", i, j, tt.i, tt.j)
			}
		})
	}
}

func TestLSNText(t *testing.T) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		l, err := parseLSN(s)
		if err != nil || lsnText(l) != s {
			t.Errorf("parseLSN(%q) = %d, %v; back to %q", s, l, err, lsnText(l))
		}
	}
	if _, err := parseLSN("16B374D848"); err == nil {
		t.Error("an LSN without a slash was read")
	}
}

// backlog writes, while no daemon runs, many small transactions, updates
// of hot rows, a transaction larger than a sub-batch, and transactions that
// interleave: the shapes a bounded catch-up must keep whole and in order.
func (e *env) backlog(round int) {
	e.t.Helper()
	base := round * 10000
	for i := range 120 {
		e.exec(e.master, `INSERT INTO t VALUES ($1, 'small')`, base+i)
		e.exec(e.master, `UPDATE hot SET n = n + 1, v = $1 WHERE id = $2`, strconv.Itoa(base+i), i%3)
	}
	e.tx(e.master, fmt.Sprintf(`INSERT INTO t SELECT g, 'big' FROM generate_series(%d, %d) g`, base+1000, base+1099),
		`UPDATE hot SET n = n * 2`)
	e.exec(e.master, fmt.Sprintf(`DELETE FROM t WHERE id BETWEEN %d AND %d`, base, base+49))
}

// Invariant 13: a backlog is applied in bounded slave transactions of whole
// source transactions, in order.
func TestBacklogAppliedInSubBatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE hot (id int PRIMARY KEY, n bigint, v text);
		INSERT INTO hot VALUES (0, 0, ''), (1, 0, ''), (2, 0, '');`, batchEvents: 25})
	e.backlog(1)
	e.start(nil)
	e.waitConverged(60*time.Second, "t", "hot")
	// 120 * 2 small transactions of 1 row, one of 103, one of 50 rows:
	// about 242 / 25 + 2 sub-batches and more.
	b, err := strconv.Atoi(queryString(t, e.slaves[0], `SELECT batch FROM replica.position`))
	if err != nil || b < 10 {
		t.Errorf("the backlog was applied in %d batches (%v), want it cut into sub-batches of at most 25 events", b, err)
	}
	e.logMu.Lock()
	logs := e.logs.String()
	e.logMu.Unlock()
	if !strings.Contains(logs, "sub-batch applied") {
		t.Error("no sub-batch in the daemon's log")
	}
	// Found at start, the backlog is summarized at once, not first read
	// (and partly applied) as one batch that turns out too big.
	if strings.Contains(logs, "a backlog: applying it in sub-batches") {
		t.Error("the backlog found at start was first read as one batch and rolled back")
	}
	if hi := queryString(t, e.slaves[0], `SELECT coalesce(hi::text, '') FROM replica.position`); hi != "" {
		t.Errorf("a range is still under way after convergence: %s", hi)
	}
	e.waitState(0, StateRunning)
}

// Invariant 1: a crash at any step of any sub-batch loses and repeats
// nothing.
func TestCrashBetweenSubBatchesConvergesExactly(t *testing.T) {
	for _, step := range []string{"before-commit", "after-prepare", "after-ack", "after-commit"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE hot (id int PRIMARY KEY, n bigint, v text);
				INSERT INTO hot VALUES (0, 0, ''), (1, 0, ''), (2, 0, '');`, batchEvents: 25})
			e.backlog(1)
			for crash := range 3 {
				var calls atomic.Int64
				crashed := make(chan struct{})
				var once sync.Once
				r := e.start(func(slave, s string) error {
					// The third sub-batch of each run.
					if s != step || calls.Add(1) != 3 {
						return nil
					}
					var err error
					once.Do(func() { err = errCrash; close(crashed) })
					return err
				})
				select {
				case <-crashed:
				case <-time.After(30 * time.Second):
					t.Fatalf("run %d never reached step %s of its third sub-batch", crash, step)
				}
				r.stop()
				e.backlog(crash + 2) // more while the daemon is dead
			}
			e.start(nil)
			e.waitConverged(60*time.Second, "t", "hot")
			e.waitClean(0)
		})
	}
}

// A joined statement that conflicts in a sub-batch in the middle of a
// backlog (with the next sub-batch's events already asked of the master)
// stops the slave on that row, keeps the sub-batches before it, and the
// rest follows once the row is fixed.
func TestConflictInSubBatchNamesTheRow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`, batchEvents: 25})
	e.exec(e.master, `INSERT INTO t SELECT g, 'a' FROM generate_series(1, 300) g`)
	r := e.start(nil)
	e.waitConverged(30*time.Second, "t")
	r.stop()
	e.exec(e.slaves[0], `DELETE FROM t WHERE id = 150`)
	for i := range 100 {
		// Three rows a transaction: row 150 in the 50th, sub-batch 7 or so.
		e.exec(e.master, `UPDATE t SET v = 'b' || $1 WHERE id BETWEEN $2 AND $2 + 2`, strconv.Itoa(i), i*3+1)
	}
	e.start(nil)
	msg := e.waitState(0, StateConflict).LastError
	for _, want := range []string{"update_missing", "public.t", "id = '150'::integer"} {
		if !strings.Contains(msg, want) {
			t.Errorf("conflict error %q does not name %q", msg, want)
		}
	}
	if n := queryString(t, e.slaves[0], `SELECT count(*) FROM t WHERE v LIKE 'b%'`); n == "0" {
		t.Error("no sub-batch before the conflicting one was kept")
	}
	if n := queryString(t, e.slaves[0], `SELECT count(*) FROM t WHERE id > 150 AND v LIKE 'b%'`); n != "0" {
		t.Errorf("%s rows past the conflict were applied", n)
	}
	e.exec(e.slaves[0], `INSERT INTO t VALUES (150, 'a')`)
	e.waitConverged(30*time.Second, "t")
	e.waitClean(0)
}
