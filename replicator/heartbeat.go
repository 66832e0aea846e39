package replicator

import (
	"context"
	"time"
)

// sqlShutdown marks a slave's worker gone: no daemon is heard from it any
// more. The last error stays until a batch applies (the ack or the running
// state clears it), so that status still shows what stopped the slave.
const sqlShutdown = `UPDATE replica.slaves SET state = 'stopped', waiting = false, seen_at = NULL WHERE name = $1`

// heartbeat is how often a worker tells the master it is alive.
func (r *Replicator) heartbeat() time.Duration {
	if r.opts.heartbeatEvery > 0 {
		return r.opts.heartbeatEvery
	}
	return heartbeatEvery
}

// beat tells the master every heartbeat that the slave's worker is alive,
// whatever the worker is doing (waiting, applying a long batch, waiting out
// an error back-off), until ctx ends. Its errors are the worker's to report:
// a master that cannot be reached fails the worker's own queries too.
func (w *worker) beat(ctx context.Context) {
	every := w.r.heartbeat()
	t := time.NewTicker(every)
	defer t.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		if _, err := w.r.master.ExecContext(cctx, sqlHeartbeat, w.slave.Name); err != nil && ctx.Err() == nil {
			w.log.Debug("heartbeat", keyError, err)
		}
		cancel()
	}
}
