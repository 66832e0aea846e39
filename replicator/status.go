package replicator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lib/pq"
)

const sqlSlaveStatus = `SELECT s.name, s.state, coalesce(s.last_error, ''), s.last_error_at, s.acked_batch,
       s.acked_snapshot::text, s.acked_at, s.seen_at,
       (SELECT count(*) FROM replica.replica_log l
         WHERE l.txid >= pg_snapshot_xmin(s.acked_snapshot)
           AND NOT pg_visible_in_snapshot(l.txid, s.acked_snapshot)
           AND (l.origin IS NULL OR (s.forward AND l.origin <> s.name AND l.via IS DISTINCT FROM s.name))) AS pending,
       extract(epoch FROM now() - s.snapshot_time)::float8,
       extract(epoch FROM now() - s.seen_at)::float8
  FROM replica.slaves s ORDER BY s.name`

// sqlLogStats counts the log's rows, its size on disk, and the captured
// tables that still exist (a dropped table stays in replica.tables until
// init runs again).
const sqlLogStats = `SELECT count(*), pg_total_relation_size('replica.replica_log'),
       (SELECT count(*) FROM replica.tables t JOIN pg_class c ON c.oid = t.relid)
  FROM replica.replica_log`

// Status is the state of a replication setup, as `goreplica status` shows it.
type Status struct {
	Master    string `json:"master"`
	Reachable bool   `json:"master_reachable"`
	Error     string `json:"error,omitempty"`
	// ConfigError says that Error comes from what a DSN asks for (SSL,
	// a start-up parameter a pooler refuses), not from an outage.
	ConfigError bool `json:"config_error,omitempty"`
	// Warnings are problems of the setup that replication works around
	// badly or not at all, such as a pooler mode a node cannot work with.
	Warnings     []string      `json:"warnings,omitempty"`
	LogRows      int64         `json:"log_rows"`
	LogBytes     int64         `json:"log_bytes"`
	TablesCount  int64         `json:"tables"`
	Slaves       []SlaveStatus `json:"slaves"`
	MeasuredAtMs int64         `json:"measured_at_unix_ms"`
}

