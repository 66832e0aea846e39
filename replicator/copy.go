package replicator

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Initial copy, Londiste's way. A table chosen for a slave that does not
// hold its rows yet gets a row in the slave's replica.table_state (state
// copying) and a hold on the master (replica.holds: purge keeps its log
// rows) before its log trigger exists. From then on:
//
//   - the worker applies none of the table's logged changes (its batches
//     skip them, so the other tables go on), and the master keeps them;
//   - the worker's copier reads the table's rows on the master as of one
//     snapshot C (REPEATABLE READ, a cursor) and streams them into the
//     slave with COPY FROM STDIN, in one slave transaction that also sets
//     the state to catching-up with C;
//   - once the slave's position P covers C (every transaction visible in C
//     is visible in P), the worker applies, in one slave transaction that
//     also sets the state to ok, the table's changes visible in P and not
//     in C; from there on its changes are applied with every batch (they
//     are not visible in P, hence not in C), and the hold goes.
//
// Each step writes the table's new state in the transaction that does the
// work, so a stop or crash at any point repeats a step whole: a copy that
// did not commit starts again from scratch, a catch-up that did not commit
// is done again.

// Table states on a slave.
const (
	TableCopying    = "copying"
	TableCatchingUp = "catching-up"
	TableOK         = "ok"
	TableError      = "error"
)

// Copy modes for a slave table that already holds rows.
const (
	CopyTruncate = "truncate" // empty it, then copy (the default)
	CopyMerge    = "merge"    // upsert the master's rows by key, keep the slave's others
	CopySkip     = "skip"     // copy nothing: the slave already holds the rows
)

// AlertCopied says that every table of a slave is ok after copies.
const AlertCopied AlertKind = "copied"

// copyFetch is the most rows the copier fetches from the master's cursor
// at a time, and copyFetchBytes what a fetch should hold: the copier asks
// for as many rows as that holds at the longest line seen so far, starting
// from one row and growing at most fourfold a fetch (nextFetch), so that a
// table of big values is fetched a row or a few at a time. With the fetch
// ahead and the COPY buffer, they bound the copier's memory.
const (
	copyFetch      = 5000
	copyFetchBytes = 4 << 20
)

// nextFetch returns how many rows the fetch after one of prev rows asks
// for, longest being the longest line seen so far.
func nextFetch(prev, longest int) int {
	n := copyFetch
	if longest > 0 {
		n = max(1, copyFetchBytes/longest)
	}
	return max(1, min(n, prev*4, copyFetch))
}

// copyRetry is how long a copy that failed waits before it is tried again.
const copyRetry = 30 * time.Second

