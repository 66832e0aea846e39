//go:build unix

// Package bouncer starts a throwaway pgbouncer (the Debian package's
// binary) in front of a test's PostgreSQL server, with its own
// configuration and port in a temporary directory, and stops it by its
// process id when the test ends. It does not install pgbouncer: when the
// binary is missing it skips the test, or fails it when CI is set.
package bouncer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goreplica/goreplica/pgserver"
)

// Bouncer is a running pgbouncer.
type Bouncer struct {
	Host string
	Port int
	Mode string // pool_mode
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Options of a pgbouncer.
type Options struct {
	// Mode is pool_mode: session, transaction or statement.
	Mode string
	// PoolSize is default_pool_size (server connections per database and
	// user); 0 means 2, so that clients share server connections.
	PoolSize int
	// Extra lines for the [pgbouncer] section.
	Extra []string
}

// Binary returns the path of pgbouncer, or an error saying how to install it.
func Binary() (string, error) {
	for _, p := range []string{"pgbouncer", "/usr/sbin/pgbouncer"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", errors.New("pgbouncer not found: apt-get install pgbouncer (.ci/install-service-test-deps installs it)")
}

// Start starts pgbouncer in front of srv and stops it when the test ends.
func Start(t testing.TB, srv *pgserver.Server, opts Options) *Bouncer {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (CI is set: not skipping)", err)
		}
		t.Skip(err)
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = 2
	}
	dir, err := os.MkdirTemp("", "goreplica-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	b := &Bouncer{Host: "127.0.0.1", Port: port, Mode: opts.Mode, dir: dir, done: make(chan struct{})}
	conf := []string{
		"[databases]",
		fmt.Sprintf("* = host=%s port=%d user=%s", srv.Host, srv.Port, pgserver.Superuser),
		"[pgbouncer]",
		"listen_addr = 127.0.0.1",
		fmt.Sprintf("listen_port = %d", port),
		"unix_socket_dir =",
		"auth_type = any",
		"pool_mode = " + opts.Mode,
		fmt.Sprintf("default_pool_size = %d", opts.PoolSize),
		"max_client_conn = 200",
		"logfile = " + filepath.Join(dir, "pgbouncer.log"),
		"admin_users = " + pgserver.Superuser,
	}
	conf = append(conf, opts.Extra...)
	ini := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(ini, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.cmd = exec.Command(bin, ini)
	if err := runAsServerUser(b.cmd, dir); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	b.cmd.Stdout, b.cmd.Stderr = &out, &out
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start pgbouncer: %v", err)
	}
	go func() {
		_ = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Logf("pgbouncer (%s pooling, port %d, pid %d) log:\n%s%s", b.Mode, b.Port, b.cmd.Process.Pid, lastBytes(string(log), 8192), out.String())
		}
		b.Stop()
	})
	if err := b.waitReady(); err != nil {
		t.Fatalf("pgbouncer on port %d: %v\n%s", port, err, out.String())
	}
	return b
}

// Stop stops pgbouncer (SIGTERM to its process, then SIGKILL) and waits
// for it to exit.
func (b *Bouncer) Stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// DSN is a key=value connection string for database dbname through the pooler.
func (b *Bouncer) DSN(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", b.Host, b.Port, pgserver.Superuser, dbname)
}

func (b *Bouncer) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(b.Host, strconv.Itoa(b.Port)), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-b.done:
			return fmt.Errorf("pgbouncer exited: %v", b.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("not listening after 30s: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runAsServerUser makes cmd run as the postgres user when the tests run as
// root (pgbouncer refuses to run as root), and hands it dir.
func runAsServerUser(cmd *exec.Cmd, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(pgserver.Superuser)
	if err != nil {
		return fmt.Errorf("pgbouncer refuses to run as root and there is no user %q to run it as: %w", pgserver.Superuser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
