package replicator

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A worker holds a lease on its slave (a row of replica.lease, per master)
// while it applies: a second daemon started by mistake for the same master
// and slave sees it and stops with a clear message. The lease is a row, not
// a session advisory lock, so that it works through a transaction pool
// (pgbouncer), where a session lock would stay on the pooled server
// connection after the daemon is gone. Correctness does not rest on it: the
// position update of each batch applies only on top of the batch before.
const (
	leaseTTL   = 60 * time.Second // a lease not renewed for this long can be taken over
	leaseRenew = 10 * time.Second // how often a worker renews its lease
)

const (
	// sqlLeaseClaim takes the lease when it is free, expired, already ours,
	// or held by an owner known to be dead ($4); it returns no row when
	// another owner holds it.
	sqlLeaseClaim = `INSERT INTO replica.lease AS l (master, owner, until)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (master) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until
 WHERE l.owner = EXCLUDED.owner OR l.until < now() OR l.owner = $4
RETURNING true`
	sqlLeaseHolder = `SELECT owner, greatest(extract(epoch FROM until - now()), 0)::float8 FROM replica.lease WHERE master = $1`
	sqlLeaseRenew  = `UPDATE replica.lease SET until = now() + make_interval(secs => $3) WHERE master = $1 AND owner = $2`
	sqlLeaseFree   = `DELETE FROM replica.lease WHERE master = $1 AND owner = $2`
)

// liveOwners are the lease owners of this process's running workers: an
// owner that names this host and process but is not here is dead (a worker
// that stopped without releasing its lease).
var liveOwners sync.Map

var (
	hostOnce sync.Once
	hostName string
)

func thisHost() string {
	hostOnce.Do(func() {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "unknown-host"
		}
		hostName = h
	})
	return hostName
}

// newLeaseOwner names a worker's lease: host, process id and a random token.
func newLeaseOwner() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s pid %d token %s", thisHost(), os.Getpid(), hex.EncodeToString(b))
}

// parseOwner splits an owner written by newLeaseOwner.
func parseOwner(owner string) (host string, pid int, ok bool) {
	f := strings.Fields(owner)
	if len(f) != 5 || f[1] != "pid" || f[3] != "token" {
		return "", 0, false
	}
	pid, err := strconv.Atoi(f[2])
	if err != nil {
		return "", 0, false
	}
	return f[0], pid, true
}

// ownerDead reports whether owner is known to be gone: it names this host
// and a process that no longer runs, or this very process but no worker of
// it. Owners on other hosts are never known to be dead: their lease must
// expire.
func ownerDead(owner string) bool {
	host, pid, ok := parseOwner(owner)
	if !ok || host != thisHost() {
		return false
	}
	if pid == os.Getpid() {
		_, live := liveOwners.Load(owner)
		return !live
	}
	return !processAlive(pid)
}

// errLeaseHeld is wrapped by the error of a worker that finds another
// daemon's lease on its slave.
var errLeaseHeld = errors.New("another goreplica process is applying")

// claimLease takes the worker's lease on its slave, or says who holds it.
func (w *worker) claimLease(ctx context.Context) error {
	if w.leaseOwner == "" {
		w.leaseOwner = newLeaseOwner()
	}
	liveOwners.Store(w.leaseOwner, true)
	dead := ""
	for range 2 {
		var ok bool
		err := w.conn.QueryRowContext(ctx, sqlLeaseClaim, w.masterID, w.leaseOwner, leaseTTL.Seconds(), dead).Scan(&ok)
		if err == nil {
			w.leaseAt = time.Now()
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return w.slaveErr("claim lease", err)
		}
		var holder string
		var left float64
		if err := w.conn.QueryRowContext(ctx, sqlLeaseHolder, w.masterID).Scan(&holder, &left); err != nil {
			return w.slaveErr("read lease", err)
		}
		if dead == "" && ownerDead(holder) {
			w.log.Info("taking over the lease of a goreplica process that is gone", "owner", holder)
			dead = holder
			continue
		}
		return fmt.Errorf("slave %s: %w changes from master %s to it (%s; its lease ends in %.0fs unless renewed)",
			w.slave.Name, errLeaseHeld, w.r.opts.Master.Name, holder, left)
	}
	return fmt.Errorf("slave %s: %w changes from master %s to it", w.slave.Name, errLeaseHeld, w.r.opts.Master.Name)
}

// renewLease extends the lease when it is due; it fails when another
// daemon took the lease over.
func (w *worker) renewLease(ctx context.Context) error {
	if time.Since(w.leaseAt) < leaseRenew {
		return nil
	}
	res, err := w.conn.ExecContext(ctx, sqlLeaseRenew, w.masterID, w.leaseOwner, leaseTTL.Seconds())
	if err != nil {
		return w.slaveErr("renew lease", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("slave %s: %w changes from master %s to it: this process's lease was taken over", w.slave.Name, errLeaseHeld, w.r.opts.Master.Name)
	}
	w.leaseAt = time.Now()
	return nil
}

// releaseLease frees the lease on the way out, so that a restart through any
// pool takes it at once.
func (w *worker) releaseLease(ctx context.Context) {
	defer liveOwners.Delete(w.leaseOwner)
	if w.leaseOwner == "" || w.masterID == "" {
		return
	}
	if _, err := w.slaveDB.ExecContext(ctx, sqlLeaseFree, w.masterID, w.leaseOwner); err != nil {
		w.log.Debug("release lease", keyError, err)
	}
}
