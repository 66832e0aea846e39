package replicator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/lib/pq"
)

// minServerVersion is the oldest PostgreSQL goreplica supports (pg_snapshot,
// xid8 and pg_current_xact_id arrived in 13).
const minServerVersion = 130000

// schemaVersion is the version trigger.sql installs; it must match the value
// the file inserts into replica.version.
const schemaVersion = 6

const (
	sqlCandidateTables = `SELECT n.nspname, c.relname, c.oid::int8,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       pg_has_role(current_user, c.relowner, 'USAGE'), c.relkind = 'p'
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'replica')
   AND n.nspname !~ '^pg_(toast|temp)'
 ORDER BY 1, 2`
	// sqlTableShape describes a table for comparison between master and slave.
	sqlTableShape = `SELECT coalesce((SELECT string_agg(format('%I', a.attname), ', ' ORDER BY k.ord)
                   FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = c.oid AND i.indisprimary), ''),
       coalesce((SELECT array_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)) ORDER BY a.attname)
                   FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '{}'),
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p' AND k.condeferrable)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'`
	sqlCapturedTables  = `SELECT relid::int8, name FROM replica.tables ORDER BY name`
	sqlCapture         = `SELECT replica.capture($1::int8::oid::regclass)`
	sqlUncapture       = `SELECT replica.uncapture($1::int8::oid)`
	sqlRegister        = `INSERT INTO replica.slaves (name, acked_snapshot, forward) VALUES ($1, pg_current_snapshot(), $2) ON CONFLICT (name) DO UPDATE SET forward = EXCLUDED.forward WHERE replica.slaves.forward IS DISTINCT FROM EXCLUDED.forward`
	sqlIsSuperuser     = `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`
	sqlHasEventTrigger = `SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'replica_ddl')`
	sqlCreateEventTrig = `CREATE EVENT TRIGGER replica_ddl ON ddl_command_end WHEN TAG IN ('ALTER TABLE', 'ALTER SCHEMA') EXECUTE FUNCTION replica.on_ddl()`
	sqlLogRoleUsable   = `SELECT pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = 'goreplica_log'), 'MEMBER') IS TRUE`
	sqlDropLogRole     = `DO $$ BEGIN DROP ROLE IF EXISTS goreplica_log; EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN NULL; END $$`
	// sqlSlaveSideEffects lists, on a slave, what would make applying a
	// logged statement do more than the master logged when the apply
	// session cannot run with session_replication_role = replica: foreign
	// keys with an action (CASCADE, SET NULL, SET DEFAULT) on the chosen
	// tables, and user triggers that fire in an ordinary session.
	sqlSlaveSideEffects = `SELECT format('foreign key %I on %s (ON %s %s)', k.conname, k.conrelid::regclass,
              CASE WHEN k.confdeltype IN ('c', 'n', 'd') THEN 'DELETE' ELSE 'UPDATE' END,
              CASE WHEN k.confdeltype IN ('c', 'n', 'd') THEN k.confdeltype ELSE k.confupdtype END)
  FROM pg_constraint k
 WHERE k.contype = 'f' AND k.confrelid = ANY ($1::regclass[])
   AND (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd'))
UNION ALL
SELECT format('trigger %I on %s', g.tgname, g.tgrelid::regclass)
  FROM pg_trigger g
 WHERE g.tgrelid = ANY ($1::regclass[]) AND NOT g.tgisinternal AND g.tgenabled IN ('O', 'A')
   AND g.tgname NOT IN ('replica_log', 'replica_truncate')
 ORDER BY 1`
	sqlMaxPrepared       = `SELECT current_setting('max_prepared_transactions')::int`
	sqlCanCreateSchema   = `SELECT has_database_privilege(current_database(), 'CREATE') OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'replica' AND pg_has_role(current_user, nspowner, 'USAGE'))`
	sqlInstalledVersion  = `SELECT coalesce(max(version), 0) FROM replica.version`
	sqlDropSchema        = `DROP SCHEMA IF EXISTS replica CASCADE`
	sqlDropEventTrigger  = `DROP EVENT TRIGGER IF EXISTS replica_ddl`
	sqlAllPreparedOfNode = `SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE 'goreplica.%'`
)

// Table is a table chosen for capture.
type Table struct {
	Schema, Name string
	OID          int64
	hasKey       bool
	owned        bool
	partitioned  bool // holds no rows itself: its partitions do
}

