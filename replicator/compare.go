package replicator

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lib/pq"
)

// Compare: a table read on the master and on a slave at the same logical
// point while the application keeps writing (Londiste's way):
//
//  1. on the master, in a short transaction, LOCK TABLE ONLY t IN SHARE
//     MODE: it waits for the transactions writing t to end and keeps new
//     ones out;
//  2. the master's REPEATABLE READ snapshot is taken after the lock: it
//     holds every change of t there will be until the lock goes;
//  3. the slave's REPEATABLE READ snapshot is taken by reading its
//     position (replica.position, written in the same transaction as the
//     data it covers): when an event of t is not covered by it, that
//     snapshot is dropped and taken again, until the daemon has applied
//     every event of t;
//  4. the lock is released: both snapshots show t at the same point, and
//     the lock lasted as long as the slave took to catch up with t.
//
// The table is then read in chunks of key ranges, both sides at once: a
// row count and an md5 of every row's text (an md5 of the rows' md5s) in key order per chunk,
// computed by the servers, so that the daemon's memory does not grow with
// the table.

// Default limits of a compare (CompareOptions).
const (
	defaultChunkRows      = 10000
	defaultLockTimeout    = 5 * time.Second
	defaultCatchUpTimeout = time.Minute
	catchUpPoll           = 20 * time.Millisecond
)

// ErrNotCaughtUp is returned when a slave has not applied every logged
// change of a table and no daemon applies to it, or it did not catch up in
// time: its rows cannot be compared with the master's.
var ErrNotCaughtUp = errors.New("the slave has not applied every change of the table")

// CompareOptions chooses what Compare compares and how.
type CompareOptions struct {
	// Tables are schema.table names or patterns (* wildcard) among the
	// captured tables; empty: every captured table.
	Tables []string
	// Slave names one slave; empty: every slave of Options.
	Slave string
	// ChunkRows is the number of rows per checksummed key range.
	ChunkRows int
	// LockTimeout bounds the wait for the master's SHARE lock, which waits
	// for the transactions writing the table to end.
	LockTimeout time.Duration
	// CatchUpTimeout bounds the wait for the slave to apply every logged
	// change of the table.
	CatchUpTimeout time.Duration
	// Progress, when set, is called after each chunk.
	Progress func(Progress)
}

func (o *CompareOptions) defaults() {
	if o.ChunkRows <= 0 {
		o.ChunkRows = defaultChunkRows
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.CatchUpTimeout <= 0 {
		o.CatchUpTimeout = defaultCatchUpTimeout
	}
}

// Progress is how far the compare of one table on one slave has gone.
type Progress struct {
	Slave, Table string
	Rows         int64 // master rows compared so far
	Estimate     int64 // the master's estimate of the table's rows (pg_class.reltuples)
	Elapsed      time.Duration
}

// TableComparison is the outcome of comparing one table on one slave.
type TableComparison struct {
	Slave      string `json:"slave"`
	Table      string `json:"table"`
	Equal      bool   `json:"equal"`
	MasterRows int64  `json:"master_rows"`
	SlaveRows  int64  `json:"slave_rows"`
	// DiffRanges counts the key ranges whose rows differ; FirstDiff
	// describes the first one.
	DiffRanges int    `json:"differing_ranges"`
	FirstDiff  string `json:"first_difference,omitempty"`
	// Error says why the table could not be compared.
	Error string `json:"error,omitempty"`
	// LockMs is how long the master's SHARE lock was held.
	LockMs  float64 `json:"lock_ms"`
	Seconds float64 `json:"seconds"`
}

// Compare compares every chosen table on every chosen slave with the
// master. A table that cannot be compared is reported with its Error and
// does not stop the others; the error returned is for what stops the
// whole compare (the master cannot be read, no table matches).
func Compare(ctx context.Context, opts Options, co CompareOptions) ([]TableComparison, error) {
	co.defaults()
	c, err := openComparer(ctx, opts, co.Slave)
	if err != nil {
		return nil, err
	}
	defer c.close()
	tables, err := c.chosenTables(ctx, co.Tables)
	if err != nil {
		return nil, err
	}
	var out []TableComparison
	for _, s := range c.slaves {
		for _, t := range tables {
			out = append(out, c.compareOne(ctx, s, t, co))
		}
	}
	return out, nil
}

// comparer holds the connections of a compare or a repair.
type comparer struct {
	opts     Options
	master   *sql.DB
	masterID string
	slaves   []cmpSlave
}

type cmpSlave struct {
	node Node
	db   *sql.DB
}

func openComparer(ctx context.Context, opts Options, only string) (*comparer, error) {
	master, err := openDB(opts.Master.DSN)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	c := &comparer{opts: opts, master: master}
	var ver int
	if err := master.QueryRowContext(ctx, sqlNodeID).Scan(&c.masterID, &ver); err != nil {
		c.close()
		var pe *pq.Error
		if errors.As(err, &pe) && pe.Code == "42P01" {
			return nil, fmt.Errorf("master %s: %w", opts.Master.Name, ErrNotInstalled)
		}
		return nil, fmt.Errorf("read node id: master %s: %w", opts.Master.Name, err)
	}
	for _, s := range opts.Slaves {
		if only != "" && s.Name != only {
			continue
		}
		db, err := openDB(s.DSN)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("slave %s: %w", s.Name, err)
		}
		c.slaves = append(c.slaves, cmpSlave{node: s, db: db})
	}
	if len(c.slaves) == 0 {
		c.close()
		return nil, fmt.Errorf("no slave %q in the configuration", only)
	}
	return c, nil
}

