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

-- replica.log_function_sql returns the CREATE FUNCTION statement of the log
-- trigger function for one table. The function is generated per table so that
-- no catalog lookup or dynamic SQL runs per row: the column list and the key
-- are spelled out, each value is rendered by its type's own text output and
-- quoted with quote_nullable. Settings that change text output (DateStyle,
-- IntervalStyle, extra_float_digits, lc_monetary) are pinned on the function
-- only when the table has a column whose output depends on them.
CREATE OR REPLACE FUNCTION replica.log_function_sql(rel regclass)
RETURNS text LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $gen$
DECLARE
  qrel    text;
  fname   text := format('replica.%I', 'log_' || rel::oid);
  col     record;
  ins_c   text := '';
  ins_v   text := '';
  upd     text := '';
  key_w   text := '';
  nkey    int  := 0;
  ident   boolean := false;
  pinned  boolean := false;
  sets    text := '';
  body    text;
BEGIN
  SELECT format('%I.%I', n.nspname, c.relname) INTO STRICT qrel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;

  FOR col IN
    SELECT a.attname, a.attidentity, a.atttypid
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = rel AND i.indisprimary
     ORDER BY k.ord
  LOOP
    key_w := key_w || CASE WHEN nkey > 0 THEN ' || '' AND '' || ' ELSE '' END
          || quote_literal(format('%I = ', col.attname))
          || format(' || quote_nullable(OLD.%I)', col.attname);
    nkey := nkey + 1;
  END LOOP;
  IF nkey = 0 THEN
    RAISE EXCEPTION 'table % has no primary key', qrel
      USING ERRCODE = 'invalid_table_definition',
            HINT = 'goreplica repeats changes by primary key: add one, or exclude the table';
  END IF;

  FOR col IN
    SELECT a.attname, a.attidentity, a.atttypid, t.typtype, t.typcategory
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
     ORDER BY a.attnum
  LOOP
    ins_c := ins_c || CASE WHEN ins_c = '' THEN '' ELSE ', ' END || format('%I', col.attname);
    ins_v := ins_v || CASE WHEN ins_v = '' THEN '' ELSE ' || '', '' || ' END
          || format('quote_nullable(NEW.%I)', col.attname);
    -- Compare text renderings: exact for every type (numeric scale, -0,
    -- json) and defined for types without an equality operator.
    upd := upd || format(E'\n    IF NEW.%1$I::text IS DISTINCT FROM OLD.%1$I::text THEN s := s || %2$L || quote_nullable(NEW.%1$I); END IF;',
                         col.attname, format(', %I = ', col.attname));
    IF col.attidentity = 'a' THEN ident := true; END IF;
    -- Types whose text output does not depend on any setting.
    IF col.atttypid NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype,
                            'text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'bool'::regtype,
                            'uuid'::regtype, 'bytea'::regtype, 'json'::regtype, 'jsonb'::regtype,
                            'timestamptz'::regtype, 'oid'::regtype, 'name'::regtype, 'char'::regtype,
                            'inet'::regtype, 'cidr'::regtype, 'int4[]'::regtype, 'int8[]'::regtype,
                            'text[]'::regtype) THEN
      pinned := true;
    END IF;
  END LOOP;
  IF pinned THEN
    sets := E'\nSET DateStyle = ''ISO, YMD'' SET IntervalStyle = ''postgres'''
         || E' SET extra_float_digits = 3 SET lc_monetary = ''C''';
  END IF;
  -- timestamptz is rendered with an explicit UTC offset, unambiguous in any
  -- DateStyle only when the style is ISO; pin DateStyle whenever one is present.
  IF NOT pinned AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = rel AND attnum > 0
                             AND NOT attisdropped AND atttypid = 'timestamptz'::regtype) THEN
    sets := E'\nSET DateStyle = ''ISO, YMD''';
  END IF;

  body := format($b$
-- generated by goreplica for table oid %1$s: do not edit, `goreplica init` regenerates it
DECLARE
  s text := '';
BEGIN
  IF TG_RELID <> %1$s THEN
    RAISE EXCEPTION 'goreplica log function for %% fired on another table', %2$L;
  END IF;
  IF TG_OP = 'INSERT' THEN
    s := %3$L || %4$s || ') ON CONFLICT DO NOTHING';
  ELSIF TG_OP = 'UPDATE' THEN%5$s
    IF s = '' THEN RETURN NULL; END IF;  -- nothing changed: nothing to repeat
    s := %6$L || substr(s, 3) || ' WHERE ' || %7$s;
  ELSE
    s := %8$L || %7$s;
  END IF;
  INSERT INTO replica.replica_log (lsn, txid, origin, tbl, op, sql)
  VALUES (pg_current_wal_insert_lsn(), pg_current_xact_id(),
          nullif(current_setting('replica.origin', true), ''), %2$L, substr(TG_OP, 1, 1), s);
  IF current_setting('replica.notified', true) IS DISTINCT FROM 'y' THEN
    PERFORM set_config('replica.notified', 'y', true);
    IF EXISTS (SELECT 1 FROM replica.slaves WHERE waiting) THEN
      PERFORM pg_notify('goreplica', '');
    END IF;
  END IF;
  RETURN NULL;
END
$b$,
    rel::oid, qrel,
    'INSERT INTO ' || qrel || ' (' || ins_c || ')'
      || CASE WHEN ident THEN ' OVERRIDING SYSTEM VALUE' ELSE '' END || ' VALUES (',
    ins_v, upd, 'UPDATE ' || qrel || ' SET ', key_w, 'DELETE FROM ' || qrel || ' WHERE ');
  RETURN format(E'CREATE OR REPLACE FUNCTION %s() RETURNS trigger\nLANGUAGE plpgsql SECURITY DEFINER\nSET search_path = pg_catalog, pg_temp%s\nAS %L',
                fname, sets, body);
