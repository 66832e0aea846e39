package replicator

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Node is one database: the master or a slave.
type Node struct {
	Name string
	DSN  string
	// TwoPhase applies batches with PREPARE TRANSACTION / COMMIT PREPARED
	// (slaves only).
	TwoPhase bool
	// NoForward: the master sends this slave only the changes made on the
	// master itself, not those it received from other nodes (slaves only,
	// for a full mesh; Init records it on the master). By default it
	// forwards them (chains, stars), never to the node they came from or
	// were received from.
	NoForward bool
}

// Options configures a Replicator.
type Options struct {
	Master  Node
	Slaves  []Node
	Tables  []string // patterns over schema.table, * wildcard
	Exclude []string
	// Sequences are patterns over schema.sequence: their values go to the
	// slaves with the batches, never moving a slave's backwards.
	Sequences []string
	// Copy is how a table new to a slave gets its rows: CopyTruncate,
	// CopyMerge or CopySkip (the default here: the slave holds them).
	Copy string
	// Create creates on a slave a chosen table it lacks, from the
	// master's catalog.
	Create bool
	// CaptureNew has the daemon capture and copy, every 10 seconds, the
	// tables created since init that Tables matches.
	CaptureNew bool

	PollInterval time.Duration // upper bound on latency when a NOTIFY is lost
	// BatchInterval is the least time between the starts of two batches
	// while there is work (not within a backlog's sub-batches): a worker
	// that applied a batch sooner waits for the rest, so that a steady
	// stream of small transactions costs the master one batch's reads per
	// interval rather than per transaction or two. 0: no wait (the
	// daemon's configuration defaults to 8ms).
	BatchInterval time.Duration
	// BatchEvents and BatchBytes bound a slave transaction: a larger
	// backlog is applied in sub-batches of whole source transactions.
	BatchEvents   int64
	BatchBytes    int64
	PurgeInterval time.Duration
	MaxBackoff    time.Duration
	// LagAlert raises AlertLag when a slave's lag goes above it, and
	// AlertLagOK when it is back under half of it; 0 disables lag alerts.
	LagAlert time.Duration

	// OnConflict is the conflict policy (PolicyStop, PolicySkip,
	// PolicyResync; empty: stop); OnConflictTables overrides it per table,
	// by schema.table pattern (conflict.go).
	OnConflict       string
	OnConflictTables map[string]string

	Logger  *slog.Logger
	Alerter Alerter // nil: no alerts
	Waker   Waker   // nil: poll only
	// Observer counts batches and failures for metrics; nil: none.
	Observer Observer

	// heartbeatEvery replaces heartbeatEvery (tests only).
	heartbeatEvery time.Duration
	// checkEvery replaces the 10 seconds between checks for drifted log
	// functions and new tables (tests only).
	checkEvery time.Duration
}

// Waker delivers wake-ups: a NOTIFY from the master's log triggers, or a
// reconnection of the listener (after which every worker rescans). Each call
// of Subscribe returns a new channel; a wake-up is never blocked on a slow
// subscriber (the channel holds one pending wake-up).
type Waker interface {
	Subscribe() <-chan struct{}
}

// AlertKind names what an Alert is about.
type AlertKind string

// The alerts a Replicator raises.
const (
	AlertUnreachable AlertKind = "unreachable" // a slave (or the master, for a slave's worker) cannot be reached
	AlertReachable   AlertKind = "reachable"   // ... and can be again
	AlertConflict    AlertKind = "conflict"    // a slave stopped on a conflict
	AlertError       AlertKind = "error"       // a slave stopped on an apply error
	AlertRecovered   AlertKind = "recovered"   // a stopped slave applies again
	AlertLag         AlertKind = "lag"         // a slave's lag went above LagAlert
	AlertLagOK       AlertKind = "lag_ok"      // ... and came back under half of it
)

// Alert is something an operator must hear about. Alert must not block.
type Alert struct {
	Kind    AlertKind
	Slave   string
	Summary string // one line: what happened, where
	Body    string // details: table, key, txid, SQL, what to run next
	Err     error
}

// Alerter receives alerts; it must not block.
type Alerter interface {
	Alert(Alert)
}