func (c *comparer) close() {
	c.master.Close()
	for _, s := range c.slaves {
		s.db.Close()
	}
}

// cmpTable is a captured table as compare and repair read it.
type cmpTable struct {
	relid    int64
	name     string   // quoted schema.table, as in replica.tables and the log
	plain    string   // schema.table unquoted, for matching names
	rel      string   // table unquoted, for names given without a schema
	keys     []string // quoted key columns, in key order
	keyTypes []string // their types, schema-qualified
	cols     []string // quoted columns the log carries (not generated), by number
	// keyPieces find a row by key as the log trigger does (one format()
	// piece per key column: "id" OPERATOR(pg_catalog.=) %L::integer).
	keyPieces []string
	identity  []string // quoted GENERATED ALWAYS AS IDENTITY columns
	// keyOps are the schema-qualified operators of the key index's
	// opclasses, btreeStrategies per key column (<, <=, =, >=, >).
	keyOps   []string
	estimate int64
}

// sqlCompareTables describes the captured tables. It runs with search_path
// pg_catalog, so that format_type qualifies every other type.
const sqlCompareTables = `SELECT t.relid::int8, t.name, n.nspname || '.' || c.relname, c.relname, greatest(c.reltuples, 0)::int8,
       (SELECT array_agg(format('%I', a.attname) ORDER BY k.ord)
          FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = c.oid AND i.indisprimary),
       (SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
          FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = c.oid AND i.indisprimary),
       (SELECT array_agg(format('%I', a.attname) ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
       (SELECT k.pieces FROM replica.key_condition(c.oid) k),
       coalesce((SELECT array_agg(format('%I', a.attname)) FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity = 'a'), '{}'),
       (SELECT array_agg(format('%I.%s', opn.nspname, o.oprname) ORDER BY k.ord, s.strategy)
          FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indclass::oid[]) WITH ORDINALITY AS k(attnum, cls, ord)
          JOIN pg_opclass oc ON oc.oid = k.cls
         CROSS JOIN generate_series(1, 5) AS s(strategy)
          JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = oc.opcintype
                         AND ao.amoprighttype = oc.opcintype AND ao.amopstrategy = s.strategy AND ao.amopmethod = oc.opcmethod
          JOIN pg_operator o ON o.oid = ao.amopopr
          JOIN pg_namespace opn ON opn.oid = o.oprnamespace
         WHERE i.indrelid = c.oid AND i.indisprimary)
  FROM replica.tables t
  JOIN pg_class c ON c.oid = t.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 ORDER BY 3`

