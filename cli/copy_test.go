package cli

import (
	"slices"
	"testing"

	"github.com/goreplica/goreplica/replicator"
)

func TestWaitOutcome(t *testing.T) {
	ok := replicator.TableStatus{Name: "public.a", State: replicator.TableOK}
	copying := replicator.TableStatus{Name: "public.b", State: replicator.TableCopying, RowsCopied: 10, RowsTotal: 100, Rate: 5}
	failed := replicator.TableStatus{Name: "public.c", State: replicator.TableError, Error: "boom"}
	slave := func(name string, tables ...replicator.TableStatus) replicator.SlaveStatus {
		return replicator.SlaveStatus{Name: name, State: replicator.StateRunning, Configured: true, Tables: append([]replicator.TableStatus{}, tables...)}
	}
	tests := []struct {
		name            string
		st              replicator.Status
		done            bool
		failed, pending []string
	}{
		{"all ok", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{slave("lyon", ok), slave("nice", ok)}}, true, nil, nil},
		{"no table", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{slave("lyon")}}, true, nil, nil},
		{"copying", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{slave("lyon", ok), slave("nice", copying)}}, false, nil,
			[]string{"slave nice: table public.b: copying (10/100 rows, 5 rows/s)"}},
		{"error wins", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{slave("lyon", copying, failed)}}, false,
			[]string{"slave lyon: table public.c: error: boom"}, []string{"slave lyon: table public.b: copying (10/100 rows, 5 rows/s)"}},
		{"slave not registered", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{{Name: "lyon", State: replicator.StateNotRegistered, Configured: true}}}, false, nil,
			[]string{"slave lyon: not registered"}},
		{"master down", replicator.Status{Master: "paris", Error: "refused"}, false, nil, []string{"master paris: refused"}},
		{"unconfigured slave ignored", replicator.Status{Reachable: true, Slaves: []replicator.SlaveStatus{{Name: "old", Tables: []replicator.TableStatus{copying}}}}, true, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done, failed, pending := waitOutcome(&tt.st)
			if done != tt.done || !slices.Equal(failed, tt.failed) || !slices.Equal(pending, tt.pending) {
				t.Errorf("got %v %q %q, want %v %q %q", done, failed, pending, tt.done, tt.failed, tt.pending)
			}
		})
	}
}
