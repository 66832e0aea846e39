package replicator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Fences. Before a slave commits a batch, the master's WAL must be flushed
// past the commit of every transaction the batch's snapshot counts as done
// (sqlFence; see cycle). One synchronous commit on the master that starts
// after the snapshot was taken does that for every slave: when several
// workers apply batches of snapshots taken before a fence that another
// worker has completed, they need no fence of their own, so the master
// pays one flush per round of batches, not one per slave.

// fences records the fences of a Replicator's workers.
type fences struct {
	mu   sync.Mutex
	done time.Time // when the latest completed fence started
}

// covered reports whether a fence that started after t has completed. A
// zero t (a snapshot taken at no known time) is never covered.
func (f *fences) covered(t time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !t.IsZero() && f.done.After(t)
}

// completed records a fence that started at start and has completed.
func (f *fences) completed(start time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if start.After(f.done) {
		f.done = start
	}
}

// fence flushes the master's WAL past every transaction visible in a
// snapshot this process saw taken at takenAt, unless another worker's fence
// already has.
func (w *worker) fence(ctx context.Context, takenAt time.Time) error {
	if w.r.fences.covered(takenAt) {
		return nil
	}
	start := time.Now()
	if _, err := w.r.master.ExecContext(ctx, fmt.Sprintf(sqlFence, pq.QuoteLiteral(w.slave.Name))); err != nil {
		return w.masterErr("flush the master's log past the batch", err)
	}
	w.r.fences.completed(start)
	w.lastHeartbeat = time.Now()
	return nil
}