// Qualified returns the quoted schema.table.
func (t Table) Qualified() string {
	return pq.QuoteIdentifier(t.Schema) + "." + pq.QuoteIdentifier(t.Name)
}

// InitReport says what Init did and what it noticed.
type InitReport struct {
	Tables   []string // captured, quoted schema.table
	Removed  []string // no longer matched: capture removed
	Warnings []string
	Slaves   []string // registered (now or before)
	Created  []string // "slave: table" created on a slave
	Copies   []string // "slave: table (mode)": tables new to a slave, and how they get their rows
}

// selectTables applies the include and exclude patterns to the catalog's
// tables. A table matched by a pattern but lacking a primary key is skipped
// with a warning; a table named exactly without one, or an exact name that
// matches nothing, is an error.
func selectTables(all []Table, include, exclude []string) (chosen []Table, warnings []string, err error) {
	var errs []error
	for _, p := range include {
		if !isExact(p) {
			continue
		}
		found := false
		for _, t := range all {
			if t.Schema+"."+t.Name == p {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("replicate.tables: table %s does not exist on the master", p))
		}
	}
	for _, t := range all {
		full := t.Schema + "." + t.Name
		var byPattern, exact bool
		for _, p := range include {
			if matchTable(p, full) {
				byPattern = true
				exact = exact || isExact(p)
			}
		}
		if !byPattern {
			continue
		}
		excluded := false
		for _, p := range exclude {
			if matchTable(p, full) {
				excluded = true
			}
		}
		if excluded {
			continue
		}
		switch {
		case t.partitioned && exact:
			errs = append(errs, fmt.Errorf("replicate.tables: table %s is partitioned: its rows are in its partitions, which are the tables to replicate (name them, or a pattern that matches them)", t.Qualified()))
		case t.partitioned:
			// Its partitions are tables of their own, matched by name.
		case !t.hasKey && exact:
			errs = append(errs, fmt.Errorf("table %s has no primary key: goreplica repeats changes by key (add one, or remove it from replicate.tables)", t.Qualified()))
		case !t.hasKey:
			warnings = append(warnings, fmt.Sprintf("table %s has no primary key: skipped (add one to replicate it)", t.Qualified()))
		default:
			chosen = append(chosen, t)
		}
	}
	return chosen, warnings, errors.Join(errs...)
}

