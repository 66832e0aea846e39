package replicator

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/lib/pq"
)

// The tests count the notifications on channel goreplica between two
// markers sent on another channel: a listener receives notifications in the
// order of the commits that sent them, so when a marker arrives every NOTIFY
// committed before it has been counted.
const markerChannel = "goreplica_test_marker"

func newNotifyCounter(t *testing.T, dsn string) *pq.Listener {
	t.Helper()
	l := pq.NewListener(dsn, time.Second, time.Second, nil)
	t.Cleanup(func() { l.Close() })
	for _, ch := range []string{"goreplica", markerChannel} {
		if err := l.Listen(ch); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// countUntilMarker sends a marker from e.master and returns how many
// notifications on channel goreplica arrived before it.
func countUntilMarker(t *testing.T, e *env, l *pq.Listener, marker string) int {
	t.Helper()
	e.exec(e.master, `SELECT pg_notify($1, $2)`, markerChannel, marker)
	n := 0
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-l.Notify:
			if m == nil {
				t.Fatal("the counting listener reconnected: notifications may have been lost")
			}
			if m.Channel == markerChannel && m.Extra == marker {
				return n
			}
			if m.Channel == "goreplica" {
				n++
			}
		case <-timeout:
			t.Fatalf("marker %q not received within 30s (%d notifications before it)", marker, n)
		}
	}
}

func waitWaiting(t *testing.T, e *env) {
	t.Helper()
	waitFor(t, 20*time.Second, func() string {
		if queryString(t, e.master, `SELECT bool_and(waiting)::text FROM replica.slaves`) != "true" {
			return "daemon not idle-waiting yet"
		}
		return ""
	})
}

// Under a steady stream of commits, with the daemon applying, (almost) no
// transaction sends a NOTIFY: the daemon lingers after catching up instead
// of setting its waiting flag at once, and a NOTIFY takes a database-wide
// lock at commit. Once the stream stops the daemon waits again, and with a
// poll interval of an hour the next commit still reaches the slave: its
// NOTIFY wakes the daemon.
func TestSteadyStreamSendsNoNotify(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`, poll: time.Hour})
	l := newNotifyCounter(t, e.opts.Master.DSN)
	e.start(nil)
	waitWaiting(t, e)
	countUntilMarker(t, e, l, "idle") // the daemon's own start-up NOTIFY

	// A steady stream: one commit every 2 ms or so, from one session, for
	// a few seconds. Gaps longer than lingerFor (a loaded machine) are
	// counted only to explain a failure.
	const commits = 600
	stalls := 0
	last := time.Now()
	for i := range commits {
		e.exec(e.master, `INSERT INTO t VALUES ($1, 'x')`, i)
		if time.Since(last) > lingerFor {
			stalls++
		}
		last = time.Now()
		time.Sleep(2 * time.Millisecond)
	}
	e.waitConverged(30*time.Second, "t")
	sent := countUntilMarker(t, e, l, "stream")
	t.Logf("%d of %d transactions of the stream sent a NOTIFY (%d gaps over %s between commits)", sent, commits, stalls, lingerFor)
	// The first commit finds the daemon waiting and wakes it (and the
	// commits until the woken daemon clears its flag notify too); after
	// that only a gap in the stream longer than lingerFor lets the daemon
	// set its flag again, and each such gap (a loaded machine stalls the
	// writer) costs as many NOTIFYs as the first wake-up. Setting the flag
	// at once on catching up made 12% of these transactions NOTIFY.
	if sent < 1 {
		t.Errorf("no transaction of the stream sent a NOTIFY: the first one should have woken the idle daemon")
	}
	if limit := commits / 50 * (1 + stalls); sent > limit {
		t.Errorf("%d of %d transactions of a steady stream sent a NOTIFY (%d gaps over %s between commits), want at most %d",
			sent, commits, stalls, lingerFor, limit)
	}

	// Idle again: the flag is set after the stream, and a commit wakes the
	// daemon by its NOTIFY (the poll interval is an hour).
	waitWaiting(t, e)
	e.exec(e.master, `INSERT INTO t VALUES ($1, 'after')`, commits)
	e.waitConverged(30*time.Second, "t")
	if n := countUntilMarker(t, e, l, "after"); n != 1 {
		t.Errorf("the commit to an idle daemon sent %d NOTIFYs, want 1", n)
	}
}

// With BatchInterval, a steady stream is applied in at most one batch per
// interval: the commits of an interval travel together.
func TestBatchIntervalPacesASteadyStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	e.opts.BatchInterval = 100 * time.Millisecond
	e.start(nil)
	waitWaiting(t, e)
	batch := func() int {
		n, err := strconv.Atoi(queryString(t, e.slaves[0], `SELECT batch FROM replica.position`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := batch()
	began := time.Now()
	const commits = 200
	for i := range commits {
		e.exec(e.master, `INSERT INTO t VALUES ($1, 'x')`, i)
		time.Sleep(2 * time.Millisecond)
	}
	e.waitConverged(30*time.Second, "t")
	elapsed := time.Since(began)
	got := batch() - before
	// One batch per interval while the stream lasts, and the last one; an
	// idle daemon's batches (nothing to apply) move no position.
	if limit := int(elapsed/e.opts.BatchInterval) + 2; got > limit {
		t.Errorf("%d commits over %s were applied in %d batches, want at most %d (one per %s)", commits, elapsed.Round(time.Millisecond), got, limit, e.opts.BatchInterval)
	}
	t.Logf("%d commits over %s: %d batches", commits, elapsed.Round(time.Millisecond), got)
}

// A transaction open while the daemon sets its waiting flag, whose session
// looked the flag up just before (a log trigger trusts its session's last
// look-up for one tick of 10 ms, replica.notify_tick), sends no NOTIFY, nor
// does the next one of the same session within that tick; neither is left
// for the poll (an hour here). The first was in progress in the snapshot
// the daemon takes after setting the flag (so it polls until it ends), and
// a look-up is only cached by a transaction that commits, which the daemon
// then sees and applies, with what follows it.
func TestCommitsAroundTheWaitingFlagAreNotLeftForThePoll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`, poll: time.Hour})
	e.start(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := e.master.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitWaiting(t, e)
	id := 0
	for range 10 {
		// Wake the daemon; it applies this, lingers and sets the flag
		// again while the transaction below keeps writing.
		id++
		if _, err := conn.ExecContext(ctx, `INSERT INTO t VALUES ($1, 'wake')`, id); err != nil {
			t.Fatal(err)
		}
		e.waitConverged(5*time.Second, "t")
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for {
			id++
			if _, err := tx.ExecContext(ctx, `INSERT INTO t VALUES ($1, 'open')`, id); err != nil {
				t.Fatal(err)
			}
			if queryString(t, e.master, `SELECT bool_and(waiting)::text FROM replica.slaves`) == "true" {
				break
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		id++
		if _, err := conn.ExecContext(ctx, `INSERT INTO t VALUES ($1, 'next')`, id); err != nil {
			t.Fatal(err)
		}
		// Well under the hour's poll.
		e.waitConverged(5*time.Second, "t")
	}
}
