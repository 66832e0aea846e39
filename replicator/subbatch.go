package replicator

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
)

// Sub-batches. A batch is every event whose transaction became visible
// between two snapshots of the master. When that is more than one slave
// transaction should hold (after an outage of the slave or of the daemon),
// the range is applied in sub-batches, each of whole source transactions,
// each in a slave transaction of its own that records exactly how far it
// went, so that hot rows do not build version chains across a whole backlog,
// no master transaction stays open longer than one sub-batch's read, and a
// crash between two of them loses and repeats nothing.
//
// Transactions are taken in the order of their last log row's position
// (then txid). That follows the order in which they committed wherever the
// order matters: a transaction that changed a row another one had changed
// waited for that one's commit before it logged its own change (and so did
// one that checked a foreign key against another's new row), so its last
// log position comes after everything the other one logged.

// Default bounds of a sub-batch (Options.BatchEvents, Options.BatchBytes).
// A single source transaction larger than them is applied whole.
const (
	defaultBatchEvents = 10000
	defaultBatchBytes  = 32 << 20
)

// txKey orders the transactions of a range: the position of a
// transaction's last log row, then its txid.
type txKey struct {
	lsn  uint64
	txid uint64
}

func (k txKey) less(o txKey) bool {
	return k.lsn < o.lsn || (k.lsn == o.lsn && k.txid < o.txid)
}

// lsnText writes an LSN as PostgreSQL does (16/B374D848).
func lsnText(l uint64) string { return fmt.Sprintf("%X/%X", l>>32, uint32(l)) }

// parseLSN reads a pg_lsn's text.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	return h<<32 | l, nil
}

// txSummary is one source transaction of a range: its key, and how many
// events and bytes of SQL it logged for the slave.
type txSummary struct {
	key    txKey
	events int64
	bytes  int64
}

// rangeSummary lists, in key order, the transactions of the range between
// snapshots lo and hi.
type rangeSummary struct {
	lo, hi string
	txs    []txSummary
}

// pickSubBatch returns the transactions txs[i:j] of the next sub-batch
// after cut: from the first one past cut, as many as fit maxEvents and
// maxBytes, and at least one. i == len(txs) when none is left.
func pickSubBatch(txs []txSummary, cut txKey, maxEvents, maxBytes int64) (i, j int) {
	for i < len(txs) && !cut.less(txs[i].key) {
		i++
	}
	var events, bytes int64
	for j = i; j < len(txs); j++ {
		if j > i && (events+txs[j].events > maxEvents || bytes+txs[j].bytes > maxBytes) {
			break
		}
		events += txs[j].events
		bytes += txs[j].bytes
	}
	return i, j
}

// loadSummary reads the transactions of the range (lo, hi] that logged
// events for this slave, in key order. One statement: its snapshot is newer than hi, and
// every transaction visible in hi is visible in it too (the range's log
// rows stay until the slave acknowledges hi).
func (w *worker) loadSummary(ctx context.Context, lo, hi string) (*rangeSummary, error) {
	tx, err := w.r.master.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, w.masterErr("summarize backlog", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, sqlSummaryPlan); err != nil {
		return nil, w.masterErr("summarize backlog", err)
	}
	rows, err := tx.QueryContext(ctx, sqlRangeSummary, lo, hi, w.slave.Name, w.forward)
	if err != nil {
		return nil, w.masterErr("summarize backlog", err)
	}
	defer rows.Close()
	s := &rangeSummary{lo: lo, hi: hi}
	for rows.Next() {
		var t txSummary
		var lsn string
		if err := rows.Scan(&t.key.txid, &lsn, &t.events, &t.bytes); err != nil {
			return nil, w.masterErr("summarize backlog", err)
		}
		if t.key.lsn, err = parseLSN(lsn); err != nil {
			return nil, w.masterErr("summarize backlog", err)
		}
		s.txs = append(s.txs, t)
	}
	if err := rows.Err(); err != nil {
		return nil, w.masterErr("summarize backlog", err)
	}
	slices.SortFunc(s.txs, func(a, b txSummary) int {
		if a.key.less(b.key) {
			return -1
		}
		if b.key.less(a.key) {
			return 1
		}
		return 0
	})
	return s, nil
}

// sqlRangeEnd takes the snapshot that ends the range a worker starts with
// (beginRange).
const sqlRangeEnd = `SELECT pg_current_snapshot()::text, clock_timestamp()`

// beginRange makes what the master has committed since the slave's
// position a range to apply in sub-batches, from its summary. A worker
// does so once after it connects, where a backlog is most likely (after a
// stop of the daemon or an outage of the slave): found by the ordinary
// batch instead, a backlog is first read, and partly applied, as one batch
// that turns out too big, rolled back, and only then summarized.
func (w *worker) beginRange(ctx context.Context) error {
	var hi string
	var hiTime time.Time
	if err := w.r.master.QueryRowContext(ctx, sqlRangeEnd).Scan(&hi, &hiTime); err != nil {
		return w.masterErr("take snapshot", err)
	}
	if hi != w.pos.snapshot {
		w.pos.hi, w.pos.hiTime, w.pos.cut = hi, hiTime, txKey{}
	}
	return nil
}

