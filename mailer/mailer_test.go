package mailer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
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

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
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

// newTestMailer starts a mailer with a fake clock and fast retries.
func newTestMailer(t *testing.T, opts Options, clk *fakeClock) (*Mailer, *syncBuffer) {
	t.Helper()
	logger, logs := testLogger()
	m, err := newMailer(opts, logger, settings{now: clk.now, attempts: 3, retryBase: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return m, logs
}

var digestRE = regexp.MustCompile(`(?m)^and (\d+) more conflicts? on lyon (since|at) (\d\d:\d\d)$|^(\d+) more conflicts? on lyon (since|at) (\d\d:\d\d)$`)

// TestHundredConflicts: 100 conflicts in a minute with min_interval 10s
// give one mail at once and one per interval, and the mails account for
// every conflict exactly once.
func TestHundredConflicts(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := startServer(t, serverConfig{startTLS: true, mechs: []string{"PLAIN"}})
	opts := srv.options()
	opts.MinInterval = 10 * time.Second
	clk := &fakeClock{t: t0}
	m, logs := newTestMailer(t, opts, clk)
	for i := range 100 {
		clk.set(t0.Add(time.Duration(i) * 600 * time.Millisecond))
		m.Notify(Event{Kind: KindConflict, Slave: "lyon",
			Summary: fmt.Sprintf("conflict on lyon: update_missing in public.orders key (id)=(%d)", i),
			Body:    fmt.Sprintf("txid %d\nUPDATE public.orders SET qty = 1 WHERE id = %d", 1000+i, i)})
	}
	// Six mails go out during the minute (at 0, 10.2s, ... 51s); the
	// conflicts after the last one are held until stop.
	waitMessages(ctx, t, srv, 6)
	closeMailer(t, m)
	got := srv.messages()
	if len(got) != 7 {
		t.Fatalf("%d mails, want 7: %q", len(got), subjects(got))
	}
	total := 0
	for i, r := range got {
		matches := digestRE.FindAllStringSubmatch(r.Body, -1)
		digest := false
		for _, mm := range matches {
			n := mm[1] + mm[4]
			var k int
			fmt.Sscan(n, &k)
			total += k
			digest = digest || mm[4] != ""
		}
		if !digest {
			total++ // the mail's own conflict
		}
		if i == 1 && !strings.Contains(r.Body, "\nand 16 more conflicts on lyon since 10:02\n") {
			t.Errorf("second mail lacks the digest of the 16 conflicts held back:\n%s", r.Body)
		}
		if i == 1 && !strings.HasSuffix(r.Subject, "(+16 more)") {
			t.Errorf("second mail's subject %q does not count the held conflicts", r.Subject)
		}
	}
	if total != 100 {
		t.Errorf("the mails account for %d conflicts, want 100:\n%q", total, subjects(got))
	}
	last := got[6]
	if want := "[goreplica] 14 more conflicts on lyon since 10:02"; last.Subject != want {
		t.Errorf("digest sent on stop: subject %q, want %q", last.Subject, want)
	}
	if !strings.Contains(last.Body, "key (id)=(99)") || !strings.Contains(last.Body, "txid 1099") {
		t.Errorf("digest on stop does not show the last conflict:\n%s", last.Body)
	}
	assertNoSecret(t, got, logs.String())
}

// TestSlowServerDoesNotBlockNotify: while the SMTP server hangs in DATA,
// Notify keeps returning at once; what does not fit in the queue is
// dropped, logged once and mentioned in the next mail.
func TestSlowServerDoesNotBlockNotify(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hold := make(chan struct{})
	srv := startServer(t, serverConfig{startTLS: true, mechs: []string{"PLAIN"}, hold: hold})
	opts := srv.options()
	opts.QueueSize = 4
	opts.Timeout = 20 * time.Second
	clk := &fakeClock{t: t0}
	m, logs := newTestMailer(t, opts, clk)

	m.Notify(Event{Kind: KindConflict, Slave: "s0"})
	select {
	case <-srv.held: // the sender is now stuck in DATA
	case <-ctx.Done():
		t.Fatal("the first mail never reached DATA")
	}
	const n = 500
	for i := 1; i < n; i++ {
		m.Notify(Event{Kind: KindConflict, Slave: fmt.Sprintf("s%d", i)})
	}
	// Every Notify returned while the server still holds the first mail.
	select {
	case <-hold:
		t.Fatal("hold released early")
	default:
	}
	if got := srv.messages(); len(got) != 0 {
		t.Fatalf("%d mails arrived while the server was holding", len(got))
	}
	for !strings.Contains(logs.String(), "alert mail queue full") {
		select {
		case <-ctx.Done():
			t.Fatalf("no log line about the full queue:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if c := strings.Count(logs.String(), "alert mail queue full"); c != 1 {
		t.Errorf("%d log lines about the full queue, want 1 (throttled):\n%s", c, logs.String())
	}
	close(hold)
	waitMessages(ctx, t, srv, 1+opts.QueueSize)
	closeMailer(t, m)
	got := srv.messages()
	if len(got) != 1+opts.QueueSize {
		t.Errorf("%d mails, want %d (the one in progress and a full queue)", len(got), 1+opts.QueueSize)
	}
	dropped := n - 1 - opts.QueueSize
	want := fmt.Sprintf("(%d earlier alert mails were dropped because the mail queue was full; see the log)", dropped)
	found := false
	for _, r := range got {
		found = found || strings.Contains(r.Body, want)
	}
	if !found {
		t.Errorf("no mail says %q", want)
	}
}

// TestServerDown: with nothing listening, Notify still returns, failures
// are logged once per minute with a count, and Close reports the mails
// that could not go out.
func TestServerDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close() // nothing listens there now
	opts := Options{Host: "127.0.0.1", Port: addr.Port, From: "goreplica@example.com", To: []string{"dba@example.com"},
		Username: testUser, Password: testPassword, TLS: "mandatory", Timeout: time.Second}
	clk := &fakeClock{t: t0}
	m, logs := newTestMailer(t, opts, clk)
	for i := range 5 {
		m.Notify(Event{Kind: KindUnreachable, Slave: fmt.Sprintf("s%d", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// 5 mails x 3 attempts fail; wait until the last gives up.
	m.Notify(Event{Kind: KindStop})
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	err = m.Close(cctx)
	if err == nil || !strings.Contains(err.Error(), "6 alert mails not sent") {
		t.Errorf("Close = %v, want 6 alert mails not sent", err)
	}
	out := logs.String()
	if c := strings.Count(out, "level=WARN"); c != 1 {
		t.Errorf("%d warnings for 18 failed attempts, want 1 (the clock did not move a minute):\n%s", c, out)
	}
	if !strings.Contains(out, "connection refused by 127.0.0.1:") {
		t.Errorf("the log does not say the connection was refused:\n%s", out)
	}
	if strings.Contains(out, testPassword) {
		t.Errorf("password in the log:\n%s", out)
	}
}

// TestCloseIsBounded: a server that hangs does not hold Close past its
// deadline; the mail in progress is counted as not sent.
func TestCloseIsBounded(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hold := make(chan struct{})
	srv := startServer(t, serverConfig{startTLS: true, mechs: []string{"PLAIN"}, hold: hold})
	opts := srv.options()
	opts.Timeout = time.Minute // only Close's deadline can end the wait
	m, _ := newTestMailer(t, opts, &fakeClock{t: t0})
	m.Notify(Event{Kind: KindAbort, Summary: "goreplica stopped abnormally"})
	select {
	case <-srv.held:
	case <-ctx.Done():
		t.Fatal("the mail never reached DATA")
	}
	cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer ccancel()
	err := m.Close(cctx)
	select {
	case <-hold:
		t.Fatal("hold released before Close returned")
	default:
	}
	if err == nil || !strings.Contains(err.Error(), "1 alert mails not sent") {
		t.Errorf("Close = %v, want 1 alert mails not sent", err)
	}
}

// TestEventsFilter: only the configured kinds are mailed.
func TestEventsFilter(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := startServer(t, serverConfig{startTLS: true, mechs: []string{"PLAIN"}})
	opts := srv.options()
	opts.Events = []Kind{KindConflict, KindRecovered}
	m, _ := newTestMailer(t, opts, &fakeClock{t: t0})
	m.Notify(Event{Kind: KindStart})
	m.Notify(Event{Kind: KindLag, Slave: "lyon"})
	m.Notify(Event{Kind: KindConflict, Slave: "lyon"})
	m.Notify(Event{Kind: KindRecovered, Slave: "lyon"})
	waitMessages(ctx, t, srv, 2)
	closeMailer(t, m)
	got := subjects(srv.messages())
	want := []string{"[goreplica] conflict on lyon", "[goreplica] lyon applying again"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("subjects %q, want %q", got, want)
	}
}

// TestSecretScrubbed: a password that slips into an event is masked in
// the mail.
func TestSecretScrubbed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := startServer(t, serverConfig{startTLS: true, mechs: []string{"PLAIN"}})
	m, logs := newTestMailer(t, srv.options(), &fakeClock{t: t0})
	m.Notify(Event{Kind: KindApplyError, Slave: "lyon", Summary: "apply error on lyon: auth " + testPassword,
		Body: "dsn: host=x password=" + testPassword})
	got := waitMessages(ctx, t, srv, 1)
	closeMailer(t, m)
	assertNoSecret(t, got, logs.String())
	if !strings.Contains(got[0].Body, "password=xxxxx") {
		t.Errorf("body:\n%s", got[0].Body)
	}
}

// TestMandatoryTLSWithoutSTARTTLS: the mailer does not send in clear when
// TLS is mandatory; it says why in the log and does not retry.
func TestMandatoryTLSWithoutSTARTTLS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := startServer(t, serverConfig{mechs: []string{"PLAIN"}})
	clk := &fakeClock{t: t0}
	m, logs := newTestMailer(t, srv.options(), clk)
	m.Notify(Event{Kind: KindConflict, Slave: "lyon"})
	for {
		m.mu.Lock()
		failed := m.failed
		m.mu.Unlock()
		if failed == 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the mail was not given up:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	closeMailer(t, m)
	out := logs.String()
	if !strings.Contains(out, `msg="alert mail not sent, giving up on it"`) || !strings.Contains(out, "TLS required but not offered") {
		t.Errorf("log does not say TLS was required but not offered:\n%s", out)
	}
	if strings.Contains(out, "retrying") {
		t.Errorf("a missing STARTTLS was retried:\n%s", out)
	}
	if got := srv.messages(); len(got) != 0 {
		t.Errorf("%d mails went out in clear", len(got))
	}
}

// TestRetryTemporary: a 451 is retried and the mail goes out; a 550 is
// not retried.
func TestRetryTemporary(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := startServer(t, serverConfig{startTLS: true, mechs: []string{"PLAIN"}, tempFail: 2, rejectRcpt: "gone@example.com"})
	m, logs := newTestMailer(t, srv.options(), &fakeClock{t: t0})
	m.Notify(Event{Kind: KindConflict, Slave: "lyon"})
	got := waitMessages(ctx, t, srv, 1)
	closeMailer(t, m)
	if len(got) != 1 || got[0].Subject != "[goreplica] conflict on lyon" {
		t.Fatalf("got %q", subjects(got))
	}
	srv.mu.Lock()
	datas := srv.datas
	srv.mu.Unlock()
	if datas != 3 {
		t.Errorf("%d DATA commands, want 3 (two 451, then accepted)", datas)
	}
	out := logs.String()
	if !strings.Contains(out, "retrying") || !strings.Contains(out, "451") || !strings.Contains(out, "try again later") ||
		!strings.Contains(out, `msg="SMTP server accepts alert mail again after failed attempts" server=`+srv.addr+" count=2") {
		t.Errorf("log does not show the retry and the recovery:\n%s", out)
	}

	opts := srv.options()
	opts.To = []string{"gone@example.com"}
	m, logs = newTestMailer(t, opts, &fakeClock{t: t0})
	m.Notify(Event{Kind: KindConflict, Slave: "lyon"})
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	if err := m.Close(cctx); err == nil || !strings.Contains(err.Error(), "1 alert mails not sent") {
		t.Errorf("Close = %v, want 1 alert mails not sent", err)
	}
	out = logs.String()
	if strings.Contains(out, "retrying") || !strings.Contains(out, "recipient refused by") {
		t.Errorf("a refused recipient was retried or not named:\n%s", out)
	}
}

// BenchmarkNotify measures what an alert costs the goroutine raising it
// while the SMTP server is unreachable: the throttle's decision and, at
// most, a non-blocking queue send.
func BenchmarkNotify(b *testing.B) {
	m, err := New(Options{Host: "127.0.0.1", Port: 1, From: "a@example.com", To: []string{"b@example.com"},
		TLS: "none", Timeout: time.Second, QueueSize: 8}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = m.Close(ctx)
	}()
	slaves := []string{"lyon", "nantes", "lille", "brest"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.Notify(Event{Kind: KindConflict, Slave: slaves[i%len(slaves)], Summary: "conflict"})
	}
}
