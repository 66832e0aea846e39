package replicator

import (
	"context"
	"fmt"
	"strings"
)

// sqlUnmatchedPartitions lists the partitions, not captured, of a
// partitioned table another partition of which is captured: a partition
// the configuration's patterns do not match, whose rows no slave receives.
const sqlUnmatchedPartitions = `SELECT DISTINCT format('%I.%I', n.nspname, c.relname)
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relispartition AND c.relkind = 'r'
   AND NOT EXISTS (SELECT 1 FROM replica.tables t WHERE t.relid = c.oid)
   AND EXISTS (SELECT 1 FROM pg_inherits s JOIN replica.tables t ON t.relid = s.inhrelid WHERE s.inhparent = i.inhparent)
 ORDER BY 1`

// captureNew captures and has copied the tables created since init that
// the configuration's patterns match (Options.CaptureNew), as 'goreplica
// add' does, and warns of new partitions of replicated partitioned tables
// that no pattern matches. It returns the tables captured.
func (r *Replicator) captureNew(ctx context.Context) ([]string, error) {
	all, err := candidateTables(ctx, r.master)
	if err != nil {
		return nil, fmt.Errorf("list tables on master %s: %w", r.opts.Master.Name, err)
	}
	chosen, _, _ := selectTables(all, r.opts.Tables, r.opts.Exclude)
	captured, err := capturedOIDs(ctx, r.master)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", r.opts.Master.Name, err)
	}
	// Tables 'goreplica remove' took out stay out until add or init.
	removed, err := oidSet(ctx, r.master, sqlRemovedOIDs)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", r.opts.Master.Name, err)
	}
	var fresh []string
	for _, t := range chosen {
		if !captured[t.OID] && !removed[t.OID] {
			fresh = append(fresh, t.Schema+"."+t.Name)
		}
	}
	var unmatched []string
	rows, err := r.master.QueryContext(ctx, sqlUnmatchedPartitions)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", r.opts.Master.Name, err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		unmatched = append(unmatched, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(unmatched) > 0 && strings.Join(unmatched, ",") != r.reportedPartitions {
		r.reportedPartitions = strings.Join(unmatched, ",")
		msg := fmt.Sprintf("partitions of replicated tables that replicate.tables does not match, whose rows no slave receives: %s", strings.Join(unmatched, ", "))
		r.log.Warn(msg)
		if r.opts.Alerter != nil {
			r.opts.Alerter.Alert(Alert{Kind: AlertError, Summary: "new partitions are not replicated", Body: msg + "\n\nAdd a pattern that matches them to replicate.tables, then run 'goreplica init' (or 'goreplica add' them)."})
		}
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	mode := r.opts.Copy
	if mode != CopyMerge {
		// A table created since init: its rows so far are on no slave.
		mode = CopyTruncate
	}
	rep, err := Add(ctx, r.opts, fresh, mode)
	if err != nil {
		return nil, err
	}
	return rep.Tables, nil
}
