package replicator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const (
	// sqlMasterOnSlave finds, on a slave, the identity of the master it
	// applies from, by the master's name.
	sqlMasterOnSlave = `SELECT master FROM replica.position WHERE master_name = $1`
	// sqlStoppedOn returns the transaction a slave stopped on: the latest
	// conflict recorded with policy stop whose transaction the slave's
	// position has not passed and that no skip covers.
	sqlStoppedOn = `SELECT c.txid::text, c.tbl, c.key, c.kind, c.statement
  FROM replica.conflicts c JOIN replica.position p ON p.master = c.master
 WHERE c.master = $1 AND c.policy = 'stop'
   AND NOT pg_visible_in_snapshot(c.txid, p.snapshot)
   AND NOT EXISTS (SELECT 1 FROM replica.conflicts s
                    WHERE s.master = c.master AND s.txid = c.txid AND s.policy = 'skip_transaction')
 ORDER BY c.id DESC LIMIT 1`
	sqlRecordSkip = `INSERT INTO replica.conflicts (master, master_name, txid, tbl, operation, kind, policy, statement, by_whom)
 VALUES ($1, $2, $3::xid8, $4, 'transaction', 'skipped', 'skip_transaction', $5, $6)`
	sqlConflicts = `SELECT id, at, master_name, txid::text, tbl, key, operation, kind, policy, statement, coalesce(by_whom, '')
  FROM replica.conflicts ORDER BY id`
)

// ErrNotStopped is returned by Skip for a slave that is not stopped on a
// conflict.
var ErrNotStopped = errors.New("not stopped on a conflict")

// Skipped is what Skip left out.
type Skipped struct {
	Slave  string
	Master string
	TxID   string
	Table  string // the table of the conflicting statement
	Key    string
	Kind   string
}

// Skip leaves out of the slave's replication the one source transaction it
// stopped on (a conflict with policy stop), recording it in the slave's
// replica.conflicts with by (who asked). When txid is not empty it must be
// that transaction. It needs only the slave: a running daemon takes the skip
// into account at its next retry (it reconnects after every error), and
// leaves the transaction out of the batch that holds it, the slave's
// position moving past it in that batch's transaction, exactly once.
func Skip(ctx context.Context, opts Options, slave, txid, by string) (*Skipped, error) {
	node, err := slaveNode(opts, slave)
	if err != nil {
		return nil, err
	}
	db, err := openDB(node.DSN)
	if err != nil {
		return nil, fmt.Errorf("slave %s: %w", slave, err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("slave %s: %w", slave, err)
	}
	defer tx.Rollback()
	var masterID string
	err = tx.QueryRowContext(ctx, sqlMasterOnSlave, opts.Master.Name).Scan(&masterID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("slave %s: %w: it has applied nothing from master %s yet", slave, ErrNotStopped, opts.Master.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("slave %s: read position: %w", slave, err)
	}
	s := &Skipped{Slave: slave, Master: opts.Master.Name}
	var stmt string
	err = tx.QueryRowContext(ctx, sqlStoppedOn, masterID).Scan(&s.TxID, &s.Table, &s.Key, &s.Kind, &stmt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("slave %s: %w from master %s (goreplica status shows its state)", slave, ErrNotStopped, opts.Master.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("slave %s: read conflicts: %w", slave, err)
	}
	if txid != "" && txid != s.TxID {
		return nil, fmt.Errorf("slave %s stopped on transaction %s (table %s, %s), not on %s: nothing skipped", slave, s.TxID, s.Table, s.Kind, txid)
	}
	if _, err := tx.ExecContext(ctx, sqlRecordSkip, masterID, opts.Master.Name, s.TxID, s.Table, stmt, by); err != nil {
		return nil, fmt.Errorf("slave %s: record the skip: %w", slave, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("slave %s: record the skip: %w", slave, err)
	}
	return s, nil
}

// ConflictRecord is one row of a slave's replica.conflicts.
type ConflictRecord struct {
	Slave     string    `json:"slave"`
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Master    string    `json:"master"`
	TxID      string    `json:"txid"`
	Table     string    `json:"table"`
	Key       string    `json:"key"`
	Operation string    `json:"operation"`
	Kind      string    `json:"kind"`
	Policy    string    `json:"policy"`
	Statement string    `json:"statement"`
	By        string    `json:"by,omitempty"`
}

// Conflicts lists the conflicts recorded on the slaves (only the one named
// slave when it is not empty), oldest first.
func Conflicts(ctx context.Context, opts Options, slave string) ([]ConflictRecord, error) {
	nodes := opts.Slaves
	if slave != "" {
		n, err := slaveNode(opts, slave)
		if err != nil {
			return nil, err
		}
		nodes = []Node{n}
	}
	var out []ConflictRecord
	for _, n := range nodes {
		rs, err := conflictsOf(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

func conflictsOf(ctx context.Context, n Node) ([]ConflictRecord, error) {
	db, err := openDB(n.DSN)
	if err != nil {
		return nil, fmt.Errorf("slave %s: %w", n.Name, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, sqlConflicts)
	if err != nil {
		return nil, fmt.Errorf("slave %s: read replica.conflicts: %w", n.Name, err)
	}
	defer rows.Close()
	var out []ConflictRecord
	for rows.Next() {
		c := ConflictRecord{Slave: n.Name}
		if err := rows.Scan(&c.ID, &c.At, &c.Master, &c.TxID, &c.Table, &c.Key, &c.Operation, &c.Kind, &c.Policy, &c.Statement, &c.By); err != nil {
			return nil, fmt.Errorf("slave %s: read replica.conflicts: %w", n.Name, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("slave %s: read replica.conflicts: %w", n.Name, err)
	}
	return out, nil
}

// slaveNode returns the configured slave called name.
func slaveNode(opts Options, name string) (Node, error) {
	for _, s := range opts.Slaves {
		if s.Name == name {
			return s, nil
		}
	}
	var names []string
	for _, s := range opts.Slaves {
		names = append(names, s.Name)
	}
	return Node{}, fmt.Errorf("no slave %s in the configuration of master %s (slaves: %v)", name, opts.Master.Name, names)
}
