package replicator

import (
	"errors"
	"fmt"
)

// ErrNotInstalled is returned when the replica schema is missing on a node.
var ErrNotInstalled = errors.New("goreplica is not installed (run 'goreplica init')")

// ConflictError is a logged row statement that did not touch exactly one row
// on a slave. The batch holding it was rolled back.
type ConflictError struct {
	Slave    string
	Table    string
	Key      string
	TxID     string
	SQL      string
	Kind     ConflictKind
	Affected int64
	// Policy is what was done about it: stop, skip or resync.
	Policy string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict %s on slave %s: table %s, key %s, txid %s: %d rows affected by: %s",
		e.Kind, e.Slave, e.Table, e.Key, e.TxID, e.Affected, shorten(e.SQL, 500))
}

// ApplyError is a logged statement that failed on a slave (missing column,
// type mismatch, constraint...). The batch holding it was rolled back.
type ApplyError struct {
	Slave string
	Table string
	Key   string
	TxID  string
	SQL   string
	Err   error
}

func (e *ApplyError) Error() string {
	return fmt.Sprintf("apply on slave %s: table %s, key %s, txid %s: %v; statement: %s",
		e.Slave, e.Table, e.Key, e.TxID, e.Err, shorten(e.SQL, 500))
}

func (e *ApplyError) Unwrap() error { return e.Err }
