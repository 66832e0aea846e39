package replicator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
)

// Chunk limits: statements are sent to replica.apply this many at a time, or
// fewer when their text adds up to chunkBytes. They bound the daemon's memory
// whatever the size of a batch: a batch is streamed from the master and
// applied chunk by chunk inside one slave transaction.
const (
	chunkStatements = 2000
	chunkBytes      = 4 << 20
)

// event is one logged row change.
type event struct {
	txid   string
	origin string // the node the change was first made on
	table  string
	op     byte
	sql    string
}

// chunk accumulates events for one replica.apply call. Consecutive logged
// INSERTs into one table with the same column list and origin are joined
// into one multi-row INSERT (three times faster to apply than one EXECUTE
// each), and so are consecutive UPDATEs of one table setting the same
// columns and DELETEs from one table, into set-based statements (join.go),
// unless exact is set; stmts[i] then covers the events from
// events[first[i]] to the next statement's first, and must touch nrows[i]
// rows. Consecutive TRUNCATEs of one transaction are always
// joined into one statement: that is how the master ran them (one TRUNCATE
// of several tables, or one with CASCADE, logs a TRUNCATE per table), and a
// slave refuses to truncate a table that a foreign key references alone.
type chunk struct {
	exact   bool
	events  []event
	origins []string
	ops     []string
	stmts   []string
	nrows   []int32
	first   []int
	bytes   int

	// The INSERT being joined: its prefix (up to VALUES) and suffix (ON
	// CONFLICT ...), and its text so far.
	runPrefix, runSuffix string
	run                  strings.Builder
	// The UPDATEs or DELETEs being joined (join.go).
	rows rowRun
	// group: events are held and grouped by table before they are added
	// (group.go).
	group bool
	// async: a full chunk is sent while the next one is built (flight.go).
	async        bool
	pending      []event
	pendingBytes int
}

func (c *chunk) add(e event) {
	c.events = append(c.events, e)
	c.bytes += len(e.sql)
	n := len(c.stmts)
	if e.op == 'T' && n > 0 && c.ops[n-1] == "T" {
		if prev := c.events[len(c.events)-2]; prev.txid == e.txid && prev.origin == e.origin {
			if tbl, ok := strings.CutPrefix(e.sql, truncatePrefix); ok {
				c.stmts[n-1] += ", " + tbl
				return
			}
		}
	}
	if !c.exact && (e.op == 'U' || e.op == 'D') && len(e.sql) <= joinMaxBytes {
		if rc, ok := parseRowChange(e.sql); ok {
			if c.rows.accepts(rc, e.origin) {
				c.rows.add(rc)
				c.nrows[n-1] = int32(len(c.rows.rows))
				return
			}
			c.closeRun()
			c.push(e, len(c.events)-1)
			c.rows.start(rc, e.sql, e.origin)
			return
		}
	}
	if !c.exact && e.op == 'I' && len(e.sql) <= joinMaxBytes {
		if prefix, values, suffix, ok := splitInsert(e.sql); ok {
			if c.runPrefix == prefix && c.runSuffix == suffix && c.origins[n-1] == e.origin {
				c.run.WriteString(", ")
				c.run.WriteString(values)
				c.nrows[n-1]++
				return
			}
			c.closeRun()
			c.push(e, len(c.events)-1)
			c.runPrefix, c.runSuffix = prefix, suffix
			c.run.WriteString(prefix)
			c.run.WriteString(values)
			return
		}
	}
	c.closeRun()
	c.push(e, len(c.events)-1)
	c.stmts[len(c.stmts)-1] = e.sql
}

// covers returns how many events statement i joins, counting a run of
// TRUNCATEs as one: it is one statement on the master too, and is applied
// the same way in exact mode.
func (c *chunk) covers(i int) int {
	if c.ops[i] == "T" {
		return 1
	}
	if i+1 < len(c.first) {
		return c.first[i+1] - c.first[i]
	}
	return len(c.events) - c.first[i]
}

// truncatePrefix starts every logged TRUNCATE (replica.truncate_log).
const truncatePrefix = "TRUNCATE ONLY "

