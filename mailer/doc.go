// Package mailer sends goreplica's alert e-mail (start, stop, unreachable
// slaves, conflicts and apply errors, lag, and the recovery that closes each
// problem) through an SMTP server with github.com/wneessen/go-mail, at most
// one mail per kind and slave per interval with a count of what it held
// back; it deliberately never blocks or fails replication, and it does not
// decide what is a problem: the daemon reports events, mailer words,
// throttles and delivers them.
//
// # Use
//
// The daemon creates one Mailer with New at start and calls Notify for
// each event; Notify decides at once, in memory, whether the event becomes
// a mail and never waits for the SMTP server. One background goroutine
// sends from a bounded queue (Options.QueueSize), retrying temporary SMTP
// errors with back-off; a mail that does not fit the queue is dropped,
// logged (at most once a minute) and mentioned in the next mail. At stop
// the daemon sends KindStop or KindAbort and calls Close with a short
// deadline (a few seconds): the digests still held back are queued and the
// queue gets until the deadline to go out.
//
// # Throttling
//
// At most one mail per kind and slave per Options.MinInterval. Events in
// between are counted; the next mail of that kind carries "and 41 more
// conflicts on lyon since 10:02", or, when no new event comes, a digest
// mail goes out when the interval ends. Problem kinds (unreachable,
// conflict, error, lag) are closed by recovery kinds (reachable, recovered,
// lag_ok): a recovery is mailed, never held back, when a mail about its
// problem went out; a recovery of a problem nobody was mailed about is not
// mailed. The decisions are made by a pure type, tested apart from SMTP.
//
// # Secrets
//
// The SMTP password is never logged, and is masked ("xxxxx") wherever it
// appears in a mail or log line built by this package. Events must carry
// DSNs already masked (config.Secret prints them so).
package mailer
