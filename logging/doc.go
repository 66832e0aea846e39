// Package logging builds the daemon's log/slog logger from the [log]
// section: text or JSON on stderr, the systemd journal with one journal
// field per attribute when stderr is connected to it, the Windows event log
// when running as a Windows service, and a size-rotated file besides.
//
// It decides where lines go and how they are written; it does not decide
// what is logged (packages log through the *slog.Logger they are given) and
// it never fails a write back to the caller: a log sink that breaks must not
// stop replication.
package logging
