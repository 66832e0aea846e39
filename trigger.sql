-- goreplica: every SQL object it installs, in schema replica.
--
-- The same file is installed on the master and on every slave (a node of a
-- multi-master setup is both). Running it again is harmless: every object is
-- created if missing or replaced, and older installs are upgraded in place.
-- `goreplica trigger` prints this file; `goreplica init` runs it.
--
-- Master side:
--   replica.replica_log  one row per captured row change: the SQL statement
--                        that repeats it, the transaction id, the origin node
--   replica.tables       the captured tables and their generated log functions
--   replica.slaves       each registered slave and the position it acknowledged
--   replica.capture(t)   (re)generates the log function and triggers of table t
-- Slave side:
--   replica.position     the position applied from each master, written in
--                        the same transaction as the data it covers
--   replica.apply(...)   runs a chunk of logged statements in one round trip

CREATE SCHEMA IF NOT EXISTS replica;
REVOKE ALL ON SCHEMA replica FROM PUBLIC;
COMMENT ON SCHEMA replica IS 'goreplica: change log, slave registry and apply position';

-- One row: the installed version of this file, and this node's identity
-- (random, made at the first install), which names it in the positions and
-- two-phase commit GIDs of its slaves.
CREATE TABLE IF NOT EXISTS replica.version (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version   integer NOT NULL,
  node_id   uuid NOT NULL DEFAULT gen_random_uuid()
);

-- The change log. The ordering key is (lsn, txid): lsn is
-- pg_current_wal_insert_lsn() taken inside the trigger. It grows strictly
-- within a transaction (each log row writes WAL before the next is taken)
-- and between two changes of the same row by different transactions (the
-- second waits for the first to commit). A sequence would give the same
-- order but would change what lastval() returns to the application.
CREATE TABLE IF NOT EXISTS replica.replica_log (
  lsn    pg_lsn NOT NULL,
  txid   xid8   NOT NULL,
  origin text,               -- NULL: a change made on this node; else the node it came from
  tbl    text   NOT NULL,    -- quoted schema.table
  op     "char" NOT NULL,    -- I, U, D or T (truncate)
  sql    text   NOT NULL
);
CREATE INDEX IF NOT EXISTS replica_log_txid ON replica.replica_log (txid);
REVOKE ALL ON replica.replica_log FROM PUBLIC;
-- via: for a change that came from another node, the master it was applied
-- from (replica.via, set by the apply session). A node never sends a change
-- back to the node it received it from, so a star (sites <-> central) with
-- forwarding on does not return a site's changes through the central.
ALTER TABLE replica.replica_log ADD COLUMN IF NOT EXISTS via text;

