package tests

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// distTimeout bounds one run of the release builder: compiling it (nfpm)
// and goreplica for a target takes a minute or two here on a cold cache.
const distTimeout = 10 * time.Minute

// requireTool skips the test when a command is missing, or fails it when
// the environment variable CI is set.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (apt-get install %s); CI is set: not skipping", name, pkg)
		}
		t.Skipf("%s not found: apt-get install %s", name, pkg)
	}
	return p
}

// releases memoizes buildRelease: tests that need the same release share
// one build.
var releases = struct {
	sync.Mutex
	m map[string]*releaseBuild
}{m: map[string]*releaseBuild{}}

type releaseBuild struct {
	once  sync.Once
	dir   string
	names []string
	err   error
}

// buildRelease runs the release builder (go -C ../dist run .) for targets
// with version, once per test process, into TestMain's temporary
// directory, and returns the directory and the names of the files in it.
func buildRelease(t *testing.T, version, targets string) (string, []string) {
	t.Helper()
	if strings.Contains(targets, "windows") {
		requireTool(t, "wixl", "wixl")
		requireTool(t, "msibuild", "msitools")
	}
	key := version + " " + targets
	releases.Lock()
	b := releases.m[key]
	if b == nil {
		b = &releaseBuild{}
		releases.m[key] = b
	}
	releases.Unlock()
	b.once.Do(func() {
		b.dir = filepath.Join(filepath.Dir(binPath), "release-"+strings.NewReplacer("/", "-", ",", "_").Replace(version+"-"+targets))
		ctx, cancel := context.WithTimeout(context.Background(), distTimeout)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "-C", "../dist", "run", ".", "-o", b.dir, "-version", version, "-targets", targets)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("go -C dist run . -version %s -targets %s: %w\n%s", version, targets, err, buf.String())
			return
		}
		t.Logf("release %s %s built in %v:\n%s", version, targets, time.Since(start).Round(100*time.Millisecond), buf.String())
		ents, err := os.ReadDir(b.dir)
		if err != nil {
			b.err = err
			return
		}
		for _, e := range ents {
			b.names = append(b.names, e.Name())
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.dir, b.names
}

// artifact returns the one file of names with the suffix, failing the test
// if there is not exactly one.
func artifact(t *testing.T, dir string, names []string, suffix string) string {
	t.Helper()
	var found []string
	for _, n := range names {
		if strings.HasSuffix(n, suffix) {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		t.Fatalf("release files %v: want one *%s, found %v", names, suffix, found)
	}
	return filepath.Join(dir, found[0])
}

// The Linux release: a static binary that says which build it is, a .deb
// and an .rpm whose file list and scripts are what a package manager
// needs, and checksums that sha256sum accepts.
func TestReleaseLinux(t *testing.T) {
	rpmCmd := requireTool(t, "rpm", "rpm")
	t.Parallel()
	dir, names := buildRelease(t, "1.0.0", "linux/amd64")
	for _, want := range []string{"goreplica-1.0.0-linux-amd64", "goreplica_1.0.0-1_amd64.deb", "goreplica-1.0.0-1.x86_64.rpm", "SHA256SUMS"} {
		if !slices.Contains(names, want) {
			t.Errorf("release files %v lack %s", names, want)
		}
	}
	bin := filepath.Join(dir, "goreplica-1.0.0-linux-amd64")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: not a static binary", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v: not a static binary", bin, libs)
	}
	f.Close()
	if runtime.GOARCH == "amd64" {
		out, err := exec.Command(bin, "version").Output()
		if err != nil {
			t.Fatal(err)
		}
		head, _ := exec.Command("git", "rev-parse", "HEAD").Output()
		commit := strings.TrimSpace(string(head))
		if len(commit) > 12 {
			commit = commit[:12]
		}
		if s := string(out); !strings.HasPrefix(s, "goreplica 1.0.0 (commit "+commit) || !strings.Contains(s, ", built 20") {
			t.Errorf("goreplica version of the release binary: %q, want goreplica 1.0.0 (commit %s, built ...)", s, commit)
		}
	}
	sums := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	sums.Dir = dir
	if out, err := sums.CombinedOutput(); err != nil || strings.Count(string(out), ": OK") != len(names)-1 {
		t.Errorf("sha256sum --check SHA256SUMS: %v\n%s", err, out)
	}

	rpmFile := filepath.Join(dir, "goreplica-1.0.0-1.x86_64.rpm")
	rpmQuery := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(rpmCmd, append([]string{"-qp"}, append(args, rpmFile)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm -qp %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// mode, owner, group, path (rpm -qlpv cuts names to 8 characters).
	listing := rpmQuery("--queryformat", "[%{FILEMODES:perms} _ %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]")
	for path, want := range map[string][]string{
		"/usr/bin/goreplica":                        {"-rwxr-xr-x", "root", "root"},
		"/etc/goreplica/goreplica.toml":             {"-rw-r-----", "goreplica", "goreplica"},
		"/var/log/goreplica":                        {"drwxr-x---", "goreplica", "goreplica"},
		"/usr/lib/systemd/system/goreplica.service": {"-rw-r--r--", "root", "root"},
	} {
		var line string
		for _, l := range strings.Split(listing, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[len(f)-1] == path {
				line = l
			}
		}
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != want[0] || f[2] != want[1] || f[3] != want[2] {
			t.Errorf("rpm -qp: %s is %q, want %v\n%s", path, line, want, listing)
		}
	}
	if c := rpmQuery("-c"); strings.TrimSpace(c) != "/etc/goreplica/goreplica.toml" {
		t.Errorf("rpm -qcp (configuration files): %q, want /etc/goreplica/goreplica.toml", c)
	}
	scripts := rpmQuery("--scripts")
	for _, want := range []string{"preinstall scriptlet", "useradd --system", "postinstall scriptlet", "try-restart goreplica.service", "preuninstall scriptlet", "systemctl stop goreplica.service"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm -qp --scripts lacks %q:\n%s", want, scripts)
		}
	}
}
