package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
	"github.com/goreplica/goreplica/pgserver"
	"github.com/lib/pq"
)

// The goreplica_daemon variant: the log trigger with a real daemon running
// and applying to a slave on a second server, as a user's master has it.
// The slave server and the daemon run on CPU 1 (as on another host would),
// the master and pgbench on CPU 0 (PIN=split; PIN=auto pins the master only
// at 1 client).

const (
	daemonSlave = "slave"
	daemonApp   = "goreplica-bench-daemon"
)

// daemonRig is the slave server and the built binary; the daemon itself
// runs only during goreplica_daemon runs.
type daemonRig struct {
	slave *pgserver.Server
	sdb   *sql.DB
	bin   string
	cfg   string
	dir   string
	d     *rig.Daemon
	// logDir keeps each run's daemon log (daemon-N.log) when set.
	logDir string
	runs   int
}

func startDaemonRig(ctx context.Context, master *pgserver.Server, logDir, slaveDir string) (_ *daemonRig, err error) {
	r := &daemonRig{logDir: logDir}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.dir, err = os.MkdirTemp("", "goreplica-bench-trigger-"); err != nil {
		return nil, err
	}
	rig.Logf("building goreplica")
	if r.bin, err = rig.Build(ctx, r.dir); err != nil {
		return nil, err
	}
	rig.Logf("starting a durable slave server")
	if r.slave, err = rig.StartIn(ctx, slaveDir, db, map[string]string{"max_prepared_transactions": "10"}); err != nil {
		return nil, err
	}
	if err := rig.Pin(r.slave, "1"); err != nil {
		return nil, err
	}
	if r.sdb, err = rig.Open(r.slave, db); err != nil {
		return nil, err
	}
	r.sdb.SetMaxOpenConns(1)
	if err := rig.Exec(ctx, r.sdb, rig.TestTable); err != nil {
		return nil, err
	}
	r.cfg = filepath.Join(r.dir, "bench.toml")
	// The daemon's master sessions carry an application_name of their
	// own, for masterCPU to find them.
	c := rig.Config{MasterDSN: master.DSN(db) + " application_name=" + daemonApp, Slave: daemonSlave, SlaveDSN: r.slave.DSN(db), TwoPhase: true}
	if err := c.Write(r.cfg); err != nil {
		return nil, err
	}
	if err := rig.Init(ctx, r.bin, r.cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// prepare makes the slave's table match what the daemon will apply: empty
// for the insert workload, rows 1..tableRows for the update one (logged
// UPDATEs name the key only).
func (r *daemonRig) prepare(ctx context.Context, wl string, tableRows int) error {
	stmts := []string{`TRUNCATE test`}
	if wl == "update" {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO test (id) SELECT generate_series(1, %d)`, tableRows))
	}
	stmts = append(stmts, `VACUUM ANALYZE test`)
	return rig.Exec(ctx, r.sdb, stmts...)
}

// start runs the daemon on CPU 1 and waits until it idles (waiting = true)
// and has done its start-up checks.
func (r *daemonRig) start(ctx context.Context, master *sql.DB, interval string) error {
	cfg := r.cfg
	if interval != "" {
		text, err := os.ReadFile(r.cfg)
		if err != nil {
			return err
		}
		cfg = filepath.Join(r.dir, "bench-"+interval+".toml")
		if err := os.WriteFile(cfg, append(text, fmt.Sprintf("batch_interval = %q\n", interval)...), 0o600); err != nil {
			return err
		}
	}
	logPath := filepath.Join(r.dir, "daemon.log")
	if r.logDir != "" {
		r.runs++
		logPath = filepath.Join(r.logDir, fmt.Sprintf("daemon-%d.log", r.runs))
	}
	d, err := rig.StartDaemon(r.bin, cfg, logPath)
	if err != nil {
		return err
	}
	r.d = d
	if err := exec.Command("taskset", "-a", "-p", "-c", "1", strconv.Itoa(d.Pid())).Run(); err != nil {
		return fmt.Errorf("pin the daemon: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = rig.WaitContext(wctx, 20*time.Millisecond, func() (bool, error) {
		if exited, err := d.Exited(); exited {
			return false, fmt.Errorf("goreplica run exited: %v\n%s", err, d.Tail(2000))
		}
		var waiting bool
		err := master.QueryRowContext(wctx, `SELECT waiting FROM replica.slaves WHERE name = $1`, daemonSlave).Scan(&waiting)
		return waiting, err
	})
	if err != nil {
		return fmt.Errorf("wait for the daemon to idle: %w\n%s", err, d.Tail(2000))
	}
	// And for the end of its start-up: a second after it starts, the daemon
	// checks that notifications arrive (two sessions of its own on the
	// master, a NOTIFY). A run measures a daemon that has been running.
	err = rig.WaitContext(wctx, 20*time.Millisecond, func() (bool, error) {
		if exited, err := d.Exited(); exited {
			return false, fmt.Errorf("goreplica run exited: %v\n%s", err, d.Tail(2000))
		}
		b, err := os.ReadFile(d.Log)
		if bytes.Contains(b, []byte(`msg=notifications `)) {
			// Its warning: the runs would measure a daemon that polls.
			return false, fmt.Errorf("notifications from the master do not arrive\n%s", d.Tail(2000))
		}
		return bytes.Contains(b, []byte(`msg="notifications from the master arrive"`)), err
	})
	if err != nil {
		return fmt.Errorf("wait for the daemon's notification check: %w\n%s", err, d.Tail(2000))
	}
	return nil
}

// masterCPU returns the CPU time (user and system) each of
// the daemon's sessions on the master has used so far, by backend pid,
// from /proc: the daemon's cost on the master's CPU, measured from outside.
func (r *daemonRig) masterCPU(ctx context.Context, master *sql.DB) (map[int]time.Duration, error) {
	rows, err := master.QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, daemonApp)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cpu := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		t, err := rig.ProcessCPU(pid)
		if err != nil {
			continue // the session ended meanwhile
		}
		cpu[pid] = t
	}
	return cpu, rows.Err()
}

// cpuSince is the CPU time in milliseconds the daemon's master sessions
// used between two masterCPU readings (a session that ended between them
// is not counted; the daemon keeps its sessions).
func cpuSince(before, after map[int]time.Duration) float64 {
	var t time.Duration
	for pid, a := range after {
		t += a - before[pid]
	}
	return float64(t) / float64(time.Millisecond)
}

// isDaemon reports whether variant v runs the daemon: goreplica_daemon,
// with goreplica's default batch_interval, or goreplica_daemon@INTERVAL
// with batch_interval = INTERVAL (e.g. goreplica_daemon@0s).
func isDaemon(v string) bool {
	return v == "goreplica_daemon" || strings.HasPrefix(v, "goreplica_daemon@")
}

// daemonInterval is variant v's batch_interval, "" for the default.
func daemonInterval(v string) string {
	_, after, _ := strings.Cut(v, "@")
	return after
}

// batch is the last batch the daemon acknowledged on the master.
func (r *daemonRig) batch(ctx context.Context, master *sql.DB) (int64, error) {
	var n int64
	err := master.QueryRowContext(ctx, `SELECT acked_batch FROM replica.slaves WHERE name = $1`, daemonSlave).Scan(&n)
	return n, err
}

func (r *daemonRig) stop() error {
	if r.d == nil {
		return nil
	}
	err := r.d.Stop()
	r.d = nil
	return err
}

func (r *daemonRig) close() {
	_ = r.stop()
	if r.sdb != nil {
		r.sdb.Close()
	}
	if r.slave != nil {
		r.slave.Close()
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// notifyCounter counts the NOTIFYs sent on channel goreplica, exactly: a
// listener receives notifications in the order of the commits that sent
// them, so once a marker sent after a run arrives, every NOTIFY of the run
// has been counted. Its LISTENing session is also the idle daemon's
// listener of the goreplica_notify variant.
type notifyCounter struct {
	l       *pq.Listener
	db      *sql.DB
	n       atomic.Int64
	markers chan string
	seq     int
}

const markerChannel = "bench_marker"

func newNotifyCounter(dsn string, db *sql.DB) (*notifyCounter, error) {
	c := &notifyCounter{l: pq.NewListener(dsn, time.Second, time.Second, nil), db: db, markers: make(chan string, 1)}
	for _, ch := range []string{"goreplica", markerChannel} {
		if err := c.l.Listen(ch); err != nil {
			c.l.Close()
			return nil, err
		}
	}
	go func() {
		for m := range c.l.Notify {
			switch {
			case m == nil: // reconnected: counts may be short
				c.n.Store(-1 << 40)
			case m.Channel == markerChannel:
				c.markers <- m.Extra
			case m.Channel == "goreplica":
				c.n.Add(1)
			}
		}
	}()
	return c, nil
}

// mark sends a marker and returns the count once it has arrived.
func (c *notifyCounter) mark(ctx context.Context) (int64, error) {
	c.seq++
	want := strconv.Itoa(c.seq)
	if _, err := c.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, markerChannel, want); err != nil {
		return 0, err
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case got := <-c.markers:
			if got == want {
				n := c.n.Load()
				if n < 0 {
					return 0, errors.New("the counting listener lost its connection")
				}
				return n, nil
			}
		case <-timeout:
			return 0, fmt.Errorf("NOTIFY marker %s not received within 30s", want)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (c *notifyCounter) close() { c.l.Close() }
