package notify

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Channel is the channel goreplica's log triggers NOTIFY.
const Channel = "goreplica"

// Listener LISTENs on the master and fans wake-ups out to subscribers.
type Listener struct {
	l         *pq.Listener
	log       *slog.Logger
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu   sync.Mutex
	subs []chan struct{}
	// got counts notifications received, for Check.
	got uint64
}

// Listen starts listening on Channel. It returns at once: if the master is
// down the listener keeps retrying (lib/pq's reconnect loop, between 100ms
// and 10s), and every (re)connection wakes all subscribers.
func Listen(dsn string, logger *slog.Logger) (*Listener, error) {
	n := &Listener{log: logger, done: make(chan struct{})}
	n.l = pq.NewListener(dsn, 100*time.Millisecond, 10*time.Second, n.event)
	if err := n.l.Listen(Channel); err != nil && err != pq.ErrChannelAlreadyOpen {
		// Not connected yet: lib/pq remembers the channel and LISTENs on connect.
		logger.Warn("listen on master: will retry", "error", err)
	}
	n.wg.Add(1)
	go n.loop()
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
	defer n.wg.Done()
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
func (n *Listener) Check(ctx context.Context, dsn string, timeout time.Duration) error {
	n.mu.Lock()
	before := n.got
	n.mu.Unlock()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return fmt.Errorf("send test notification: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "SELECT pg_notify($1, '')", Channel); err != nil {
		return fmt.Errorf("send test notification: %w", err)
	}
	deadline := time.Now().Add(timeout)
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
	return fmt.Errorf("no notification arrived within %s on channel %q: if the master DSN goes through pgbouncer in transaction pooling mode, LISTEN cannot work there; connect directly or through a session-mode pool (replication still works, polling every poll_interval)", timeout, Channel)
}

// Close stops listening.
func (n *Listener) Close() error {
	n.closeOnce.Do(func() {
		close(n.done)
		n.wg.Wait()
		n.closeErr = n.l.Close()
	})
	return n.closeErr
}