// chosenTables returns the captured tables that patterns name (all of
// them when there is none); a pattern that matches no captured table is an
// error.
func (c *comparer) chosenTables(ctx context.Context, patterns []string) ([]*cmpTable, error) {
	tx, err := c.master.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list tables: master %s: %w", c.opts.Master.Name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SET LOCAL search_path = pg_catalog, pg_temp`); err != nil {
		return nil, fmt.Errorf("list tables: master %s: %w", c.opts.Master.Name, err)
	}
	rows, err := tx.QueryContext(ctx, sqlCompareTables)
	if err != nil {
		return nil, fmt.Errorf("list tables: master %s: %w", c.opts.Master.Name, err)
	}
	defer rows.Close()
	var all []*cmpTable
	for rows.Next() {
		t := &cmpTable{}
		if err := rows.Scan(&t.relid, &t.name, &t.plain, &t.rel, &t.estimate, pq.Array(&t.keys), pq.Array(&t.keyTypes),
			pq.Array(&t.cols), pq.Array(&t.keyPieces), pq.Array(&t.identity), pq.Array(&t.keyOps)); err != nil {
			return nil, fmt.Errorf("list tables: master %s: %w", c.opts.Master.Name, err)
		}
		all = append(all, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: master %s: %w", c.opts.Master.Name, err)
	}
	chosen, err := pickTables(all, patterns)
	if err != nil {
		return nil, err
	}
	for _, t := range chosen {
		if len(t.keys) == 0 {
			return nil, fmt.Errorf("table %s has no primary key on master %s: it cannot be compared by key", t.name, c.opts.Master.Name)
		}
		if len(t.keyOps) != btreeStrategies*len(t.keys) {
			return nil, fmt.Errorf("table %s on master %s: the operators of its key's btree index are not all known: it cannot be compared by key", t.name, c.opts.Master.Name)
		}
	}
	return chosen, nil
}