// Replicator runs one worker per slave against one master.
type Replicator struct {
	opts   Options
	log    *slog.Logger
	master *sql.DB

	// hook is copied to every worker (tests only).
	hook func(slave, step string) error
	// fences is shared by the workers (fence.go).
	fences fences
	// reportedPartitions are the unmatched partitions last warned of.
	reportedPartitions string

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // the master's prepared statements (prepared)
}

// prepared returns the master statement q prepared, preparing it at its
// first use (database/sql prepares it again on each connection it runs
// on). The statements a worker runs on every batch are prepared: parsing
// and analyzing them again each time was most of what a small batch's read
// cost the master (bench/README.md). PostgreSQL still plans each execution
// anew where a plan for the values at hand is much cheaper than a generic
// one, as for the log's range from the slave's position.
func (r *Replicator) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	r.stmtMu.Lock()
	st := r.stmts[q]
	r.stmtMu.Unlock()
	if st != nil {
		return st, nil
	}
	// Prepared without the lock: another worker may wait for a master
	// that does not answer.
	st, err := r.master.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	r.stmtMu.Lock()
	defer r.stmtMu.Unlock()
	if had := r.stmts[q]; had != nil {
		_ = st.Close()
		return had, nil
	}
	if r.stmts == nil {
		r.stmts = map[string]*sql.Stmt{}
	}
	r.stmts[q] = st
	return st, nil
}

// New checks the options and prepares a Replicator. It does not connect.
func New(opts Options) (*Replicator, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.BatchEvents <= 0 {
		opts.BatchEvents = defaultBatchEvents
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = defaultBatchBytes
	}
	if opts.PurgeInterval <= 0 {
		opts.PurgeInterval = time.Minute
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	db, err := openDB(opts.Master.DSN, asyncCommit)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	return &Replicator{opts: opts, log: opts.Logger, master: db}, nil
}

// asyncCommit is the setting of the daemon's master connections. What the
// daemon writes on the master (acknowledged positions, states, the waiting
// flag, heartbeats, purges) is bookkeeping: the authoritative position is in
// the slave's own transaction, and an acknowledgement lost in a crash of the
// master is sent again at the next connect. So it need not wait for a WAL
// flush, which would otherwise add one to every batch's way to the slave.
var asyncCommit = map[string]string{"synchronous_commit": "off"}

// Close releases the master connection pool.
func (r *Replicator) Close() error {
	r.stmtMu.Lock()
	for _, st := range r.stmts {
		_ = st.Close()
	}
	r.stmts = nil
	r.stmtMu.Unlock()
	return r.master.Close()
}

// Run replicates until ctx is cancelled: one worker per slave, plus purge and
// log-function drift checks on the master. A slave that is down, slow or in
// conflict never holds up the others. Run returns nil after a clean stop.
func (r *Replicator) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range r.opts.Slaves {
		w, err := r.newWorker(s)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.maintain(ctx)
	}()
	wg.Wait()
	return nil
}

// maintain purges applied events and regenerates drifted log functions.
func (r *Replicator) maintain(ctx context.Context) {
	purge := time.NewTicker(r.opts.PurgeInterval)
	defer purge.Stop()
	every := 10 * time.Second
	if r.opts.checkEvery > 0 {
		every = r.opts.checkEvery
	}
	drift := time.NewTicker(every)
	defer drift.Stop()
	lagging := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-purge.C:
			if n, err := r.Purge(ctx); err != nil {
				r.log.Warn("purge", keyError, err)
			} else if n > 0 {
				r.log.Debug("purged applied events", "rows", n)
			}
		case <-drift.C:
			if err := r.recaptureDrifted(ctx); err != nil {
				r.log.Warn("check log functions", keyError, err)
			}
			if r.opts.CaptureNew {
				if added, err := r.captureNew(ctx); err != nil {
					r.log.Warn("capture new tables", keyError, err)
				} else if len(added) > 0 {
					r.log.Info("new tables captured: the slaves copy them", "tables", strings.Join(added, ", "))
				}
			}
			if r.opts.LagAlert > 0 {
				if err := r.checkLag(ctx, lagging); err != nil {
					r.log.Warn("check lag", keyError, err)
				}
			}
		}
	}
}