CREATE TABLE IF NOT EXISTS replica.tables (
  relid       oid PRIMARY KEY,
  name        text NOT NULL,         -- quoted schema.table when captured
  key_columns text[] NOT NULL,
  columns     text NOT NULL,         -- column signature the log function was generated for
  captured_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON replica.tables FROM PUBLIC;

CREATE TABLE IF NOT EXISTS replica.slaves (
  name            text PRIMARY KEY,
  registered_at   timestamptz NOT NULL DEFAULT now(),
  acked_snapshot  pg_snapshot NOT NULL,   -- every event visible in it is applied on the slave
  acked_batch     bigint NOT NULL DEFAULT 0,
  snapshot_time   timestamptz NOT NULL DEFAULT now(), -- master clock when acked_snapshot was taken
  acked_at        timestamptz,
  forward         boolean NOT NULL DEFAULT true,
  waiting         boolean NOT NULL DEFAULT false, -- the daemon waits for a NOTIFY for this slave
  state           text NOT NULL DEFAULT 'stopped',
  last_error      text,
  last_error_at   timestamptz,
  seen_at         timestamptz             -- last heartbeat of the daemon's worker
);
REVOKE ALL ON replica.slaves FROM PUBLIC;

CREATE TABLE IF NOT EXISTS replica.position (
  master        text PRIMARY KEY,         -- master identity: system identifier/database oid
  master_name   text NOT NULL,
  snapshot      pg_snapshot NOT NULL,
  batch         bigint NOT NULL,
  snapshot_time timestamptz NOT NULL,
  applied_at    timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON replica.position FROM PUBLIC;
-- A backlog too large for one slave transaction is applied in sub-batches
-- (the daemon's batch_events, batch_bytes): while one is under way, the
-- slave also holds every transaction that is visible in hi and not in
-- snapshot and whose (last log position, txid) is at most (cut_lsn,
-- cut_txid). Transactions are taken in that order, which follows the order
-- in which they committed wherever it matters: a transaction that waited
-- for another's row, or read its key, logged after that one's commit.
ALTER TABLE replica.position ADD COLUMN IF NOT EXISTS hi pg_snapshot;
ALTER TABLE replica.position ADD COLUMN IF NOT EXISTS hi_time timestamptz;
ALTER TABLE replica.position ADD COLUMN IF NOT EXISTS cut_lsn pg_lsn;
ALTER TABLE replica.position ADD COLUMN IF NOT EXISTS cut_txid xid8;

-- The apply transactions on this node, by transaction id: replica.apply
-- records its own, and the log triggers honour replica.origin (a change
-- that came from another node) only in a transaction recorded here. Any
-- role can set a custom setting such as replica.origin; only goreplica's
-- apply session can write this table.
CREATE TABLE IF NOT EXISTS replica.applying (
  xid xid8 PRIMARY KEY
);
REVOKE ALL ON replica.applying FROM PUBLIC;

-- goreplica_log owns the log trigger functions: a NOLOGIN role that may only
-- insert into the log and read the waiting flags and the apply
-- transactions, so that nothing a log function runs has more privilege than
-- that, whoever installed goreplica. It is created when the installing role
-- may (a superuser, or a role with CREATEROLE); otherwise the log functions
-- stay owned by the installing role, and init says so.
DO $role$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'goreplica_log')
     AND (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
    BEGIN
      CREATE ROLE goreplica_log NOLOGIN NOINHERIT;
      COMMENT ON ROLE goreplica_log IS 'goreplica: owns the log trigger functions, may only write replica.replica_log';
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL; -- created meanwhile by an install into another database of this cluster
    END;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'goreplica_log')
     AND NOT pg_has_role(current_user, 'goreplica_log', 'MEMBER')
     AND (SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
    GRANT goreplica_log TO CURRENT_USER;
  END IF;
  IF pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = 'goreplica_log'), 'MEMBER') THEN
    GRANT USAGE ON SCHEMA replica TO goreplica_log;
    GRANT INSERT ON replica.replica_log TO goreplica_log;
    GRANT SELECT (waiting) ON replica.slaves TO goreplica_log;
    GRANT SELECT ON replica.applying TO goreplica_log;
  END IF;
END
$role$;

-- replica.plpgsql_ident quotes an identifier always, for PL/pgSQL field
-- access (NEW."by"): format('%I') quotes only what SQL reserves, and
-- PL/pgSQL reserves more (by, loop, if, strict, ...).
CREATE OR REPLACE FUNCTION replica.plpgsql_ident(name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp AS $$
  SELECT '"' || replace(name, '"', '""') || '"'
$$;

-- replica.format_expr returns a PL/pgSQL expression that joins pieces with
-- sep, each piece holding one format() placeholder filled by the expression
-- at the same index of args. format() renders a value through its type's
-- output function, never through a cast, an operator or anything on a
-- search_path that the table's users could define. A function takes at most
-- 100 arguments, so longer lists are split into several format() calls.
-- The expression names its function and operator with their schema: a log
-- function evaluates it with its caller's search_path.
CREATE OR REPLACE FUNCTION replica.format_expr(pieces text[], args text[], sep text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  per   constant int := 90;
  n     int := coalesce(array_length(pieces, 1), 0);
  parts text[] := '{}';
BEGIN
  FOR i IN 0 .. (n - 1) / per LOOP
    parts := parts || format('pg_catalog.format(%L, %s)',
                             array_to_string(pieces[i * per + 1 : least(n, (i + 1) * per)], sep),
                             array_to_string(args[i * per + 1 : least(n, (i + 1) * per)], ', '));
  END LOOP;
  RETURN array_to_string(parts, ' OPERATOR(pg_catalog.||) ' || quote_literal(sep) || ' OPERATOR(pg_catalog.||) ');
END
$$;

-- replica.type_sql names a type, modifier included, as format_type does but
-- with its schema whatever the search_path. format_type qualifies a type
-- outside pg_catalog when it is not visible (here, the search_path being
-- pinned: always) and never one of pg_catalog. The SQL grammar reads
-- spellings such as integer, character varying(10) or timestamp with time
-- zone as pg_catalog's types, but a plain name (text, uuid, bytea, text[])
-- means whatever type of that name comes first on the search_path of the
-- session that reads it, pg_temp's included.
--
-- type_sql, key_condition and column_signature are PL/pgSQL, not SQL
-- functions, for PL/pgSQL keeps each statement's plan for the session: a
-- SQL function's query is planned again whenever the query calling it is
-- started, and the drift check (replica.recapture_drifted, every 10 s and
-- after a captured table's DDL) calls them once per captured table. As SQL
-- functions the check cost 2.6-3.2 ms of the master's CPU per table, as
-- PL/pgSQL 0.13-0.27 ms (bench/drift).
CREATE OR REPLACE FUNCTION replica.type_sql(typ oid, typmod integer) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT coalesce((SELECT 'pg_catalog.' || f
                             FROM pg_type t
                            WHERE t.oid IN (typ, (SELECT e.typelem FROM pg_type e WHERE e.oid = typ))
                              AND t.typnamespace = 'pg_catalog'::regnamespace
                              AND (f = quote_ident(t.typname) OR starts_with(f, quote_ident(t.typname) || '(')
                                   OR starts_with(f, quote_ident(t.typname) || '['))
                            LIMIT 1), f)
            FROM format_type(typ, typmod) f);
END
$$;

-- replica.key_condition describes the primary key of rel: its columns, the
-- pieces of the WHERE condition that finds a row by key (one per column,
-- "id" OPERATOR(pg_catalog.=) %L::integer), and whether the key is
-- DEFERRABLE. The operator is the key index's own equality operator,
-- schema-qualified, so that a slave finds the row through its key index
-- whatever its search_path holds (a citext key compares as citext, not as
-- text); the value is typed as the column (a literal of a composite type
-- compares to nothing untyped), the type named with its schema
-- (replica.type_sql).
CREATE OR REPLACE FUNCTION replica.key_condition(rel regclass, OUT cols text[], OUT pieces text[], OUT key_deferrable boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  SELECT array_agg(a.attname::text ORDER BY k.ord),
         array_agg(replace(format('%I OPERATOR(%I.%s) ', a.attname, opn.nspname, o.oprname), '%', '%%')
                   || '%L::' || replace(replica.type_sql(a.atttypid, a.atttypmod), '%', '%%') ORDER BY k.ord),
         bool_or(coalesce(con.condeferrable, false))
    INTO cols, pieces, key_deferrable
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indclass::oid[]) WITH ORDINALITY AS k(attnum, cls, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    JOIN pg_opclass oc ON oc.oid = k.cls
    JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = oc.opcintype
                   AND ao.amoprighttype = oc.opcintype AND ao.amopstrategy = 3 AND ao.amopmethod = oc.opcmethod
    JOIN pg_operator o ON o.oid = ao.amopopr
    JOIN pg_namespace opn ON opn.oid = o.oprnamespace
    LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype = 'p'
   WHERE i.indrelid = rel AND i.indisprimary;
END
$$;

-- replica.log_function_sql returns the CREATE FUNCTION statement of the log
-- trigger function for one table. The function is generated per table so that
-- no catalog lookup or dynamic SQL runs per row: the column list and the key
-- are spelled out, and each value is rendered by its type's own output
-- function (format's %L), never through a cast. Settings that change text
-- output (DateStyle, IntervalStyle, extra_float_digits, lc_monetary) are
-- pinned on the function only when the table has a column whose output
-- depends on them; a slave reads the values with the same settings
-- (replica.apply).
--
-- Every statement names the very table the row is in (UPDATE ONLY, DELETE
-- FROM ONLY: a parent of an inheritance tree logs its own rows, each child
-- its own). An INSERT whose key is taken does nothing (ON CONFLICT on the
-- key: any other unique constraint, deferrable or not, is no arbiter), which
-- the daemon reports as a conflict.
--
-- The function is SECURITY DEFINER, to write the log that the table's users
-- cannot; it is owned by the goreplica_log role (replica.capture), and
-- replica.origin is honoured only in goreplica's apply transactions.
--
-- It runs with its caller's search_path, which a table's user chooses (a
-- SET search_path on the function would cost a save, a set and a restore of
-- the setting on every row, and the recomputation of the namespace path
-- after each). So its body resolves nothing by name through that path: a
-- schema early on it, or pg_temp (searched first for types unless the path
-- places it), could hold a function, operator, type or collation of the
-- same name. Every function is called as pg_catalog.f, every operator is
-- written OPERATOR(pg_catalog.op) (IS DISTINCT FROM and NULLIF, which look
-- = up by name, are spelled out with CASE), every type and collation is
-- named pg_catalog.x and every table replica.x. The values' text does not
-- depend on the search_path, except a reg* value's (below).
CREATE OR REPLACE FUNCTION replica.log_function_sql(rel regclass)
RETURNS text LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $gen$
DECLARE
  qrel    text;
  fname   text := format('replica.%I', 'log_' || rel::oid);
  col     record;
  f       text;
  key     record;
  cols    text := '';
  vals    text[] := '{}';
  args    text[] := '{}';
  oldkey  text[] := '{}';
  upd     text[] := '{}';  -- per column: its SET item when it changed, else NULL
  ident   boolean := false;
  -- Output settings a column's rendering depends on (see below).
  pin_ds  boolean := false;  -- DateStyle
  pin_is  boolean := false;  -- IntervalStyle
  pin_fd  boolean := false;  -- extra_float_digits
  pin_mo  boolean := false;  -- lc_monetary
  st      record;
  tests   text[] := '{}';
  pin     text := '';
  unpin   text := '';
  sets    text := '';
  body    text;
BEGIN
  SELECT format('%I.%I', n.nspname, c.relname) INTO STRICT qrel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;

  SELECT * INTO key FROM replica.key_condition(rel);
  IF key.cols IS NULL THEN
    RAISE EXCEPTION 'table % has no primary key', qrel
      USING ERRCODE = 'invalid_table_definition',
            HINT = 'goreplica repeats changes by primary key: add one, or exclude the table';
  END IF;
  IF key.key_deferrable THEN
    RAISE EXCEPTION 'table % has a DEFERRABLE primary key', qrel
      USING ERRCODE = 'invalid_table_definition',
            HINT = 'goreplica finds rows by key and cannot repeat the key shifts that only a deferred check allows: make the key NOT DEFERRABLE (other unique constraints may stay deferrable), or exclude the table';
  END IF;
  FOR i IN 1 .. array_length(key.cols, 1) LOOP
    oldkey := oldkey || ('OLD.' || replica.plpgsql_ident(key.cols[i]));
  END LOOP;

  FOR col IN
    SELECT a.attname, a.attidentity, a.atttypid
      FROM pg_attribute a
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
     ORDER BY a.attnum
  LOOP
    f := replica.plpgsql_ident(col.attname);
    cols := cols || CASE WHEN cols = '' THEN '' ELSE ', ' END || format('%I', col.attname);
    vals := vals || '%L'::text;
    args := args || ('NEW.' || f);
    -- The SET list of an UPDATE is one expression: the array of one CASE
    -- per column, NULL when the column did not change, joined by
    -- array_to_string (which skips NULLs). One expression costs PL/pgSQL
    -- less than a statement per column.
    IF col.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'oid'::regtype, 'bool'::regtype,
                        'uuid'::regtype, 'date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype,
                        'bytea'::regtype) THEN
      -- Built-in types whose equality is the identity of their text output;
      -- IS DISTINCT FROM spelled out (it would look = up by name).
      upd := upd || format(E'CASE WHEN (CASE WHEN NEW.%1$s IS NULL THEN OLD.%1$s IS NOT NULL WHEN OLD.%1$s IS NULL THEN true'
                           ' ELSE NEW.%1$s OPERATOR(pg_catalog.<>) OLD.%1$s END)'
                           ' THEN %2$L OPERATOR(pg_catalog.||) pg_catalog.format(''%%L'', NEW.%1$s) END',
                           f, format('%I = ', col.attname));
    ELSIF col.atttypid IN ('text'::regtype, 'varchar'::regtype) THEN
      upd := upd || format(E'CASE WHEN (CASE WHEN NEW.%1$s IS NULL THEN OLD.%1$s IS NOT NULL WHEN OLD.%1$s IS NULL THEN true'
                           ' ELSE NEW.%1$s COLLATE pg_catalog."C" OPERATOR(pg_catalog.<>) OLD.%1$s COLLATE pg_catalog."C" END)'
                           ' THEN %2$L OPERATOR(pg_catalog.||) pg_catalog.format(''%%L'', NEW.%1$s) END',
                           f, format('%I = ', col.attname));
    ELSE
      -- Compare text renderings: exact for every type (numeric scale, -0,
      -- json) and defined for types without an equality operator. Byte by
      -- byte: the rendering of a column with a nondeterministic collation
      -- (char(3) or text[] COLLATE a case-insensitive one) carries it.
      upd := upd || format(E'CASE WHEN pg_catalog.format(''%%L'', NEW.%1$s) COLLATE pg_catalog."C" OPERATOR(pg_catalog.<>) pg_catalog.format(''%%L'', OLD.%1$s)'
                           ' THEN %2$L OPERATOR(pg_catalog.||) pg_catalog.format(''%%L'', NEW.%1$s) END',
                           f, format('%I = ', col.attname));
    END IF;
    IF col.attidentity = 'a' THEN ident := true; END IF;
    -- The settings each column's text output depends on. Dates and times
    -- print in the DateStyle's style (timestamptz with an explicit UTC
    -- offset, unambiguous only in ISO), intervals in the IntervalStyle,
    -- floats exactly only with extra_float_digits above 0, money in
    -- lc_monetary's format. The other types listed depend on none; a type
    -- not listed (arrays, composites, domains, geometry, ...) may depend on
    -- all four.
    IF col.atttypid IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) THEN
      pin_ds := true;
    ELSIF col.atttypid = 'interval'::regtype THEN
      pin_is := true;
    ELSIF col.atttypid IN ('float4'::regtype, 'float8'::regtype) THEN
      pin_fd := true;
    ELSIF col.atttypid = 'money'::regtype THEN
      pin_mo := true;
    ELSIF col.atttypid NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype,
                               'text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'bool'::regtype,
                               'uuid'::regtype, 'bytea'::regtype, 'json'::regtype, 'jsonb'::regtype,
                               'oid'::regtype, 'name'::regtype, 'char'::regtype,
                               'inet'::regtype, 'cidr'::regtype, 'int4[]'::regtype, 'int8[]'::regtype,
                               'text[]'::regtype) THEN
      pin_ds := true; pin_is := true; pin_fd := true; pin_mo := true;
    END IF;
  END LOOP;
  -- The values are rendered under the settings a slave reads them with
  -- (replica.apply's) where the caller's would print them otherwise. Not
  -- by SET clauses of the function, which PostgreSQL saves and restores on
  -- every call: each setting is checked, and only one that would print
  -- otherwise (none at their defaults) is set, transaction-locally, for the
  -- rendering and given back right after it. An error between the two ends
  -- the caller's transaction or subtransaction, which takes the setting
  -- back as well.
  FOR st IN
    SELECT * FROM (VALUES
      (pin_ds, 'DateStyle', 'NOT pg_catalog.starts_with(%s, ''ISO,'')', 'ISO, YMD'),
      (pin_is, 'IntervalStyle', '%s OPERATOR(pg_catalog.<>) ''postgres''', 'postgres'),
      (pin_fd, 'extra_float_digits', 'CAST(%s AS pg_catalog.int4) OPERATOR(pg_catalog.<=) 0', '3'),
      (pin_mo, 'lc_monetary', '%s OPERATOR(pg_catalog.<>) ''C''', 'C')) AS v(needed, name, test, value)
     WHERE needed
  LOOP
    f := format('pg_catalog.current_setting(%L)', st.name);
    tests := tests || format(st.test, f);
    pin := pin || format(E'\n    IF %s THEN\n      was := was OPERATOR(pg_catalog.||) ARRAY[%L, %s];'
                         || E'\n      v := pg_catalog.set_config(%L, %L, true);\n    END IF;',
                         format(st.test, f), st.name, f, st.name, st.value);
  END LOOP;
  IF pin <> '' THEN
    -- One test on the usual path (every setting already prints the
    -- column as a slave reads it), the settings one by one only when
    -- it fails.
    pin := E'\n  IF ' || array_to_string(tests, E'\n     OR ') || ' THEN' || pin || E'\n  END IF;';
    unpin := E'\n  IF was IS NOT NULL THEN'
          || E'\n    FOR i IN 1 .. pg_catalog.array_length(was, 1) BY 2 LOOP'
          || E'\n      v := pg_catalog.set_config(was[i], was[i OPERATOR(pg_catalog.+) 1], true);'
          || E'\n    END LOOP;'
          || E'\n  END IF;';
  END IF;
  -- A reg* value (regclass, regtype, regproc, ...) prints its object's name
  -- with the schema only when that is not on the search_path; a slave reads
  -- it under replica.apply's. A table with one, even inside an array, a
  -- domain, a composite or a range, gets the search_path pinned.
  IF EXISTS (
    WITH RECURSIVE t(typ) AS (
      SELECT a.atttypid FROM pg_attribute a
       WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      UNION
      SELECT u.typ
        FROM t JOIN pg_type y ON y.oid = t.typ
        CROSS JOIN LATERAL (SELECT y.typelem
                            UNION ALL SELECT y.typbasetype
                            UNION ALL SELECT a.atttypid FROM pg_attribute a
                                       WHERE a.attrelid = y.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                            UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = y.oid
                            -- a multirange's range (PostgreSQL 14 and newer)
                            UNION ALL SELECT r.rngtypid FROM pg_range r
                                       WHERE (to_jsonb(r) ->> 'rngmultitypid')::oid = y.oid) u(typ)
       WHERE u.typ <> 0)
    SELECT 1 FROM t JOIN pg_type y ON y.oid = t.typ
     WHERE y.typoutput IN ('regclassout'::regproc, 'regtypeout'::regproc, 'regprocout'::regproc,
                           'regprocedureout'::regproc, 'regoperout'::regproc, 'regoperatorout'::regproc,
                           'regconfigout'::regproc, 'regdictionaryout'::regproc, 'regcollationout'::regproc)) THEN
    sets := E'\nSET search_path = pg_catalog, pg_temp' || sets;
  END IF;

  -- The function's body costs PL/pgSQL per expression and per statement,
  -- and a single-row transaction pays the set-up of each expression it
  -- evaluates once more (plpgsql prepares them once per transaction): the
  -- usual path (a local change, settings at their defaults) evaluates as
  -- few as it can. A condition that reads a table (EXISTS) is run by the
  -- executor, so it is only tested inside a cheap one; PERFORM runs the
  -- executor too, an assignment does not.
  body := format($b$
-- generated by goreplica for table oid %1$s: do not edit, `goreplica init` regenerates it
-- It runs with its caller's search_path: every function, operator, type and
-- collation is named with its schema (see replica.log_function_sql).
DECLARE
  s pg_catalog.text;
  v pg_catalog.text;
  o pg_catalog.text := pg_catalog.current_setting('replica.origin', true);
  was pg_catalog.text[];  -- settings set for the rendering: name, value before, ...
BEGIN
  -- With o NULL (no origin, the usual case) the second test is NULL.
  IF TG_RELID OPERATOR(pg_catalog.<>) %1$s::pg_catalog.oid OR o OPERATOR(pg_catalog.<>) '' THEN
    IF TG_RELID OPERATOR(pg_catalog.<>) %1$s::pg_catalog.oid THEN
      RAISE EXCEPTION 'goreplica log function for %% fired on another table', %2$L;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM replica.applying WHERE xid OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id()) THEN
      RAISE EXCEPTION 'replica.origin is reserved to goreplica''s apply transactions'
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'only goreplica marks changes as coming from another node: RESET replica.origin';
    END IF;
  END IF;%10$s
  IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    s := %3$L OPERATOR(pg_catalog.||) %4$s OPERATOR(pg_catalog.||) %5$L;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
    s := %6$s;
    IF s OPERATOR(pg_catalog.=) '' THEN%12$s
      RETURN NULL;  -- an UPDATE that changed nothing: nothing to repeat
    END IF;
    s := %7$L OPERATOR(pg_catalog.||) s OPERATOR(pg_catalog.||) ' WHERE ' OPERATOR(pg_catalog.||) %8$s;
  ELSE
    s := %9$L OPERATOR(pg_catalog.||) %8$s;
  END IF;%11$s
  INSERT INTO replica.replica_log (lsn, txid, origin, via, tbl, op, sql)
  VALUES (pg_catalog.pg_current_wal_insert_lsn(), pg_catalog.pg_current_xact_id(),
          CASE WHEN o OPERATOR(pg_catalog.<>) '' THEN o END,
          CASE WHEN o OPERATOR(pg_catalog.<>) ''
                AND pg_catalog.current_setting('replica.via', true) OPERATOR(pg_catalog.<>) ''
               THEN pg_catalog.current_setting('replica.via', true) END,
          %2$L, pg_catalog.substr(TG_OP, 1, 1), s);
  -- NOTIFY if a daemon waits (replica.slaves.waiting), looked up at most
  -- once per 10 ms tick per session: replica.notify_tick holds the tick
  -- (centiseconds since 1970) of this session's last look-up, and a daemon
  -- that sets its flag rescans once every session's tick has passed (see
  -- notifyTick in replicator/worker.go). A session that forges the setting
  -- silences only its own wake-ups, which the daemon's poll bounds. An
  -- apply transaction (o set) never notifies: PREPARE TRANSACTION refuses a
  -- transaction that did, and the applying daemon notifies this node's
  -- listeners itself once it has committed.
  IF (o IS NULL OR o OPERATOR(pg_catalog.=) '')
     AND coalesce(pg_catalog.current_setting('replica.notify_tick', true), '') OPERATOR(pg_catalog.<>)
         CAST(CAST(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 100 AS pg_catalog.int8) AS pg_catalog.text) THEN
    v := pg_catalog.set_config('replica.notify_tick',
           CAST(CAST(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 100 AS pg_catalog.int8) AS pg_catalog.text), false);
    IF EXISTS (SELECT 1 FROM replica.slaves WHERE waiting) THEN
      v := pg_catalog.pg_notify('goreplica', '');
    END IF;
  END IF;
  RETURN NULL;
END
$b$,
    rel::oid, qrel,
    'INSERT INTO ' || qrel || ' (' || cols || ')'
      || CASE WHEN ident THEN ' OVERRIDING SYSTEM VALUE' ELSE '' END || ' VALUES (',
    replica.format_expr(vals, args, ', '),
    ') ON CONFLICT (' || (SELECT string_agg(format('%I', c), ', ') FROM unnest(key.cols) c) || ') DO NOTHING',
    E'pg_catalog.array_to_string(ARRAY[\n      ' || array_to_string(upd, E',\n      ') || E'], \', \')',
    'UPDATE ONLY ' || qrel || ' SET ',
    replica.format_expr(key.pieces, oldkey, ' AND '),
    'DELETE FROM ONLY ' || qrel || ' WHERE ',
    pin, unpin, replace(unpin, E'\n', E'\n    '));
  RETURN format(E'CREATE OR REPLACE FUNCTION %s() RETURNS trigger\nLANGUAGE plpgsql SECURITY DEFINER%s\nAS %L',
                fname, sets, body);