// pickTables keeps the tables a pattern matches (schema.table, unquoted, *
// wildcard; or quoted as SQL writes it; or a table name alone, in any
// schema), in their order; no pattern keeps them all. A pattern matching
// nothing is an error naming it.
func pickTables(all []*cmpTable, patterns []string) ([]*cmpTable, error) {
	if len(patterns) == 0 {
		if len(all) == 0 {
			return nil, errors.New("no table is replicated (run 'goreplica init')")
		}
		return all, nil
	}
	var chosen []*cmpTable
	var missing []string
	for _, p := range patterns {
		found := false
		for _, t := range all {
			found = found || t.matches(p)
		}
		if !found {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("not a replicated table: %s (compare takes schema.table names of captured tables)", strings.Join(missing, ", "))
	}
	for _, t := range all {
		for _, p := range patterns {
			if t.matches(p) {
				chosen = append(chosen, t)
				break
			}
		}
	}
	return chosen, nil
}

// compareOne compares one table on one slave.
func (c *comparer) compareOne(ctx context.Context, s cmpSlave, t *cmpTable, co CompareOptions) TableComparison {
	began := time.Now()
	res := TableComparison{Slave: s.node.Name, Table: t.name}
	p, err := c.openPoint(ctx, s, t, co, false)
	if err != nil {
		res.Error = err.Error()
		res.Seconds = time.Since(began).Seconds()
		return res
	}
	defer p.close()
	res.LockMs = float64(p.lockHeld.Microseconds()) / 1000
	err = p.walk(ctx, co.ChunkRows, func(r keyRange, m, sl chunkSum) error {
		res.MasterRows += m.rows
		res.SlaveRows += sl.rows
		if m != sl {
			res.DiffRanges++
			if res.FirstDiff == "" {
				res.FirstDiff = fmt.Sprintf("key range %s: master %d rows, slave %d rows", r.describe(t), m.rows, sl.rows)
			}
		}
		if co.Progress != nil {
			co.Progress(Progress{Slave: s.node.Name, Table: t.name, Rows: res.MasterRows, Estimate: t.estimate, Elapsed: time.Since(began)})
		}
		return nil
	})
	res.Seconds = time.Since(began).Seconds()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Equal = res.DiffRanges == 0
	return res
}

// point is one table seen on the master and on one slave at the same
// logical point: each connection is inside a REPEATABLE READ transaction.
type point struct {
	c        *comparer
	slave    cmpSlave
	t        *cmpTable
	m, s     *sql.Conn
	lockHeld time.Duration

	forward    bool   // the slave takes changes forwarded from other nodes
	beginSlave string // begins the slave's transaction
}

// pinSettings make every value print the same on master and slave, and
// as the log functions print it (replica.apply reads it so).
// The search_path is the log functions' too (a regclass value prints
// schema-qualified): the key's operators are named with their schema.
const pinSettings = `SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3;
SET LOCAL lc_monetary = 'C'; SET LOCAL TimeZone = 'UTC'; SET LOCAL bytea_output = 'hex'; SET LOCAL xmloption = content;
SET LOCAL search_path = pg_catalog, pg_temp`

// sqlTablePending counts the logged events of table $1 that the slave's
// position ($2, and the range under way $5 up to ($6, $7)) does not count
// as applied, with sqlRead's origin filter ($3 the slave, $4 forward);
// only those visible in snapshot $8 unless $8 is empty.
const sqlTablePending = `SELECT count(*) FROM replica.replica_log l
 WHERE l.tbl = $1
   AND l.txid >= pg_snapshot_xmin($2::pg_snapshot)
   AND NOT pg_visible_in_snapshot(l.txid, $2::pg_snapshot)
   AND ($8 = '' OR pg_visible_in_snapshot(l.txid, nullif($8, '')::pg_snapshot))
   AND (l.origin IS NULL OR ($4 AND l.origin <> $3 AND l.via IS DISTINCT FROM $3))
   AND NOT ($5 <> '' AND pg_visible_in_snapshot(l.txid, nullif($5, '')::pg_snapshot)
            AND ((SELECT max(m.lsn) FROM replica.replica_log m
                   WHERE m.txid = l.txid AND (m.origin IS NULL OR ($4 AND m.origin <> $3 AND m.via IS DISTINCT FROM $3))), l.txid)
                <= (nullif($6, '')::pg_lsn, nullif($7, '')::xid8))`

// sqlTableStateOf reads the state of one table on a slave (no row: ok).
const sqlTableStateOf = `SELECT state FROM replica.table_state WHERE master = $1 AND tbl = $2`

// sqlSlaveSeen says how long ago a daemon's worker for the slave was heard
// of (NULL: never, or stopped cleanly) and its recorded state.
const sqlSlaveSeen = `SELECT forward, state, extract(epoch FROM now() - seen_at)::float8 FROM replica.slaves WHERE name = $1`

// maxLockHold bounds how long the master's SHARE lock waits for the slave
// to apply the last changes of the table; past it the lock is released
// and taken again once the slave has caught up without it.
const maxLockHold = 3 * time.Second

// openPoint reads table t on the master and on slave s at the same
// logical point (see the top of this file). With writable the slave's
// transaction may write (repair --apply) as the daemon's apply does.
//
// The slave is first left to catch up with t without any lock, so that
// the lock waits only for the changes made while it was being taken; if
// the slave still takes longer than maxLockHold, the lock is released and
// the whole is tried again, within co.CatchUpTimeout.
func (c *comparer) openPoint(ctx context.Context, s cmpSlave, t *cmpTable, co CompareOptions, writable bool) (*point, error) {
	p := &point{c: c, slave: s, t: t}
	ok := false
	defer func() {
		if !ok {
			p.close()
		}
	}()
	var err error
	if p.m, err = c.master.Conn(ctx); err != nil {
		return nil, c.masterErr("connect", err)
	}
	if p.s, err = s.db.Conn(ctx); err != nil {
		return nil, slaveErr(s.node.Name, "connect", err)
	}
	var forward bool
	var state string
	var silent sql.NullFloat64
	err = p.m.QueryRowContext(ctx, sqlSlaveSeen, s.node.Name).Scan(&forward, &state, &silent)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("slave %s is not registered on master %s (run 'goreplica init')", s.node.Name, c.opts.Master.Name)
	}
	if err != nil {
		return nil, c.masterErr("read registration", err)
	}
	p.beginSlave = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; " + pinSettings
	if writable {
		replicaRole, err := mayUseReplicaRole(ctx, p.s)
		if err != nil {
			return nil, slaveErr(s.node.Name, "check privileges", err)
		}
		p.beginSlave = "BEGIN ISOLATION LEVEL REPEATABLE READ; " + pinSettings + "; SET CONSTRAINTS ALL DEFERRED"
		if replicaRole {
			p.beginSlave += "; SET LOCAL session_replication_role = replica"
		}
	}
	p.forward = forward
	deadline := time.Now().Add(co.CatchUpTimeout)
	for {
		// Without the lock: wait until the slave has applied what was
		// logged for t until now (what is logged meanwhile is left to the
		// locked wait, a few milliseconds of the daemon's work).
		var now string
		if err := p.m.QueryRowContext(ctx, `SELECT pg_current_snapshot()::text`).Scan(&now); err != nil {
			return nil, c.masterErr("take snapshot", err)
		}
		for {
			pending, err := p.pending(ctx, false, now)
			if err != nil {
				return nil, err
			}
			if pending == 0 {
				break
			}
			if err := p.waitDaemon(ctx, pending, deadline, co.CatchUpTimeout); err != nil {
				return nil, err
			}
		}
		done, err := p.lockedPoint(ctx, co)
		if err != nil {
			return nil, err
		}
		if done {
			ok = true
			return p, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("table %s on slave %s: %w: the slave did not apply the table's last changes within %s of a lock, for %s (raise --catch-up-timeout, or compare when the master is less busy)",
				t.name, s.node.Name, ErrNotCaughtUp, maxLockHold, co.CatchUpTimeout)
		}
	}
}

