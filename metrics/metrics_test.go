package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/goreplica/goreplica/replicator"
)

func TestStatusBecomesGauges(t *testing.T) {
	st := &replicator.Status{Master: "paris", Reachable: true, LogRows: 12, LogBytes: 8192, TablesCount: 2,
		Slaves: []replicator.SlaveStatus{
			{Name: "lyon", State: replicator.StateConflict, LagSeconds: 4.5, PendingEvents: 12, Configured: true, InDoubt: []string{}},
			{Name: "old", State: replicator.StateNotConfigured, InDoubt: []string{}},
		}}
	var readErr error
	m := New(Options{Status: func(context.Context) (*replicator.Status, error) { return st, readErr },
		Mail: func() (int, int) { return 3, 1 }})
	m.Slaves([]string{"lyon"})
	m.BatchApplied("lyon", 10, 20*time.Millisecond)
	m.Failed("lyon", replicator.StateConflict)

	want := `
# HELP goreplica_slave_lag_seconds How far the slave is behind, by the master's clock (0 when nothing is pending).
# TYPE goreplica_slave_lag_seconds gauge
goreplica_slave_lag_seconds{slave="lyon"} 4.5
goreplica_slave_lag_seconds{slave="old"} 0
# HELP goreplica_slave_up 1 when a worker applies to the slave (state running).
# TYPE goreplica_slave_up gauge
goreplica_slave_up{slave="lyon"} 0
goreplica_slave_up{slave="old"} 0
# HELP goreplica_conflicts_total Batches stopped by a conflict (insert_exists, update_missing, delete_missing).
# TYPE goreplica_conflicts_total counter
goreplica_conflicts_total{slave="lyon"} 1
# HELP goreplica_applied_events_total Logged row changes applied on the slave.
# TYPE goreplica_applied_events_total counter
goreplica_applied_events_total{slave="lyon"} 10
# HELP goreplica_mail_sent_total Alert mails the SMTP server accepted.
# TYPE goreplica_mail_sent_total counter
goreplica_mail_sent_total 3
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "goreplica_slave_lag_seconds", "goreplica_slave_up",
		"goreplica_conflicts_total", "goreplica_applied_events_total", "goreplica_mail_sent_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(m.reg, "goreplica_slave_state"); err != nil || n != 2*len(States) {
		t.Errorf("goreplica_slave_state: %d series, %v; want %d", n, err, 2*len(States))
	}
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}

	// The master cannot be read: master_up 0, no lag series.
	readErr = errors.New("connection refused")
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(`
# HELP goreplica_master_up 1 when the master could be read at this scrape.
# TYPE goreplica_master_up gauge
goreplica_master_up 0
`), "goreplica_master_up", "goreplica_slave_lag_seconds"); err != nil {
		t.Error(err)
	}
}

func TestListenServesHealthz(t *testing.T) {
	m := New(Options{Status: func(context.Context) (*replicator.Status, error) { return &replicator.Status{}, nil }})
	s, err := Listen("127.0.0.1:0", m.Handler(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, path := range []string{"/healthz", "/metrics"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Addr().String()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) == 0 {
			t.Errorf("GET %s: %s %q", path, resp.Status, b)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Error(err)
	}
	if _, err := Listen(s.Addr().String()+"x", m.Handler(), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("Listen on a bad address succeeded")
	}
}
