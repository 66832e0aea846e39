package replicator

import (
	"context"
	"database/sql"
	"errors"
)

// TableStatus is the state of one table on one slave.
type TableStatus struct {
	Name string `json:"name"`
	// State is copying, catching-up, ok or error.
	State      string  `json:"state"`
	Mode       string  `json:"mode,omitempty"` // how its rows came: truncate, merge or skip
	RowsCopied int64   `json:"rows_copied"`
	RowsTotal  int64   `json:"rows_total"`
	Rate       float64 `json:"rows_per_second,omitempty"`
	Error      string  `json:"error,omitempty"`
}

const sqlTableStates = `SELECT tbl, state, mode, rows_copied, rows_total, rate, coalesce(error, '') FROM replica.table_state WHERE master = $1`

// tableStates reads the states of the captured tables on one slave
// (db; nil: it cannot be reached). A captured table the slave has no
// state for is ok (captured before copies existed, or copied with pg_dump
// before init).
func tableStates(ctx context.Context, db *sql.DB, masterID string, captured []string) []TableStatus {
	out := make([]TableStatus, 0, len(captured))
	byName := map[string]TableStatus{}
	err := errors.New("slave unreachable")
	if db != nil {
		var rows *sql.Rows
		if rows, err = db.QueryContext(ctx, sqlTableStates, masterID); err == nil {
			for rows.Next() {
				var t TableStatus
				if rows.Scan(&t.Name, &t.State, &t.Mode, &t.RowsCopied, &t.RowsTotal, &t.Rate, &t.Error) == nil {
					byName[t.Name] = t
				}
			}
			err = rows.Err()
			rows.Close()
		}
	}
	for _, name := range captured {
		t, ok := byName[name]
		switch {
		case ok:
		case err != nil:
			t = TableStatus{Name: name, State: StateUnknown}
		default:
			t = TableStatus{Name: name, State: TableOK}
		}
		out = append(out, t)
	}
	return out
}

// capturedNames lists the captured tables that exist, as the log names them.
const sqlCapturedNames = `SELECT t.name FROM replica.tables t JOIN pg_class c ON c.oid = t.relid ORDER BY t.name`

func capturedNames(ctx context.Context, db queryer) ([]string, error) {
	rows, err := db.QueryContext(ctx, sqlCapturedNames)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
