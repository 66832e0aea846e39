package replicator

import (
	"context"
	"database/sql"
)

// Loading a table whose indexes are built afterwards is what makes
// pg_dump | psql fast: one sorted build per index instead of an insertion
// into each for every row. A truncate-mode copy does the same on the slave:
// in the copy's transaction (which holds the table's ACCESS EXCLUSIVE lock
// from the first DROP on: the table's rows are on their way, no one reads
// them meanwhile) it drops the table's indexes and the constraints they
// back, loads the rows, and creates them again with their own definitions
// and names. It does so only where that gives back exactly what was there:
// an ordinary table the copying role owns, that no foreign key refers to
// (its unique index could not be dropped), whose indexes are valid, in the
// default tablespace, neither a partition's nor the replica identity nor
// the clustered one. Otherwise the rows are loaded into the indexes as they
// are.

// sqlMayRebuildIndexes tells whether the table $1 qualifies.
const sqlMayRebuildIndexes = `SELECT c.relkind = 'r' AND NOT c.relispartition
   AND pg_has_role(current_user, c.relowner, 'USAGE')
   AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.confrelid = c.oid AND f.contype = 'f')
   AND NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                    WHERE i.indrelid = c.oid
                      AND (i.indisreplident OR i.indisclustered OR NOT i.indisvalid OR NOT i.indisready
                           OR ic.reltablespace <> 0 OR ic.relispartition))
  FROM pg_class c WHERE c.oid = $1::regclass`

// sqlIndexesToRebuild lists, for table $1, the statement that drops each
// index (or the constraint it backs) and the one that creates it again.
// Names come out schema-qualified: the copy's session pins search_path.
const sqlIndexesToRebuild = `SELECT CASE WHEN con.oid IS NULL THEN format('DROP INDEX %s', i.indexrelid::regclass)
            ELSE format('ALTER TABLE ONLY %s DROP CONSTRAINT %I', i.indrelid::regclass, con.conname) END,
       CASE WHEN con.oid IS NULL THEN pg_get_indexdef(i.indexrelid)
            ELSE format('ALTER TABLE ONLY %s ADD CONSTRAINT %I %s', i.indrelid::regclass, con.conname, pg_get_constraintdef(con.oid)) END
  FROM pg_index i
  LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
 WHERE i.indrelid = $1::regclass
 ORDER BY i.indisprimary DESC, i.indexrelid`

// dropIndexesForLoad drops the indexes of table qrel on the slave
// connection (inside the copy's transaction) when it qualifies, and returns
// the statements that build them again once the rows are loaded.
func dropIndexesForLoad(ctx context.Context, conn *sql.Conn, qrel string) ([]string, error) {
	var ok bool
	if err := conn.QueryRowContext(ctx, sqlMayRebuildIndexes, qrel).Scan(&ok); err != nil || !ok {
		return nil, err
	}
	rows, err := conn.QueryContext(ctx, sqlIndexesToRebuild, qrel)
	if err != nil {
		return nil, err
	}
	var drops, creates []string
	for rows.Next() {
		var d, c string
		if err := rows.Scan(&d, &c); err != nil {
			rows.Close()
			return nil, err
		}
		drops, creates = append(drops, d), append(creates, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, d := range drops {
		if _, err := conn.ExecContext(ctx, d); err != nil {
			return nil, err
		}
	}
	return creates, nil
}
