package pgserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Superuser is the name of the superuser every server is created with.
const Superuser = "postgres"

const (
	localhost       = "127.0.0.1"
	logFileName     = "server.log"
	confFileName    = "pgserver.conf"
	portAttempts    = 5                // starts on a fresh port when the chosen one was taken
	defaultTimeout  = 60 * time.Second // for pg_ctl -t when ctx has no deadline
	closeTimeout    = 30 * time.Second // Close has no context of its own
	killWait        = 10 * time.Second // how long Kill waits for the processes to go
	logTailBytes    = 4096             // how much of the server log errors quote
	readyRetryDelay = 50 * time.Millisecond
)

var (
	// ErrNoBinaries is returned (wrapped) by [Start] and [BinariesAvailable]
	// when the PostgreSQL server binaries cannot be found.
	ErrNoBinaries = errors.New("postgresql server binaries not found")
	// ErrClosed is returned (wrapped) by methods called after [Server.Close].
	ErrClosed = errors.New("server closed")
)

// Options configure a server started by [Start]. The zero value is a
// non-durable server from the newest PostgreSQL installed.
type Options struct {
	// Settings are extra postgresql.conf settings, such as
	// {"max_prepared_transactions": "10"}. They override the defaults
	// (max_connections=100, max_prepared_transactions=0, and fsync=off,
	// full_page_writes=off unless Durable). "port" and
	// "unix_socket_directories" are chosen by pgserver and cannot be set.
	Settings map[string]string

	// BinDir is the directory holding initdb, pg_ctl and postgres. Default:
	// $PGBIN, else the newest /usr/lib/postgresql/*/bin, else
	// `pg_config --bindir`, else the directory of initdb on PATH (symbolic
	// links resolved).
	BinDir string

	// Durable keeps the PostgreSQL defaults for fsync and full_page_writes,
	// for benchmarks. When false (the default) both are off: the data
	// survives a kill of the server (the operating system keeps the written
	// pages) but not a crash of the machine.
	Durable bool

	// Dir is the directory the server's own directory is created in.
	// Default: os.TempDir(). A benchmark gives a second server another file
	// system this way, as a server on a separate host would have.
	Dir string

	// Log, when set, receives the server log as it is written, from a
	// goroutine of the server; nothing is written to it after Close
	// returns. The log is always also kept in a file (see [Server.LogFile]).
	Log io.Writer
}

// Server is a running (or stopped) throwaway PostgreSQL server. Its methods
// are safe for concurrent use.
type Server struct {
	Host    string // always "127.0.0.1"
	Port    int
	DataDir string
	BinDir  string

	root    string   // temporary directory holding DataDir and the socket
	logFile string   // server log, written by the postmaster (pg_ctl -l)
	acct    *account // user the server runs as; nil: the current user
	opts    Options
	mu      sync.Mutex // serialises Stop, Restart, Kill and Close
	running bool
	closed  bool
	tail    *tailer

	// watchdog stops the server and removes root if this process dies
	// without Close; Close writes a line to watchdogIn to dismiss it.
	watchdog   *exec.Cmd
	watchdogIn *os.File
}

// Start creates a fresh cluster with initdb (trust authentication, superuser
// "postgres", UTF8, locale C) in a new temporary directory and starts it
// with pg_ctl on a free TCP port of 127.0.0.1. It returns when the server
// accepts connections. ctx bounds the start only, not the server's life:
// call [Server.Close] to stop it and remove its files.
//
// On error nothing is left behind: no process, no directory.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	bin, err := BinariesAvailable(opts)
	if err != nil {
		return nil, err
	}
	if err := checkSettings(opts.Settings); err != nil {
		return nil, err
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp(opts.Dir, "pgserver-")
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	// The postmaster's unix socket and pg_ctl need an absolute, resolved path.
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	s := &Server{
		Host:    localhost,
		BinDir:  bin,
		DataDir: filepath.Join(root, "data"),
		root:    root,
		acct:    acct,
		opts:    opts,
	}
	s.logFile = filepath.Join(s.DataDir, logFileName)
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()
	if err := acct.own(root); err != nil {
		return nil, fmt.Errorf("start postgres in %s: %w", root, err)
	}
	if err := acct.canReach(root); err != nil {
		return nil, fmt.Errorf("start postgres in %s: %w", root, err)
	}
	if err := s.startWatchdog(); err != nil {
		return nil, fmt.Errorf("start postgres in %s: %w", root, err)
	}
	if err := s.initdb(ctx); err != nil {
		return nil, err
	}
	if opts.Log != nil {
		s.tail = newTailer(s.logFile, opts.Log)
	}
	for attempt := 1; ; attempt++ {
		port, err := pickPort()
		if err != nil {
			return nil, fmt.Errorf("start postgres in %s: %w", s.DataDir, err)
		}
		s.Port = port
		if err := s.writeConf(); err != nil {
			return nil, err
		}
		err = s.start(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			return nil, err
		}
	}
	return s, nil
}