// push starts statement number len(c.stmts) with event i.
func (c *chunk) push(e event, i int) {
	c.origins = append(c.origins, e.origin)
	c.ops = append(c.ops, string(e.op))
	c.stmts = append(c.stmts, "")
	c.nrows = append(c.nrows, 1)
	c.first = append(c.first, i)
}

// closeRun ends the INSERT being joined, if any, as the last statement.
func (c *chunk) closeRun() {
	if c.rows.events > 0 {
		c.stmts[len(c.stmts)-1] = c.rows.statement()
		c.rows.events = 0
	}
	if c.runPrefix == "" {
		return
	}
	c.run.WriteString(c.runSuffix)
	c.stmts[len(c.stmts)-1] = c.run.String()
	c.run.Reset()
	c.runPrefix, c.runSuffix = "", ""
}

// full reports whether the chunk should be sent. A run of TRUNCATEs is never
// cut: the next event may belong to it.
func (c *chunk) full() bool {
	if n := len(c.pending); n > 0 {
		if c.pending[n-1].op == 'T' {
			return false
		}
	} else if n := len(c.ops); n > 0 && c.ops[n-1] == "T" {
		return false
	}
	return len(c.events)+len(c.pending) >= chunkStatements || c.bytes+c.pendingBytes >= chunkBytes || c.alone()
}

func (c *chunk) reset() {
	// Cleared, not only cut: the arrays would hold the statements until
	// overwritten.
	clear(c.events)
	clear(c.stmts)
	c.events, c.origins, c.ops, c.stmts, c.nrows, c.first, c.bytes = c.events[:0], c.origins[:0], c.ops[:0], c.stmts[:0], c.nrows[:0], c.first[:0], 0
}

// errJoined reports that a statement joining several logged INSERTs,
// UPDATEs or DELETEs conflicted or failed: the batch is rolled back and applied again one
// statement per event, so that the conflict or error names the very row.
var errJoined = errors.New("a joined statement conflicted or failed")

// cycle applies one batch: the events that became visible on the master
// since the slave's position. It returns how many events were applied.
//
// The master is read in one statement whose snapshot becomes the slave's
// next position. The slave applies the events, in ordering-key order, and
// its new position in one transaction; with two phases that transaction is
// prepared, the master is told the new position (at most every ackEvery
// while batches follow each other), and the transaction is committed.
//
// Before the slave commits, the master's WAL must be durable past the
// commit of every transaction the batch's snapshot counts as done (a fence,
// fence.go). Without it a crash of the master could lose transactions the
// slave already has (ones committed with synchronous_commit = off, the
// daemon's own bookkeeping among them), and reuse their transaction ids
// for new transactions, which the slave's position would count as applied
// and skip.
func (w *worker) cycle(ctx context.Context) (int, error) {
	if n, err := w.catchUp(ctx); err != nil || n > 0 {
		return n, err
	}
	if w.rangeFirst && w.pos.hi == "" {
		if err := w.beginRange(ctx); err != nil {
			return 0, err
		}
	}
	w.rangeFirst = false
	if w.pos.hi != "" {
		return w.subBatch(ctx)
	}
	if w.advanceNow {
		// A copied table waits for the position to pass its copy: the
		// batch moves it, then the table catches up at once.
		n, err := w.batch(ctx)
		if err != nil || w.advanceNow {
			return n, err
		}
		m, err := w.catchUp(ctx)
		return n + m, err
	}
	return w.batch(ctx)
}

