package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/goreplica/goreplica/replicator"
)

func TestCheckStatus(t *testing.T) {
	slave := func(name, state string, lag float64) replicator.SlaveStatus {
		return replicator.SlaveStatus{Name: name, State: state, LagSeconds: lag, Configured: true, InDoubt: []string{}}
	}
	warn, crit := 30*time.Second, 5*time.Minute
	tests := []struct {
		name   string
		st     replicator.Status
		code   int
		prefix string
		perf   string
	}{
		{"all caught up", replicator.Status{Master: "paris", Reachable: true, Slaves: []replicator.SlaveStatus{slave("lyon", "running", 0)}},
			0, "GOREPLICA OK - 1 slaves replicating from paris", "lag_lyon=0s;30;300;0 pending_lyon=0;;;0"},
		{"lag past warning", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{slave("lyon", "running", 31.25), slave("nice", "running", 0)}},
			1, "GOREPLICA WARNING - slave lyon lag 31.3s", "lag_lyon=31.25s;30;300;0"},
		{"lag past critical", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{slave("lyon", "running", 301)}},
			2, "GOREPLICA CRITICAL - slave lyon lag 5m1s", ""},
		{"conflict beats a warning", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{
			slave("lyon", "running", 40), {Name: "nice", State: "conflict", LastError: "conflict insert_exists\nmore", Configured: true}}},
			2, "GOREPLICA CRITICAL - slave lyon lag 40s; slave nice conflict: conflict insert_exists |", ""},
		{"no daemon", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{slave("lyon", "stopped", 0)}},
			2, "GOREPLICA CRITICAL - slave lyon stopped", ""},
		{"registered but not configured", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{
			slave("lyon", "running", 0), {Name: "old", State: replicator.StateNotConfigured}}},
			1, "GOREPLICA WARNING - slave old is registered but not configured", ""},
		{"in doubt", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{{Name: "lyon", State: "running", Configured: true, InDoubt: []string{"g"}}}},
			1, "GOREPLICA WARNING - slave lyon has 1 in-doubt", ""},
		{"master unreachable", replicator.Status{Master: "paris", Error: "master paris: dial tcp: connection refused"},
			3, "GOREPLICA UNKNOWN - master paris cannot be reached: master paris: dial tcp", ""},
		{"a name with a space is quoted", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{slave("a b", "running", 0)}},
			0, "GOREPLICA OK", "'lag_a b'=0s;30;300;0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, line := checkStatus(&tt.st, warn, crit)
			if code != tt.code || !strings.HasPrefix(line, tt.prefix) || !strings.Contains(line, tt.perf) || strings.Contains(line, "\n") {
				t.Errorf("got %d %q, want %d, prefix %q, perfdata %q", code, line, tt.code, tt.prefix, tt.perf)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{"stauts": "status", "statu": "status", "chek": "check", "ini": "init", "frobnicate": "", "x": ""} {
		if got := suggest(in); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
