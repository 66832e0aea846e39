// Package replicator moves captured changes from a master to its slaves
// exactly once: it installs capture (init), cuts batches by transaction
// snapshots, applies each batch on a slave in one transaction that also
// records the slave's position, commits it in two phases, resolves in-doubt
// transactions, purges the log and reports status.
//
// It does not listen for notifications, send mail or talk to a service
// manager: it declares the small interfaces it needs (Waker, Alerter) and
// package main wires the real ones in.
package replicator
