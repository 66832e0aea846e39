package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// semverRE is the version forms a release takes: MAJOR.MINOR.PATCH with an
// optional pre-release, which deb and rpm both sort before the release
// (nfpm writes it after a "~").
var semverRE = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z]+(\.[0-9A-Za-z]+)*)?$`)

// describe fills in the version, commit and date of the release from the
// flag, Git and SOURCE_DATE_EPOCH.
func (r *release) describe(ctx context.Context, flagVersion string) error {
	git := func(args ...string) string {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = r.root
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	r.commit = git("rev-parse", "HEAD")
	r.date = time.Now().UTC().Truncate(time.Second)
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: not a number of seconds", s)
		}
		r.date = time.Unix(sec, 0).UTC()
	}
	v := strings.TrimPrefix(flagVersion, "v")
	if v == "" {
		if r.commit == "" {
			return fmt.Errorf("not a Git checkout (or git is missing): give -version")
		}
		ct, err := strconv.ParseInt(git("show", "-s", "--format=%ct", "HEAD"), 10, 64)
		if err != nil {
			return fmt.Errorf("commit time of HEAD: %w", err)
		}
		v = releaseVersion(
			git("describe", "--tags", "--exact-match", "--match", "v[0-9]*", "HEAD"),
			git("describe", "--tags", "--abbrev=0", "--match", "v[0-9]*", "HEAD"),
			time.Unix(ct, 0))
		if git("status", "--porcelain", "--untracked-files=no") != "" {
			fmt.Fprintf(os.Stderr, "dist: warning: the work tree has uncommitted changes; the artifacts say commit %s all the same\n", short(r.commit))
		}
	}
	if !semverRE.MatchString(v) {
		return fmt.Errorf("version %q: want MAJOR.MINOR.PATCH with an optional -pre.release (such as 1.2.0 or 1.3.0-rc.1)", v)
	}
	r.version = v
	return nil
}

// releaseVersion is the version of a build of HEAD: the tag on HEAD when
// there is one (v1.2.0 -> 1.2.0); else a pre-release of the next patch
// version, ordered by commit time (1.2.1-dev.20261201143000 after v1.2.0,
// 1.3.0-rc.1.dev.20261201143000 after v1.3.0-rc.1, 0.0.1-dev... before any
// tag), so that each newer commit's packages upgrade the older ones and the
// next release upgrades them all.
func releaseVersion(exactTag, lastTag string, commitTime time.Time) string {
	if v := strings.TrimPrefix(exactTag, "v"); exactTag != "" && semverRE.MatchString(v) {
		return v
	}
	stamp := commitTime.UTC().Format("20060102150405")
	last := strings.TrimPrefix(lastTag, "v")
	m := semverRE.FindStringSubmatch(last)
	if m == nil {
		return "0.0.1-dev." + stamp
	}
	if m[4] != "" {
		return last + ".dev." + stamp // after a pre-release: 1.3.0-rc.1.dev.<time>
	}
	patch, _ := strconv.Atoi(m[3])
	return fmt.Sprintf("%s.%s.%d-dev.%s", m[1], m[2], patch+1, stamp)
}