END
$gen$;

-- replica.column_signature describes the columns and key a log function
-- depends on;
-- a table whose signature differs from the one recorded in replica.tables
-- has drifted and its log function must be regenerated.
CREATE OR REPLACE FUNCTION replica.column_signature(rel regclass)
RETURNS text LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT coalesce(string_agg(format('%I %s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                            CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END),
                                     ', ' ORDER BY a.attnum), '')
                 || ' / ' || (SELECT format('%I.%I', n.nspname, c.relname)
                                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel)
                 || ' / key ' || coalesce((SELECT array_to_string(k.pieces, ' AND ') || CASE WHEN k.key_deferrable THEN ' deferrable' ELSE '' END
                                             FROM replica.key_condition(rel) k), 'none')
            FROM pg_attribute a
           WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped);
END
$$;

-- replica.truncate_log logs a TRUNCATE of a captured table. A TRUNCATE of
-- several tables (or one with CASCADE) fires it once per table, one after
-- the other; the daemon applies such a run as one TRUNCATE, as the master
-- did (the slave refuses to truncate a table referenced by a foreign key
-- alone).
CREATE OR REPLACE FUNCTION replica.truncate_log() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  qrel text := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
  o    text := current_setting('replica.origin', true);
BEGIN
  IF o <> '' AND NOT EXISTS (SELECT 1 FROM replica.applying WHERE xid = pg_current_xact_id()) THEN
    RAISE EXCEPTION 'replica.origin is reserved to goreplica''s apply transactions'
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'only goreplica marks changes as coming from another node: RESET replica.origin';
  END IF;
  INSERT INTO replica.replica_log (lsn, txid, origin, via, tbl, op, sql)
  VALUES (pg_current_wal_insert_lsn(), pg_current_xact_id(), nullif(o, ''),
          CASE WHEN o <> '' THEN nullif(current_setting('replica.via', true), '') END,
          qrel, 'T', 'TRUNCATE ONLY ' || qrel);
  -- An apply transaction (o set) never notifies: PREPARE TRANSACTION refuses
  -- a transaction that did, and the applying daemon notifies this node's
  -- listeners itself once it has committed.
  -- The look-up of waiting daemons as in the log functions (replica.notify_tick).
  IF coalesce(o, '') = ''
     AND coalesce(current_setting('replica.notify_tick', true), '') <> (date_part('epoch', clock_timestamp()) * 100)::int8::text THEN
    PERFORM set_config('replica.notify_tick', (date_part('epoch', clock_timestamp()) * 100)::int8::text, false);
    IF EXISTS (SELECT 1 FROM replica.slaves WHERE waiting) THEN
      PERFORM pg_notify('goreplica', '');
    END IF;
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION replica.truncate_log() FROM PUBLIC;

