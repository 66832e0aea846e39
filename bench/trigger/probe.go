package main

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// probes are diagnostic variants, not run by default: goreplica's generated
// log trigger with one ingredient taken away, to see what each one costs
// (for example VARIANTS="none goreplica probe_noset probe_noflag"). They
// are measurements only: none of them is a correct trigger.
var probes = map[string]func(context.Context, *sql.DB) error{
	// Without the function's SET clauses (the output settings pinned for
	// tables with float, date or money columns).
	"probe_noset": func(ctx context.Context, db *sql.DB) error {
		return alterLogFunction(ctx, db, "RESET ALL")
	},
	// With SET search_path = pg_catalog, pg_temp added, as schema version 4
	// generated it.
	"probe_path": func(ctx context.Context, db *sql.DB) error {
		return alterLogFunction(ctx, db, "SET search_path = pg_catalog, pg_temp")
	},
	// With search_path as its only SET clause.
	"probe_pathonly": func(ctx context.Context, db *sql.DB) error {
		if err := alterLogFunction(ctx, db, "RESET ALL"); err != nil {
			return err
		}
		return alterLogFunction(ctx, db, "SET search_path = pg_catalog, pg_temp")
	},
	// Without lc_monetary among the SET clauses.
	"probe_nomonetary": func(ctx context.Context, db *sql.DB) error {
		return alterLogFunction(ctx, db, "RESET lc_monetary")
	},
	// Without the once-per-transaction NOTIFY check (the replica.notified
	// flag and the look-up of waiting slaves).
	"probe_noflag": func(ctx context.Context, db *sql.DB) error {
		def, err := logFunctionDef(ctx, db)
		if err != nil {
			return err
		}
		start := strings.Index(def, "IF (o IS NULL OR o OPERATOR(pg_catalog.=) '')")
		end := strings.Index(def[max(start, 0):], "END IF;\n  END IF;")
		if start < 0 || end < 0 {
			return fmt.Errorf("NOTIFY block not found in the log function")
		}
		def = def[:start] + def[start+end+len("END IF;\n  END IF;"):]
		_, err = db.ExecContext(ctx, def)
		return err
	},
	// Without the log's index on txid.
	"probe_noindex": func(ctx context.Context, db *sql.DB) error {
		_, err := db.ExecContext(ctx, `DROP INDEX replica.replica_log_txid`)
		return err
	},
}

func probeNames() string {
	var names []string
	for n := range probes {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func logFunction(ctx context.Context, db *sql.DB) (string, error) {
	var f string
	err := db.QueryRowContext(ctx, `SELECT format('replica.%I()', 'log_' || 'test'::regclass::oid)`).Scan(&f)
	return f, err
}

func logFunctionDef(ctx context.Context, db *sql.DB) (string, error) {
	f, err := logFunction(ctx, db)
	if err != nil {
		return "", err
	}
	var def string
	err = db.QueryRowContext(ctx, `SELECT pg_get_functiondef($1::regprocedure)`, f).Scan(&def)
	return def, err
}

func alterLogFunction(ctx context.Context, db *sql.DB, action string) error {
	f, err := logFunction(ctx, db)
	if err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, "ALTER FUNCTION "+f+" "+action)
	return err
}
