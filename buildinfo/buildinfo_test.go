package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/goreplica/goreplica", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3f2a9c1d0b7e5a6b7c8d9e0f1a2b3c4d5e6f7a8b"},
			{Key: "vcs.time", Value: "2026-11-30T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	installed := &debug.BuildInfo{Main: debug.Module{Path: "github.com/goreplica/goreplica", Version: "v1.4.0"}}
	tests := []struct {
		name                string
		bi                  *debug.BuildInfo
		ldVersion, ldC, ldD string
		want                Info
	}{
		{"release build (-ldflags)", vcs, "1.2.0", "abc", "2026-12-01T14:35:00Z",
			Info{Version: "1.2.0", Commit: "abc", Date: "2026-12-01T14:35:00Z"}},
		{"go build in a checkout", vcs, "", "", "",
			Info{Version: "dev", Commit: "3f2a9c1d0b7e5a6b7c8d9e0f1a2b3c4d5e6f7a8b", Date: "2026-11-30T10:00:00Z", Modified: true}},
		{"go install module@version", installed, "", "", "", Info{Version: "v1.4.0"}},
		{"no build information", nil, "", "", "", Info{Version: "dev"}},
		{"only the version set", vcs, "1.2.0", "", "",
			Info{Version: "1.2.0", Commit: "3f2a9c1d0b7e5a6b7c8d9e0f1a2b3c4d5e6f7a8b", Date: "2026-11-30T10:00:00Z", Modified: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolve(tt.bi, tt.ldVersion, tt.ldC, tt.ldD); got != tt.want {
				t.Errorf("resolve = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		in   Info
		want string
	}{
		{Info{Version: "dev"}, "goreplica dev"},
		{Info{Version: "1.2.0", Commit: "3f2a9c1d0b7e5a6b", Date: "2026-12-01T14:35:00Z", Go: "go1.26.8", Platform: "linux/amd64"},
			"goreplica 1.2.0 (commit 3f2a9c1d0b7e, built 2026-12-01T14:35:00Z, go1.26.8 linux/amd64)"},
		{Info{Version: "dev", Commit: "abc", Modified: true}, "goreplica dev (commit abc with uncommitted changes)"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
