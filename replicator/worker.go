package replicator

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// Slave states, as stored on the master and shown by status.
const (
	StateRunning     = "running"
	StateStopped     = "stopped"
	StateConflict    = "conflict"
	StateError       = "error"
	StateUnreachable = "unreachable"
)

// advanceEvery is how often a slave's position moves forward when no event
// reaches it (so that purge and status keep up on a quiet or filtered log).
const advanceEvery = 10 * time.Second

// heartbeatEvery is how often an idle worker tells the master it is alive.
const heartbeatEvery = 5 * time.Second

// fastPoll is how often an idle worker rescans while transactions that may
// have missed its "waiting" flag are still running, for at most
// fastPollFor: after that a transaction still running (a long one) is
// picked up by the ordinary poll.
const (
	fastPoll    = 10 * time.Millisecond
	fastPollFor = time.Second
)

// A worker that has just caught up lingers before it sets its "waiting"
// flag: for lingerFor after its last batch it asks the master every
// lingerPoll whether anything new has committed (sqlAnyNew, one cheap
// round trip). A steady stream of commits, even a slow one (a commit every
// lingerFor or more often), therefore always finds the worker busy or
// lingering, never waiting, and no transaction NOTIFYs: a NOTIFY takes a
// database-wide lock at commit, through the WAL flush, which serializes
// concurrent writers. Only a worker idle for longer than lingerFor sets the
// flag, and is then woken by the first commit's NOTIFY.
const (
	lingerPoll = 2 * time.Millisecond
	lingerFor  = 100 * time.Millisecond
)

// finishTimeout bounds the work that must end after a stop request: the
// master acknowledgement and COMMIT PREPARED of a prepared batch.
const finishTimeout = 10 * time.Second

// position is where a slave stands: every event whose transaction is visible
// in snapshot has been applied, by batch number batch.
type position struct {
	snapshot string
	snapTime time.Time // the master's clock when snapshot was taken
	batch    int64
	// A range under way in sub-batches (subbatch.go): the transactions
	// visible in hi and not in snapshot up to cut are applied too.
	hi     string
	hiTime time.Time
	cut    txKey
	// takenAt: this process saw the snapshot (and hi) taken before then
	// (fence.go); zero when unknown.
	takenAt time.Time
	// walPos: the master's WAL insert position read after snapshot was
	// taken (fence.go); 0 when unknown.
	walPos uint64
}

type worker struct {
	r       *Replicator
	slave   Node
	log     *slog.Logger
	slaveDB *sql.DB
	wake    <-chan struct{}

	// Set up by connect, reset after any error.
	conn     *sql.Conn
	masterID string
	forward  bool
	pos      position

	// seqs are the sequences pushed with the batches (sequences.go).
	seqs seqSync
	// summary lists the transactions of the range under way, if any.
	summary *rangeSummary
	// ahead: the next sub-batch's events, queried in advance.
	ahead *readAhead
	// rangeFirst: the first cycle after connect applies what is new as a
	// range, in sub-batches (beginRange).
	rangeFirst bool
	// slaveCaptures: the slave is itself a master (log triggers), whose
	// own daemon is told of each applied batch after its commit.
	slaveCaptures bool
	// beginSQL begins a slave transaction (sqlBeginApply or
	// sqlBeginApplyAsOrigin, chosen at connect).
	beginSQL string
	// group: the slave applies in replica mode, and a chunk's events are
	// grouped by table (group.go).
	group bool

	lastAdvance   time.Time
	lastHeartbeat time.Time // last write of seen_at by the worker itself (the fence)
	ackedAt       time.Time // when the master was last told the slave's position
	unacked       bool      // the slave's position is ahead of the master's copy (ackSoon)
	waiting       bool
	tried         chan struct{} // closed once the first connect has been tried
	triedOnce     sync.Once
	busyAt        time.Time // when the worker last applied events (see lingerFor)
	idleSnap      string    // snapshot taken just after the waiting flag was set
	idleSince     time.Time // when the waiting flag was set

	leaseOwner string    // this worker's name in replica.lease
	leaseAt    time.Time // when the lease was last claimed or renewed

	state   string
	lastErr string
	// conflicts resolved by policy in the batch under way, alerted once it
	// commits; skips are the source transactions 'goreplica skip' left out
	// (conflict.go).
	conflicts []*ConflictError
	skips     map[string]bool

	// tm: where the batch under way spends its time (debug log).
	tm batchTimes
	// flying: the chunk sent to the slave whose answer is not taken yet;
	// spare: an applied chunk whose buffers the next one reuses (flight.go).
	flying *flight
	spare  *chunk

	// exact applies one statement per event, without joining events: set
	// to apply again a batch whose joined statement conflicted or failed, so
	// that the conflict or error names the row; cleared by the next batch.
	exact bool

	// notOK holds the tables whose changes are not applied now: copying
	// to this slave (copy.go). advanceNow moves the position at the next
	// cycle even without events, for a copied table to catch up. copied
	// wakes the worker when the copier has copied a table.
	notOK      map[string]bool
	advanceNow bool
	copied     chan struct{}
	// leased is true while the worker holds the slave's lease: only then
	// may its copier copy (a second daemon's copier must not).
	leased atomic.Bool

	// hook, when set (tests only), runs at each step of a batch; an error it
	// returns makes the worker drop its connections as a killed process would.
	hook func(step string) error
}

