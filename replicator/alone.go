package replicator

import (
	"context"
	"runtime/debug"
	"unsafe"
)

// Big statements. A logged statement carrying a big value (a 100 MB text,
// a large bytea) is the one thing that makes the daemon's memory grow with
// the data, so it takes a path of its own, built to hold as few copies of
// it at once as the libraries allow. The batch's read gives only its length
// and row (the batch bounds count it without reading it); it is read by a
// query of its own, whose message buffer (lib/pq keeps a result's last
// message until the next one) is garbage as soon as the string is made and
// is released at once, with every copy left from the statement before. It
// is never joined into a run or encoded into a text array with the
// statements around it: it is sent alone, as a binary parameter taken from
// the string without a copy, so that the only other copy is the protocol
// message itself, released as soon as the statement is applied. Peak
// memory for a statement of n bytes is then about 2n, plus the daemon's
// constant (bench/bigvalue).

// aloneBytes: a logged statement longer than this is applied on its own.
const aloneBytes = 1 << 20

// sqlBigStatement reads one logged statement by its row (the log's rows are
// never updated, and deleted only once every slave has applied them).
const sqlBigStatement = `SELECT sql FROM replica.replica_log WHERE ctid = $1::tid`

// sqlApplyOne applies one statement through replica.apply; $3 is sent as
// binary text, its bytes as they are.
const sqlApplyOne = `SELECT failed, affected FROM replica.apply(ARRAY[$1::text], ARRAY[$2::"char"], ARRAY[$3::text], ARRAY[$4::integer])`

// readBig reads the statement of the log row at ctid.
func (w *worker) readBig(ctx context.Context, ctid string) (string, error) {
	var s string
	if err := w.r.master.QueryRowContext(ctx, sqlBigStatement, ctid).Scan(&s); err != nil {
		return "", w.masterErr("read a big statement", err)
	}
	releaseMemory()
	return s, nil
}

// alone reports whether the chunk holds a single statement to be sent
// alone.
func (c *chunk) alone() bool { return len(c.stmts) == 1 && len(c.stmts[0]) > aloneBytes }

// applyAlone sends the chunk's single big statement to replica.apply and
// returns its result.
func (w *worker) applyAlone(ctx context.Context, c *chunk) (failed int, affected int64, err error) {
	s := c.stmts[0]
	// lib/pq only reads a []byte parameter (binary format: a text's bytes).
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	err = w.conn.QueryRowContext(ctx, sqlApplyOne, c.origins[0], c.ops[0], b, c.nrows[0]).Scan(&failed, &affected)
	return failed, affected, err
}

// releaseMemory collects garbage now and returns it to the operating system:
// called around big statements only, whose copies would otherwise pile up
// until the collector's next cycle (which GOGC lets wait until the heap has
// doubled).
func releaseMemory() { debug.FreeOSMemory() }
