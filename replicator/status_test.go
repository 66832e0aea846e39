package replicator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLeftBehind(t *testing.T) {
	tests := []struct {
		name     string
		alive    bool
		recorded string
		want     bool
	}{
		{"a running worker's batch between PREPARE and COMMIT PREPARED", true, StateRunning, false},
		{"a batch no worker is committing", false, StateRunning, true},
		{"a batch of a worker that lost the master after PREPARE", true, StateUnreachable, true},
		{"a batch of a stopped daemon", false, StateStopped, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := leftBehind(tt.alive, tt.recorded); got != tt.want {
				t.Errorf("leftBehind(%v, %s) = %v, want %v", tt.alive, tt.recorded, got, tt.want)
			}
		})
	}
}

func TestSameDatabases(t *testing.T) {
	tests := []struct {
		name string
		ids  []string
		want []string
	}{
		{"all distinct", []string{"1/5", "1/6", "2/5"}, nil},
		{"a slave is the master", []string{"1/5", "1/6", "1/5"}, []string{"slave b is the same database as master m"}},
		{"two slaves are one database", []string{"1/5", "2/7", "2/7"}, []string{"slave b is the same database as slave a"}},
		{"unknown identities match nothing", []string{"", "1/6", ""}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sameDatabases([]string{"master m", "slave a", "slave b"}, tt.ids)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i].Error(), w) {
					t.Errorf("problem %q lacks %q", got[i], w)
				}
			}
		})
	}
}

// statusOf reads slave i's status.
func (e *env) statusOf(i int) SlaveStatus {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := GetStatus(ctx, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Slaves[i]
}

// watchState reads slave i's status until the worker has been silent, but
// for its heartbeats, for ten times the silence after which status says no
// daemon applies, and fails if status ever says so.
func (e *env) watchState(i int, want string) {
	e.t.Helper()
	until := time.Now().Add(10 * staleAfter(e.opts))
	for time.Now().Before(until) {
		if s := e.statusOf(i); s.State != want || len(s.InDoubt) > 0 {
			e.t.Fatalf("status shows %s with in-doubt %v, want %s with none", s.State, s.InDoubt, want)
		}
		time.Sleep(staleAfter(e.opts) / 3) // pacing the reads, not waiting for a condition
	}
}

// A worker busy with a long batch, or waiting out its back-off after a
// conflict, is alive: status shows it running or in conflict, never
// "stopped"; a prepared batch being committed is not in doubt.
func TestStatusWhileBusyOrBackingOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	e.opts.heartbeatEvery = 100 * time.Millisecond
	e.opts.MaxBackoff = time.Hour
	held := make(chan struct{})
	release := make(chan struct{})
	var once bool
	e.start(func(_, step string) error {
		if step == "after-prepare" && !once {
			once = true
			close(held)
			<-release
		}
		return nil
	})
	var released sync.Once
	unblock := func() { released.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the replicator stops, even when the test fails
	e.exec(e.master, `INSERT INTO t VALUES (1, 'a')`)
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no batch was prepared")
	}
	e.watchState(0, StateRunning)
	unblock()
	e.waitConverged(30*time.Second, "t")

	// A conflict, then a back-off of an hour: the slave stays in conflict.
	e.exec(e.slaves[0], `INSERT INTO t VALUES (2, 'slave')`)
	e.exec(e.master, `INSERT INTO t VALUES (2, 'master')`)
	e.waitState(0, StateConflict)
	e.watchState(0, StateConflict)
}

// A clean stop keeps the error that stopped a slave; a batch applied after
// the fix clears it.
func TestLastErrorKeptAfterStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY, v text);`})
	r := e.start(nil)
	e.exec(e.slaves[0], `INSERT INTO t VALUES (2, 'slave')`)
	e.exec(e.master, `INSERT INTO t VALUES (2, 'master')`)
	msg := e.waitState(0, StateConflict).LastError
	r.stop()
	s := e.statusOf(0)
	if s.State != StateStopped || s.LastError != msg {
		t.Fatalf("after a clean stop: state %s, last error %q; want stopped, %q", s.State, s.LastError, msg)
	}
	e.exec(e.slaves[0], `DELETE FROM t WHERE id = 2`)
	e.start(nil)
	e.waitConverged(30*time.Second, "t")
	waitFor(t, 20*time.Second, func() string {
		if s := e.statusOf(0); s.State != StateRunning || s.LastError != "" {
			return fmt.Sprintf("%+v", s)
		}
		return ""
	})
}

// Status shows a slave registered on the master that the configuration no
// longer names, Unregister removes it (and refuses a configured one), and
// dropped tables are not counted.
func TestStatusUnconfiguredSlaveAndDroppedTable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE u (id int PRIMARY KEY);`, slaves: 2})
	e.exec(e.master, `DROP TABLE u`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := e.opts
	opts.Slaves = opts.Slaves[:1]
	st, err := GetStatus(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.TablesCount != 1 {
		t.Errorf("status counts %d tables after one of two was dropped, want 1", st.TablesCount)
	}
	if len(st.Slaves) != 2 || st.Slaves[1].Name != "nice" || st.Slaves[1].State != StateNotConfigured || st.Slaves[1].Configured {
		t.Fatalf("slaves %+v, want lyon and nice, nice not configured", st.Slaves)
	}
	if err := Unregister(ctx, opts, "lyon"); !errors.Is(err, ErrSlaveInUse) {
		t.Errorf("unregister a configured slave: %v, want ErrSlaveInUse", err)
	}
	if err := Unregister(ctx, opts, "nice"); err != nil {
		t.Fatal(err)
	}
	if st, err = GetStatus(ctx, opts); err != nil || len(st.Slaves) != 1 {
		t.Errorf("after unregister: %v, %+v", err, st)
	}
	if err := Unregister(ctx, opts, "nice"); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("unregister twice: %v", err)
	}
}

// Init refuses a slave that is the master's own database under another
// DSN.
func TestInitRefusesMasterAsSlave(t *testing.T) {
	t.Parallel()
	e := newEnv(t, setup{schema: `CREATE TABLE t (id int PRIMARY KEY);`})
	opts := e.opts
	opts.Slaves = append(opts.Slaves, Node{Name: "self", DSN: opts.Master.DSN + " connect_timeout=10 application_name=other", TwoPhase: false})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Init(ctx, opts, triggerSQLStr)
	if err == nil || !strings.Contains(err.Error(), "slave self is the same database as master paris") {
		t.Fatalf("init with the master as a slave: %v", err)
	}
}