-- replica.capture installs (or regenerates) capture for one table: its log
-- function, the row and truncate triggers, and its row in replica.tables.
-- The log functions are given to goreplica_log when that role exists.
CREATE OR REPLACE FUNCTION replica.capture(rel regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  fname text := format('replica.%I', 'log_' || rel::oid);
  qrel  text;
  keys  text[];
BEGIN
  SELECT format('%I.%I', n.nspname, c.relname) INTO STRICT qrel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
  SELECT k.cols INTO keys FROM replica.key_condition(rel) k;
  -- Captured again on purpose (init, add): no longer a removed table.
  IF to_regclass('replica.removed') IS NOT NULL THEN
    DELETE FROM replica.removed WHERE relid = rel;
  END IF;
  -- Recorded first: the ALTER TABLE below fires replica.on_ddl, which must
  -- then find nothing drifted.
  INSERT INTO replica.tables (relid, name, key_columns, columns)
  VALUES (rel, qrel, coalesce(keys, '{}'), replica.column_signature(rel))
  ON CONFLICT (relid) DO UPDATE
    SET name = EXCLUDED.name, key_columns = EXCLUDED.key_columns, columns = EXCLUDED.columns, captured_at = now();
  EXECUTE replica.log_function_sql(rel);
  EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fname);
  IF pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = 'goreplica_log'), 'MEMBER') THEN
    -- A new owner needs CREATE on the schema; goreplica_log keeps none.
    GRANT CREATE ON SCHEMA replica TO goreplica_log;
    EXECUTE format('ALTER FUNCTION %s() OWNER TO goreplica_log', fname);
    ALTER FUNCTION replica.truncate_log() OWNER TO goreplica_log;
    REVOKE CREATE ON SCHEMA replica FROM goreplica_log;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'replica_log') THEN
    EXECUTE format('CREATE TRIGGER replica_log AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()', qrel, fname);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'replica_truncate') THEN
    EXECUTE format('CREATE TRIGGER replica_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION replica.truncate_log()', qrel);
  END IF;
  -- Fire also in sessions running with session_replication_role = replica
  -- (goreplica's own apply sessions, in multi-master and cascading setups).
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname IN ('replica_log', 'replica_truncate') AND tgenabled <> 'A') THEN
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER replica_log, ENABLE ALWAYS TRIGGER replica_truncate', qrel);
  END IF;
