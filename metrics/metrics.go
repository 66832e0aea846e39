package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goreplica/goreplica/replicator"
)

const namespace = "goreplica"

// States are the values of goreplica_slave_state's state label, one series
// each: the states status shows, spelled as label values.
var States = []string{
	replicator.StateRunning, replicator.StateStopped, replicator.StateConflict, replicator.StateError,
	replicator.StateUnreachable, replicator.StateUnknown, replicator.StateNotRegistered, replicator.StateNotConfigured,
}

func stateLabel(s string) string { return strings.ReplaceAll(s, " ", "_") }

// Options says where the figures come from.
type Options struct {
	// Status reads the status; it is called at each scrape.
	Status func(ctx context.Context) (*replicator.Status, error)
	// Mail returns the alert mails sent and failed so far; nil: no [mail].
	Mail func() (sent, failed int)
	// Timeout bounds one reading of the status (default 10s).
	Timeout time.Duration
}

// Metrics holds goreplica's collectors in a registry of their own, with
// the Go and process collectors. It implements replicator.Observer.
type Metrics struct {
	reg  *prometheus.Registry
	opts Options

	batches   *prometheus.CounterVec
	events    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	conflicts *prometheus.CounterVec
	errs      *prometheus.CounterVec
}

var _ replicator.Observer = (*Metrics)(nil)

// New returns the metrics of a daemon.
func New(opts Options) *Metrics {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	m := &Metrics{
		reg:  prometheus.NewRegistry(),
		opts: opts,
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "applied_batches_total",
			Help: "Batches committed on the slave."}, []string{"slave"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "applied_events_total",
			Help: "Logged row changes applied on the slave."}, []string{"slave"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "apply_duration_seconds",
			Help:    "Time to read, apply and commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"slave"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "conflicts_total",
			Help: "Batches stopped by a conflict (insert_exists, update_missing, delete_missing)."}, []string{"slave"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "errors_total",
			Help: "Worker stops on an error, by kind: conflict, error (apply error) or unreachable."}, []string{"slave", "kind"}),
	}
	m.reg.MustRegister(m.batches, m.events, m.duration, m.conflicts, m.errs, statusCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opts.Mail != nil {
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "mail_sent_total",
				Help: "Alert mails the SMTP server accepted."}, func() float64 { s, _ := opts.Mail(); return float64(s) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "mail_failed_total",
				Help: "Alert mails given up after their retries."}, func() float64 { _, f := opts.Mail(); return float64(f) }))
	}
	return m
}

// Slaves creates the counters of each slave at zero, so that rate() and
// increase() see them from the first scrape.
func (m *Metrics) Slaves(names []string) {
	for _, n := range names {
		m.batches.WithLabelValues(n)
		m.events.WithLabelValues(n)
		m.conflicts.WithLabelValues(n)
		for _, k := range []string{replicator.StateConflict, replicator.StateError, replicator.StateUnreachable} {
			m.errs.WithLabelValues(n, k)
		}
	}
}

// BatchApplied implements replicator.Observer.
func (m *Metrics) BatchApplied(slave string, events int, took time.Duration) {
	m.batches.WithLabelValues(slave).Inc()
	m.events.WithLabelValues(slave).Add(float64(events))
	m.duration.WithLabelValues(slave).Observe(took.Seconds())
}

// Failed implements replicator.Observer.
func (m *Metrics) Failed(slave, state string) {
	m.errs.WithLabelValues(slave, state).Inc()
	if state == replicator.StateConflict {
		m.conflicts.WithLabelValues(slave).Inc()
	}
}

// Handler serves /metrics and /healthz (200 while the daemon runs).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Server is the metrics listener of a running daemon.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan error
}

// Listen listens on addr (host:port) and serves h until Close.
func Listen(addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}, addr: l.Addr(), done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(l) }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops the listener, letting requests in progress finish within ctx.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// statusCollector turns a status reading into gauges at each scrape.
type statusCollector struct{ m *Metrics }

var (
	descMasterUp = prometheus.NewDesc(namespace+"_master_up",
		"1 when the master could be read at this scrape.", nil, nil)
	descLogRows = prometheus.NewDesc(namespace+"_replica_log_rows",
		"Rows in replica.replica_log on the master (not yet purged).", nil, nil)
	descLogBytes = prometheus.NewDesc(namespace+"_replica_log_bytes",
		"Size of replica.replica_log on the master, indexes included.", nil, nil)
	descTables = prometheus.NewDesc(namespace+"_captured_tables",
		"Tables whose changes the master captures.", nil, nil)
	descUp = prometheus.NewDesc(namespace+"_slave_up",
		"1 when a worker applies to the slave (state running).", []string{"slave"}, nil)
	descState = prometheus.NewDesc(namespace+"_slave_state",
		"The slave's state as status shows it: 1 for its state, 0 for the others.", []string{"slave", "state"}, nil)
	descLag = prometheus.NewDesc(namespace+"_slave_lag_seconds",
		"How far the slave is behind, by the master's clock (0 when nothing is pending).", []string{"slave"}, nil)
	descPending = prometheus.NewDesc(namespace+"_slave_pending_events",
		"Logged changes not yet applied on the slave.", []string{"slave"}, nil)
	descInDoubt = prometheus.NewDesc(namespace+"_slave_in_doubt_transactions",
		"Prepared batches left behind on the slave.", []string{"slave"}, nil)
)

func (statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMasterUp, descLogRows, descLogBytes, descTables, descUp, descState, descLag, descPending, descInDoubt} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.m.opts.Timeout)
	defer cancel()
	st, err := c.m.opts.Status(ctx)
	if err != nil {
		st = nil
	}
	if st == nil || !st.Reachable {
		ch <- prometheus.MustNewConstMetric(descMasterUp, prometheus.GaugeValue, 0)
		if st == nil {
			return
		}
	} else {
		ch <- prometheus.MustNewConstMetric(descMasterUp, prometheus.GaugeValue, 1)
		ch <- prometheus.MustNewConstMetric(descLogRows, prometheus.GaugeValue, float64(st.LogRows))
		ch <- prometheus.MustNewConstMetric(descLogBytes, prometheus.GaugeValue, float64(st.LogBytes))
		ch <- prometheus.MustNewConstMetric(descTables, prometheus.GaugeValue, float64(st.TablesCount))
	}
	for _, s := range st.Slaves {
		up := 0.0
		if s.State == replicator.StateRunning {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, s.Name)
		for _, state := range States {
			v := 0.0
			if state == s.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, s.Name, stateLabel(state))
		}
		if st.Reachable {
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, s.LagSeconds, s.Name)
			ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(s.PendingEvents), s.Name)
			ch <- prometheus.MustNewConstMetric(descInDoubt, prometheus.GaugeValue, float64(len(s.InDoubt)), s.Name)
		}
	}
}