// batch applies the events that became visible on the master since the
// slave's position (or the first sub-batch of them, when they are many).
// The master is read in one statement (sqlRead): its snapshot becomes the
// slave's next position.
func (w *worker) batch(ctx context.Context) (int, error) {
	read, err := w.r.prepared(ctx, sqlRead)
	if err != nil {
		return 0, w.masterErr("read events", err)
	}
	rows, err := read.QueryContext(ctx, w.pos.snapshot, w.slave.Name, w.forward, aloneBytes, w.r.opts.BatchEvents+2)
	if err != nil {
		return 0, w.masterErr("read events", err)
	}
	defer rows.Close()
	next := position{batch: w.pos.batch + 1}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, w.masterErr("read events", err)
		}
		return 0, w.masterErr("read events", errors.New("no snapshot row"))
	}
	var walPos string
	var null [8]sql.RawBytes
	if err := rows.Scan(&null[0], &null[1], &null[2], &null[3], &null[4], &null[5], &null[6], &null[7],
		&next.snapshot, &next.snapTime, &walPos); err != nil {
		return 0, w.masterErr("read events", err)
	}
	next.takenAt = time.Now()
	if next.walPos, err = parseLSN(walPos); err != nil {
		return 0, w.masterErr("read events", err)
	}
	if next.snapshot == w.pos.snapshot {
		return 0, nil
	}
	if err := w.loadNotOK(ctx); err != nil {
		return 0, err
	}
	n, err := w.apply(ctx, eventRows{rows, 4}, next, w.r.opts.BatchEvents, w.r.opts.BatchBytes)
	if errors.Is(err, errTooBig) {
		// A backlog: apply it in sub-batches, this snapshot being the
		// range's end.
		rows.Close()
		if _, err := w.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			return 0, w.slaveErr("roll back", err)
		}
		w.log.Info("a backlog: applying it in sub-batches", keyBatch, next.batch)
		w.pos.hi, w.pos.hiTime, w.pos.cut = next.snapshot, next.snapTime, txKey{}
		return w.subBatch(ctx)
	}
	return n, err
}

// eventRows are the rows of a query that returns events (sqlRead and the
// queries like it), followed by extra columns that hold nothing in event
// rows (sqlRead's header).
type eventRows struct {
	*sql.Rows
	extra int
}

// errTooBig reports that a batch holds more than one slave transaction
// should.
var errTooBig = errors.New("batch larger than batch_events or batch_bytes")