// lockedPoint takes the SHARE lock, the master's snapshot, and the slave's
// once it has applied every change of t, then releases the lock. It
// returns false, with no transaction open, when the slave took longer than
// maxLockHold.
func (p *point) lockedPoint(ctx context.Context, co CompareOptions) (bool, error) {
	c, t, s := p.c, p.t, p.slave
	lock, err := c.master.Conn(ctx)
	if err != nil {
		return false, c.masterErr("connect", err)
	}
	defer func() {
		// Whatever happened, the lock goes now; a connection whose
		// ROLLBACK failed is not handed back to the pool.
		if _, err := lock.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
			_ = lock.Raw(func(any) error { return driver.ErrBadConn })
		}
		lock.Close()
	}()
	// The server ends the lock's session by itself if this process hangs
	// (or the network goes) while it holds the lock.
	lockSQL := fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = %d; SET LOCAL idle_in_transaction_session_timeout = %d; LOCK TABLE ONLY %s IN SHARE MODE",
		co.LockTimeout.Milliseconds(), (maxLockHold + 10*time.Second).Milliseconds(), t.name)
	if _, err := lock.ExecContext(ctx, lockSQL); err != nil {
		var pe *pq.Error
		if errors.As(err, &pe) && pe.Code == "55P03" {
			return false, fmt.Errorf("lock table %s on master %s: not granted within %s: a transaction that writes to it is still open (see pg_stat_activity); try again later or raise --lock-timeout", t.name, c.opts.Master.Name, co.LockTimeout)
		}
		return false, c.masterErr("lock table "+t.name, err)
	}
	locked := time.Now()
	if _, err := p.m.ExecContext(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "+pinSettings); err != nil {
		return false, c.masterErr("begin", err)
	}
	var snap string
	if err := p.m.QueryRowContext(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snap); err != nil {
		return false, c.masterErr("take snapshot", err)
	}
	for {
		pending, err := p.pending(ctx, true, "")
		if err != nil {
			return false, err
		}
		if pending == 0 {
			break
		}
		if _, err := p.s.ExecContext(ctx, "ROLLBACK"); err != nil {
			return false, slaveErr(s.node.Name, "roll back", err)
		}
		if time.Since(locked) > maxLockHold {
			if _, err := p.m.ExecContext(ctx, "ROLLBACK"); err != nil {
				return false, c.masterErr("roll back", err)
			}
			return false, nil
		}
		if err := p.waitDaemon(ctx, pending, locked.Add(maxLockHold+time.Second), maxLockHold); err != nil {
			return false, err
		}
	}
	if _, err := lock.ExecContext(ctx, "COMMIT"); err != nil {
		return false, c.masterErr("release lock on "+t.name, err)
	}
	p.lockHeld = time.Since(locked)
	return true, nil
}