END
$$;
REVOKE ALL ON FUNCTION replica.capture(regclass) FROM PUBLIC;

-- replica.uncapture removes capture from one table.
CREATE OR REPLACE FUNCTION replica.uncapture(rel oid) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_class WHERE oid = rel) THEN
    EXECUTE format('DROP TRIGGER IF EXISTS replica_log ON %s', rel::regclass);
    EXECUTE format('DROP TRIGGER IF EXISTS replica_truncate ON %s', rel::regclass);
  END IF;
  EXECUTE format('DROP FUNCTION IF EXISTS replica.%I()', 'log_' || rel);
  DELETE FROM replica.tables WHERE relid = rel;
END
$$;
REVOKE ALL ON FUNCTION replica.uncapture(oid) FROM PUBLIC;

-- replica.recapture_drifted regenerates the log functions of captured tables
-- whose columns or key changed since they were generated; returns their
-- names. A table that has lost its primary key (a migration that drops the
-- key to add another) keeps its function, which still names the old key's
-- columns, with a warning; the new key is picked up when it is added.
CREATE OR REPLACE FUNCTION replica.recapture_drifted() RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t record;
BEGIN
  FOR t IN SELECT relid, name FROM replica.tables
            WHERE EXISTS (SELECT 1 FROM pg_class WHERE oid = relid)
              AND columns IS DISTINCT FROM replica.column_signature(relid)
  LOOP
    BEGIN
      PERFORM replica.capture(t.relid::regclass);
      RETURN NEXT t.name;
    EXCEPTION WHEN invalid_table_definition THEN
      RAISE WARNING 'goreplica: % is replicated but now %: its changes are logged by its former key until it has a usable one again', t.name, SQLERRM;
    END;
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION replica.recapture_drifted() FROM PUBLIC;

