package notify

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/goreplica/goreplica/dsn"
)

// Channel is the channel goreplica's log triggers NOTIFY.
const Channel = "goreplica"

// Listener LISTENs on the master and fans wake-ups out to subscribers.
type Listener struct {
	dsn       string
	l         *pq.Listener
	log       *slog.Logger
	done      chan struct{}
	listening chan struct{} // closed once the first LISTEN is in place
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu   sync.Mutex
	subs []chan struct{}
	// got counts notifications received, for Check.
	got uint64
}

// Listen starts listening on Channel. It returns at once, even when the
// master is down: the listener keeps retrying (lib/pq's reconnect loop,
// between 100ms and 10s), and every (re)connection wakes all subscribers,
// the first one included, so that whatever was committed before LISTEN took
// effect is rescanned.
func Listen(master string, logger *slog.Logger) (*Listener, error) {
	if err := dsn.Check(master); err != nil {
		return nil, err
	}
	n := &Listener{dsn: master, log: logger, done: make(chan struct{}), listening: make(chan struct{})}
	n.l = pq.NewListener(master, 100*time.Millisecond, 10*time.Second, n.event)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// lib/pq's Listen blocks until the first connection is made (or
		// the listener is closed), LISTEN included.
		err := n.l.Listen(Channel)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil && !errors.Is(err, pq.ErrChannelAlreadyOpen) {
			logger.Warn("listen on master", "error", err)
		}
		close(n.listening)
		n.wakeAll()
		n.loop()
	}()
	return n, nil
}

func (n *Listener) event(ev pq.ListenerEventType, err error) {
	switch ev {
	case pq.ListenerEventConnected:
		n.log.Debug("listening for notifications", "channel", Channel)
	case pq.ListenerEventDisconnected:
		n.log.Warn("notification listener disconnected", "error", err)
	case pq.ListenerEventReconnected:
		n.log.Info("notification listener reconnected")
	case pq.ListenerEventConnectionAttemptFailed:
		n.log.Debug("notification listener: connection attempt failed", "error", err)
	}
}

func (n *Listener) loop() {
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-n.done:
			return
		case m := <-n.l.Notify:
			// m is nil after a reconnection: notifications may have been
			// lost, so everyone rescans.
			n.mu.Lock()
			if m != nil {
				n.got++
			}
			n.mu.Unlock()
			n.wakeAll()
			if m == nil {
				n.wg.Add(1)
				go n.verify()
			}
		case <-ping.C:
			go func() { _ = n.l.Ping() }()
		}
	}
}

func (n *Listener) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// verify checks, after a reconnection, that notifications arrive again, and
// listens afresh when they do not. (After a server restart that interrupted
// the delivery of a burst of notifications, a re-established LISTEN has been
// seen to receive nothing; UNLISTEN and LISTEN again restores delivery.)
func (n *Listener) verify() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	for attempt := 1; attempt <= 5 && ctx.Err() == nil; attempt++ {
		if err := n.Check(ctx, n.dsn, 2*time.Second); err == nil {
			return
		}
		n.log.Warn("notifications do not arrive after reconnecting: listening again", "attempt", attempt)
		_ = n.l.Unlisten(Channel)
		if err := n.l.Listen(Channel); err != nil && !errors.Is(err, pq.ErrChannelAlreadyOpen) {
			n.log.Warn("listen again", "error", err)
		}
	}
}

// Subscribe returns a channel that receives a wake-up after each
// notification or reconnection; it holds one pending wake-up, never blocks
// the listener.
func (n *Listener) Subscribe() <-chan struct{} {
	c := make(chan struct{}, 1)
	n.mu.Lock()
	n.subs = append(n.subs, c)
	n.mu.Unlock()
	return c
}

// Check sends a NOTIFY on a separate connection to dsn and waits up to
// timeout for it to come back through the listener. A notification that
// never arrives usually means the DSN goes through a pooler in transaction
// mode (pgbouncer pool_mode = transaction), which cannot carry LISTEN.
func (n *Listener) Check(ctx context.Context, master string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wait := time.NewTimer(timeout)
	defer wait.Stop()
	select {
	case <-n.listening:
	case <-n.done:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	case <-wait.C:
		return fmt.Errorf("not listening on the master after %s: it cannot be reached (replication waits for it)", timeout)
	}
	n.mu.Lock()
	before := n.got
	n.mu.Unlock()
	cfg, err := dsn.Config(master)
	if err != nil {
		return fmt.Errorf("send test notification: %w", err)
	}
	// One Parse/Bind/Execute/Sync exchange: safe whatever pooler is in between.
	cfg.BinaryParameters = true
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return fmt.Errorf("send test notification: %w", err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	if _, err := db.ExecContext(ctx, "SELECT pg_notify($1, '')", Channel); err != nil {
		return fmt.Errorf("send test notification: %w", err)
	}
	for time.Now().Before(deadline) {
		n.mu.Lock()
		got := n.got
		n.mu.Unlock()
		if got > before {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("no notification arrived within %s on channel %q: if the master DSN goes through a pooler in transaction or statement mode (pgbouncer pool_mode = transaction), LISTEN cannot work there: point it at PostgreSQL directly or at a pool with pool_mode = session (until then replication only polls, every poll_interval)", timeout, Channel)
}

// Close stops listening.
func (n *Listener) Close() error {
	n.closeOnce.Do(func() {
		close(n.done)
		// Closing lib/pq's listener first unblocks a Listen still waiting
		// for the first connection.
		n.closeErr = n.l.Close()
		n.wg.Wait()
	})
	return n.closeErr
}
