package replicator

import (
	"context"
	"database/sql"
	"fmt"
)

// sqlIdentity identifies a database whatever the DSN that reached it: the
// cluster's system identifier (pg_control_system, see
// https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-PG-CONTROL-SYSTEM)
// and the database's oid in that cluster.
const sqlIdentity = `SELECT (SELECT system_identifier FROM pg_control_system())::text || '/' ||
       (SELECT oid FROM pg_database WHERE datname = current_database())::text`

// databaseIdentity returns the identity of the database db reaches.
func databaseIdentity(ctx context.Context, db *sql.DB) (string, error) {
	var id string
	err := db.QueryRowContext(ctx, sqlIdentity).Scan(&id)
	return id, err
}

// sameDatabases finds the nodes that are one database under several names:
// given each node's label and identity (an empty identity is unknown and
// matches nothing), it returns one problem per repeated database.
func sameDatabases(labels, ids []string) []error {
	var problems []error
	first := map[string]int{}
	for i, id := range ids {
		if id == "" {
			continue
		}
		j, seen := first[id]
		if !seen {
			first[id] = i
			continue
		}
		problems = append(problems, fmt.Errorf("%s is the same database as %s (database %s): a node cannot replicate to itself; give it the DSN of another database",
			labels[i], labels[j], id))
	}
	return problems
}

// checkDistinct refuses a configuration in which two nodes (the master and a
// slave, or two slaves) are one database reached through different DSNs. A
// node it cannot identify is left out: checkNode reports why it cannot be
// reached.
func checkDistinct(ctx context.Context, opts Options, master *sql.DB, slaves []*sql.DB) []error {
	labels := []string{"master " + opts.Master.Name}
	ids := make([]string, 1+len(slaves))
	ids[0], _ = databaseIdentity(ctx, master)
	for i, s := range opts.Slaves {
		labels = append(labels, "slave "+s.Name)
		ids[i+1], _ = databaseIdentity(ctx, slaves[i])
	}
	return sameDatabases(labels, ids)
}
