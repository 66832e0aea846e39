package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Options configure a Mailer and Test. Zero values take the defaults named
// on each field.
type Options struct {
	Host     string
	Port     int // 587
	Username string
	Password string
	From     string
	To       []string
	// TLS is "mandatory" (the default: STARTTLS required, or implicit TLS
	// when Port is 465), "implicit" (TLS from the first byte), "opportunistic"
	// (STARTTLS when offered) or "none".
	TLS string
	// Auth is "plain", "login", "cram-md5" or "none"; empty means "plain"
	// when Username is set and "none" otherwise.
	Auth          string
	SubjectPrefix string
	// Events are the kinds to mail; empty means all. KindTest always goes.
	Events []Kind
	// MinInterval is the least time between two mails of one kind about
	// one slave (10m); Timeout bounds each SMTP connection step (10s).
	MinInterval, Timeout time.Duration
	// QueueSize bounds the mails waiting to be sent (100); beyond it Notify
	// drops them and counts.
	QueueSize int
	// TLSConfig, when set, replaces the default TLS settings (system roots,
	// ServerName = Host), for example to trust a private CA.
	TLSConfig *tls.Config
}

// withDefaults fills the defaults and checks what the mailer cannot do
// without.
func (o Options) withDefaults() (Options, error) {
	if o.Port == 0 {
		o.Port = 587
	}
	if o.TLS == "" {
		o.TLS = "mandatory"
	}
	if o.Auth == "" {
		o.Auth = "none"
		if o.Username != "" {
			o.Auth = "plain"
		}
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 10 * time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 100
	}
	var errs []error
	if o.Host == "" {
		errs = append(errs, errors.New("mail host: required"))
	}
	probe := gomail.NewMsg()
	if o.From == "" {
		errs = append(errs, errors.New("mail from: required"))
	} else if err := probe.From(o.From); err != nil {
		errs = append(errs, fmt.Errorf("mail from %q: %w", o.From, err))
	}
	if len(o.To) == 0 {
		errs = append(errs, errors.New("mail to: at least one recipient is required"))
	} else if err := probe.To(o.To...); err != nil {
		errs = append(errs, fmt.Errorf("mail to: %w", err))
	}
	if _, err := o.client(&connHolder{}); err != nil {
		errs = append(errs, err)
	}
	return o, errors.Join(errs...)
}

// Slog keys used by the mailer.
const (
	keyKind    = "kind"
	keySlave   = "slave"
	keyError   = "error"
	keyCount   = "count"
	keySubject = "subject"
	keyServer  = "server"
)

// Retry and log pacing.
const (
	defaultAttempts  = 4                // tries per mail on temporary errors
	defaultRetryBase = 2 * time.Second  // first back-off, doubled each try
	maxRetryDelay    = 30 * time.Second // back-off cap
	defaultLogEvery  = time.Minute      // at most one failure line per minute
)

// settings are the knobs tests turn; New uses the defaults.
type settings struct {
	now       func() time.Time
	attempts  int
	retryBase time.Duration
	logEvery  time.Duration
}

var (
	timeNow  = time.Now
	hostname = func() string {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return "unknown host"
		}
		return h
	}
)

// Mailer turns events into throttled alert mails and sends them in the
// background. Its methods are safe for concurrent use.
type Mailer struct {
	opts     Options
	log      *slog.Logger
	set      settings
	wanted   map[Kind]bool // nil: every kind
	hostname string

	mu       sync.Mutex
	thr      *throttle
	closed   bool
	dropNote int // dropped mails to mention in the next mail
	dropGate logGate

	queue   chan mail
	wake    chan struct{} // the throttle or drop counters changed
	closing chan struct{} // Close was called
	done    chan struct{} // the sender goroutine ended
	ctx     context.Context
	cancel  context.CancelFunc

	// Owned by the sender goroutine.
	failGate logGate

	unsent int // mails abandoned at Close's deadline (guarded by mu)
	failed int // mails given up after their retries (guarded by mu)
	sent   int // mails the SMTP server accepted (guarded by mu)
}

// Counts returns how many alert mails the SMTP server accepted and how
// many were given up after their retries, since New.
func (m *Mailer) Counts() (sent, failed int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sent, m.failed
}

