package replicator

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
)

func TestExplainConnect(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		config bool
		hint   string
	}{
		{"ssl not offered", pq.ErrSSLNotSupported, true, "sslmode=disable"},
		{"startup parameter refused", &pq.Error{Code: "08P01", Message: "unsupported startup parameter: synchronous_commit"}, true, "ignore_startup_parameters"},
		{"statement pool", errors.New("pq: transaction blocks not allowed in statement pooling mode"), true, "pool_mode = session or transaction"},
		{"server down", io.EOF, false, ""},
		{"authentication", &pq.Error{Code: "28P01", Message: "password authentication failed"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := explainConnect(tt.err)
			var ce *ConfigError
			if got := errors.As(err, &ce); got != tt.config {
				t.Fatalf("explainConnect(%v) = %v: config error %v, want %v", tt.err, err, got, tt.config)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("explainConnect(%v) = %v does not wrap it", tt.err, err)
			}
			if !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("explainConnect(%v) = %v, want the hint %q", tt.err, err, tt.hint)
			}
			if tt.config && isConnectionError(err) {
				t.Errorf("%v is taken for an outage", err)
			}
		})
	}
}

// TestCheckPoolingDirect: without a pooler nothing is reported, and the
// daemon's master sessions get their settings from a SET, not from a
// start-up parameter.
func TestCheckPoolingDirect(t *testing.T) {
	ms, ss := servers(t)
	_, mdsn := newDB(t, ms, "pool_m")
	_, sdsn := newDB(t, ss, "pool_s")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := Options{Master: Node{Name: "paris", DSN: mdsn}, Slaves: []Node{{Name: "lyon", DSN: sdsn}}}
	if problems := CheckPooling(ctx, opts); len(problems) != 0 {
		t.Errorf("CheckPooling without a pooler: %v", problems)
	}
	if err := checkNotify(ctx, opts.Master.DSN); err != nil {
		t.Errorf("checkNotify without a pooler: %v", err)
	}
	db, err := openDB(opts.Master.DSN, asyncCommit)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sc string
	if err := db.QueryRowContext(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&sc); err != nil {
		t.Fatal(err)
	}
	if sc != "off" {
		t.Errorf("synchronous_commit of a master session = %q, want off", sc)
	}
	// A DSN that sets it itself keeps its value.
	db2, err := openDB(opts.Master.DSN+" synchronous_commit=local", asyncCommit)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if err := db2.QueryRowContext(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&sc); err != nil {
		t.Fatal(err)
	}
	if sc != "local" {
		t.Errorf("synchronous_commit set by the DSN = %q, want local", sc)
	}
}
