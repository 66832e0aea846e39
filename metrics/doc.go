// Package metrics serves goreplica's figures in the Prometheus exposition
// format (through prometheus/client_golang) on an HTTP listener, with
// /healthz. Per-slave state, lag and pending events are read from
// replicator.GetStatus at each scrape, the same figures 'goreplica status'
// prints; counters and the apply-duration histogram are fed by the
// replicator's Observer interface.
//
// It does not decide anything about replication and is not imported by
// package replicator: the command line wires it in.
package metrics
