// Package cli is goreplica's command line: the table of verbs, their flags,
// help, and what each verb prints. It turns the configuration into options
// for the other packages and wires them together (replicator with notify,
// mailer and service).
//
// It does not call os.Exit or read os.Args: main passes the arguments and
// output streams in and maps the returned error (UsageError, ExitStatus) to
// the exit code. It does not hold replication logic either: that lives in
// package replicator.
package cli