// pending counts the logged changes of t that the slave's position does
// not cover (those visible in snapshot upTo, unless it is ""). In point
// mode the position is read as the first query of the slave's transaction
// (whose snapshot it then fixes, left open) and the log in the master's
// transaction; otherwise each in a statement of its own.
func (p *point) pending(ctx context.Context, point bool, upTo string) (int64, error) {
	c, s := p.c, p.slave
	if point {
		if _, err := p.s.ExecContext(ctx, p.beginSlave); err != nil {
			return 0, slaveErr(s.node.Name, "begin", err)
		}
	}
	var pos position
	var hi, cutLSN, cutTxid string
	var hiTime sql.NullTime
	err := p.s.QueryRowContext(ctx, sqlPosition, c.masterID).Scan(&pos.snapshot, &pos.snapTime, &pos.batch, &hi, &hiTime, &cutLSN, &cutTxid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("slave %s has not applied anything from master %s yet: run the daemon ('goreplica run') first", s.node.Name, c.opts.Master.Name)
	}
	if err != nil {
		return 0, slaveErr(s.node.Name, "read position", err)
	}
	// A table whose initial copy is not done is not compared: its rows and
	// its skipped changes are on their way (copy.go).
	var state string
	switch err := p.s.QueryRowContext(ctx, sqlTableStateOf, c.masterID, p.t.name).Scan(&state); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, slaveErr(s.node.Name, "read table state", err)
	case state != TableOK:
		return 0, fmt.Errorf("table %s on slave %s: %w: its initial copy is not done (state %s; 'goreplica wait' returns once every table is ok)",
			p.t.name, s.node.Name, ErrNotCaughtUp, state)
	}
	var n int64
	if err := p.m.QueryRowContext(ctx, sqlTablePending, p.t.name, pos.snapshot, s.node.Name, p.forward, hi, cutLSN, cutTxid, upTo).Scan(&n); err != nil {
		return 0, c.masterErr("count pending events of "+p.t.name, err)
	}
	return n, nil
}

// waitDaemon waits a little for the daemon to apply the pending changes
// of t, or says why it cannot: no daemon applies to the slave, or the time
// (timeout, ending at deadline) is up.
func (p *point) waitDaemon(ctx context.Context, pending int64, deadline time.Time, timeout time.Duration) error {
	c, t, s := p.c, p.t, p.slave
	var forward bool
	var state string
	var silent sql.NullFloat64
	if err := c.master.QueryRowContext(ctx, sqlSlaveSeen, s.node.Name).Scan(&forward, &state, &silent); err != nil {
		return c.masterErr("read registration", err)
	}
	// A daemon that has just started is heard from (its heartbeat) before
	// its first batch marks the slave running: 'stopped' with a recent
	// heartbeat is a daemon starting (one that stops clears the heartbeat).
	alive := silent.Valid && time.Duration(silent.Float64*float64(time.Second)) <= staleAfter(c.opts) &&
		(state == StateRunning || state == StateStopped)
	if !alive {
		return fmt.Errorf("table %s on slave %s: %w: %d of its events are not applied yet and no daemon applies to the slave (state %s): start 'goreplica run', or fix what stops it ('goreplica status')",
			t.name, s.node.Name, ErrNotCaughtUp, pending, state)
	}
	if time.Now().After(deadline) {
		return fmt.Errorf("table %s on slave %s: %w: %d of its events were still not applied after %s (a backlog? 'goreplica status' shows it; raise --catch-up-timeout)",
			t.name, s.node.Name, ErrNotCaughtUp, pending, timeout)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(catchUpPoll):
		return nil
	}
}

// close ends both transactions and returns the connections.
func (p *point) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, cn := range []*sql.Conn{p.m, p.s} {
		if cn == nil {
			continue
		}
		if _, err := cn.ExecContext(ctx, "ROLLBACK"); err != nil {
			_ = cn.Raw(func(any) error { return driver.ErrBadConn })
		}
		cn.Close()
	}
}

