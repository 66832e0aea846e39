package replicator

// SQL the daemon issues. Values are bind parameters; the only literals built
// in code are GIDs for PREPARE/COMMIT PREPARED, which cannot take parameters
// and go through pq.QuoteLiteral.
const (
	sqlServerVersion = `SELECT current_setting('server_version_num')::int, current_setting('server_version')`
	sqlNodeID        = `SELECT node_id::text, version FROM replica.version`
	sqlSchemaExists  = `SELECT to_regclass('replica.version') IS NOT NULL`

	// Master: registration and acknowledgements.
	sqlRegistration = `SELECT acked_snapshot::text, acked_batch, snapshot_time, forward FROM replica.slaves WHERE name = $1`
	// sqlAck also writes the worker's own state and error ($5, $6): the
	// applying process's word replaces what another wrote there (a second
	// daemon refused the slave's lease), and an acknowledgement sent late
	// (at the next connect, ackSoon) does not make a slave stopped on a
	// conflict look running.
	sqlAck = `UPDATE replica.slaves
   SET acked_snapshot = $2::pg_snapshot, acked_batch = $3, snapshot_time = $4,
       acked_at = now(), seen_at = now(), state = $5, last_error = nullif($6, '')
 WHERE name = $1 AND acked_batch < $3`
	sqlSetState = `UPDATE replica.slaves
   SET state = $2, last_error = nullif($3, ''),
       last_error_at = CASE WHEN $3 = '' THEN last_error_at ELSE now() END, seen_at = now()
 WHERE name = $1`
	sqlSetWaiting = `UPDATE replica.slaves SET waiting = $2, seen_at = now() WHERE name = $1`
	sqlHeartbeat  = `UPDATE replica.slaves SET seen_at = now() WHERE name = $1`
	sqlSnapshot   = `SELECT pg_current_snapshot()::text, clock_timestamp()`
	// sqlFence writes the slave's heartbeat and commits it synchronously
	// (the daemon's master sessions are asynchronous): a transaction
	// commits synchronously only when it wrote WAL. It is one simple query,
	// so one implicit transaction, for SET LOCAL; the slave's name is
	// quoted into it (%s) since a simple query takes no parameters.
	sqlFence      = `SET LOCAL synchronous_commit = on; UPDATE replica.slaves SET seen_at = now() WHERE name = %s`
	sqlInProgress = `SELECT EXISTS (SELECT 1 FROM pg_snapshot_xip($1::pg_snapshot) AS x
                       WHERE pg_xact_status(x) = 'in progress')`
	// sqlAnyNew tells a lingering worker whether sqlRead would find
	// anything now: a committed event (the query's own snapshot sees only
	// those) that the slave's position does not count as applied, with
	// sqlRead's origin filter. One index range scan of the log from the
	// position's xmin, stopping at the first match. Not EXISTS: for a
	// first match the planner takes a sequential scan to find one soon,
	// as if new events were spread over the log's pages, where they are
	// at its end (the whole log read on every poll); ORDER BY txid keeps
	// it on the index (TestLogLookupsReadTheIndex).
	sqlAnyNew = `SELECT (SELECT txid FROM replica.replica_log
 WHERE txid >= pg_snapshot_xmin($1::pg_snapshot)
   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
   AND (origin IS NULL OR ($3 AND origin <> $2 AND via IS DISTINCT FROM $2))
 ORDER BY txid LIMIT 1) IS NOT NULL`
	// sqlRead reads a batch in one statement, one round trip: one
	// statement sees one snapshot, so no transaction block is needed. Its
	// first row holds the statement's snapshot, the master's clock and its
	// WAL insert position, read after the snapshot was taken (every
	// transaction the snapshot counts as done wrote its commit or abort
	// record before it: fence.go); the event columns are NULL there.
	//
	// The rows after it are the batch's events, with the header columns
	// NULL: those whose transaction is visible in the snapshot and was not
	// visible in the slave's position ($1). Events that came from the slave
	// itself ($2), or were received from it (via), are skipped, and so are
	// events that came from any other node when the slave does not want
	// them forwarded ($3). ORDER BY names output columns of type pg_lsn and
	// xid8 (a txid::text column would sort as text). A statement longer
	// than $4 bytes comes as NULL, with its length and row: it is read alone
	// (sqlBigStatement, alone.go). $5 is the most rows to return: a backlog
	// is applied in sub-batches, and its first read stops there rather than
	// bring it all.
	sqlRead = `SELECT NULL::xid8 AS txid, NULL::text, NULL::text, NULL::"char", NULL::text, NULL::int4, NULL::text,
       NULL::pg_lsn AS lsn, pg_current_snapshot()::text, clock_timestamp(), pg_current_wal_insert_lsn()::text
 UNION ALL
SELECT txid, origin, tbl, op, CASE WHEN octet_length(sql) <= $4 THEN sql END, octet_length(sql), ctid::text,
       lsn, NULL, NULL, NULL
  FROM replica.replica_log
 WHERE txid >= pg_snapshot_xmin($1::pg_snapshot)
   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
   AND (origin IS NULL OR ($3 AND origin <> $2 AND via IS DISTINCT FROM $2))
 ORDER BY lsn NULLS FIRST, txid
 LIMIT $5`
	// sqlFlushed reads how far the master's WAL is durable (fence.go).
	sqlFlushed = `SELECT pg_current_wal_flush_lsn()::text`
	// sqlRangeSummary lists the transactions of a backlog, the range from
	// snapshot $1 to snapshot $2 (subbatch.go). They are put in sub-batch
	// order by the daemon: sorted by the master, tens of thousands of
	// groups spill work_mem to disk. It runs under sqlSummaryPlan.
	sqlRangeSummary = `SELECT txid::text::int8, max(lsn)::text, count(*), sum(octet_length(sql))
  FROM replica.replica_log
 WHERE txid >= pg_snapshot_xmin($1::pg_snapshot)
   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
   AND pg_visible_in_snapshot(txid, $2::pg_snapshot)
   AND (origin IS NULL OR ($4 AND origin <> $3 AND via IS DISTINCT FROM $3))
 GROUP BY txid`
	// sqlSummaryPlan makes sqlRangeSummary a GroupAggregate over the log's
	// txid index: in txid order already, nothing held, nothing spilled.
	// Left to itself the planner takes a sort when the log has no
	// statistics (a burst since the last ANALYZE), and a backlog's tens of
	// thousands of rows spill work_mem to disk: 85-130 ms for 40,000 events
	// against 27 ms; with statistics a hash aggregate, which spills as well
	// once the groups outgrow hash_mem.
	sqlSummaryPlan = `SET LOCAL enable_sort = off; SET LOCAL enable_hashagg = off`
	// sqlEventsOf streams the events of the transactions of one sub-batch.
	// $5 and $6, the least and the greatest of them, say nothing more than
	// $1 does but keep the plan on the log's index when its statistics
	// predate the backlog (autovacuum off, or slower than the burst): with
	// = ANY alone, tens of thousands of rows the last ANALYZE did not see
	// are read whole, a sequential scan per sub-batch that grows with the
	// backlog.
	sqlEventsOf = `SELECT txid::text, origin, tbl, op, CASE WHEN octet_length(sql) <= $4 THEN sql END, octet_length(sql), ctid::text
  FROM replica.replica_log
 WHERE txid = ANY ($1::text[]::xid8[])
   AND txid BETWEEN $5::text::xid8 AND $6::text::xid8
   AND (origin IS NULL OR ($3 AND origin <> $2 AND via IS DISTINCT FROM $2))
 ORDER BY replica_log.lsn, replica_log.txid`
	// sqlPurge keeps too the events a table copying to a slave still
	// needs (replica.holds, copy.go).
	sqlPurge = `DELETE FROM replica.replica_log
 WHERE txid < (SELECT min(pg_snapshot_xmin(acked_snapshot)) FROM replica.slaves)
   AND txid < coalesce((SELECT min(pg_snapshot_xmin(snapshot)) FROM replica.holds), '18446744073709551615'::xid8)`
	// sqlLogStatsStale: the log has had many changes since it was last
	// analyzed, and that was long ago or never (autovacuum is off, or has
	// not come round yet). Without statistics the planner takes the log's
	// range conditions (txid >= the position's xmin) to hold for a third
	// of its rows, and reads the whole log, on every poll, where an index
	// scan reads the few new rows; with any statistics it probes the index
	// for the newest txid, however stale they are.
	sqlLogStatsStale = `SELECT coalesce(n_mod_since_analyze > 1000
       AND coalesce(greatest(last_analyze, last_autoanalyze), '-infinity') < now() - interval '5 minutes', false)
  FROM pg_stat_all_tables WHERE relid = 'replica.replica_log'::regclass`
	sqlAnalyzeLog       = `ANALYZE replica.replica_log`
	sqlRecaptureDrifted = `SELECT replica.recapture_drifted()`

	// Slave: position, apply, prepared transactions.
	sqlPosition = `SELECT snapshot::text, snapshot_time, batch, coalesce(hi::text, ''), hi_time,
       coalesce(cut_lsn::text, ''), coalesce(cut_txid::text, '')
  FROM replica.position WHERE master = $1`
	sqlInsertPosition = `INSERT INTO replica.position (master, master_name, snapshot, batch, snapshot_time)
 VALUES ($1, $2, $3::pg_snapshot, $4, $5) ON CONFLICT (master) DO NOTHING`
	sqlUpdatePosition = `UPDATE replica.position
   SET snapshot = $2::pg_snapshot, batch = $3, snapshot_time = $4, applied_at = now(), master_name = $5,
       hi = nullif($6, '')::pg_snapshot, hi_time = $7, cut_lsn = nullif($8, '')::pg_lsn, cut_txid = nullif($9, '')::xid8
 WHERE master = $1 AND batch = $3 - 1`
	// An apply transaction defers every deferrable constraint to its
	// commit, as the master checked them at its own (a key shift of a
	// deferrable unique column passes through duplicates), and, where the
	// role may, runs with session_replication_role = replica: foreign-key
	// actions and checks and ordinary user triggers do not fire, so that the
	// slave does exactly what the master logged (a cascade on the master
	// logged every row it deleted). goreplica's own log triggers are ENABLE
	// ALWAYS and still fire. One simple query: no round trip more per batch.
	sqlBeginApply          = `BEGIN; SET CONSTRAINTS ALL DEFERRED`
	sqlBeginApplyAsReplica = `BEGIN; SET LOCAL session_replication_role = replica; SET CONSTRAINTS ALL DEFERRED`
	// sqlMayUseReplicaRole: superusers may set session_replication_role,
	// and from PostgreSQL 15 on roles granted SET ON PARAMETER.
	sqlIsSuperuserSetting  = `SELECT current_setting('is_superuser') = 'on', current_setting('server_version_num')::int`
	sqlHasReplicaRoleGrant = `SELECT has_parameter_privilege('session_replication_role', 'SET')`
	sqlApply               = `SELECT failed, affected FROM replica.apply($1::text[], $2::"char"[], $3::text[], $4::integer[])`
	sqlPrepared            = `SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND starts_with(gid, $1) ORDER BY prepared`
	sqlCaptures            = `SELECT EXISTS (SELECT 1 FROM replica.tables)`
	// sqlWakeSlave wakes the daemon of a slave that is itself a master when
	// it waits: its log triggers do not notify inside an apply transaction.
	sqlWakeSlave = `SELECT pg_notify('goreplica', '') FROM replica.slaves WHERE waiting LIMIT 1`
)