// errCrash is returned by a test hook to simulate the death of the process.
var errCrash = errors.New("simulated crash")

func (r *Replicator) newWorker(s Node) (*worker, error) {
	db, err := openDB(s.DSN)
	if err != nil {
		return nil, fmt.Errorf("slave %s: %w", s.Name, err)
	}
	w := &worker{
		r:       r,
		slave:   s,
		log:     r.log.With(keySlave, s.Name),
		slaveDB: db,
		state:   StateStopped,
		copied:  make(chan struct{}, 1),
		tried:   make(chan struct{}),
	}
	if r.opts.Waker != nil {
		w.wake = r.opts.Waker.Subscribe()
	}
	if r.hook != nil {
		w.hook = func(step string) error { return r.hook(s.Name, step) }
	}
	return w, nil
}

// run is the worker's loop: connect, apply batches, wait for wake-ups, and
// back off and reconnect after any error, until ctx is cancelled.
func (w *worker) run(ctx context.Context) {
	defer w.slaveDB.Close()
	defer w.shutdown()
	beatCtx, stopBeat := context.WithCancel(ctx)
	// The heartbeat and the copier start once the first connect has been
	// tried: the connections they open on the master and the slave would
	// otherwise be forked beside the worker's own, and a daemon's start
	// (after an outage, with a backlog) waits for those.
	afterConnect := func() bool {
		select {
		case <-w.tried:
			return true
		case <-beatCtx.Done():
			return false
		}
	}
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		if afterConnect() {
			w.beat(beatCtx)
		}
	}()
	defer func() {
		stopBeat()
		<-beating
	}()
	copying := make(chan struct{})
	go func() {
		defer close(copying)
		if afterConnect() {
			w.copier(beatCtx)
		}
	}()
	defer func() {
		stopBeat()
		<-copying
	}()
	attempt := 0
	for ctx.Err() == nil {
		err := w.step(ctx)
		if err == nil {
			attempt = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errJoined) && !w.exact {
			// Apply the batch again, one statement per event, at once.
			w.log.Debug("a joined statement conflicted or failed: applying the batch again one statement per row", keyBatch, w.pos.batch+1)
			w.exact = true
			if _, err := w.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				w.drop()
			}
			continue
		}
		if errors.Is(err, errCrash) {
			w.drop()
			return
		}
		attempt++
		w.fail(ctx, err)
		d := backoff(attempt, w.r.opts.MaxBackoff)
		w.log.Info("retrying", "in", d.String(), "attempt", attempt)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// step connects if needed, applies one batch, and waits when there was
