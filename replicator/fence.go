package replicator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Fences. Before a slave commits a batch, the master's WAL must be durable
// past the commit of every transaction the batch's snapshot counts as done.
// Each of them wrote its commit or abort record before the WAL insert
// position read after the snapshot was taken (position.walPos), so the
// batch is safe once the master's flush position has passed it. Where the
// application commits synchronously that is usually so by the time
// the batch is applied: a fence is then one cheap read (sqlFlushed), or none
// when a flush position seen before already covers it. Otherwise (commits
// with synchronous_commit = off, the daemon's own bookkeeping among them,
// still in the WAL writer's buffers) the master writes and synchronously
// commits a heartbeat (sqlFence), which flushes everything before it.
//
// One fence serves every worker of the Replicator: a flush position read
// after a snapshot was taken covers it if it passed the snapshot's walPos,
// and a heartbeat that started after a snapshot was taken covers it, so the
// master pays at most one flush per round of batches, not one per slave.
// Only a reading made after the snapshot counts: a master that was replaced
// meanwhile (a promoted standby) may not have reached a position the old
// one had.

// fences records the fences of a Replicator's workers.
type fences struct {
	mu        sync.Mutex
	done      time.Time // when the latest completed heartbeat started
	flushed   uint64    // the master's WAL flush position, read by a query
	flushedAt time.Time // that started then
}

// covered reports whether a fence already covers a snapshot that this
// process saw taken before takenAt, with WAL insert position walPos (0 when
// unknown). A zero takenAt (a snapshot taken at no known time) is never
// covered.
func (f *fences) covered(takenAt time.Time, walPos uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if takenAt.IsZero() {
		return false
	}
	return f.done.After(takenAt) || (walPos != 0 && f.flushedAt.After(takenAt) && f.flushed >= walPos)
}

// completed records a heartbeat that started at start and has completed.
func (f *fences) completed(start time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if start.After(f.done) {
		f.done = start
	}
}

// sawFlushed records that a query that started at start read the master's
// WAL flush position lsn.
func (f *fences) sawFlushed(lsn uint64, start time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if start.After(f.flushedAt) {
		f.flushed, f.flushedAt = lsn, start
	}
}

// fence makes sure the master's WAL is durable past every transaction
// visible in p's snapshot, unless another worker's fence already has.
func (w *worker) fence(ctx context.Context, p position) error {
	if w.r.fences.covered(p.takenAt, p.walPos) {
		w.tm.fenced = "covered"
		return nil
	}
	if p.walPos != 0 {
		passed, err := w.flushPassed(ctx, p.walPos)
		if err != nil {
			return err
		}
		if passed {
			w.tm.fenced = "flushed"
			return nil
		}
	}
	w.tm.fenced = "heartbeat"
	start := time.Now()
	if _, err := w.r.master.ExecContext(ctx, fmt.Sprintf(sqlFence, pq.QuoteLiteral(w.slave.Name))); err != nil {
		return w.masterErr("flush the master's log past the batch", err)
	}
	w.r.fences.completed(start)
	w.lastHeartbeat = time.Now()
	return nil
}

// flushPassed reads the master's WAL flush position and reports whether it
// has passed walPos.
func (w *worker) flushPassed(ctx context.Context, walPos uint64) (bool, error) {
	var s string
	start := time.Now()
	flushedStmt, err := w.r.prepared(ctx, sqlFlushed)
	if err != nil {
		return false, w.masterErr("read the master's flush position", err)
	}
	if err := flushedStmt.QueryRowContext(ctx).Scan(&s); err != nil {
		return false, w.masterErr("read the master's flush position", err)
	}
	flushed, err := parseLSN(s)
	if err != nil {
		return false, w.masterErr("read the master's flush position", err)
	}
	w.r.fences.sawFlushed(flushed, start)
	return flushed >= walPos, nil
}