END
$gen$;

-- replica.column_signature describes the columns a log function depends on;
-- a table whose signature differs from the one recorded in replica.tables
-- has drifted and its log function must be regenerated.
CREATE OR REPLACE FUNCTION replica.column_signature(rel regclass)
RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(string_agg(format('%I %s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                    CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END),
                             ', ' ORDER BY a.attnum), '')
         || ' / ' || (SELECT format('%I.%I', n.nspname, c.relname)
                        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel)
    FROM pg_attribute a
   WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- replica.truncate_log logs a TRUNCATE of a captured table.
CREATE OR REPLACE FUNCTION replica.truncate_log() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  qrel text := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
BEGIN
  INSERT INTO replica.replica_log (lsn, txid, origin, tbl, op, sql)
  VALUES (pg_current_wal_insert_lsn(), pg_current_xact_id(),
          nullif(current_setting('replica.origin', true), ''), qrel, 'T', 'TRUNCATE ONLY ' || qrel);
  IF current_setting('replica.notified', true) IS DISTINCT FROM 'y' THEN
    PERFORM set_config('replica.notified', 'y', true);
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
  SELECT array_agg(a.attname::text ORDER BY k.ord) INTO keys
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
   WHERE i.indrelid = rel AND i.indisprimary;
  -- Recorded first: the ALTER TABLE below fires replica.on_ddl, which must
  -- then find nothing drifted.
  INSERT INTO replica.tables (relid, name, key_columns, columns)
  VALUES (rel, qrel, coalesce(keys, '{}'), replica.column_signature(rel))
  ON CONFLICT (relid) DO UPDATE
    SET name = EXCLUDED.name, key_columns = EXCLUDED.key_columns, columns = EXCLUDED.columns, captured_at = now();
  EXECUTE replica.log_function_sql(rel);
  EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fname);
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'replica_log') THEN
    EXECUTE format('CREATE TRIGGER replica_log AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()', qrel, fname);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'replica_truncate') THEN
    EXECUTE format('CREATE TRIGGER replica_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION replica.truncate_log()', qrel);
  END IF;
  -- Fire also in sessions running with session_replication_role = replica.
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
-- whose columns changed since they were generated; returns their names.
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
    PERFORM replica.capture(t.relid::regclass);
    RETURN NEXT t.name;
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION replica.recapture_drifted() FROM PUBLIC;

-- replica.on_ddl runs at the end of every ALTER TABLE (when goreplica was
-- installed by a superuser, who alone may create event triggers) so that a
-- log function follows added, dropped, renamed or retyped columns in the same
-- transaction as the DDL: no change is ever logged with a stale column list.
CREATE OR REPLACE FUNCTION replica.on_ddl() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c
              JOIN replica.tables t ON t.relid = c.objid) THEN
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
-- daemon joined into one multi-row INSERT (TRUNCATE is not counted). The
-- first that does not stops the chunk and its index and row count are
-- returned (a conflict). An error is raised again with the statement's
-- index in its HINT.
DROP FUNCTION IF EXISTS replica.apply(text[], "char"[], text[]);
CREATE OR REPLACE FUNCTION replica.apply(origins text[], ops "char"[], stmts text[], nrows integer[],
                                         OUT failed integer, OUT affected bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cur  integer := 0;
  prev text;
  n    bigint;
  msg  text;
  det  text;
BEGIN
  failed := 0;
  affected := 0;
  BEGIN
    FOR i IN 1 .. coalesce(array_length(stmts, 1), 0) LOOP
      cur := i;
      IF origins[i] IS DISTINCT FROM prev THEN
        PERFORM set_config('replica.origin', origins[i], true);
        prev := origins[i];
      END IF;
      EXECUTE stmts[i];
      IF ops[i] <> 'T' THEN
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

INSERT INTO replica.version (version) VALUES (3)
ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version;
