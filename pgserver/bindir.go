package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// requiredPrograms are the programs a server needs from BinDir.
var requiredPrograms = []string{"initdb", "pg_ctl", "postgres"}

// installHint tells how to get the binaries.
const installHint = "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql-15; " +
	"other systems: the postgresql server package) or set PGBIN to the directory holding initdb"

// BinariesAvailable returns the directory holding initdb, pg_ctl and
// postgres that [Start] would use with opts: opts.BinDir when set, else
// $PGBIN when set, else the newest /usr/lib/postgresql/*/bin (on Windows,
// %ProgramFiles%\PostgreSQL\*\bin), else `pg_config --bindir`, else the
// directory of initdb found on PATH, symbolic links resolved. An explicit
// opts.BinDir or $PGBIN that lacks a program is an error rather than a
// reason to look elsewhere. The error wraps [ErrNoBinaries] and says what
// was tried and how to install the binaries.
func BinariesAvailable(opts Options) (string, error) {
	if opts.BinDir != "" {
		return checkBinDir(opts.BinDir, "Options.BinDir")
	}
	if dir := os.Getenv("PGBIN"); dir != "" {
		return checkBinDir(dir, "$PGBIN")
	}
	var tried []string
	globs := binDirGlobs()
	for _, dir := range newestFirst(globs) {
		if missing := missingPrograms(dir); len(missing) == 0 {
			return dir, nil
		}
		tried = append(tried, dir+" (incomplete)")
	}
	if len(tried) == 0 {
		tried = append(tried, strings.Join(globs, ", ")+" (none)")
	}
	if dir, err := pgConfigBinDir(); err != nil {
		tried = append(tried, "pg_config --bindir ("+err.Error()+")")
	} else if missing := missingPrograms(dir); len(missing) > 0 {
		tried = append(tried, "pg_config --bindir: "+dir+" (no "+strings.Join(missing, ", ")+")")
	} else {
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err != nil {
		tried = append(tried, "initdb on PATH (not found)")
	} else {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		dir := filepath.Dir(p)
		if missing := missingPrograms(dir); len(missing) == 0 {
			return absDir(dir), nil
		}
		tried = append(tried, "initdb on PATH: "+dir+" (incomplete)")
	}
	return "", fmt.Errorf("%w: looked in $PGBIN (unset), %s; %s",
		ErrNoBinaries, strings.Join(tried, ", "), installHint)
}

func checkBinDir(dir, source string) (string, error) {
	if missing := missingPrograms(dir); len(missing) > 0 {
		return "", fmt.Errorf("%w: %s %s has no %s; %s",
			ErrNoBinaries, source, dir, strings.Join(missing, ", "), installHint)
	}
	return absDir(dir), nil
}

func absDir(dir string) string {
	if a, err := filepath.Abs(dir); err == nil {
		return a
	}
	return dir
}

// missingPrograms lists the required programs that dir lacks.
func missingPrograms(dir string) []string {
	var missing []string
	for _, name := range requiredPrograms {
		fi, err := os.Stat(filepath.Join(dir, name+exeSuffix))
		if err != nil || !fi.Mode().IsRegular() {
			missing = append(missing, name)
		}
	}
	return missing
}

// newestFirst expands the glob patterns and sorts the matches by the
// PostgreSQL version in their path (".../15/bin" before ".../9.6/bin").
func newestFirst(patterns []string) []string {
	var dirs []string
	for _, p := range patterns {
		m, _ := filepath.Glob(p)
		dirs = append(dirs, m...)
	}
	sortNewestFirst(dirs)
	return dirs
}

// sortNewestFirst sorts ".../<version>/bin" directories by version,
// newest first; those without a version go last.
func sortNewestFirst(dirs []string) {
	sort.SliceStable(dirs, func(i, j int) bool {
		return versionLess(dirVersion(dirs[j]), dirVersion(dirs[i]))
	})
}

// dirVersion is the version in ".../<version>/bin", such as [9 6] or [15].
func dirVersion(dir string) []int {
	var v []int
	for _, f := range strings.Split(filepath.Base(filepath.Dir(dir)), ".") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil
		}
		v = append(v, n)
	}
	return v
}

func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func pgConfigBinDir() (string, error) {
	p, err := exec.LookPath("pg_config")
	if err != nil {
		return "", errors.New("not found")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, "--bindir").Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}