func (c *comparer) masterErr(op string, err error) error {
	return fmt.Errorf("%s: master %s: %w", op, c.opts.Master.Name, err)
}

func slaveErr(slave, op string, err error) error {
	return fmt.Errorf("%s: slave %s: %w", op, slave, err)
}

// chunkSum is a key range's row count and the md5 of its rows' md5s in
// key order (an md5 per row keeps the aggregate at 32 bytes a row, however
// wide the rows).
type chunkSum struct {
	rows int64
	md5  string
}

// rowText is a row as one text value, its columns in the master's order.
func rowText(t *cmpTable) string { return "ROW(" + strings.Join(t.cols, ", ") + ")::text" }

// sum checksums range r on one side.
func (t *cmpTable) sum(ctx context.Context, cn *sql.Conn, r keyRange) (chunkSum, error) {
	w, args := r.where(t)
	q := fmt.Sprintf(`SELECT count(*), coalesce(md5(string_agg(md5(%s), '' ORDER BY %s)), '') FROM ONLY %s AS tbl WHERE %s`,
		rowText(t), keyOrder(t), t.name, w)
	var s chunkSum
	err := cn.QueryRowContext(ctx, q, args...).Scan(&s.rows, &s.md5)
	return s, err
}

// nthKey returns the key of the n-th row (from 1) of range r on one side,
// or nil when it holds fewer rows.
func (t *cmpTable) nthKey(ctx context.Context, cn *sql.Conn, r keyRange, n int64) ([]string, error) {
	w, args := r.where(t)
	sel := make([]string, len(t.keys))
	for i, k := range t.keys {
		sel[i] = "format('%s', " + k + ")"
	}
	q := fmt.Sprintf(`SELECT %s FROM ONLY %s AS tbl WHERE %s ORDER BY %s OFFSET %d LIMIT 1`,
		strings.Join(sel, ", "), t.name, w, keyOrder(t), n-1)
	key := make([]string, len(t.keys))
	dest := make([]any, len(key))
	for i := range key {
		dest[i] = &key[i]
	}
	err := cn.QueryRowContext(ctx, q, args...).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return key, err
}

// sumBoth checksums range r on the master and on the slave at once.
func (p *point) sumBoth(ctx context.Context, r keyRange) (m, s chunkSum, err error) {
	done := make(chan error, 1)
	go func() {
		var e error
		s, e = p.t.sum(ctx, p.s, r)
		if e != nil {
			e = slaveErr(p.slave.node.Name, "checksum "+p.t.name, e)
		}
		done <- e
	}()
	m, err = p.t.sum(ctx, p.m, r)
	if err != nil {
		err = p.c.masterErr("checksum "+p.t.name, err)
	}
	if e := <-done; err == nil {
		err = e
	}
	return m, s, err
}

// walk checksums the whole table in ranges of chunk master rows, in key
// order, calling f for each range.
func (p *point) walk(ctx context.Context, chunk int, f func(keyRange, chunkSum, chunkSum) error) error {
	var lo []string
	for {
		hi, err := p.t.nthKey(ctx, p.m, keyRange{lo: lo}, int64(chunk))
		if err != nil {
			return p.c.masterErr("read keys of "+p.t.name, err)
		}
		r := keyRange{lo: lo, hi: hi}
		m, s, err := p.sumBoth(ctx, r)
		if err != nil {
			return err
		}
		if err := f(r, m, s); err != nil {
			return err
		}
		if hi == nil {
			return nil
		}
		lo = hi
	}
}

// matches reports whether a name or pattern given by the user names t.
func (t *cmpTable) matches(p string) bool {
	if matchTable(p, t.plain) || p == t.name {
		return true
	}
	if strings.Contains(p, ".") {
		return false
	}
	if unq, ok := strings.CutPrefix(p, `"`); ok {
		if unq, ok = strings.CutSuffix(unq, `"`); ok {
			return strings.ReplaceAll(unq, `""`, `"`) == t.rel
		}
	}
	return matchTable(p, t.rel)
}
