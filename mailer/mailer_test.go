package mailer

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitMessages polls until the server holds at least n messages or ctx
// ends, and returns what arrived.
func waitMessages(ctx context.Context, t *testing.T, s *testServer, n int) []received {
	t.Helper()
	for {
		if got := s.messages(); len(got) >= n {
			return got
		}
		select {
		case <-s.arrived:
		case <-ctx.Done():
			got := s.messages()
			t.Fatalf("waiting for %d messages: %v; %d arrived: %v", n, ctx.Err(), len(got), subjects(got))
			return nil
		}
	}
}

func subjects(ms []received) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Subject)
	}
	return out
}

// syncBuffer is a log sink safe for the sender goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger returns a debug-level text logger writing into a buffer.
func testLogger() (*slog.Logger, *syncBuffer) {
	var b syncBuffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

// fakeClock is a settable clock for the throttle.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func closeMailer(t *testing.T, m *Mailer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestEventMails(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := startServer(t, serverConfig{startTLS: true, mechs: []string{"PLAIN", "LOGIN"}, requireTLS: true})
	logger, logs := testLogger()
	m, err := New(srv.options(), logger)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 10, 2, 0, 0, time.UTC)
	events := []Event{
		{Kind: KindStart, Summary: "goreplica started: paris -> lyon, nantes",
			Body: "master paris: host=db-paris dbname=shop password=xxxxx\nslave lyon: host=db-lyon"},
		{Kind: KindUnreachable, Slave: "lyon", Summary: "lyon unreachable: connection refused",
			Body: "dial tcp 10.0.0.2:5432: connect: connection refused\nRetrying every 30s."},
		{Kind: KindReachable, Slave: "lyon", Summary: "lyon reachable again after 3m"},
		{Kind: KindConflict, Slave: "nantes", Summary: "conflict on nantes: update_missing in public.orders key (id)=(42)",
			Body: "txid 81234\nSQL: UPDATE public.orders SET qty = 3 WHERE id = 42\npolicy stop: nantes is halted\nnext: goreplica skip -c FILE nantes"},
		{Kind: KindApplyError, Slave: "nantes", Summary: "apply error on nantes: column \"qty2\" does not exist",
			Body: "table public.orders txid 81240"},
		{Kind: KindRecovered, Slave: "nantes", Summary: "nantes applying again"},
		{Kind: KindLag, Slave: "lyon", Summary: "lag on lyon: 95s (alert above 60s)"},
		{Kind: KindLagOK, Slave: "lyon", Summary: "lag on lyon back to 2s"},
		{Kind: KindStop, Summary: "goreplica stopped (SIGTERM)"},
		{Kind: KindAbort, Summary: "goreplica stopped abnormally: master paris lost"},
	}
	for i, e := range events {
		e.Time = at.Add(time.Duration(i) * time.Second)
		m.Notify(e)
		// Wait for each so the arrival order is the notification order.
		waitMessages(ctx, t, srv, i+1)
	}
	closeMailer(t, m)
	got := srv.messages()
	if len(got) != len(events) {
		t.Fatalf("got %d messages, want %d: %v", len(got), len(events), subjects(got))
	}
	for i, e := range events {
		t.Run(string(e.Kind), func(t *testing.T) {
			r := got[i]
			if r.From != "goreplica@example.com" {
				t.Errorf("MAIL FROM %q", r.From)
			}
			if strings.Join(r.To, ",") != "dba@example.com,oncall@example.com" {
				t.Errorf("RCPT TO %v", r.To)
			}
			if h := r.Header.Get("To"); !strings.Contains(h, "dba@example.com") || !strings.Contains(h, "oncall@example.com") {
				t.Errorf("To header %q", h)
			}
			if want := "[goreplica] " + e.Summary; r.Subject != want {
				t.Errorf("subject %q, want %q", r.Subject, want)
			}
			if first, _, _ := strings.Cut(r.Body, "\n"); first != e.Summary {
				t.Errorf("first body line %q, want %q", first, e.Summary)
			}
			if e.Body != "" && !strings.Contains(r.Body, e.Body) {
				t.Errorf("body lacks the detail %q:\n%s", e.Body, r.Body)
			}
			if k := r.Header.Get("X-Goreplica-Event"); k != string(e.Kind) {
				t.Errorf("X-Goreplica-Event %q", k)
			}
			if s := r.Header.Get("X-Goreplica-Slave"); s != e.Slave {
				t.Errorf("X-Goreplica-Slave %q, want %q", s, e.Slave)
			}
			if !r.TLS || r.Mech != "PLAIN" || r.User != testUser {
				t.Errorf("session TLS=%v mech=%q user=%q, want STARTTLS and PLAIN as %s", r.TLS, r.Mech, r.User, testUser)
			}
		})
	}
	assertNoSecret(t, got, logs.String())
}

// assertNoSecret fails if the SMTP password appears in a mail or the log.
func assertNoSecret(t *testing.T, got []received, logs string) {
	t.Helper()
	for _, r := range got {
		var raw strings.Builder
		for k, v := range r.Header {
			raw.WriteString(k + ": " + strings.Join(v, " ") + "\n")
		}
		raw.WriteString(r.Body)
		if strings.Contains(raw.String(), testPassword) {
			t.Errorf("password in mail %q:\n%s", r.Subject, raw.String())
		}
	}
	if strings.Contains(logs, testPassword) {
		t.Errorf("password in the log:\n%s", logs)
	}
}