-- replica.on_ddl runs at the end of every ALTER TABLE and ALTER SCHEMA (when
-- goreplica was installed by a superuser, who alone may create event
-- triggers) so that a log function follows added, dropped, renamed or
-- retyped columns, a new key and a renamed schema in the same transaction
-- as the DDL: no change is ever logged with a stale column list. It is
-- SECURITY DEFINER so that every role's DDL keeps working, on any table:
-- the roles that run DDL have no right on schema replica. It runs no code
-- that a table's users control: it reads the catalog and regenerates the
-- log functions of captured tables that drifted.
CREATE OR REPLACE FUNCTION replica.on_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c
              WHERE c.command_tag = 'ALTER SCHEMA'
                 OR c.objid IN (SELECT relid FROM replica.tables)) THEN
    PERFORM replica.recapture_drifted();
  END IF;
END
$$;
REVOKE ALL ON FUNCTION replica.on_ddl() FROM PUBLIC;

-- replica.apply runs one chunk of logged statements on a slave. origins[i] is
-- the node statement i came from: it is set as replica.origin so that log
-- triggers on this node (multi-master, cascading) record the true origin.
-- Statement i must touch exactly nrows[i] rows: 1 for a logged row
-- statement, n for n consecutive logged INSERTs into one table that the
-- daemon joined into one multi-row INSERT (TRUNCATE, and a statement whose
-- nrows is negative, such as a conflict's resync, are not counted). The
-- first that does not stops the chunk and its index and row count are
-- returned (a conflict). An error is raised again with the statement's
-- index in its HINT.
--
-- The values are read with the settings the log functions wrote them with
-- (a slave whose lc_monetary, DateStyle, IntervalStyle, xmloption or
-- array_nulls differ from the master's reads them alike), and the
-- transaction is recorded in replica.applying when this node has log
-- triggers, so that they honour replica.origin.
DROP FUNCTION IF EXISTS replica.apply(text[], "char"[], text[]);
CREATE OR REPLACE FUNCTION replica.apply(origins text[], ops "char"[], stmts text[], nrows integer[],
                                         OUT failed integer, OUT affected bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET lc_monetary = 'C'
SET extra_float_digits = 3 SET xmloption = content SET array_nulls = on
SET standard_conforming_strings = on AS $$
DECLARE
  cur  integer := 0;
  prev text;
  n    bigint;
  msg  text;
  det  text;
BEGIN
  failed := 0;
  affected := 0;
  IF EXISTS (SELECT 1 FROM replica.tables)
     AND NOT EXISTS (SELECT 1 FROM replica.applying WHERE xid = pg_current_xact_id()) THEN
    DELETE FROM replica.applying WHERE xid < pg_snapshot_xmin(pg_current_snapshot());
    INSERT INTO replica.applying (xid) VALUES (pg_current_xact_id());
  END IF;
  BEGIN
    FOR i IN 1 .. coalesce(array_length(stmts, 1), 0) LOOP
      cur := i;
      IF origins[i] IS DISTINCT FROM prev THEN
        PERFORM set_config('replica.origin', origins[i], true);
        prev := origins[i];
      END IF;
      EXECUTE stmts[i];
      IF ops[i] <> 'T' AND nrows[i] >= 0 THEN
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> nrows[i] THEN
          failed := i;
          affected := n;
          RETURN;
        END IF;
      END IF;
    END LOOP;
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RAISE EXCEPTION '%', msg USING ERRCODE = SQLSTATE, DETAIL = coalesce(det, ''),
                                   HINT = 'replica.apply statement ' || cur;
  END;
END
$$;
REVOKE ALL ON FUNCTION replica.apply(text[], "char"[], text[], integer[]) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Version 3, pooling: the lease that keeps a second daemon from applying to a
-- slave. A session advisory lock would outlive the daemon on a pooled server
-- connection (pgbouncer pool_mode = transaction); a lease row is claimed,
-- renewed and released by single statements, which any pool carries.
CREATE TABLE IF NOT EXISTS replica.lease (
  master  text PRIMARY KEY,        -- master identity, as in replica.position
  owner   text NOT NULL,           -- host, process id and token of the daemon
  until   timestamptz NOT NULL     -- the lease ends then unless renewed
);
REVOKE ALL ON replica.lease FROM PUBLIC;
-- ---------------------------------------------------------------------------

-- ---------------------------------------------------------------------------
-- Version 4, several sites that write.
--
-- replica.conflicts, on a slave: every conflict met while applying, with the
-- policy applied (stop, skip, resync), and every source transaction skipped
-- by `goreplica skip` (policy skip_transaction, operation transaction),
-- which the daemon leaves out of the batch it belongs to. Rows of skip and
-- resync are written in the batch's own transaction (exactly once); a stop
-- is recorded once per (master, txid, statement), outside the rolled-back
-- batch.
CREATE TABLE IF NOT EXISTS replica.conflicts (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  master      text NOT NULL,        -- master identity, as in replica.position
  master_name text NOT NULL,
  txid        xid8 NOT NULL,        -- the source transaction on the master
  tbl         text NOT NULL,        -- quoted schema.table ('' for a whole transaction)
  key         text NOT NULL DEFAULT '',
  operation   text NOT NULL,        -- insert, update, delete, transaction
  kind        text NOT NULL,        -- insert_exists, update_missing, delete_missing, skipped
  policy      text NOT NULL,        -- stop, skip, resync, skip_transaction
  statement   text NOT NULL DEFAULT '',
  by_whom     text                  -- who asked (goreplica skip): role@host
);
CREATE INDEX IF NOT EXISTS conflicts_master_txid ON replica.conflicts (master, txid);
REVOKE ALL ON replica.conflicts FROM PUBLIC;

-- replica.row_insert returns the INSERT statement that recreates the current
-- row of rel that cond (a logged key condition) finds, rendered as the log
-- functions render values, or NULL when there is no such row: a conflict's
-- resync reads it on the master and applies it on the slave.
CREATE OR REPLACE FUNCTION replica.row_insert(rel regclass, cond text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET extra_float_digits = 3 SET lc_monetary = 'C' AS $$
DECLARE
  qrel  text;
  cols  text := '';
  vals  text[] := '{}';
  args  text[] := '{}';
  ident boolean := false;
  col   record;
  v     text;
BEGIN
  SELECT format('%I.%I', n.nspname, c.relname) INTO STRICT qrel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
  FOR col IN
    SELECT a.attname, a.attidentity FROM pg_attribute a
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
     ORDER BY a.attnum
  LOOP
    cols := cols || CASE WHEN cols = '' THEN '' ELSE ', ' END || format('%I', col.attname);
    vals := vals || '%L'::text;
    args := args || format('r.%I', col.attname);
    IF col.attidentity = 'a' THEN ident := true; END IF;
  END LOOP;
  EXECUTE format('SELECT %s FROM ONLY %s r WHERE %s', replica.format_expr(vals, args, ', '), qrel, cond) INTO v;
  IF v IS NULL THEN
    RETURN NULL;
  END IF;
  RETURN 'INSERT INTO ' || qrel || ' (' || cols || ')'
         || CASE WHEN ident THEN ' OVERRIDING SYSTEM VALUE' ELSE '' END || ' VALUES (' || v || ')';
END
$$;
REVOKE ALL ON FUNCTION replica.row_insert(regclass, text) FROM PUBLIC;
-- ---------------------------------------------------------------------------

-- ---------------------------------------------------------------------------
-- Version 4, initial copy. Slave side: the state of each table copied from
-- a master. A table with no row here is ok (it was captured before copies
-- existed, or its copy was skipped). While a table is not ok the daemon
-- applies none of its logged changes; the copy (rows as of the master's
-- snapshot copy_snapshot) and the catch-up (its changes not visible in
-- copy_snapshot, up to the slave's position) bring it to ok, each in the
-- slave transaction that writes its new state.
CREATE TABLE IF NOT EXISTS replica.table_state (
  master        text NOT NULL,           -- master identity, as in replica.position
  tbl           text NOT NULL,           -- quoted schema.table, as the log names it
  state         text NOT NULL CHECK (state IN ('copying', 'catching-up', 'ok', 'error')),
  mode          text NOT NULL DEFAULT 'truncate', -- truncate, merge or skip
  copy_snapshot pg_snapshot,             -- the master's snapshot the rows were copied as of
  rows_copied   bigint NOT NULL DEFAULT 0,
  rows_total    bigint NOT NULL DEFAULT 0, -- estimate, from the master's statistics
  rate          float8 NOT NULL DEFAULT 0, -- rows per second of the copy
  error         text,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (master, tbl)
);
REVOKE ALL ON replica.table_state FROM PUBLIC;
-- Master side: the log rows a table copying to a slave still needs, which
-- purge keeps: every event whose transaction is not visible in snapshot.
-- Removed once the table has caught up on that slave.
CREATE TABLE IF NOT EXISTS replica.holds (
  slave    text NOT NULL,
  tbl      text NOT NULL,
  snapshot pg_snapshot NOT NULL,
  PRIMARY KEY (slave, tbl)
);
REVOKE ALL ON replica.holds FROM PUBLIC;
-- Master side: the tables `goreplica remove` took out of replication. The
-- daemon does not capture them again when replicate.tables matches them
-- (new tables); `goreplica add` or `init` does, and replica.capture then
-- forgets the mark.
CREATE TABLE IF NOT EXISTS replica.removed (
  relid      oid PRIMARY KEY,
  name       text NOT NULL,
  removed_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON replica.removed FROM PUBLIC;
-- ---------------------------------------------------------------------------

-- ---------------------------------------------------------------------------
-- Version 5: log functions without SET search_path (every name in them is
-- schema-qualified, see replica.log_function_sql), and key literals typed
-- with the type's schema. Version 6: log functions that evaluate fewer
-- expressions and statements per change (an UPDATE's SET list is one
-- expression, the checks of the usual path one test each). The log
-- functions of an earlier version are generated again here, as
-- replica.recapture_drifted does for a table whose columns changed.
DO $v5$
DECLARE
  t record;
BEGIN
  IF (SELECT version FROM replica.version) < 6 THEN
    FOR t IN SELECT relid, name FROM replica.tables
              WHERE EXISTS (SELECT 1 FROM pg_class WHERE oid = relid)
    LOOP
      BEGIN
        PERFORM replica.capture(t.relid::regclass);
      EXCEPTION WHEN invalid_table_definition THEN
        RAISE WARNING 'goreplica: % is replicated but now %: its changes are logged by its former key until it has a usable one again', t.name, SQLERRM;
      END;
    END LOOP;
  END IF;
END
$v5$;
-- ---------------------------------------------------------------------------

INSERT INTO replica.version (version) VALUES (6)
ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version;
