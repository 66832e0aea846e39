package replicator

import (
	"testing"
	"time"
)

// A fence covers the snapshots taken before it started, never one taken
// after it started or at an unknown time.
func TestFencesCoverEarlierSnapshots(t *testing.T) {
	t0 := time.Now()
	t1, t2, t3 := t0.Add(time.Millisecond), t0.Add(2*time.Millisecond), t0.Add(3*time.Millisecond)
	var f fences
	if f.covered(t0, 0) {
		t.Error("covered before any fence")
	}
	f.completed(t2)
	f.completed(t1) // a slower fence that started earlier ends later
	tests := []struct {
		name    string
		takenAt time.Time
		want    bool
	}{
		{"taken before the fence started", t1, true},
		{"taken as the fence started", t2, false},
		{"taken after", t3, false},
		{"unknown", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.covered(tt.takenAt, 0); got != tt.want {
				t.Errorf("covered = %v, want %v", got, tt.want)
			}
		})
	}
}

// A flush position covers the snapshots taken before it was read whose
// WAL insert position it has passed; never a snapshot taken after it was
// read, nor one of unknown position or time.
func TestFencesCoverFlushedPositions(t *testing.T) {
	t0 := time.Now()
	t1, t2, t3 := t0.Add(time.Millisecond), t0.Add(2*time.Millisecond), t0.Add(3*time.Millisecond)
	var f fences
	f.sawFlushed(200, t2)
	f.sawFlushed(100, t1) // an older read that returned later
	tests := []struct {
		name    string
		takenAt time.Time
		walPos  uint64
		want    bool
	}{
		{"before the flush position", t1, 150, true},
		{"at it", t1, 200, true},
		{"past it", t1, 201, false},
		{"unknown position", t1, 0, false},
		{"taken after the reading", t3, 150, false},
		{"taken at an unknown time", time.Time{}, 150, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.covered(tt.takenAt, tt.walPos); got != tt.want {
				t.Errorf("covered = %v, want %v", got, tt.want)
			}
		})
	}
}