const (
	sqlNotOKTables = `SELECT tbl FROM replica.table_state WHERE master = $1 AND state <> 'ok'`
	sqlCatchingUp  = `SELECT tbl, copy_snapshot::text FROM replica.table_state WHERE master = $1 AND state = 'catching-up' ORDER BY tbl`
	// sqlCatchUpEvents streams the changes of one table that a slave
	// skipped while it copied: visible in the slave's position $3, not in
	// the copy's snapshot $2.
	sqlCatchUpEvents = `SELECT txid::text, origin, tbl, op, CASE WHEN octet_length(sql) <= $6 THEN sql END, octet_length(sql), ctid::text
  FROM replica.replica_log
 WHERE tbl = $1
   AND txid >= pg_snapshot_xmin($2::pg_snapshot)
   AND NOT pg_visible_in_snapshot(txid, $2::pg_snapshot)
   AND pg_visible_in_snapshot(txid, $3::pg_snapshot)
   AND (origin IS NULL OR ($5 AND origin <> $4 AND via IS DISTINCT FROM $4))
 ORDER BY replica_log.lsn, replica_log.txid`
	sqlTableOK = `UPDATE replica.table_state SET state = 'ok', error = NULL, updated_at = now()
 WHERE master = $1 AND tbl = $2 AND state = 'catching-up'`
	sqlDropHold = `DELETE FROM replica.holds WHERE slave = $1 AND tbl = $2`
	// sqlToCopy lists the tables a slave must copy: those copying, and
	// those whose copy failed a while ago.
	sqlToCopy = `SELECT tbl, mode FROM replica.table_state
 WHERE master = $1 AND (state = 'copying' OR (state = 'error' AND updated_at < now() - $2::float8 * interval '1 second'))
 ORDER BY state = 'error', updated_at, tbl`
	// sqlCopySource finds a table on the master by the name the log gives
	// it, with its hold for this slave (none: not to be copied now).
	sqlCopySource = `SELECT t.relid::int8, n.nspname, c.relname, greatest(c.reltuples, 0)::int8
  FROM replica.tables t JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.name = $1 AND EXISTS (SELECT 1 FROM replica.holds h WHERE h.slave = $2 AND h.tbl = $1)`
	// sqlCopyColumns lists the columns copied and, for each, an
	// expression giving its value as a field of COPY's text format: the
	// type's output (as COPY TO writes it), with backslash, newline,
	// carriage return and tab escaped, and \N for NULL. Built-in types are
	// cast to text (their casts to text are their output); other types go
	// through format('%s'), which uses the output function and never a
	// cast a user defined. The output of the types listed first holds none
	// of the escaped characters.
	sqlCopyColumns = `SELECT a.attname,
       CASE WHEN a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'oid'::regtype, 'numeric'::regtype,
                                'float4'::regtype, 'float8'::regtype, 'bool'::regtype, 'uuid'::regtype, 'date'::regtype,
                                'timestamp'::regtype, 'timestamptz'::regtype, 'time'::regtype, 'inet'::regtype, 'cidr'::regtype)
            THEN format('coalesce(%I::text, E''\\N'')', a.attname)
            ELSE format('CASE WHEN %1$I IS NULL THEN E''\\N'' ELSE replace(replace(replace(replace(%2$s, E''\\'', E''\\\\''), E''\n'', E''\\n''), E''\r'', E''\\r''), E''\t'', E''\\t'') END',
                        a.attname,
                        CASE WHEN a.atttypid < 16384 THEN format('%I::text', a.attname) ELSE format('format(''%%s'', %I)', a.attname) END)
       END
  FROM pg_attribute a
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY a.attnum`
	sqlKeyColumns = `SELECT key_columns FROM replica.tables WHERE relid = $1`
	// The text the copy reads and writes, whatever the servers' settings.
	sqlCopySettings = `SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3;
SET LOCAL bytea_output = 'hex'; SET LOCAL TimeZone = 'UTC'; SET LOCAL lc_monetary = 'C'; SET LOCAL xmloption = content;
SET LOCAL array_nulls = on; SET LOCAL search_path = pg_catalog, pg_temp`
	sqlCopyProgress = `UPDATE replica.table_state SET rows_copied = $3::int8, rows_total = greatest($4::int8, $3::int8), rate = $5, updated_at = now()
 WHERE master = $1 AND tbl = $2 AND state IN ('copying', 'error')`
	sqlCopyStart = `UPDATE replica.table_state SET state = 'copying', error = NULL, rows_copied = 0, rows_total = $3, rate = 0, updated_at = now()
 WHERE master = $1 AND tbl = $2 AND state IN ('copying', 'error')`
	sqlCopyDone = `UPDATE replica.table_state
   SET state = 'catching-up', copy_snapshot = $3::pg_snapshot, rows_copied = $4, rows_total = $4, rate = $5, error = NULL, updated_at = now()
 WHERE master = $1 AND tbl = $2 AND state IN ('copying', 'error')`
	sqlCopyFailed = `UPDATE replica.table_state SET state = 'error', error = $3, updated_at = now()
 WHERE master = $1 AND tbl = $2 AND state IN ('copying', 'error')`
	sqlTableHasRows = `SELECT EXISTS (SELECT 1 FROM ONLY %s)`
)

// loadNotOK reads the tables whose changes this slave must not apply now:
// those not ok. Called after the batch's snapshot is taken on the master:
// a table whose state row was written before its log trigger existed is
// then always found.
func (w *worker) loadNotOK(ctx context.Context) error {
	rows, err := w.conn.QueryContext(ctx, sqlNotOKTables, w.masterID)
	if err != nil {
		return w.slaveErr("read table states", err)
	}
	defer rows.Close()
	w.notOK = map[string]bool{}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return w.slaveErr("read table states", err)
		}
		w.notOK[t] = true
	}
	if err := rows.Err(); err != nil {
		return w.slaveErr("read table states", err)
	}
	return nil
}