// nothing to apply.
func (w *worker) step(ctx context.Context) error {
	if w.conn == nil {
		err := w.connect(ctx)
		w.triedOnce.Do(func() { close(w.tried) })
		if err != nil {
			return err
		}
	}
	if err := w.renewLease(ctx); err != nil {
		return err
	}
	began := time.Now()
	w.tm = batchTimes{start: began}
	n, err := w.cycle(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		w.busyAt = time.Now()
		w.r.observer().BatchApplied(w.slave.Name, n, time.Since(began))
	}
	w.setState(ctx, StateRunning, nil)
	if n > 0 {
		if w.waiting {
			if err := w.setWaiting(ctx, false); err != nil {
				return err
			}
		}
		w.pace(ctx, began)
		return nil
	}
	if err := w.flushAck(ctx); err != nil {
		return err
	}
	return w.idle(ctx)
}

// pace waits, after a batch that began at began, until BatchInterval has
// passed since then, unless a backlog is being applied.
func (w *worker) pace(ctx context.Context, began time.Time) {
	d := w.r.opts.BatchInterval - time.Since(began)
	if d <= 0 || w.pos.hi != "" {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// idle waits for work. A worker that applied events less than lingerFor ago
// lingers (see linger). Otherwise, the first time nothing is found the
// worker sets its "waiting" flag (log triggers NOTIFY only while a worker
// waits, so busy workers cost the application no NOTIFY lock) and rescans
// at once. A transaction that checked the flag before it was set does not
// NOTIFY; such transactions were in progress in the snapshot taken just
// after the flag was set, so until they have all ended the worker polls
// every fastPoll.
func (w *worker) idle(ctx context.Context) error {
	if !w.waiting {
		if until := w.busyAt.Add(lingerFor); time.Now().Before(until) {
			return w.linger(ctx, until)
		}
		return w.setWaiting(ctx, true)
	}
	// Wake at least every leaseRenew, whatever poll_interval, to keep the
	// lease on the slave.
	wait := min(w.r.opts.PollInterval, leaseRenew)
	if w.idleSnap != "" && time.Since(w.idleSince) > fastPollFor {
		w.idleSnap = ""
	}
	if w.idleSnap != "" {
		var running bool
		if err := w.r.master.QueryRowContext(ctx, sqlInProgress, w.idleSnap).Scan(&running); err != nil {
			return w.masterErr("check running transactions", err)
		}
		if !running {
			// They have all ended, perhaps since the last rescan: one
			// more finds what they committed.
			w.idleSnap = ""
			return nil
		}
		wait = fastPoll
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-w.copied:
		return nil
	case <-w.wake:
		// A transaction committed and notified: clear the flag before the
		// batch rather than after it, so that the commits that arrive
		// while the batch is read and applied do not NOTIFY too. A wake-up
		// that brings nothing costs a write more: the flag is set again.
		return w.setWaiting(ctx, false)
	case <-t.C:
	}
	return nil
}

// linger polls the master every lingerPoll until something new has
// committed for this slave, a wake-up comes, or until passes; the caller
// then runs a cycle (which applies what is new, or finds nothing and sets
// the waiting flag). It writes nothing on the master and keeps no
// transaction open there.
func (w *worker) linger(ctx context.Context, until time.Time) error {
	t := time.NewTimer(lingerPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
			return nil
		case <-t.C:
		}
		if !time.Now().Before(until) {
			return nil
		}
		anyNew, err := w.r.prepared(ctx, sqlAnyNew)
		if err != nil {
			return w.masterErr("look for new events", err)
		}
		var found bool
		if err := anyNew.QueryRowContext(ctx, w.pos.snapshot, w.slave.Name, w.forward).Scan(&found); err != nil {
			return w.masterErr("look for new events", err)
		}
		if found {
			return nil
		}
		t.Reset(lingerPoll)
	}
}

func (w *worker) setWaiting(ctx context.Context, on bool) error {
	if _, err := w.r.master.ExecContext(ctx, sqlSetWaiting, w.slave.Name, on); err != nil {
		return w.masterErr("set waiting flag", err)
	}
	w.waiting = on
	w.idleSnap = ""
	if on {
		if err := w.r.master.QueryRowContext(ctx, sqlSnapshot).Scan(&w.idleSnap, &w.idleSince); err != nil {
			return w.masterErr("take snapshot", err)
		}
		w.idleSince = time.Now()
	}
	return nil
}

// connect opens the dedicated slave connection, makes sure no other process
// applies to this slave, resolves in-doubt transactions and loads the
// slave's position.
func (w *worker) connect(ctx context.Context) error {
	began := time.Now()
	// The slave's connection is opened while the master is asked (a new
	// PostgreSQL session costs tens of milliseconds).
	type opened struct {
		conn *sql.Conn
		err  error
	}
	slaveConn := make(chan opened, 1)
	go func() {
		c, err := w.slaveDB.Conn(ctx)
		slaveConn <- opened{c, err}
	}()
	taken := false
	defer func() {
		if !taken {
			if o := <-slaveConn; o.conn != nil {
				_ = o.conn.Close()
			}
		}
	}()
	var installed bool
	if err := w.r.master.QueryRowContext(ctx, sqlSchemaExists).Scan(&installed); err != nil {
		return w.masterErr("connect", err)
	}
	if !installed {
		return fmt.Errorf("master %s: %w", w.r.opts.Master.Name, ErrNotInstalled)
	}
	var ver int
	if err := w.r.master.QueryRowContext(ctx, sqlNodeID).Scan(&w.masterID, &ver); err != nil {
		return w.masterErr("read node id", err)
	}
	if err := checkSchemaVersion("master "+w.r.opts.Master.Name, ver); err != nil {
		return err
	}
	var regSnap string
	var regBatch int64
	var regTime time.Time
	err := w.r.master.QueryRowContext(ctx, sqlRegistration, w.slave.Name).Scan(&regSnap, &regBatch, &regTime, &w.forward)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("slave %s is not registered on master %s (run 'goreplica init')", w.slave.Name, w.r.opts.Master.Name)
	}
	if err != nil {
		return w.masterErr("read registration", err)
	}

	o := <-slaveConn
	taken = true
	if o.err != nil {
		return w.slaveErr("connect", o.err)
	}
	conn := o.conn
	w.conn = conn
	if err := conn.QueryRowContext(ctx, sqlSchemaExists).Scan(&installed); err != nil {
		return w.slaveErr("connect", err)
	}
	if !installed {
		return fmt.Errorf("slave %s: %w", w.slave.Name, ErrNotInstalled)
	}
	var slaveID string
	if err := conn.QueryRowContext(ctx, sqlNodeID).Scan(&slaveID, &ver); err != nil {
		return w.slaveErr("read schema version", err)
	}
	if err := checkSchemaVersion("slave "+w.slave.Name, ver); err != nil {
		return err
	}
	if err := w.claimLease(ctx); err != nil {
		return err
	}
	w.leased.Store(true)
	if err := w.resolveInDoubt(ctx); err != nil {
		return err
	}
	replicaRole, err := mayUseReplicaRole(ctx, conn)
	if err != nil {
		return w.slaveErr("check privileges", err)
	}
	if err := conn.QueryRowContext(ctx, sqlCaptures).Scan(&w.slaveCaptures); err != nil {
		return w.slaveErr("read captured tables", err)
	}
	w.beginSQL = sqlBeginApply
	w.group = replicaRole
	if replicaRole {
		w.beginSQL = sqlBeginApplyAsReplica
	}
	// The node changes come from, for the slave's own log (multi-master).
	w.beginSQL += "; SET LOCAL replica.via = " + pq.QuoteLiteral(w.r.opts.Master.Name)
	var hi, cutLSN, cutTxid string
	var hiTime sql.NullTime
	err = conn.QueryRowContext(ctx, sqlPosition, w.masterID).Scan(&w.pos.snapshot, &w.pos.snapTime, &w.pos.batch, &hi, &hiTime, &cutLSN, &cutTxid)
	if errors.Is(err, sql.ErrNoRows) {
		// First run: start where the slave was registered.
		if _, err := conn.ExecContext(ctx, sqlInsertPosition, w.masterID, w.r.opts.Master.Name, regSnap, regBatch, regTime); err != nil {
			return w.slaveErr("create position", err)
		}
		w.pos = position{snapshot: regSnap, snapTime: regTime, batch: regBatch}
	} else if err != nil {
		return w.slaveErr("read position", err)
	} else if err := w.pos.scanRange(hi, &hiTime.Time, cutLSN, cutTxid); err != nil {
		return w.slaveErr("read position", err)
	}
	if err := w.loadSkips(ctx); err != nil {
		return err
	}
	if w.pos.batch < regBatch {
		return fmt.Errorf("slave %s is at batch %d but master %s says batch %d was applied: was the slave restored from an older backup? Re-create it and run 'goreplica init'",
			w.slave.Name, w.pos.batch, w.r.opts.Master.Name, regBatch)
	}
	if w.pos.batch > regBatch {
		// Applied but not acknowledged (a stop between COMMIT and the ack).
		if err := w.ack(ctx, w.pos, w.pos.snapTime); err != nil {
			return err
		}
	}
	w.lastAdvance = time.Now()
	w.notOK, w.advanceNow = nil, false
	w.rangeFirst = true
	w.log.Info("connected", keyBatch, w.pos.batch, "two_phase", w.slave.TwoPhase, "replica_role", replicaRole, "took", time.Since(began).Round(time.Millisecond).String())
	return nil
}