// New checks opts and starts the background sender. Close stops it.
func New(opts Options, logger *slog.Logger) (*Mailer, error) {
	return newMailer(opts, logger, settings{})
}

func newMailer(opts Options, logger *slog.Logger, set settings) (*Mailer, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if set.now == nil {
		set.now = timeNow
	}
	if set.attempts <= 0 {
		set.attempts = defaultAttempts
	}
	if set.retryBase <= 0 {
		set.retryBase = defaultRetryBase
	}
	if set.logEvery <= 0 {
		set.logEvery = defaultLogEvery
	}
	m := &Mailer{
		opts:     o,
		log:      logger.With(keyServer, o.addr()),
		set:      set,
		hostname: hostname(),
		thr:      newThrottle(o.MinInterval),
		dropGate: logGate{every: set.logEvery},
		failGate: logGate{every: set.logEvery},
		queue:    make(chan mail, o.QueueSize),
		wake:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if len(o.Events) > 0 {
		m.wanted = map[Kind]bool{KindTest: true}
		for _, k := range o.Events {
			m.wanted[k] = true
		}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.run()
	return m, nil
}

// Notify reports an event. It never blocks and never does I/O: the
// throttle decides at once whether the event becomes a mail, and a mail
// that does not fit in the queue is dropped and counted. After Close, or
// on a nil *Mailer (no [mail] configured), it does nothing.
func (m *Mailer) Notify(e Event) {
	if m == nil || (m.wanted != nil && !m.wanted[e.Kind]) {
		return
	}
	if e.Time.IsZero() {
		e.Time = m.set.now()
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	mails := m.thr.decide(e)
	dropped := m.enqueueLocked(mails)
	m.mu.Unlock()
	if len(mails) == 0 {
		m.log.Debug("alert held back by the mail throttle", keyKind, string(e.Kind), keySlave, e.Slave)
	}
	m.logDropped(dropped)
	m.poke()
}

// enqueueLocked queues mails without waiting; a mail that does not fit is
// dropped and counted for the next mail's body. It returns how many
// dropped mails to log now (paced by dropGate), for logDropped after
// m.mu is released.
func (m *Mailer) enqueueLocked(mails []mail) int {
	dropped := 0
	for _, x := range mails {
		select {
		case m.queue <- x:
		default:
			dropped++
		}
	}
	if dropped == 0 {
		return 0
	}
	m.dropNote += dropped
	if ok, n := m.dropGate.fail(m.set.now(), dropped); ok {
		return n
	}
	return 0
}

func (m *Mailer) logDropped(n int) {
	if n > 0 {
		m.log.Warn("alert mail queue full: mails dropped (the SMTP server is down or slow)", keyCount, n)
	}
}

// poke wakes the sender so it rereads the throttle and counters.
func (m *Mailer) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Close stops accepting events, queues the digests still held back, and
// gives the queue until ctx's deadline to go out (plus at most one Timeout
// for a conversation in progress). It returns an error counting the mails
// that did not go out. Closing a nil *Mailer does nothing.
func (m *Mailer) Close(ctx context.Context) error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	failedBefore := m.failed
	dropped := m.enqueueLocked(m.thr.due(m.set.now(), true))
	m.mu.Unlock()
	m.logDropped(dropped)
	close(m.closing)
	select {
	case <-m.done:
	case <-ctx.Done():
		m.cancel()
		<-m.done
	}
	m.cancel()
	m.mu.Lock()
	n := m.unsent + m.failed - failedBefore
	m.mu.Unlock()
	if n > 0 {
		return fmt.Errorf("mail: %d alert mails not sent before stop", n)
	}
	return nil
}

// run is the sender goroutine: it delivers queued mails one at a time and
// queues digests when their interval ends.
func (m *Mailer) run() {
	defer close(m.done)
	for {
		m.mu.Lock()
		next := m.thr.next()
		m.mu.Unlock()
		var timer *time.Timer
		var tick <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(max(0, next.Sub(m.set.now())))
			tick = timer.C
		}
		select {
		case x := <-m.queue:
			m.deliver(x)
		case <-tick:
			m.mu.Lock()
			dropped := m.enqueueLocked(m.thr.due(m.set.now(), false))
			m.mu.Unlock()
			m.logDropped(dropped)
		case <-m.wake:
		case <-m.closing:
			if timer != nil {
				timer.Stop()
			}
			m.drain()
			return
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// drain sends what is queued until the queue is empty or Close's deadline
// cancels m.ctx; what is left counts as unsent.
func (m *Mailer) drain() {
	for {
		select {
		case x := <-m.queue:
			if m.ctx.Err() != nil {
				m.addUnsent(1)
				continue
			}
			m.deliver(x)
		default:
			return
		}
	}
}

func (m *Mailer) addUnsent(n int) {
	m.mu.Lock()
	m.unsent += n
	m.mu.Unlock()
}

// deliver sends one mail, retrying temporary failures with exponential
// back-off, and logs the outcome (failures at most once per logEvery).
func (m *Mailer) deliver(x mail) {
	m.mu.Lock()
	x.dropped, m.dropNote = m.dropNote, 0
	m.mu.Unlock()
	msg, err := m.opts.message(x, m.hostname)
	if err != nil {
		m.log.Error("alert mail not built", keyKind, string(x.Kind), keyError, m.scrub(err.Error()))
		return
	}
	subj := scrub(m.opts.Password, subject(m.opts.SubjectPrefix, x))
	delay := m.set.retryBase
	for attempt := 1; ; attempt++ {
		err := m.sendOnce(msg)
		if err == nil {
			if n := m.failGate.ok(); n > 0 {
				m.log.Info("SMTP server accepts alert mail again after failed attempts", keyCount, n)
			}
			m.log.Info("alert mail sent", keyKind, string(x.Kind), keySlave, x.Slave, keySubject, subj)
			m.mu.Lock()
			m.sent++
			m.mu.Unlock()
			return
		}
		if m.ctx.Err() != nil {
			m.addUnsent(1)
			return
		}
		final := !temporary(err) || attempt >= m.set.attempts
		if ok, n := m.failGate.fail(m.set.now(), 1); ok {
			what := "alert mail not sent yet, retrying"
			if final {
				what = "alert mail not sent, giving up on it"
			}
			m.log.Warn(what, keyKind, string(x.Kind), keySlave, x.Slave, keyCount, n, keyError, m.scrub(describe(m.opts, err)))
		}
		if final {
			m.mu.Lock()
			m.failed++
			m.mu.Unlock()
			return
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-m.ctx.Done():
			t.Stop()
			m.addUnsent(1)
			return
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// sendOnce runs one SMTP conversation. Cancelling m.ctx (Close's deadline)
// closes the connection at once.
func (m *Mailer) sendOnce(msg *gomail.Msg) error {
	var h connHolder
	c, err := m.opts.client(&h)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(m.ctx, h.close)
	defer stop()
	defer h.close()
	ctx, cancel := context.WithTimeout(m.ctx, m.opts.Timeout)
	defer cancel()
	sc, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return err
	}
	if err := c.SendWithSMTPClient(sc, msg); err != nil {
		return err
	}
	// The server has the mail; a failed QUIT does not matter.
	_ = c.CloseWithSMTPClient(sc)
	return nil
}

func (m *Mailer) scrub(s string) string { return scrub(m.opts.Password, s) }

// logGate paces failure log lines: the first failure of a run is logged at
// once, the next ones at most once per every, each line counting the
// failures since the last line.
type logGate struct {
	every   time.Duration
	last    time.Time // when the last line was logged; zero: none in this run
	pending int       // failures not yet counted in a line
	run     int       // failures since the last success
}

// fail records n failures at now and reports whether to log a line, and
// how many failures the line covers.
func (g *logGate) fail(now time.Time, n int) (bool, int) {
	g.pending += n
	g.run += n
	if g.last.IsZero() || now.Sub(g.last) >= g.every {
		n := g.pending
		g.pending, g.last = 0, now
		return true, n
	}
	return false, 0
}

// ok records a success and returns how many failures the run it ends had.
func (g *logGate) ok() int {
	n := g.run
	*g = logGate{every: g.every}
	return n
}