// catchUp brings each table that has been copied as of a snapshot the
// slave's position covers to ok, each in one slave transaction with the
// changes it skipped meanwhile. It runs only between batches, not while a
// backlog is applied in sub-batches (the position is then a range).
func (w *worker) catchUp(ctx context.Context) (int, error) {
	if w.pos.hi != "" || (w.notOK != nil && len(w.notOK) == 0) {
		return 0, nil
	}
	type pending struct{ table, snap string }
	var todo []pending
	rows, err := w.conn.QueryContext(ctx, sqlCatchingUp, w.masterID)
	if err != nil {
		return 0, w.slaveErr("read table states", err)
	}
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.table, &p.snap); err != nil {
			rows.Close()
			return 0, w.slaveErr("read table states", err)
		}
		todo = append(todo, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, w.slaveErr("read table states", err)
	}
	if len(todo) == 0 {
		return 0, nil
	}
	pos, err := parseSnapshot(w.pos.snapshot)
	if err != nil {
		return 0, w.slaveErr("read position", err)
	}
	total := 0
	for _, p := range todo {
		c, err := parseSnapshot(p.snap)
		if err != nil {
			return total, fmt.Errorf("table %s on slave %s: copy snapshot: %w", p.table, w.slave.Name, err)
		}
		if !covers(pos, c) {
			// The next batch moves the position past the copy.
			w.advanceNow = true
			continue
		}
		n, err := w.catchUpTable(ctx, p.table, p.snap)
		if err != nil {
			return total, err
		}
		total += n
	}
	if w.advanceNow {
		return total, nil
	}
	var left bool
	if err := w.conn.QueryRowContext(ctx, `SELECT EXISTS (`+sqlNotOKTables+`)`, w.masterID).Scan(&left); err != nil {
		return total, w.slaveErr("read table states", err)
	}
	if !left && w.r.opts.Alerter != nil {
		w.r.opts.Alerter.Alert(Alert{Kind: AlertCopied, Slave: w.slave.Name,
			Summary: fmt.Sprintf("slave %s: every table is copied and applies changes", w.slave.Name),
			Body:    "The initial copies are done and every table has caught up. 'goreplica status' shows the tables."})
	}
	return total, nil
}

// catchUpTable applies the changes of table that are visible in the
// slave's position and not in snap, and marks the table ok, in one slave
// transaction.
func (w *worker) catchUpTable(ctx context.Context, table, snap string) (int, error) {
	rows, err := w.r.master.QueryContext(ctx, sqlCatchUpEvents, table, snap, w.pos.snapshot, w.slave.Name, w.forward, aloneBytes)
	if err != nil {
		return 0, w.masterErr("read events of "+table, err)
	}
	defer rows.Close()
	if _, err := w.conn.ExecContext(ctx, w.beginSQL); err != nil {
		return 0, w.slaveErr("begin catch-up of "+table, err)
	}
	c := chunk{exact: true}
	n := 0
	w.conflicts = nil
	for rows.Next() {
		e, big, _, err := w.scanEvent(eventRows{Rows: rows})
		if err != nil {
			return 0, err
		}
		if w.skips[e.txid] {
			continue // left out by 'goreplica skip'
		}
		n++
		if err := w.addEvent(ctx, &c, e, big); err != nil {
			return 0, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, w.masterErr("read events of "+table, err)
	}
	if !c.empty() {
		if err := w.applyChunk(ctx, &c); err != nil {
			return 0, err
		}
	}
	if _, err := w.conn.ExecContext(ctx, sqlTableOK, w.masterID, table); err != nil {
		return 0, w.slaveErr("record state of "+table, err)
	}
	if err := w.hookAt("before-catch-up-commit"); err != nil {
		return 0, err
	}
	if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return 0, w.slaveErr("commit catch-up of "+table, err)
	}
	w.alertConflicts()
	if _, err := w.r.master.ExecContext(ctx, sqlDropHold, w.slave.Name, table); err != nil {
		w.log.Warn("release the log rows kept for a copy", keyTable, table, keyError, err)
	}
	w.log.Info("table caught up: ok", keyTable, table, "events", n)
	return n, nil
}