// resolveInDoubt commits the prepared batches this (master, slave) pair left
// behind, as decideInDoubt says.
func (w *worker) resolveInDoubt(ctx context.Context) error {
	rows, err := w.conn.QueryContext(ctx, sqlPrepared, gidPrefix(w.masterID, w.slave.Name))
	if err != nil {
		return w.slaveErr("list prepared transactions", err)
	}
	var gids []string
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			rows.Close()
			return w.slaveErr("list prepared transactions", err)
		}
		gids = append(gids, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return w.slaveErr("list prepared transactions", err)
	}
	for _, g := range gids {
		action, batch := decideInDoubt(g, w.masterID, w.slave.Name)
		if action != inDoubtCommit {
			continue
		}
		if _, err := w.conn.ExecContext(ctx, "COMMIT PREPARED "+pq.QuoteLiteral(g)); err != nil {
			return w.slaveErr("commit in-doubt transaction "+g, err)
		}
		w.log.Info("committed in-doubt batch", keyGID, g, keyBatch, batch)
	}
	return nil
}

// ackEvery: while batches follow each other, a worker tells the master the
// slave's position at most this often. The position is the slave's own
// (its batch records it); the master's copy serves purge and status, so a
// busy worker need not write it, and wait for a CPU on the master, after
// every batch. A worker that runs out of work sends the last one at once.
const ackEvery = 100 * time.Millisecond