// apply applies the events rows streams as batch next, in one slave
// transaction that also records next as the slave's position, and returns
// how many there were. With maxEvents > 0 it stops with errTooBig (a slave
// transaction may have begun) once more events or bytes than the bounds
// arrive.
func (w *worker) apply(ctx context.Context, rows eventRows, next position, maxEvents, maxBytes int64) (int, error) {
	began := false
	begin := func() error {
		if _, err := w.conn.ExecContext(ctx, w.beginSQL); err != nil {
			return w.slaveErr("begin batch", err)
		}
		began = true
		return nil
	}
	c := chunk{exact: w.exact, group: w.group, async: true}
	defer w.abandon()
	n := 0
	var bytes int64
	w.conflicts = nil
	skipped := 0
	var read int64
	more := func() bool {
		t := time.Now()
		defer since(&w.tm.read, t)
		return rows.Next()
	}
	for more() {
		e, big, length, err := w.scanEvent(rows)
		if err != nil {
			return 0, err
		}
		// Every row read counts towards the bounds, skipped or not: the
		// read stops at maxEvents+1 rows (sqlRead's LIMIT).
		read++
		bytes += length
		if maxEvents > 0 && (read > maxEvents || bytes > maxBytes) {
			return 0, errTooBig
		}
		if w.skips[e.txid] {
			skipped++ // left out by 'goreplica skip'
			continue
		}
		if w.notOK[e.table] {
			// Copying to this slave: its catch-up applies it (copy.go).
			skipped++
			continue
		}
		if !began {
			if err := begin(); err != nil {
				return 0, err
			}
		}
		n++
		if err := w.addEvent(ctx, &c, e, big); err != nil {
			return 0, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, w.masterErr("read events", err)
	}
	rows.Close()
	if err := w.land(ctx); err != nil {
		return 0, err
	}
	// Nothing for this slave: move its position now and then so that purge
	// and status follow, but do not write on every poll.
	if n == 0 && skipped == 0 && !w.advanceNow && next.hi == "" && w.pos.hi == "" && time.Since(w.lastAdvance) < advanceEvery {
		return 0, nil
	}
	if !began {
		if err := begin(); err != nil {
			return 0, err
		}
	}
	if !c.empty() {
		if err := w.applyChunk(ctx, &c); err != nil {
			return 0, err
		}
	}
	if err := w.pushSequences(ctx); err != nil {
		return 0, err
	}
	// Last before the slave's commit: by now the application's own
	// synchronous commits have usually flushed the master's WAL past the
	// snapshot, and the fence is one cheap read.
	t := time.Now()
	if err := w.fence(ctx, next); err != nil {
		return 0, err
	}
	since(&w.tm.fence, t)
	t = time.Now()
	args := append([]any{w.masterID, next.snapshot, next.batch, next.snapTime, w.r.opts.Master.Name}, next.rangeArgs()...)
	res, err := w.conn.ExecContext(ctx, sqlUpdatePosition, args...)
	if err != nil {
		return 0, w.slaveErr("record position", err)
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return 0, fmt.Errorf("record position on slave %s: batch %d is no longer the next one; another process applied to this slave", w.slave.Name, next.batch)
	}
	if err := w.hookAt("before-commit"); err != nil {
		return 0, err
	}
	if err := w.commit(ctx, next, next.snapTime); err != nil {
		return 0, err
	}
	since(&w.tm.commit, t)
	w.pos = next
	w.exact = false
	w.advanceNow = false
	w.alertConflicts()
	w.lastAdvance = time.Now()
	if n > 0 && w.slaveCaptures {
		if _, err := w.conn.ExecContext(ctx, sqlWakeSlave); err != nil {
			return n, w.slaveErr("wake the slave's own daemon", err)
		}
	}
	if n > 0 {
		w.log.Debug("batch applied", append([]any{keyBatch, next.batch, "events", n}, w.tm.attrs()...)...)
	}
	return n, nil
}

// scanEvent reads one event of the log, as sqlRead and the queries like
// it return it. A statement longer than aloneBytes is not in the row: big
// is then its row's ctid, for addEvent to read it.
func (w *worker) scanEvent(rows eventRows) (e event, big string, length int64, err error) {
	var origin, text sql.NullString
	var op, ctid string
	dest := []any{&e.txid, &origin, &e.table, &op, &text, &length, &ctid}
	for range rows.extra {
		dest = append(dest, new(sql.RawBytes))
	}
	if err := rows.Scan(dest...); err != nil {
		return e, "", 0, w.masterErr("read events", err)
	}
	e.sql = text.String
	e.op = op[0]
	e.origin = w.r.opts.Master.Name
	if origin.Valid {
		e.origin = origin.String
	}
	if !text.Valid {
		big = ctid
	}
	return e, big, length, nil
}

// addEvent adds e to the chunk, and applies the chunk when it is full. A
// big statement (big, its row) is read now, after the chunk before it is
// applied, and goes alone (alone.go).
func (w *worker) addEvent(ctx context.Context, c *chunk, e event, big string) error {
	if big != "" {
		if !c.empty() {
			if err := w.applyChunk(ctx, c); err != nil {
				return err
			}
		}
		s, err := w.readBig(ctx, big)
		if err != nil {
			return err
		}
		e.sql = s
	}
	c.buffer(e)
	if c.full() {
		if c.async {
			return w.sendChunk(ctx, c)
		}
		return w.applyChunk(ctx, c)
	}
	return nil
}

// commit ends the slave transaction of batch next and acknowledges it on the
// master (ackSoon).
func (w *worker) commit(ctx context.Context, next position, snapTime time.Time) error {
	// The batch and its position are in place: from here it is finished
	// even if a stop is requested (a PREPARE or COMMIT interrupted by a
	// cancellation may have happened all the same, and would be left for
	// the next start to find), within finishTimeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if !w.slave.TwoPhase {
		if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
			return w.slaveErr(fmt.Sprintf("commit batch %d", next.batch), err)
		}
		if err := w.hookAt("after-commit"); err != nil {
			return err
		}
		// The position is on the slave: a lost ack is sent again at the next connect.
		return w.ackSoon(ctx, next, snapTime)
	}
	g := gid(w.masterID, w.slave.Name, next.batch)
	if _, err := w.conn.ExecContext(ctx, "PREPARE TRANSACTION "+pq.QuoteLiteral(g)); err != nil {
		return w.slaveErr("prepare transaction "+g, preparedHint(err))
	}
	if err := w.hookAt("after-prepare"); err != nil {
		return err
	}
	// From here the batch is durable on the slave and will be committed,
	// now or by the in-doubt resolution at the next connect.
	ackErr := w.ackSoon(ctx, next, snapTime)
	if ackErr == nil {
		if err := w.hookAt("after-ack"); err != nil {
			return err
		}
	}
	if _, err := w.conn.ExecContext(ctx, "COMMIT PREPARED "+pq.QuoteLiteral(g)); err != nil {
		return w.slaveErr("commit prepared "+g, err)
	}
	if err := w.hookAt("after-commit"); err != nil {
		return err
	}
	return ackErr
}

