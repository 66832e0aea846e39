package replicator

import (
	"context"
	"time"

	"github.com/lib/pq"
)

// Chunks in flight. Within a batch, a full chunk is sent to replica.apply
// by a goroutine, and the next chunk is read from the master, grouped and
// joined while the slave applies it: the daemon's work and the slave's
// overlap instead of taking turns. At most one chunk is in flight, and its
// answer is taken (a conflict resolved, an error returned) before anything
// else is sent on the slave connection: the next chunk, the position, a
// big statement. The statements reach the slave in the same order, in the
// same transaction, as when each chunk waited for its answer.

// flight is a chunk sent to replica.apply whose answer is not taken yet.
type flight struct {
	c        *chunk
	done     chan struct{} // closed once the answer is in
	failed   int
	affected int64
	err      error
	took     time.Duration
}

// sendChunk sends the full chunk c to replica.apply, after taking the
// answer of the chunk in flight, and leaves c empty, with buffers of its
// own, for the next events. A big statement's chunk is applied at once.
func (w *worker) sendChunk(ctx context.Context, c *chunk) error {
	t := time.Now()
	c.build()
	c.closeRun()
	if c.alone() {
		return w.applyChunk(ctx, c)
	}
	defer since(&w.tm.apply, t)
	if err := w.land(ctx); err != nil {
		return err
	}
	sent := new(chunk)
	*sent = *c
	fresh := chunk{}
	if w.spare != nil {
		fresh, w.spare = *w.spare, nil
	}
	fresh.exact, fresh.group, fresh.async = c.exact, c.group, c.async
	*c = fresh
	f := &flight{c: sent, done: make(chan struct{})}
	conn := w.conn
	args := []any{pq.Array(sent.origins), pq.Array(sent.ops), pq.Array(sent.stmts), pq.Array(sent.nrows)}
	go func() {
		defer close(f.done)
		t := time.Now()
		f.err = conn.QueryRowContext(ctx, sqlApply, args...).Scan(&f.failed, &f.affected)
		f.took = time.Since(t)
	}()
	w.flying = f
	return nil
}

// land waits for the chunk in flight, if any, and takes its answer as
// applyChunk does: a conflict resolved by its policy goes on with the
// chunk's next statements.
func (w *worker) land(ctx context.Context) error {
	f := w.flying
	if f == nil {
		return nil
	}
	w.flying = nil
	<-f.done
	w.tm.slave += f.took
	from, err := w.applied(ctx, f.c, 0, f.failed, f.affected, f.err)
	for err == nil && from < len(f.c.stmts) {
		from, err = w.applyFrom(ctx, f.c, from, false)
	}
	if err != nil {
		return err
	}
	f.c.reset()
	w.spare = f.c
	return nil
}

// abandon waits for the chunk in flight, if any, and drops its answer: the
// batch is being given up, and its slave transaction rolled back.
func (w *worker) abandon() {
	if f := w.flying; f != nil {
		w.flying = nil
		<-f.done
	}
}