// ack records on the master the position a slave has applied.
func (w *worker) ack(ctx context.Context, p position, snapTime time.Time) error {
	state := w.state
	if state == "" {
		state = StateRunning // a process that has not applied anything yet
	}
	ack, err := w.r.prepared(ctx, sqlAck)
	if err != nil {
		return w.masterErr("acknowledge batch", err)
	}
	if _, err := ack.ExecContext(ctx, w.slave.Name, p.snapshot, p.batch, snapTime, state, w.lastErr); err != nil {
		return w.masterErr("acknowledge batch", err)
	}
	w.ackedAt, w.unacked = time.Now(), false
	return nil
}

// ackSoon acknowledges p, or leaves it to flushAck when the master was
// told less than ackEvery ago.
func (w *worker) ackSoon(ctx context.Context, p position, snapTime time.Time) error {
	if time.Since(w.ackedAt) < ackEvery {
		w.unacked = true
		return nil
	}
	return w.ack(ctx, p, snapTime)
}

// flushAck acknowledges the slave's position if ackSoon left it unsent.
func (w *worker) flushAck(ctx context.Context) error {
	if !w.unacked {
		return nil
	}
	return w.ack(ctx, w.pos, w.pos.snapTime)
}

// drop abandons the slave connection (it may be inside a transaction).
func (w *worker) drop() {
	w.leased.Store(false)
	if w.conn == nil {
		return
	}
	_ = w.conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = w.conn.Close()
	w.conn = nil
}