// Purge deletes the log rows every registered slave has acknowledged, and
// gives the log statistics where autovacuum does not (sqlAnalyzeLog).
func (r *Replicator) Purge(ctx context.Context) (int64, error) {
	res, err := r.master.ExecContext(ctx, sqlPurge)
	if err != nil {
		return 0, fmt.Errorf("purge replica_log on master %s: %w", r.opts.Master.Name, err)
	}
	var stale bool
	if err := r.master.QueryRowContext(ctx, sqlLogStatsStale).Scan(&stale); err != nil {
		return 0, fmt.Errorf("read replica_log's statistics on master %s: %w", r.opts.Master.Name, err)
	}
	if stale {
		// A role that does not own the log gets a warning, not an error.
		if _, err := r.master.ExecContext(ctx, sqlAnalyzeLog); err != nil {
			return 0, fmt.Errorf("analyze replica_log on master %s: %w", r.opts.Master.Name, err)
		}
	}
	return res.RowsAffected()
}

func (r *Replicator) recaptureDrifted(ctx context.Context) error {
	rows, err := r.master.QueryContext(ctx, sqlRecaptureDrifted)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		r.log.Warn("table columns changed: log function regenerated (install as a superuser to do this in the DDL's own transaction)", keyTable, name)
	}
	return rows.Err()
}

// sqlLag: each slave's lag, 0 when nothing waits for it. The look for a
// waiting event is sqlAnyNew's (ORDER BY txid keeps it on the log's index).
const sqlLag = `SELECT s.name,
       CASE WHEN (SELECT l.txid FROM replica.replica_log l
                   WHERE l.txid >= pg_snapshot_xmin(s.acked_snapshot)
                     AND NOT pg_visible_in_snapshot(l.txid, s.acked_snapshot)
                     AND (l.origin IS NULL OR (s.forward AND l.origin <> s.name AND l.via IS DISTINCT FROM s.name))
                   ORDER BY l.txid LIMIT 1) IS NOT NULL
            THEN extract(epoch FROM now() - s.snapshot_time)::float8 ELSE 0 END
  FROM replica.slaves s`

// checkLag raises lag alerts for this daemon's slaves.
func (r *Replicator) checkLag(ctx context.Context, lagging map[string]bool) error {
	rows, err := r.master.QueryContext(ctx, sqlLag)
	if err != nil {
		return err
	}
	defer rows.Close()
	ours := map[string]bool{}
	for _, s := range r.opts.Slaves {
		ours[s.Name] = true
	}
	for rows.Next() {
		var name string
		var secs float64
		if err := rows.Scan(&name, &secs); err != nil {
			return err
		}
		if !ours[name] {
			continue
		}
		d := time.Duration(secs * float64(time.Second))
		now, kind := lagTransition(lagging[name], d, r.opts.LagAlert)
		lagging[name] = now
		if kind == "" || r.opts.Alerter == nil {
			continue
		}
		a := Alert{Kind: kind, Slave: name}
		if kind == AlertLag {
			a.Summary = fmt.Sprintf("slave %s is %s behind the master (alert threshold %s)", name, d.Round(time.Second), r.opts.LagAlert)
			a.Body = "Changes are waiting to be applied. 'goreplica status' shows pending events and any error."
		} else {
			a.Summary = fmt.Sprintf("slave %s has caught up (lag %s)", name, d.Round(time.Second))
		}
		r.log.Warn(a.Summary, keySlave, name)
		r.opts.Alerter.Alert(a)
	}
	return rows.Err()
}

// lagTransition decides, from whether a slave was already reported as
// lagging and its current lag, whether it is lagging now and which alert, if
// any, to raise. The alert clears only under half the threshold so that a
// lag hovering around it does not raise an alert on every check.
func lagTransition(alerting bool, lag, threshold time.Duration) (bool, AlertKind) {
	switch {
	case !alerting && lag > threshold:
		return true, AlertLag
	case alerting && lag < threshold/2:
		return false, AlertLagOK
	default:
		return alerting, ""
	}
}

// slog keys used throughout the package.
const (
	keySlave = "slave"
	keyTable = "table"
	keyTxID  = "txid"
	keyGID   = "gid"
	keyError = "error"
	keyBatch = "batch"
)