// pickPort returns a TCP port of 127.0.0.1 that was free a moment ago.
// Tests replace it to provoke the port race.
var pickPort = func() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(localhost, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// DSN returns a lib/pq key=value connection string for database dbname as
// the superuser, such as
// "host=127.0.0.1 port=5433 user=postgres dbname=app sslmode=disable".
func (s *Server) DSN(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		s.Host, s.Port, Superuser, dsnValue(dbname))
}

// URL returns a postgres:// connection URL for database dbname as the
// superuser, the form psql and pgbench accept as their database argument.
func (s *Server) URL(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// LogFile returns the path of the server log file, inside the data
// directory. It is removed by Close.
func (s *Server) LogFile() string { return s.logFile }

// CreateDatabase creates database name, connected to the "postgres"
// database. name is quoted as an identifier: it may hold any character.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	db, err := s.open("postgres")
	if err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

func (s *Server) open(dbname string) (*sql.DB, error) {
	c, err := pq.NewConnector(s.DSN(dbname))
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// Stop shuts the server down with pg_ctl stop -m fast (clients are
// disconnected, committed data is checkpointed) and keeps its data for
// [Server.Restart]. Stopping a stopped server does nothing.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("stop postgres in %s: %w", s.DataDir, ErrClosed)
	}
	if !s.running {
		return nil
	}
	if err := s.pgctlStop(ctx, "fast"); err != nil {
		return err
	}
	s.running = false
	return nil
}

// Restart starts the server again on the same port, after [Server.Stop] or
// [Server.Kill]; after a kill PostgreSQL first recovers from its WAL. A
// running server is stopped (fast) first.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("restart postgres in %s: %w", s.DataDir, ErrClosed)
	}
	var stopErr error
	if s.running {
		// On failure, start kills what is left.
		stopErr = s.pgctlStop(ctx, "fast")
		s.running = false
	}
	if err := s.start(ctx); err != nil {
		return errors.Join(stopErr, err)
	}
	return nil
}

// Kill sends SIGKILL to the postmaster and all its backends at once, as a
// crash of PostgreSQL (not of the machine) would, and waits until they are
// gone. Clients see their connections drop. [Server.Restart] recovers.
// On Windows only the postmaster is killed; its backends follow it.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("kill postgres in %s: %w", s.DataDir, ErrClosed)
	}
	if err := s.killLocked(); err != nil {
		return err
	}
	s.running = false
	return nil
}

// Close stops the server (pg_ctl stop -m immediate, then SIGKILL if that
// fails) and removes its temporary directory, data included. It never
// leaves a server process running. Calling it again does nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	var stopErr error
	if s.running {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		stopErr = s.pgctlStop(ctx, "immediate")
		cancel()
	}
	// Also after a failed start or stop: whatever postmaster the data
	// directory names must go. Only if that fails too does the failure of
	// pg_ctl matter.
	if err := s.killLocked(); err != nil {
		errs = append(errs, stopErr, err)
	}
	s.running = false
	s.stopTail()
	if err := os.RemoveAll(s.root); err != nil {
		errs = append(errs, fmt.Errorf("close postgres: remove %s: %w", s.root, err))
	}
	s.stopWatchdog()
	return errors.Join(errs...)
}