// subBatch applies the next sub-batch of the range under way
// (w.pos.hi). The last one moves the position to hi.
func (w *worker) subBatch(ctx context.Context) (int, error) {
	if w.summary == nil || w.summary.lo != w.pos.snapshot || w.summary.hi != w.pos.hi {
		t := time.Now()
		s, err := w.loadSummary(ctx, w.pos.snapshot, w.pos.hi)
		if err != nil {
			return 0, err
		}
		since(&w.tm.summary, t)
		w.summary = s
	}
	// Every transaction of the range is visible in hi, taken before now.
	takenAt := time.Now()
	i, j := pickSubBatch(w.summary.txs, w.pos.cut, w.r.opts.BatchEvents, w.r.opts.BatchBytes)
	next := position{snapshot: w.pos.snapshot, snapTime: w.pos.snapTime, batch: w.pos.batch + 1,
		hi: w.pos.hi, hiTime: w.pos.hiTime}
	if j == len(w.summary.txs) {
		next = position{snapshot: w.pos.hi, snapTime: w.pos.hiTime, batch: w.pos.batch + 1}
	} else {
		next.cut = w.summary.txs[j-1].key
	}
	next.takenAt = takenAt
	if err := w.loadNotOK(ctx); err != nil {
		return 0, err
	}
	t := time.Now()
	var rows *sql.Rows
	if a := w.ahead; a != nil && a.summary == w.summary && a.cut == w.pos.cut {
		w.ahead = nil
		<-a.done
		if a.err != nil {
			return 0, a.err
		}
		rows = a.rows
	} else {
		w.dropReadAhead()
		var err error
		if rows, err = w.queryEvents(ctx, w.summary.txs[i:j]); err != nil {
			return 0, err
		}
	}
	since(&w.tm.read, t)
	defer rows.Close()
	if next.hi != "" {
		// The next sub-batch's events, read while this one is applied.
		if k, l := pickSubBatch(w.summary.txs, next.cut, w.r.opts.BatchEvents, w.r.opts.BatchBytes); k < l {
			w.ahead = w.readAhead(ctx, next.cut, w.summary.txs[k:l])
		}
	}
	n, err := w.apply(ctx, eventRows{Rows: rows}, next, 0, 0)
	if err != nil {
		w.dropReadAhead()
	}
	if err == nil && n > 0 {
		w.log.Debug("sub-batch applied", keyBatch, next.batch, "transactions", j-i, "left", len(w.summary.txs)-j)
	}
	if next.hi == "" {
		w.summary = nil
	}
	return n, err
}

// readAhead is the query of the events of the sub-batch after the one
// being applied, sent (by a goroutine of its own, as lib/pq waits for the
// first row) before that one is applied: the master runs it (finds and
// sorts the events) while the slave applies, and its rows wait on the
// connection until they are read. Its statement's snapshot is held from one
// sub-batch's start to the next one's end.
type readAhead struct {
	summary *rangeSummary // the range it belongs to
	cut     txKey         // the sub-batch starts after this transaction
	done    chan struct{} // closed once rows or err is set
	rows    *sql.Rows
	err     error
}

// readAhead starts the query of the events of txs, the sub-batch after cut.
func (w *worker) readAhead(ctx context.Context, cut txKey, txs []txSummary) *readAhead {
	a := &readAhead{summary: w.summary, cut: cut, done: make(chan struct{})}
	query := w.eventsQuery(txs)
	go func() {
		defer close(a.done)
		a.rows, a.err = query(ctx)
	}()
	return a
}

// dropReadAhead waits for the query read ahead, if any, and closes it.
func (w *worker) dropReadAhead() {
	if a := w.ahead; a != nil {
		w.ahead = nil
		<-a.done
		if a.err == nil {
			_ = a.rows.Close()
		}
	}
}

// queryEvents sends the query of the events of transactions txs.
func (w *worker) queryEvents(ctx context.Context, txs []txSummary) (*sql.Rows, error) {
	return w.eventsQuery(txs)(ctx)
}

// eventsQuery returns the query of the events of transactions txs, which
// reads nothing of the worker's when it runs.
func (w *worker) eventsQuery(txs []txSummary) func(context.Context) (*sql.Rows, error) {
	txids := make([]string, 0, len(txs))
	var least, greatest uint64
	for i, t := range txs {
		txids = append(txids, strconv.FormatUint(t.key.txid, 10))
		if i == 0 || t.key.txid < least {
			least = t.key.txid
		}
		greatest = max(greatest, t.key.txid)
	}
	lo, hi := strconv.FormatUint(least, 10), strconv.FormatUint(greatest, 10)
	db, slave, forward, master := w.r.master, w.slave.Name, w.forward, w.r.opts.Master.Name
	return func(ctx context.Context) (*sql.Rows, error) {
		rows, err := db.QueryContext(ctx, sqlEventsOf, pq.Array(txids), slave, forward, aloneBytes, lo, hi)
		if err != nil {
			return nil, fmt.Errorf("read events: master %s: %w", master, err)
		}
		return rows, nil
	}
}

// positionArgs are a position's values for sqlUpdatePosition ($6...$9).
func (p position) rangeArgs() []any {
	if p.hi == "" {
		return []any{"", nil, "", ""}
	}
	return []any{p.hi, p.hiTime, lsnText(p.cut.lsn), strconv.FormatUint(p.cut.txid, 10)}
}

// scanRange reads the range columns of a slave's position.
func (p *position) scanRange(hi string, hiTime *time.Time, cutLSN, cutTxid string) error {
	p.hi, p.cut = hi, txKey{}
	if hi == "" {
		return nil
	}
	if hiTime != nil {
		p.hiTime = *hiTime
	}
	var err error
	if p.cut.lsn, err = parseLSN(cutLSN); err != nil {
		return err
	}
	p.cut.txid, err = strconv.ParseUint(cutTxid, 10, 64)
	return err
}
