package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by release builds:
//
//	go build -ldflags "-X github.com/goreplica/goreplica/buildinfo.version=1.2.0
//	  -X github.com/goreplica/goreplica/buildinfo.commit=<sha>
//	  -X github.com/goreplica/goreplica/buildinfo.date=<RFC 3339>"
var version, commit, date string

// Info describes a build.
type Info struct {
	Version  string // release version ("1.2.0"), module version ("v1.2.0"), or "dev"
	Commit   string // full commit hash, "" when unknown
	Date     string // build date (release builds) or commit date (VCS data), RFC 3339; "" when unknown
	Modified bool   // built from a work tree with uncommitted changes
	Go       string // Go toolchain version
	Platform string // GOOS/GOARCH
}

// Get returns the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	i := resolve(bi, version, commit, date)
	i.Go = runtime.Version()
	i.Platform = runtime.GOOS + "/" + runtime.GOARCH
	return i
}

// resolve prefers what the linker was told (-X) and falls back, field by
// field, to the toolchain's build information bi (which may be nil).
func resolve(bi *debug.BuildInfo, ldVersion, ldCommit, ldDate string) Info {
	i := Info{Version: ldVersion, Commit: ldCommit, Date: ldDate}
	if bi != nil {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if i.Commit == "" {
			i.Commit = settings["vcs.revision"]
			i.Modified = settings["vcs.modified"] == "true"
		}
		if i.Date == "" {
			i.Date = settings["vcs.time"]
		}
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	return i
}

// String is the one line `goreplica version` prints, such as
// "goreplica 1.2.0 (commit 3f2a9c1d0b7e, built 2026-12-01T14:35:00Z, go1.26.8 linux/amd64)".
func (i Info) String() string {
	var parts []string
	if i.Commit != "" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if i.Modified {
			c += " with uncommitted changes"
		}
		parts = append(parts, "commit "+c)
	}
	if i.Date != "" {
		parts = append(parts, "built "+i.Date)
	}
	if i.Go != "" {
		parts = append(parts, strings.TrimSpace(i.Go+" "+i.Platform))
	}
	if len(parts) == 0 {
		return "goreplica " + i.Version
	}
	return fmt.Sprintf("goreplica %s (%s)", i.Version, strings.Join(parts, ", "))
}
