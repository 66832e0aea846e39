// Package notify turns LISTEN/NOTIFY on the master into wake-ups for the
// replication workers, with lib/pq's Listener reconnecting by itself.
//
// A notification is only a hint: it carries no data, may be lost, and every
// reconnection is reported as a wake-up so that workers rescan. It does not
// decide what to replicate.
package notify
