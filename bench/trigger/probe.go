package main

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"sort"
	"strings"

	"github.com/goreplica/goreplica/bench/internal/rig"
)

//go:embed log_v5.sql
var logV5 string

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
	// Without the NOTIFY check (replica.notify_tick and the look-up of
	// waiting slaves).
	"probe_noflag": func(ctx context.Context, db *sql.DB) error {
		return cutLogFunction(ctx, db, "the NOTIFY block", "IF (o IS NULL OR o OPERATOR(pg_catalog.=) '')", "END IF;\n  END IF;")
	},
	// Without SECURITY DEFINER (the function runs as the caller, who owns
	// the benchmark's tables and may write the log).
	"probe_invoker": func(ctx context.Context, db *sql.DB) error {
		return alterLogFunction(ctx, db, "SECURITY INVOKER")
	},
	// Without the log row: the function renders the statement and returns.
	"probe_noinsert": func(ctx context.Context, db *sql.DB) error {
		return cutLogFunction(ctx, db, "the log INSERT", "INSERT INTO replica.replica_log", ", s);\n")
	},
	// With the log UNLOGGED: its rows and index entries write no WAL.
	"probe_unlogged": func(ctx context.Context, db *sql.DB) error {
		_, err := db.ExecContext(ctx, `ALTER TABLE replica.replica_log SET UNLOGGED`)
		return err
	},
	// The floor of a PL/pgSQL log trigger: one constant log row, nothing
	// rendered, no check.
	"probe_floor": func(ctx context.Context, db *sql.DB) error {
		f, err := logFunction(ctx, db)
		if err != nil {
			return err
		}
		_, err = db.ExecContext(ctx, `CREATE OR REPLACE FUNCTION `+f+` RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  INSERT INTO replica.replica_log (lsn, txid, tbl, op, sql)
  VALUES (pg_catalog.pg_current_wal_insert_lsn(), pg_catalog.pg_current_xact_id(), 'test', 'I', 'x');
  RETURN NULL;
END $$`)
		return err
	},
	// The log function as schema version 5 generated it (a statement per
	// column of an UPDATE, the look-up of waiting daemons once per
	// transaction, PERFORM), to compare with the current one in one run.
	"probe_v5": func(ctx context.Context, db *sql.DB) error {
		var oid string
		if err := db.QueryRowContext(ctx, `SELECT 'test'::regclass::oid::text`).Scan(&oid); err != nil {
			return err
		}
		// Owned by goreplica_log as replica.capture leaves it: a superuser
		// owner would skip the privilege checks.
		return rig.Exec(ctx, db, strings.ReplaceAll(logV5, "{{oid}}", oid),
			`GRANT CREATE ON SCHEMA replica TO goreplica_log`,
			`ALTER FUNCTION replica.log_`+oid+`() OWNER TO goreplica_log`,
			`REVOKE CREATE ON SCHEMA replica FROM goreplica_log`)
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

// cutLogFunction regenerates the log function without the text from the
// first occurrence of from up to and including the next occurrence of to
// (what, named in an error when either is missing).
func cutLogFunction(ctx context.Context, db *sql.DB, what, from, to string) error {
	def, err := logFunctionDef(ctx, db)
	if err != nil {
		return err
	}
	start := strings.Index(def, from)
	end := strings.Index(def[max(start, 0):], to)
	if start < 0 || end < 0 {
		return fmt.Errorf("%s not found in the log function", what)
	}
	_, err = db.ExecContext(ctx, def[:start]+def[start+end+len(to):])
	return err
}
