// Package mailer sends goreplica's alert e-mail (start, stop, unreachable
// slaves, conflicts and apply errors, lag, and the recovery that closes each
// problem) through an SMTP server with github.com/wneessen/go-mail, at most
// one mail per kind and slave per interval with a count of what it held
// back; it deliberately never blocks or fails replication: events are
// decided in memory, sent by one background goroutine from a bounded queue,
// and dropped (counted and logged) rather than waited for. It does not
// decide what is a problem: the daemon reports events and mailer words,
// throttles and delivers them.
package mailer