// stopWatchdog dismisses the watchdog and waits for it to exit.
func (s *Server) stopWatchdog() {
	if s.watchdog == nil {
		return
	}
	// Errors are moot: a watchdog that is already gone has nothing to do.
	_, _ = s.watchdogIn.Write([]byte("close\n"))
	_ = s.watchdogIn.Close()
	_ = s.watchdog.Wait()
	s.watchdog = nil
}

// Command returns a command running the program name from BinDir (psql,
// pgbench, pg_dump, ...) with args, and PGHOST, PGPORT and PGUSER set to
// this server; other PG* variables of the environment are removed. When
// the process is root it runs as the server's user ("postgres"), so the
// files it writes must be in a directory that user can write to, and its
// working directory (cmd.Dir, default the current one) must be reachable by
// it.
func (s *Server) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, name+exeSuffix), args...)
	cmd.Env = append(s.env(),
		"PGHOST="+s.Host,
		"PGPORT="+strconv.Itoa(s.Port),
		"PGUSER="+Superuser,
	)
	s.acct.apply(cmd)
	return cmd
}

// env is the environment of every program run: the caller's without PG*
// variables (PGDATA, PGOPTIONS, PGDATABASE... would change what the
// programs do), with HOME pointing into the server's directory when running
// as another user, whose home is not root's.
func (s *Server) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || (s.acct != nil && strings.HasPrefix(kv, "HOME=")) {
			continue
		}
		env = append(env, kv)
	}
	if s.acct != nil {
		env = append(env, "HOME="+s.root)
	}
	return env
}

// run runs an internal program (initdb, pg_ctl) in the server's directory
// and returns an error naming it and quoting its output when it fails.
func (s *Server) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, name+exeSuffix), args...)
	cmd.Env = s.env()
	cmd.Dir = s.root
	cmd.WaitDelay = 5 * time.Second
	s.acct.apply(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		msg := fmt.Sprintf("%s %s: %v", name, strings.Join(args, " "), err)
		if o := strings.TrimSpace(string(out)); o != "" {
			msg += "\n" + o
		}
		return errors.New(msg)
	}
	return nil
}

func (s *Server) initdb(ctx context.Context) error {
	err := s.run(ctx, "initdb",
		"--pgdata="+s.DataDir,
		"--username="+Superuser,
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync", // a throwaway cluster: durability of initdb's files is moot
	)
	if err != nil {
		return fmt.Errorf("initdb postgres in %s: %w", s.DataDir, err)
	}
	// Our settings live in their own file, included last so they win and
	// rewritten when the port changes.
	conf := filepath.Join(s.DataDir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("initdb postgres in %s: %w", s.DataDir, err)
	}
	_, err = fmt.Fprintf(f, "\n# Added by pgserver.\ninclude_if_exists = '%s'\n", confFileName)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("initdb postgres in %s: %w", s.DataDir, err)
	}
	return nil
}

// dsnValue quotes a value of a key=value connection string when needed.
func dsnValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\v\f'\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// errPortInUse marks a start that failed because another process took the
// port between pickPort and the postmaster's bind.
var errPortInUse = errors.New("port already in use")

// start runs pg_ctl start and waits until the server accepts connections.
// On failure no postmaster is left running.
func (s *Server) start(ctx context.Context) error {
	// Lock files of a postmaster that died unnoticed would stop this one.
	if err := s.killLocked(); err != nil {
		return err
	}
	logStart := fileSize(s.logFile)
	s.startTail()
	err := s.run(ctx, "pg_ctl", "start",
		"--wait",
		"--timeout="+strconv.Itoa(waitSeconds(ctx)),
		"--pgdata="+s.DataDir,
		"--log="+s.logFile,
		"--silent",
	)
	if err == nil {
		s.running = true
		err = s.waitReady(ctx)
		if err == nil {
			return nil
		}
	}
	// pg_ctl gave up or was interrupted: the postmaster may still be
	// starting.
	kerr := s.killLocked()
	s.running = false
	log := readFrom(s.logFile, logStart)
	if strings.Contains(log, "Address already in use") {
		err = fmt.Errorf("%w: %w", errPortInUse, err)
	}
	err = fmt.Errorf("start postgres in %s on port %d: %w\nserver log %s:\n%s",
		s.DataDir, s.Port, err, s.logFile, lastBytes(log, logTailBytes))
	return errors.Join(err, kerr)
}