// Init installs goreplica: it checks the servers and tables, installs the
// replica schema on the master and every slave, captures the chosen tables
// on the master and registers every slave at the master's current position.
// Running it again changes nothing, except to follow the configuration: new
// tables are captured, tables no longer chosen are released.
func Init(ctx context.Context, opts Options, triggerSQL string) (*InitReport, error) {
	master, err := openDB(opts.Master.DSN)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	defer master.Close()
	slaves := make([]*sql.DB, len(opts.Slaves))
	for i, s := range opts.Slaves {
		if slaves[i], err = openDB(s.DSN); err != nil {
			return nil, fmt.Errorf("slave %s: %w", s.Name, err)
		}
		defer slaves[i].Close()
	}

	// Checks first, every problem at once.
	var problems []error
	if err := checkNode(ctx, master, "master "+opts.Master.Name, false); err != nil {
		problems = append(problems, err)
	}
	for i, s := range opts.Slaves {
		if err := checkNode(ctx, slaves[i], "slave "+s.Name, s.TwoPhase); err != nil {
			problems = append(problems, err)
		}
	}
	problems = append(problems, checkDistinct(ctx, opts, master, slaves)...)
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	all, err := candidateTables(ctx, master)
	if err != nil {
		return nil, fmt.Errorf("list tables on master %s: %w", opts.Master.Name, err)
	}
	chosen, warnings, err := selectTables(all, opts.Tables, opts.Exclude)
	if err != nil {
		return nil, err
	}
	rep := &InitReport{Warnings: warnings}
	for _, t := range chosen {
		if !t.owned {
			problems = append(problems, fmt.Errorf("master %s: table %s: the connecting role must own it (or be a member of its owner) to install triggers", opts.Master.Name, t.Qualified()))
		}
		if m, err := tableShape(ctx, master, t); err != nil {
			return nil, fmt.Errorf("describe table %s on master %s: %w", t.Qualified(), opts.Master.Name, err)
		} else if m != nil && m.deferrable {
			problems = append(problems, fmt.Errorf("master %s: table %s: its primary key is DEFERRABLE: goreplica finds rows by key and cannot repeat the key shifts that only a deferred check allows (make the key NOT DEFERRABLE, other unique constraints may stay deferrable; or exclude the table)", opts.Master.Name, t.Qualified()))
			continue
		}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	every := make([][]Table, len(opts.Slaves))
	for i := range every {
		every[i] = chosen
	}
	creations, err := planSlaveTables(ctx, opts, master, slaves, every)
	if err != nil {
		return nil, err
	}
	for i, s := range opts.Slaves {
		if err := checkSideEffects(ctx, slaves[i], s.Name, chosen); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}

	// Install.
	for i, s := range opts.Slaves {
		if err := install(ctx, slaves[i], triggerSQL); err != nil {
			return nil, fmt.Errorf("install on slave %s: %w", s.Name, err)
		}
	}
	if rep.Created, err = createSlaveTables(ctx, opts, slaves, creations); err != nil {
		return nil, err
	}
	if err := install(ctx, master, triggerSQL); err != nil {
		return nil, fmt.Errorf("install on master %s: %w", opts.Master.Name, err)
	}
	newFor, masterID, err := newTables(ctx, opts, master, chosen)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	tx, err := master.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	defer tx.Rollback()
	if rep.Copies, err = startCopies(ctx, opts, tx, masterID, slaves, newFor, opts.copyMode()); err != nil {
		return nil, err
	}
	keep := map[int64]bool{}
	for _, t := range chosen {
		if _, err := tx.ExecContext(ctx, sqlCapture, t.OID); err != nil {
			return nil, fmt.Errorf("capture table %s on master %s: %w", t.Qualified(), opts.Master.Name, err)
		}
		keep[t.OID] = true
		rep.Tables = append(rep.Tables, t.Qualified())
	}
	rows, err := tx.QueryContext(ctx, sqlCapturedTables)
	if err != nil {
		return nil, fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	var drop []Table
	for rows.Next() {
		var t Table
		if err := rows.Scan(&t.OID, &t.Name); err != nil {
			rows.Close()
			return nil, err
		}
		if !keep[t.OID] {
			drop = append(drop, t)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, t := range drop {
		if _, err := tx.ExecContext(ctx, sqlUncapture, t.OID); err != nil {
			return nil, fmt.Errorf("release table %s on master %s: %w", t.Name, opts.Master.Name, err)
		}
		rep.Removed = append(rep.Removed, t.Name)
	}
	// Registration takes the snapshot of this transaction: the slaves are
	// taken to hold every change visible in it (they were copied from a
	// quiet master), and receive every change after it.
	for _, s := range opts.Slaves {
		if _, err := tx.ExecContext(ctx, sqlRegister, s.Name, !s.NoForward); err != nil {
			return nil, fmt.Errorf("register slave %s on master %s: %w", s.Name, opts.Master.Name, err)
		}
		rep.Slaves = append(rep.Slaves, s.Name)
	}
	var super, hasEvt bool
	if err := tx.QueryRowContext(ctx, sqlIsSuperuser).Scan(&super); err != nil {
		return nil, err
	}
	if err := tx.QueryRowContext(ctx, sqlHasEventTrigger).Scan(&hasEvt); err != nil {
		return nil, err
	}
	switch {
	case super:
		// Created again each time, so that an upgrade brings its current tags.
		if _, err := tx.ExecContext(ctx, sqlDropEventTrigger); err != nil {
			return nil, fmt.Errorf("replace event trigger on master %s: %w", opts.Master.Name, err)
		}
		if _, err := tx.ExecContext(ctx, sqlCreateEventTrig); err != nil {
			return nil, fmt.Errorf("create event trigger on master %s: %w", opts.Master.Name, err)
		}
	case !hasEvt:
		rep.Warnings = append(rep.Warnings, "not a superuser on the master: no DDL event trigger. Change a replicated table's columns in one transaction with its log function, as this role: BEGIN; ALTER TABLE t ...; SELECT replica.capture('t'); COMMIT. Otherwise, until the daemon regenerates the function (within 10 seconds), an added column is left out of the changes logged and a dropped or renamed one makes the application's writes to the table fail")
	}
	var logRole bool
	if err := tx.QueryRowContext(ctx, sqlLogRoleUsable).Scan(&logRole); err != nil {
		return nil, err
	}
	if !logRole {
		rep.Warnings = append(rep.Warnings, "cannot create the role goreplica_log on the master (this role is neither a superuser nor has CREATEROLE): the log trigger functions run as this role. They render values through their types' output functions and never run code the tables' users control, but a dedicated role bounds them further: create it as a superuser (CREATE ROLE goreplica_log NOLOGIN; GRANT goreplica_log TO this role) and run init again")
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	seqs, err := sequenceWarnings(ctx, opts, master, slaves, chosen)
	if err != nil {
		seqs = []string{fmt.Sprintf("could not compare the sequences of sites that write: %v", err)}
	}
	rep.Warnings = append(rep.Warnings, seqs...)
	sort.Strings(rep.Tables)
	return rep, nil
}

// checkNode checks a server's version and privileges, and
// max_prepared_transactions where two-phase commit is used.
func checkNode(ctx context.Context, db *sql.DB, what string, twoPhase bool) error {
	var num int
	var ver string
	if err := db.QueryRowContext(ctx, sqlServerVersion).Scan(&num, &ver); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var errs []error
	if num < minServerVersion {
		errs = append(errs, fmt.Errorf("%s runs PostgreSQL %s: goreplica needs 13 or newer", what, ver))
	}
	var can bool
	if err := db.QueryRowContext(ctx, sqlCanCreateSchema).Scan(&can); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !can {
		errs = append(errs, fmt.Errorf("%s: the connecting role cannot create schema replica (GRANT CREATE ON DATABASE ... TO it)", what))
	}
	if twoPhase {
		var mpt int
		if err := db.QueryRowContext(ctx, sqlMaxPrepared).Scan(&mpt); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if mpt == 0 {
			errs = append(errs, fmt.Errorf("%s: max_prepared_transactions is 0: set max_prepared_transactions = 10 in its postgresql.conf and restart it (or set two_phase = false for this slave)", what))
		}
	}
	var installed bool
	if err := db.QueryRowContext(ctx, sqlSchemaExists).Scan(&installed); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	inst := 0
	if installed {
		if err := db.QueryRowContext(ctx, sqlInstalledVersion).Scan(&inst); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if inst > schemaVersion {
		errs = append(errs, fmt.Errorf("%s: replica schema version %d was installed by a newer goreplica (this one installs %d)", what, inst, schemaVersion))
	}
	return errors.Join(errs...)
}

func candidateTables(ctx context.Context, db *sql.DB) ([]Table, error) {
	rows, err := db.QueryContext(ctx, sqlCandidateTables)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Table
	for rows.Next() {
		var t Table
		if err := rows.Scan(&t.Schema, &t.Name, &t.OID, &t.hasKey, &t.owned, &t.partitioned); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

type shape struct {
	key        string
	cols       []string
	deferrable bool // the primary key is DEFERRABLE
}

func tableShape(ctx context.Context, db *sql.DB, t Table) (*shape, error) {
	var s shape
	err := db.QueryRowContext(ctx, sqlTableShape, t.Schema, t.Name).Scan(&s.key, pq.Array(&s.cols), &s.deferrable)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &s, err
}

// compareTable reports how a slave's copy of a table differs from the
// master's: missing table, other key, missing or retyped columns.
func compareTable(ctx context.Context, master, slave *sql.DB, t Table, slaveName string) error {
	m, err := tableShape(ctx, master, t)
	if err != nil {
		return fmt.Errorf("describe table %s on master: %w", t.Qualified(), err)
	}
	s, err := tableShape(ctx, slave, t)
	if err != nil {
		return fmt.Errorf("describe table %s on slave %s: %w", t.Qualified(), slaveName, err)
	}
	if s == nil {
		return fmt.Errorf("slave %s: table %s does not exist (create it, or set create = true in [replicate] for init to create it)", slaveName, t.Qualified())
	}
	var diffs []string
	if s.deferrable {
		diffs = append(diffs, "its primary key is DEFERRABLE on the slave (make it NOT DEFERRABLE: a logged INSERT names the key as its ON CONFLICT target)")
	}
	if m.key != s.key {
		diffs = append(diffs, fmt.Sprintf("primary key (%s) on the master but (%s) on the slave", m.key, s.key))
	}
	have := map[string]bool{}
	for _, c := range s.cols {
		have[c] = true
	}
	for _, c := range m.cols {
		if !have[c] {
			diffs = append(diffs, "column "+c+" missing or of another type")
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("slave %s: table %s differs from the master: %s", slaveName, t.Qualified(), strings.Join(diffs, "; "))
	}
	return nil
}

// checkSideEffects refuses a slave whose copies of the chosen tables would
// do more than the master logged (foreign-key actions, user triggers) when
// the slave's role cannot apply with session_replication_role = replica.
func checkSideEffects(ctx context.Context, db *sql.DB, slave string, chosen []Table) error {
	ok, err := mayUseReplicaRole(ctx, db)
	if err != nil {
		return fmt.Errorf("slave %s: check privileges: %w", slave, err)
	}
	if ok || len(chosen) == 0 {
		return nil
	}
	names := make([]string, len(chosen))
	for i, t := range chosen {
		names[i] = t.Qualified()
	}
	rows, err := db.QueryContext(ctx, sqlSlaveSideEffects, pq.Array(names))
	if err != nil {
		return fmt.Errorf("slave %s: list foreign keys and triggers: %w", slave, err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var f string
		if err := rows.Scan(&f); err != nil {
			return fmt.Errorf("slave %s: %w", slave, err)
		}
		found = append(found, f)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("slave %s: %w", slave, err)
	}
	if len(found) == 0 {
		return nil
	}
	var role string
	if err := db.QueryRowContext(ctx, `SELECT current_user`).Scan(&role); err != nil {
		return fmt.Errorf("slave %s: %w", slave, err)
	}
	return fmt.Errorf("slave %s: %s would act again on the slave on what the master already logged (a cascade deletes rows whose own deletes follow in the log; a trigger writes again): goreplica applies with session_replication_role = replica to prevent it, which this role may not set. As a superuser on the slave run GRANT SET ON PARAMETER session_replication_role TO %s (PostgreSQL 15 or newer), or connect as a superuser",
		slave, strings.Join(found, ", "), pq.QuoteIdentifier(role))
}

// install runs trigger.sql in one transaction.
func install(ctx context.Context, db *sql.DB, triggerSQL string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SET LOCAL client_min_messages = warning"); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, triggerSQL); err != nil {
		return err
	}
	return tx.Commit()
}

// Uninstall removes every trigger and the replica schema from the master
// and the slaves. It refuses while a slave holds prepared batches (commit or
// roll them back first: 'goreplica run' commits them).
func Uninstall(ctx context.Context, opts Options) error {
	var errs []error
	for _, s := range opts.Slaves {
		if err := uninstallNode(ctx, s.DSN, true); err != nil {
			errs = append(errs, fmt.Errorf("slave %s: %w", s.Name, err))
		}
	}
	if err := uninstallNode(ctx, opts.Master.DSN, false); err != nil {
		errs = append(errs, fmt.Errorf("master %s: %w", opts.Master.Name, err))
	}
	return errors.Join(errs...)
}

func uninstallNode(ctx context.Context, dsn string, checkPrepared bool) error {
	db, err := openDB(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if checkPrepared {
		var gids []string
		rows, err := db.QueryContext(ctx, sqlAllPreparedOfNode)
		if err != nil {
			return err
		}
		for rows.Next() {
			var g string
			if err := rows.Scan(&g); err != nil {
				rows.Close()
				return err
			}
			gids = append(gids, g)
		}
		rows.Close()
		if len(gids) > 0 {
			return fmt.Errorf("prepared goreplica transactions are pending (%s): run 'goreplica run' once to commit them, then uninstall", strings.Join(gids, ", "))
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SET LOCAL client_min_messages = warning"); err != nil {
		return err
	}
	// Dropping the schema drops the log functions and, with them, every
	// trigger that calls them, and the event trigger.
	if _, err := tx.ExecContext(ctx, sqlDropEventTrigger); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, sqlDropSchema); err != nil {
		return err
	}
	// The role goes when nothing of another database still depends on it.
	if _, err := tx.ExecContext(ctx, sqlDropLogRole); err != nil {
		return err
	}
	return tx.Commit()
}

// mayUseReplicaRole reports whether the connected role may set
// session_replication_role (a superuser; from PostgreSQL 15 on, a role
// granted SET ON PARAMETER session_replication_role).
func mayUseReplicaRole(ctx context.Context, db queryer) (bool, error) {
	var super bool
	var num int
	if err := db.QueryRowContext(ctx, sqlIsSuperuserSetting).Scan(&super, &num); err != nil {
		return false, err
	}
	if super || num < 150000 {
		return super, nil
	}
	var granted bool
	err := db.QueryRowContext(ctx, sqlHasReplicaRoleGrant).Scan(&granted)
	return granted, err
}

// queryer is what a check needs of a pool, a connection or a transaction.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}