// fail records an error: state on the master (best effort), log, alert.
func (w *worker) fail(ctx context.Context, err error) {
	w.drop()
	w.waiting = false
	state := StateError
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		state = StateConflict
	case isConnectionError(err):
		state = StateUnreachable
	}
	w.r.observer().Failed(w.slave.Name, state)
	w.setState(ctx, state, err)
}

// setState moves the worker to state, writing it to the master (best
// effort), and logs and alerts on every change of state or error.
func (w *worker) setState(ctx context.Context, state string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if state == w.state && msg == w.lastErr {
		return
	}
	prev := w.state
	w.state, w.lastErr = state, msg
	if _, e := w.r.master.ExecContext(ctx, sqlSetState, w.slave.Name, state, msg); e != nil && err == nil {
		w.log.Warn("record state on master", keyError, e)
	}
	if err != nil {
		w.log.Error("slave stopped", "state", state, keyError, err)
	} else {
		w.log.Info("slave state", "state", state, "was", prev)
	}
	w.alert(prev, state, err)
}

func (w *worker) alert(prev, state string, err error) {
	a := w.r.opts.Alerter
	if a == nil {
		return
	}
	name := w.slave.Name
	switch state {
	case StateUnreachable:
		a.Alert(Alert{Kind: AlertUnreachable, Slave: name, Err: err,
			Summary: fmt.Sprintf("slave %s: replication interrupted, a database cannot be reached", name),
			Body:    err.Error() + "\n\ngoreplica retries by itself with a capped back-off; nothing is lost."})
	case StateConflict:
		a.Alert(Alert{Kind: AlertConflict, Slave: name, Err: err,
			Summary: fmt.Sprintf("slave %s stopped on a conflict", name),
			Body: err.Error() + "\n\nThe batch was rolled back; nothing is lost and the other slaves go on. " +
				"Fix the row on the slave (or the master), and goreplica applies again at its next retry, " +
				"or leave that source transaction out with 'goreplica skip --slave " + name + "'. " +
				"'goreplica status' shows the slave's state."})
	case StateError:
		a.Alert(Alert{Kind: AlertError, Slave: name, Err: err,
			Summary: fmt.Sprintf("slave %s stopped on an error", name),
			Body: err.Error() + "\n\nThe batch was rolled back; nothing is lost and the other slaves go on. " +
				"goreplica retries with a capped back-off."})
	case StateRunning:
		switch prev {
		case StateUnreachable:
			a.Alert(Alert{Kind: AlertReachable, Slave: name,
				Summary: fmt.Sprintf("slave %s: replication resumed, databases reachable again", name)})
		case StateConflict, StateError:
			a.Alert(Alert{Kind: AlertRecovered, Slave: name,
				Summary: fmt.Sprintf("slave %s applies changes again", name)})
		}
	}
}

// shutdown marks the slave stopped on the master on the way out.
func (w *worker) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	w.dropReadAhead()
	if err := w.flushAck(ctx); err != nil {
		w.log.Debug("acknowledge the last batch", keyError, err)
	}
	w.drop()
	w.releaseLease(ctx)
	if _, err := w.r.master.ExecContext(ctx, sqlShutdown, w.slave.Name); err != nil {
		w.log.Debug("record stop on master", keyError, err)
	}
	w.log.Info("worker stopped", keyBatch, w.pos.batch)
}

func (w *worker) masterErr(op string, err error) error {
	return fmt.Errorf("%s: master %s: %w", op, w.r.opts.Master.Name, err)
}

func (w *worker) slaveErr(op string, err error) error {
	return fmt.Errorf("%s: slave %s: %w", op, w.slave.Name, err)
}

// isConnectionError reports whether err means a server could not be reached
// or went away (as opposed to an error in what was asked of it).
func isConnectionError(err error) bool {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return false
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		c := string(pe.Code)
		// 08: connection exception; 57P01-57P03: admin shutdown, crash
		// shutdown, cannot connect now.
		return strings.HasPrefix(c, "08") || c == "57P01" || c == "57P02" || c == "57P03"
	}
	return strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "bad connection")
}