// copier copies, one after the other, the tables this slave must copy,
// until ctx is cancelled. It uses connections of its own, so the worker
// goes on applying the other tables meanwhile.
func (w *worker) copier(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		did, err := w.copyNext(ctx)
		if errors.Is(err, errCrash) {
			return
		}
		wait := time.Second
		if err != nil && ctx.Err() == nil {
			failures++
			wait = backoff(failures, w.r.opts.MaxBackoff)
			w.log.Warn("copy", keyError, err, "failures", failures, "retry_in", wait.String())
		} else {
			failures = 0
		}
		if did && err == nil {
			select {
			case w.copied <- struct{}{}:
			default:
			}
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// copyNext copies the next table the slave must copy; did is false when
// there was none.
func (w *worker) copyNext(ctx context.Context) (did bool, err error) {
	if !w.leased.Load() {
		return false, nil
	}
	var masterID string
	var ver int
	if err := w.r.master.QueryRowContext(ctx, sqlNodeID).Scan(&masterID, &ver); err != nil {
		return false, w.masterErr("read node id", err)
	}
	if ver < schemaVersion {
		return false, nil
	}
	type job struct{ table, mode string }
	var jobs []job
	rows, err := w.slaveDB.QueryContext(ctx, sqlToCopy, masterID, copyRetry.Seconds())
	if err != nil {
		return false, w.slaveErr("read table states", err)
	}
	for rows.Next() {
		var j job
		if err := rows.Scan(&j.table, &j.mode); err != nil {
			rows.Close()
			return false, w.slaveErr("read table states", err)
		}
		jobs = append(jobs, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, w.slaveErr("read table states", err)
	}
	for _, j := range jobs {
		var src copySource
		err := w.r.master.QueryRowContext(ctx, sqlCopySource, j.table, w.slave.Name).Scan(&src.relid, &src.schema, &src.name, &src.estimate)
		if errors.Is(err, sql.ErrNoRows) {
			continue // not captured (yet, or any more) for this slave
		}
		if err != nil {
			return false, w.masterErr("find table "+j.table, err)
		}
		src.table, src.mode = j.table, j.mode
		if err := w.copyTable(ctx, masterID, src); err != nil {
			if ctx.Err() != nil || errors.Is(err, errCrash) {
				return true, err
			}
			if isConnectionError(err) {
				// An outage: the copy starts again once both ends answer.
				return false, err
			}
			if _, e := w.slaveDB.ExecContext(ctx, sqlCopyFailed, masterID, j.table, err.Error()); e != nil {
				w.log.Warn("record copy error", keyTable, j.table, keyError, e)
			}
			w.log.Error("copy failed: retrying later", keyTable, j.table, keyError, err, "in", copyRetry.String())
			return true, err
		}
		return true, nil
	}
	return false, nil
}

// copySource is a table to copy.
type copySource struct {
	table        string // as the log names it
	schema, name string
	relid        int64
	estimate     int64 // rows, from the master's statistics
	mode         string
}

// copyTable copies one table's rows as of one master snapshot into the
// slave, in one slave transaction that records the snapshot.
func (w *worker) copyTable(ctx context.Context, masterID string, src copySource) error {
	began := time.Now()
	w.log.Info("copying table", keyTable, src.table, "mode", src.mode, "estimated_rows", src.estimate)
	mtx, err := w.r.master.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return w.masterErr("begin copy of "+src.table, err)
	}
	defer mtx.Rollback()
	var snap string
	if err := mtx.QueryRowContext(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snap); err != nil {
		return w.masterErr("begin copy of "+src.table, err)
	}
	if _, err := mtx.ExecContext(ctx, sqlCopySettings); err != nil {
		return w.masterErr("begin copy of "+src.table, err)
	}
	var cols, exprs []string
	crows, err := mtx.QueryContext(ctx, sqlCopyColumns, src.relid)
	if err != nil {
		return w.masterErr("list columns of "+src.table, err)
	}
	for crows.Next() {
		var c, e string
		if err := crows.Scan(&c, &e); err != nil {
			crows.Close()
			return w.masterErr("list columns of "+src.table, err)
		}
		cols, exprs = append(cols, c), append(exprs, e)
	}
	crows.Close()
	if err := crows.Err(); err != nil {
		return w.masterErr("list columns of "+src.table, err)
	}
	var keys []string
	if err := mtx.QueryRowContext(ctx, sqlKeyColumns, src.relid).Scan(pq.Array(&keys)); err != nil {
		return w.masterErr("read key of "+src.table, err)
	}
	qrel := pq.QuoteIdentifier(src.schema) + "." + pq.QuoteIdentifier(src.name)
	if _, err := mtx.ExecContext(ctx, fmt.Sprintf(`DECLARE goreplica_copy NO SCROLL CURSOR FOR SELECT %s FROM ONLY %s`,
		strings.Join(exprs, ` || E'\t' || `), qrel)); err != nil {
		return w.masterErr("read "+src.table, err)
	}

	if _, err := w.slaveDB.ExecContext(ctx, sqlCopyStart, masterID, src.table, src.estimate); err != nil {
		return w.slaveErr("record copy progress of "+src.table, err)
	}
	conn, err := w.slaveDB.Conn(ctx)
	if err != nil {
		return w.slaveErr("connect", err)
	}
	committed := false
	defer func() {
		if !committed {
			// Abandon the connection, and its transaction with it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}()
	replicaRole, err := mayUseReplicaRole(ctx, conn)
	if err != nil {
		return w.slaveErr("check privileges", err)
	}
	begin := "BEGIN; " + sqlCopySettings
	if replicaRole {
		// No foreign-key check against a table not copied yet, no user
		// trigger: the rows are the master's, as they are.
		begin += "; SET LOCAL session_replication_role = replica"
	}
	if _, err := conn.ExecContext(ctx, begin); err != nil {
		return w.slaveErr("begin copy of "+src.table, err)
	}
	target := qrel
	var rebuild []string // statements that build the indexes after the load
	switch src.mode {
	case CopyMerge:
		target = "pg_temp.goreplica_merge"
		if _, err := conn.ExecContext(ctx, fmt.Sprintf(`CREATE TEMP TABLE goreplica_merge ON COMMIT DROP AS SELECT %s FROM ONLY %s WITH NO DATA`,
			quoteAll(cols), qrel)); err != nil {
			return w.slaveErr("prepare merge of "+src.table, err)
		}
	default:
		if err := emptyTable(ctx, conn, qrel); err != nil {
			return w.slaveErr("empty "+src.table, err)
		}
		if rebuild, err = dropIndexesForLoad(ctx, conn, qrel); err != nil {
			return w.slaveErr("drop the indexes of "+src.table+" for the load", err)
		}
	}
	var copied int64
	err = conn.Raw(func(dc any) error {
		var err error
		copied, err = w.streamRows(ctx, mtx, dc, fmt.Sprintf("COPY %s (%s) FROM STDIN", target, quoteAll(cols)), func(n int64) {
			rate := float64(n) / time.Since(began).Seconds()
			if _, err := w.slaveDB.ExecContext(ctx, sqlCopyProgress, masterID, src.table, n, src.estimate, rate); err != nil {
				w.log.Warn("record copy progress", keyTable, src.table, keyError, err)
			}
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("copy table %s into slave %s: %w", src.table, w.slave.Name, err)
	}
	for _, stmt := range rebuild {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return w.slaveErr("build an index of "+src.table+" after the load ("+stmt+")", err)
		}
	}
	if src.mode == CopyMerge {
		if _, err := conn.ExecContext(ctx, mergeSQL(qrel, cols, keys)); err != nil {
			return w.slaveErr("merge rows into "+src.table, err)
		}
	}
	rate := float64(copied) / max(time.Since(began).Seconds(), 1e-3)
	res, err := conn.ExecContext(ctx, sqlCopyDone, masterID, src.table, snap, copied, rate)
	if err != nil {
		return w.slaveErr("record copy of "+src.table, err)
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return fmt.Errorf("copy table %s into slave %s: its state changed meanwhile (removed?)", src.table, w.slave.Name)
	}
	if err := w.hookAt("before-copy-commit"); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return w.slaveErr("commit copy of "+src.table, err)
	}
	committed = true
	w.log.Info("table copied: catching up", keyTable, src.table, "mode", src.mode, "rows", copied,
		"seconds", time.Since(began).Round(time.Millisecond).Seconds(), "rows_per_second", int64(rate))
	return nil
}

// copyData is lib/pq's COPY FROM STDIN statement, which takes lines of
// COPY's text format.
type copyData interface {
	CopyData(ctx context.Context, line string) (driver.Result, error)
}

// streamRows runs the COPY statement copySQL on the slave's driver
// connection dc, feeding it the lines the master's cursor goreplica_copy
// returns, nextFetch rows at a time; progress is called about every second.
// It returns the number of rows copied.
func (w *worker) streamRows(ctx context.Context, mtx *sql.Tx, dc any, copySQL string, progress func(int64)) (int64, error) {
	pc, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return 0, fmt.Errorf("the driver cannot prepare COPY")
	}
	st, err := pc.PrepareContext(ctx, copySQL)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	cd, ok := st.(copyData)
	if !ok {
		return 0, fmt.Errorf("the driver's COPY takes no raw lines")
	}
	// The master renders the next lines while the slave loads these, as
	// pg_dump and psql run side by side: one fetch ahead, no more.
	ctx, cancel := context.WithCancel(ctx)
	batches := make(chan fetched, 1)
	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		defer close(batches)
		n, longest := 1, 0
		for {
			b := w.fetchLines(ctx, mtx, n)
			for _, l := range b.lines {
				longest = max(longest, len(l))
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil || len(b.lines) < n {
				return
			}
			n = nextFetch(n, longest)
		}
	}()
	defer func() {
		cancel()
		reader.Wait()
	}()
	var copied int64
	last := time.Now()
	for b := range batches {
		if b.err != nil {
			return copied, b.err
		}
		// One call a fetch: lib/pq's CopyData watches ctx with a goroutine
		// of its own on every call, which per line cost more than the line.
		if len(b.lines) > 0 {
			if _, err := cd.CopyData(ctx, strings.Join(b.lines, "\n")); err != nil {
				return copied, err
			}
		}
		copied += int64(len(b.lines))
		if time.Since(last) >= time.Second {
			last = time.Now()
			progress(copied)
		}
		if err := w.hookAt("copy-progress"); err != nil {
			return copied, err
		}
	}
	// An Exec without values ends the COPY and reports its errors.
	//lint:ignore SA1019 lib/pq's COPY statement implements only Exec.
	if _, err := st.Exec(nil); err != nil {
		return copied, err
	}
	return copied, nil
}

// fetched is one fetch of the copy's cursor: its lines, or why it failed.
type fetched struct {
	lines []string
	err   error
}

// fetchLines fetches n rows of the copy's cursor, in the copy's master
// transaction.
func (w *worker) fetchLines(ctx context.Context, mtx *sql.Tx, n int) fetched {
	rows, err := mtx.QueryContext(ctx, fmt.Sprintf("FETCH FORWARD %d FROM goreplica_copy", n))
	if err != nil {
		return fetched{err: w.masterErr("read", err)}
	}
	defer rows.Close()
	lines := make([]string, 0, n)
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fetched{err: w.masterErr("read", err)}
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		return fetched{err: w.masterErr("read", err)}
	}
	return fetched{lines: lines}
}

// emptyTable empties a slave table before a copy: TRUNCATE, or DELETE when
// a foreign key refers to it (TRUNCATE refuses that table alone).
func emptyTable(ctx context.Context, tx *sql.Conn, qrel string) error {
	var has bool
	if err := tx.QueryRowContext(ctx, fmt.Sprintf(sqlTableHasRows, qrel)).Scan(&has); err != nil || !has {
		return err
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT goreplica_truncate"); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "TRUNCATE ONLY "+qrel); err == nil {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT goreplica_truncate"); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, "DELETE FROM ONLY "+qrel)
	return err
}

// mergeSQL upserts the copied rows (in pg_temp.goreplica_merge) into the
// slave table by key: the master's rows win, the slave's other rows stay.
func mergeSQL(qrel string, cols, keys []string) string {
	isKey := map[string]bool{}
	for _, k := range keys {
		isKey[k] = true
	}
	var set []string
	for _, c := range cols {
		if !isKey[c] {
			set = append(set, fmt.Sprintf("%s = EXCLUDED.%s", pq.QuoteIdentifier(c), pq.QuoteIdentifier(c)))
		}
	}
	action := "DO NOTHING"
	if len(set) > 0 {
		action = "DO UPDATE SET " + strings.Join(set, ", ")
	}
	return fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM pg_temp.goreplica_merge ON CONFLICT (%s) %s",
		qrel, quoteAll(cols), quoteAll(cols), quoteAll(keys), action)
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pq.QuoteIdentifier(n)
	}
	return strings.Join(q, ", ")
}
