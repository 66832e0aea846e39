package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	_ "github.com/lib/pq" // the "postgres" driver of the returned *sql.DB

	"github.com/goreplica/goreplica/pgserver"
)

// Timeout bounds starting a server and creating a database.
const Timeout = 60 * time.Second

// logTailBytes is how much of the server log a failed test shows.
const logTailBytes = 8192

// Start starts a throwaway PostgreSQL server with opts and closes it (data
// removed) when the test and its subtests end. When the binaries are
// missing it skips the test, or fails it if the environment variable CI is
// set. When the test fails, the end of the server log is logged.
func Start(t testing.TB, opts pgserver.Options) *pgserver.Server {
	t.Helper()
	RequireBinaries(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	s, err := pgserver.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("end of server log %s (port %d):\n%s", s.LogFile(), s.Port, logTail(s.LogFile(), logTailBytes))
		}
		if err := s.Close(); err != nil {
			t.Errorf("close postgres: %v", err)
		}
	})
	return s
}

// RequireBinaries returns the directory of the PostgreSQL binaries that
// opts select (see [pgserver.BinariesAvailable]). When they are missing it
// skips the test with the reason and how to install them, or fails it if
// the environment variable CI is set. Tests that start servers some other
// way (a built binary running "goreplica demo") call it first.
func RequireBinaries(t testing.TB, opts pgserver.Options) string {
	t.Helper()
	dir, err := pgserver.BinariesAvailable(opts)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (CI is set: not skipping)", err)
		}
		t.Skip(err)
	}
	return dir
}

// DB creates database name on s and returns a pool connected to it as the
// superuser, closed when the test ends.
func DB(t testing.TB, s *pgserver.Server, name string) *sql.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := s.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", s.DSN(name))
	if err != nil {
		t.Fatalf("open database %q: %v", name, err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("connect to database %q: %v", name, err)
	}
	return db
}

// logTail returns the last n bytes or so of the file at path.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		if _, err := f.Seek(-n, io.SeekEnd); err != nil {
			return err.Error()
		}
	}
	b, err := io.ReadAll(f)
	if err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	return string(b)
}