// SlaveStatus is one slave's line of Status.
type SlaveStatus struct {
	Name string `json:"name"`
	// State is running, stopped (no daemon is applying), conflict, error or
	// unreachable.
	State         string     `json:"state"`
	LagSeconds    float64    `json:"lag_seconds"`
	PendingEvents int64      `json:"pending_events"`
	LastError     string     `json:"last_error"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
	AppliedBatch  int64      `json:"applied_batch"`
	Snapshot      string     `json:"applied_snapshot"`
	AckedAt       *time.Time `json:"acked_at,omitempty"`
	InDoubt       []string   `json:"in_doubt"`
	Reachable     bool       `json:"reachable"`
	// Configured is false for a slave registered on the master that the
	// configuration no longer names: its registration holds back purge
	// until 'goreplica unregister' removes it.
	Configured bool `json:"configured"`
	// Applying is true when a worker was heard from recently: a daemon
	// applies to this slave.
	Applying bool `json:"applying"`
	// Tables is the state of each captured table on this slave.
	Tables []TableStatus `json:"tables"`
}

// States status shows besides those the workers record.
const (
	StateUnknown       = "unknown"        // the master cannot be reached
	StateNotRegistered = "not registered" // in the configuration, not on the master: run init
	StateNotConfigured = "not configured" // on the master, not in the configuration
)

// staleAfter is how long a worker may stay silent before status says no
// daemon is applying to its slave.
func staleAfter(opts Options) time.Duration {
	hb := heartbeatEvery
	if opts.heartbeatEvery > 0 {
		hb = opts.heartbeatEvery
	}
	return 3 * max(opts.PollInterval, hb)
}

// leftBehind decides whether the prepared batches of a slave are in doubt:
// left behind by a worker that is gone (no heartbeat) or that stopped on
// an error before it could commit them (it commits them when it connects
// again), as opposed to the batch a running worker is committing now.
func leftBehind(workerAlive bool, recorded string) bool {
	return !workerAlive || recorded != StateRunning
}

// slaveState decides the state status shows from what the master recorded,
// how long ago the worker was last heard of, and whether status itself
// reached the slave.
func slaveState(recorded string, silentFor, stale time.Duration, heard, reachable bool) string {
	switch {
	case !reachable:
		return StateUnreachable
	case !heard || silentFor > stale:
		return StateStopped
	case recorded == StateStopped:
		// A worker is heard from but has not finished its first batch (a
		// long one, or a backlog) to record a state: it is applying.
		return StateRunning
	default:
		return recorded
	}
}

// lag is how far a slave is behind, by the master's clock: zero when nothing
// is pending, else the age of the snapshot the slave last applied.
func lag(pending int64, snapshotAge float64) float64 {
	if pending == 0 || snapshotAge < 0 {
		return 0
	}
	return snapshotAge
}

// GetStatus reads the state of every slave from the master, and the in-doubt
// transactions from each slave.
func GetStatus(ctx context.Context, opts Options) (*Status, error) {
	st := &Status{Master: opts.Master.Name, MeasuredAtMs: time.Now().UnixMilli(), Slaves: []SlaveStatus{}}
	problems := CheckPooling(ctx, opts)
	if len(problems) == 0 {
		if err := checkNotify(ctx, opts.Master.DSN); errors.Is(err, ErrNoNotification) {
			problems = append(problems, fmt.Errorf("master %s: %w", opts.Master.Name, err))
		}
	}
	for _, p := range problems {
		st.Warnings = append(st.Warnings, p.Error())
	}
	master, err := openDB(opts.Master.DSN)
	if err != nil {
		return nil, err
	}
	defer master.Close()
	var masterID string
	var ver int
	if err := master.QueryRowContext(ctx, sqlNodeID).Scan(&masterID, &ver); err != nil {
		var pe *pq.Error
		if errors.As(err, &pe) && pe.Code == "42P01" {
			return nil, fmt.Errorf("master %s: %w", opts.Master.Name, ErrNotInstalled)
		}
		st.Error = fmt.Sprintf("master %s: %v", opts.Master.Name, err)
		var ce *ConfigError
		st.ConfigError = errors.As(err, &ce)
		for _, s := range opts.Slaves {
			st.Slaves = append(st.Slaves, SlaveStatus{Name: s.Name, State: StateUnknown, InDoubt: []string{}, Configured: true})
		}
		return st, nil
	}
	st.Reachable = true
	if err := master.QueryRowContext(ctx, sqlLogStats).Scan(&st.LogRows, &st.LogBytes, &st.TablesCount); err != nil {
		return nil, fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	rows, err := master.QueryContext(ctx, sqlSlaveStatus)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	byName := map[string]SlaveStatus{}
	silent := map[string]sql.NullFloat64{}
	for rows.Next() {
		var s SlaveStatus
		var errAt, ackedAt, seenAt sql.NullTime
		var snapAge float64
		var silentFor sql.NullFloat64
		if err := rows.Scan(&s.Name, &s.State, &s.LastError, &errAt, &s.AppliedBatch, &s.Snapshot, &ackedAt, &seenAt,
			&s.PendingEvents, &snapAge, &silentFor); err != nil {
			rows.Close()
			return nil, err
		}
		if errAt.Valid {
			s.LastErrorAt = &errAt.Time
		}
		if ackedAt.Valid {
			s.AckedAt = &ackedAt.Time
		}
		s.LagSeconds = lag(s.PendingEvents, snapAge)
		byName[s.Name] = s
		silent[s.Name] = silentFor
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	captured, err := capturedNames(ctx, master)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	stale := staleAfter(opts)
	configured := map[string]bool{}
	for _, n := range opts.Slaves {
		configured[n.Name] = true
		s, ok := byName[n.Name]
		if !ok {
			st.Slaves = append(st.Slaves, SlaveStatus{Name: n.Name, State: StateNotRegistered, LastError: "run 'goreplica init'", InDoubt: []string{}, Configured: true})
			continue
		}
		s.Configured = true
		sf := silent[n.Name]
		silentFor := time.Duration(sf.Float64 * float64(time.Second))
		alive := sf.Valid && silentFor <= stale
		s.Applying = alive
		// Prepared batches are in doubt unless a worker is committing them:
		// that needs the state as the slave were reachable.
		working := slaveState(s.State, silentFor, stale, sf.Valid, true)
		s.InDoubt, s.Reachable, s.Tables = inDoubt(ctx, n, masterID, leftBehind(alive, working), captured)
		s.State = slaveState(s.State, silentFor, stale, sf.Valid, s.Reachable)
		st.Slaves = append(st.Slaves, s)
	}
	// Registered on the master, absent from the configuration: shown, since
	// such a registration holds back purge for ever.
	for _, name := range sortedKeys(byName) {
		if configured[name] {
			continue
		}
		s := byName[name]
		s.State, s.InDoubt = StateNotConfigured, []string{}
		sf := silent[name]
		s.Applying = sf.Valid && time.Duration(sf.Float64*float64(time.Second)) <= stale
		if s.LastError == "" {
			s.LastError = fmt.Sprintf("registered on the master but not in the configuration: it holds back purge ('goreplica unregister %s' removes it)", name)
		}
		st.Slaves = append(st.Slaves, s)
	}
	return st, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// inDoubt lists the prepared batches of (master, slave) on the slave, and
// the states there of the captured tables (tableStates). Prepared batches
// are listed only when left is true (see leftBehind); the slave is reached
// either way, to tell whether it can be.
func inDoubt(ctx context.Context, n Node, masterID string, left bool, captured []string) ([]string, bool, []TableStatus) {
	out := []string{}
	db, err := openDB(n.DSN)
	if err != nil {
		return out, false, tableStates(ctx, nil, masterID, captured)
	}
	defer db.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := db.QueryContext(cctx, sqlPrepared, gidPrefix(masterID, n.Name))
	if err != nil {
		return out, false, tableStates(ctx, nil, masterID, captured)
	}
	defer rows.Close()
	for rows.Next() {
		var g string
		if rows.Scan(&g) == nil && left {
			out = append(out, g)
		}
	}
	return out, rows.Err() == nil, tableStates(cctx, db, masterID, captured)
}
