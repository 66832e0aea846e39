package main

import (
	"testing"
	"time"
)

func TestReleaseVersion(t *testing.T) {
	at := time.Date(2026, 12, 1, 14, 30, 5, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		name, exact, last, want string
	}{
		{"tagged HEAD", "v1.2.0", "v1.2.0", "1.2.0"},
		{"tagged pre-release", "v1.3.0-rc.1", "v1.3.0-rc.1", "1.3.0-rc.1"},
		{"after a release", "", "v1.2.0", "1.2.1-dev.20261201133005"},
		{"after a pre-release", "", "v1.3.0-rc.1", "1.3.0-rc.1.dev.20261201133005"},
		{"no tag yet", "", "", "0.0.1-dev.20261201133005"},
		{"a tag that is no version", "vnext", "vnext", "0.0.1-dev.20261201133005"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := releaseVersion(tt.exact, tt.last, at)
			if got != tt.want {
				t.Errorf("releaseVersion(%q, %q) = %q, want %q", tt.exact, tt.last, got, tt.want)
			}
			if !semverRE.MatchString(got) {
				t.Errorf("releaseVersion(%q, %q) = %q, not a version -version takes", tt.exact, tt.last, got)
			}
		})
	}
}