// applyChunk sends the chunk to replica.apply and turns a conflict or an
// error into a ConflictError or ApplyError naming the statement (or into
// errJoined when the statement joined several events).
//
// A conflict in a statement of one event is resolved by its table's policy
// (resolveConflict): unless it stops the batch, the chunk goes on from the
// next statement.
func (w *worker) applyChunk(ctx context.Context, c *chunk) error {
	defer since(&w.tm.apply, time.Now())
	if err := w.land(ctx); err != nil {
		return err
	}
	c.build()
	c.closeRun()
	alone := c.alone()
	for from := 0; from < len(c.stmts); {
		next, err := w.applyFrom(ctx, c, from, alone)
		if err != nil {
			return err
		}
		from = next
	}
	c.reset()
	if alone {
		releaseMemory()
	}
	return nil
}

// applyFrom applies the chunk's statements from index from on, and returns
// the index to go on from: past the end when all applied, past a
// conflicting statement that its policy resolved. A chunk to be sent alone
// holds one statement.
func (w *worker) applyFrom(ctx context.Context, c *chunk, from int, alone bool) (int, error) {
	var failed int
	var affected int64
	var err error
	t := time.Now()
	if alone {
		failed, affected, err = w.applyAlone(ctx, c)
	} else {
		err = w.conn.QueryRowContext(ctx, sqlApply, pq.Array(c.origins[from:]), pq.Array(c.ops[from:]), pq.Array(c.stmts[from:]), pq.Array(c.nrows[from:])).Scan(&failed, &affected)
	}
	since(&w.tm.slave, t)
	return w.applied(ctx, c, from, failed, affected, err)
}

// applied turns replica.apply's answer for the chunk's statements from
// index from on into applyFrom's.
func (w *worker) applied(ctx context.Context, c *chunk, from, failed int, affected int64, err error) (int, error) {
	if err != nil {
		var pe *pq.Error
		if errors.As(err, &pe) {
			if i, ok := strings.CutPrefix(pe.Hint, "replica.apply statement "); ok {
				if k, e := strconv.Atoi(i); e == nil && k >= 1 && from+k <= len(c.stmts) {
					k += from
					if c.covers(k-1) > 1 {
						return 0, errJoined
					}
					ev := c.events[c.first[k-1]]
					return 0, &ApplyError{Slave: w.slave.Name, Table: ev.table, Key: keyOf(ev.sql), TxID: ev.txid, SQL: ev.sql, Err: err}
				}
			}
		}
		return 0, w.slaveErr("apply", err)
	}
	if failed == 0 {
		return len(c.stmts), nil
	}
	k := from + failed - 1
	if c.covers(k) > 1 {
		return 0, errJoined
	}
	ev := c.events[c.first[k]]
	ce := &ConflictError{Slave: w.slave.Name, Table: ev.table, Key: keyOf(ev.sql), TxID: ev.txid, SQL: ev.sql,
		Kind: classifyConflict(ev.op, affected), Affected: affected}
	if err := w.resolveConflict(ctx, ce, ev); err != nil {
		return 0, err
	}
	return k + 1, nil
}

// preparedHint explains the usual reason PREPARE TRANSACTION fails.
func preparedHint(err error) error {
	var pe *pq.Error
	if errors.As(err, &pe) && pe.Code == "55000" && strings.Contains(pe.Message, "max_prepared_transactions") {
		return fmt.Errorf("%w (set max_prepared_transactions = 10 or more in the slave's postgresql.conf and restart it, or set two_phase = false for this slave)", err)
	}
	if isConnectionError(err) {
		return fmt.Errorf("%w (a connection pooler in transaction mode, such as pgbouncer with pool_mode = transaction, cannot carry prepared transactions: connect to the slave directly or through a session-mode pool)", err)
	}
	return err
}

func (w *worker) hookAt(step string) error {
	if w.hook == nil {
		return nil
	}
	return w.hook(step)
}