// waitReady returns when the server accepts a connection. pg_ctl --wait has
// already waited for the postmaster to say so: this checks it over TCP.
func (s *Server) waitReady(ctx context.Context) error {
	db, err := s.open("postgres")
	if err != nil {
		return err
	}
	defer db.Close()
	for {
		err := db.PingContext(ctx)
		if err == nil {
			return nil
		}
		if pid, _ := postmasterPID(s.DataDir); pid == 0 || !alive(pid) {
			return fmt.Errorf("wait for connections: the server exited (last error: %w)", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for connections: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(readyRetryDelay):
		}
	}
}

// pgctlStop runs pg_ctl stop. A postmaster that died on its own (out of
// memory, killed by someone else) counts as stopped; pg_ctl is not asked,
// for it would wait until the dead postmaster is reaped, which can take a
// while in a container whose init reaps lazily.
func (s *Server) pgctlStop(ctx context.Context, mode string) error {
	if pid, _ := postmasterPID(s.DataDir); pid == 0 || !isPostmasterOf(pid, s.DataDir) {
		return s.removeLockFiles(pid)
	}
	err := s.run(ctx, "pg_ctl", "stop",
		"--wait",
		"--timeout="+strconv.Itoa(waitSeconds(ctx)),
		"--pgdata="+s.DataDir,
		"--mode="+mode,
		"--silent",
	)
	if err != nil {
		// It died meanwhile.
		if pid, _ := postmasterPID(s.DataDir); pid == 0 || !isPostmasterOf(pid, s.DataDir) {
			return s.removeLockFiles(pid)
		}
		return fmt.Errorf("stop postgres in %s: %w", s.DataDir, err)
	}
	return nil
}

// killLocked kills the postmaster named by postmaster.pid, if any, with its
// backends, and waits until they are gone. It then removes the lock files:
// in a container whose init does not reap, the dead postmaster can stay a
// zombie, which the next postmaster would take for a running one.
func (s *Server) killLocked() error {
	pid, err := postmasterPID(s.DataDir)
	if err != nil || pid == 0 {
		return err
	}
	// After a crash nobody noticed, the pid may now be another program's.
	if !isPostmasterOf(pid, s.DataDir) {
		return s.removeLockFiles(pid)
	}
	pids, err := killTree(pid)
	if err != nil {
		return fmt.Errorf("kill postgres (pid %d) in %s: %w", pid, s.DataDir, err)
	}
	if !waitGone(pids, killWait) {
		return fmt.Errorf("kill postgres (pid %d) in %s: processes %v still running after %v", pid, s.DataDir, pids, killWait)
	}
	return s.removeLockFiles(pid)
}

// removeLockFiles removes the lock files of the data directory and of the
// Unix socket if they name pid, a postmaster known to be dead.
func (s *Server) removeLockFiles(pid int) error {
	for _, lock := range []string{
		filepath.Join(s.DataDir, "postmaster.pid"),
		filepath.Join(s.root, ".s.PGSQL."+strconv.Itoa(s.Port)+".lock"),
	} {
		if err := removeLockFile(lock, pid); err != nil {
			return fmt.Errorf("remove lock file of postgres (pid %d) in %s: %w", pid, s.DataDir, err)
		}
	}
	return nil
}

// removeLockFile removes the PostgreSQL lock file at path if its first line
// is pid, a process known to be dead.
func removeLockFile(path string, pid int) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if strings.TrimSpace(line) != strconv.Itoa(pid) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// postmasterPID reads the postmaster's pid from postmaster.pid in dataDir;
// 0 when there is no such file.
func postmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read postmaster pid: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		// A file being written by a starting postmaster, or garbage.
		return 0, nil
	}
	return pid, nil
}

// waitSeconds is the pg_ctl --timeout for ctx: the time left, rounded up.
func waitSeconds(ctx context.Context) int {
	d, ok := ctx.Deadline()
	if !ok {
		return int(defaultTimeout / time.Second)
	}
	return max(1, int(math.Ceil(time.Until(d).Seconds())))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the contents of path from offset on ("" on error).
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// lastBytes returns about the last n bytes of s, starting at a line.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "...\n" + s
}
