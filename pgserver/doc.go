// Package pgserver starts throwaway PostgreSQL servers from the locally
// installed server binaries (initdb, pg_ctl, postgres) for tests, benchmarks
// and the demo verb; it does not manage long-lived or production clusters,
// download or build PostgreSQL, or offer any authentication but trust on
// 127.0.0.1.
//
// Each [Server] lives in its own temporary directory: the data directory,
// the server log and the Unix socket are all inside it, and [Server.Close]
// removes it. The server listens on a free TCP port of 127.0.0.1 and accepts
// the superuser "postgres" without a password.
//
// PostgreSQL refuses to run as root. When the calling process is root (a
// container, a CI runner), pgserver runs initdb, pg_ctl and postgres as the
// "postgres" system user, creating that user with useradd if it does not
// exist, and hands the temporary directory to it; [Server.Command] runs
// client programs as that user too. The temporary directory must then be
// reachable by that user: /tmp is, a TMPDIR under /root is not (Start says
// so).
//
// A server does not outlive the process that started it by much: if that
// process dies without calling Close (killed, or ended by a
// "go test -timeout" panic), a small watchdog process started with the
// server (Unix only) stops it and removes its directory.
//
// Unless [Options.Durable] is set, servers run with fsync=off and
// full_page_writes=off: they survive a kill of the server process (see
// [Server.Kill]) but not a crash of the operating system, which is what
// tests need and what makes them fast.
package pgserver
