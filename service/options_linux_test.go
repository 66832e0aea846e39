package service

import "testing"

func TestSystemdState(t *testing.T) {
	tests := []struct {
		load, active, sub string
		want              State
	}{
		{"not-found", "inactive", "dead", NotInstalled},
		{"loaded", "inactive", "dead", Stopped},
		{"loaded", "active", "running", Running},
		{"loaded", "activating", "start", Running},
		{"loaded", "activating", "auto-restart", Restarting},
		{"loaded", "deactivating", "stop-sigterm", Stopped},
		{"loaded", "failed", "failed", Failed},
	}
	for _, tt := range tests {
		if got := systemdState(tt.load, tt.active, tt.sub); got != tt.want {
			t.Errorf("systemdState(%s, %s, %s) = %s, want %s", tt.load, tt.active, tt.sub, got, tt.want)
		}
	}
}
