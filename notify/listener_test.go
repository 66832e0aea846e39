package notify

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/goreplica/goreplica/pgserver"
	"github.com/goreplica/goreplica/pgserver/pgtest"
)

func waitWake(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(20 * time.Second):
		t.Fatalf("no wake-up after %s", what)
	}
}

func TestWakeUpsOnNotifyAndReconnect(t *testing.T) {
	s := pgtest.Start(t, pgserver.Options{})
	db := pgtest.DB(t, s, "n")
	l, err := Listen(s.DSN("n"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, b := l.Subscribe(), l.Subscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The listener is connected once a self-check round trip succeeds.
	if err := l.Check(ctx, s.DSN("n"), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	drain(a)
	drain(b)
	if _, err := db.ExecContext(ctx, "SELECT pg_notify($1, '')", Channel); err != nil {
		t.Fatal(err)
	}
	waitWake(t, a, "NOTIFY")
	waitWake(t, b, "NOTIFY")

	// Many notifications never block the listener: each subscriber holds one.
	for range 100 {
		if _, err := db.ExecContext(ctx, "SELECT pg_notify($1, '')", Channel); err != nil {
			t.Fatal(err)
		}
	}
	waitWake(t, a, "a burst")

	// After a server restart the listener reconnects by itself and wakes
	// everyone, since notifications may have been lost meanwhile.
	drain(b)
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitWake(t, b, "reconnection")
	if err := l.Check(ctx, s.DSN("n"), 20*time.Second); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestCheckExplainsMissingNotifications(t *testing.T) {
	s := pgtest.Start(t, pgserver.Options{})
	pgtest.DB(t, s, "n")
	pgtest.DB(t, s, "other")
	// Listening in one database and notifying in another is what a
	// transaction-mode pooler looks like from here: nothing arrives.
	l, err := Listen(s.DSN("n"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = l.Check(ctx, s.DSN("other"), time.Second)
	if err == nil {
		t.Fatal("Check passed though no notification could arrive")
	}
	if want := "pgbouncer"; !strings.Contains(err.Error(), want) {
		t.Fatalf("Check error %q does not mention %s", err, want)
	}
}

func drain(c <-chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// A master that is down when the daemon starts must not hold up Listen nor
// Close: the daemon starts, retries, and stops on request.
func TestListenAndCloseWhileMasterDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=x user=x sslmode=disable connect_timeout=2", port)
	done := make(chan error, 1)
	go func() {
		l, err := Listen(dsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			done <- err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Check(ctx, dsn, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "cannot be reached") {
			done <- fmt.Errorf("Check with the master down = %v, want an error saying it cannot be reached", err)
			return
		}
		done <- l.Close()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Listen, Check or Close blocked while the master is down")
	}
}
