package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Module is the main module goreplica is built from.
const module = "github.com/goreplica/goreplica"

// allTargets are the platforms a release covers.
var allTargets = []string{"linux/amd64", "linux/arm64", "windows/amd64"}

// release is what one run builds.
type release struct {
	root    string    // the repository's root directory
	out     string    // where the artifacts go
	version string    // semantic version, without "v": 1.2.0, 1.2.1-dev.20261201143000
	commit  string    // full commit hash
	date    time.Time // build date, also the packages' file times
	// maintainer is who the packages name as their maintainer.
	maintainer string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dist: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dist", flag.ContinueOnError)
	out := fs.String("o", "", "output `DIR` (default dist/out in the repository); emptied first")
	version := fs.String("version", "", "release `VERSION` such as 1.2.0 (default: from the v* Git tag on HEAD, else the next patch version's -dev.<commit time> pre-release)")
	maintainer := fs.String("maintainer", "goreplica developers", "the packages' Maintainer (deb) and Packager (rpm), such as `\"Name <address>\"`")
	targets := fs.String("targets", strings.Join(allTargets, ","), "comma-separated `GOOS/GOARCH` list, of "+strings.Join(allTargets, ", "))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var want []string
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(allTargets, t) {
			return fmt.Errorf("-targets: %q is not one of %s", t, strings.Join(allTargets, ", "))
		}
		if !slices.Contains(want, t) {
			want = append(want, t)
		}
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	r := release{root: root, out: *out, maintainer: *maintainer}
	if r.out == "" {
		r.out = filepath.Join(root, "dist", "out")
	}
	if r.out, err = filepath.Abs(r.out); err != nil {
		return err
	}
	if err := r.describe(ctx, *version); err != nil {
		return err
	}
	if slices.Contains(want, "windows/amd64") {
		if _, err := exec.LookPath("wixl"); err != nil {
			return errors.New("wixl not found: the MSI is built with wixl (apt-get install wixl), or leave windows/amd64 out of -targets")
		}
	}
	if err := os.RemoveAll(r.out); err != nil {
		return err
	}
	if err := os.MkdirAll(r.out, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "goreplica %s (commit %s, %s) into %s\n", r.version, short(r.commit), r.date.Format(time.RFC3339), r.out)
	var artifacts []string
	for _, t := range want {
		goos, goarch, _ := strings.Cut(t, "/")
		start := time.Now()
		bin, err := r.buildBinary(ctx, goos, goarch)
		if err != nil {
			return err
		}
		made := []string{bin}
		if goos == "linux" {
			for _, format := range []string{"deb", "rpm"} {
				p, err := r.linuxPackage(format, goarch, bin)
				if err != nil {
					return err
				}
				made = append(made, p)
			}
		} else {
			p, err := r.msi(ctx, bin)
			if err != nil {
				return err
			}
			made = append(made, p)
		}
		for _, p := range made {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "  %-54s %6.1f MB\n", filepath.Base(p), float64(fi.Size())/1e6)
		}
		fmt.Fprintf(stdout, "  %s built in %v\n", t, time.Since(start).Round(100*time.Millisecond))
		artifacts = append(artifacts, made...)
	}
	if err := writeSums(filepath.Join(r.out, "SHA256SUMS"), artifacts); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "  SHA256SUMS")
	return nil
}

// repoRoot finds the directory holding goreplica's go.mod, from the
// working directory upwards (go -C dist run . runs in dist/).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modulePath(string(b)) == module {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s in the working directory or above it", module)
		}
		dir = parent
	}
}

// modulePath returns the module path a go.mod declares.
func modulePath(gomod string) string {
	for line := range strings.Lines(gomod) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// buildBinary cross-compiles a static goreplica for goos/goarch.
func (r release) buildBinary(ctx context.Context, goos, goarch string) (string, error) {
	name := fmt.Sprintf("goreplica-%s-%s-%s", r.version, goos, goarch)
	if goos == "windows" {
		name += ".exe"
	}
	bin := filepath.Join(r.out, name)
	pkg := module + "/buildinfo."
	ldflags := strings.Join([]string{"-s", "-w",
		"-X", pkg + "version=" + r.version,
		"-X", pkg + "commit=" + r.commit,
		"-X", pkg + "date=" + r.date.Format(time.RFC3339),
	}, " ")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", bin, ".")
	cmd.Dir = r.root
	// CGO_ENABLED=0: a static binary that runs on any distribution's libc.
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s/%s: %w\n%s", goos, goarch, err, out)
	}
	return bin, nil
}

// writeSums writes the SHA-256 of each file in the format sha256sum -c reads.
func writeSums(path string, files []string) error {
	var b strings.Builder
	for _, f := range files {
		h := sha256.New()
		in, err := os.Open(f)
		if err != nil {
			return err
		}
		_, err = io.Copy(h, in)
		in.Close()
		if err != nil {
			return fmt.Errorf("checksum %s: %w", f, err)
		}
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), filepath.Base(f))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
