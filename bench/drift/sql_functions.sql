-- The drift check's helper functions as schema version 6 first shipped
-- them: SQL functions, whose queries are planned again whenever the query
-- calling them starts. bench/drift installs them in schema drift_sql
-- beside trigger.sql's PL/pgSQL ones, to time both in one run. Frozen: not
-- kept in step with trigger.sql.
CREATE SCHEMA IF NOT EXISTS drift_sql;

CREATE OR REPLACE FUNCTION drift_sql.type_sql(typ oid, typmod integer) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce((SELECT 'pg_catalog.' || f
                     FROM pg_type t
                    WHERE t.oid IN (typ, (SELECT e.typelem FROM pg_type e WHERE e.oid = typ))
                      AND t.typnamespace = 'pg_catalog'::regnamespace
                      AND (f = quote_ident(t.typname) OR starts_with(f, quote_ident(t.typname) || '(')
                           OR starts_with(f, quote_ident(t.typname) || '['))
                    LIMIT 1), f)
    FROM format_type(typ, typmod) f
$$;

CREATE OR REPLACE FUNCTION drift_sql.key_condition(rel regclass, OUT cols text[], OUT pieces text[], OUT key_deferrable boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT array_agg(a.attname::text ORDER BY k.ord),
         array_agg(replace(format('%I OPERATOR(%I.%s) ', a.attname, opn.nspname, o.oprname), '%', '%%')
                   || '%L::' || replace(drift_sql.type_sql(a.atttypid, a.atttypmod), '%', '%%') ORDER BY k.ord),
         bool_or(coalesce(con.condeferrable, false))
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indclass::oid[]) WITH ORDINALITY AS k(attnum, cls, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    JOIN pg_opclass oc ON oc.oid = k.cls
    JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = oc.opcintype
                   AND ao.amoprighttype = oc.opcintype AND ao.amopstrategy = 3 AND ao.amopmethod = oc.opcmethod
    JOIN pg_operator o ON o.oid = ao.amopopr
    JOIN pg_namespace opn ON opn.oid = o.oprnamespace
    LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype = 'p'
   WHERE i.indrelid = rel AND i.indisprimary
$$;

CREATE OR REPLACE FUNCTION drift_sql.column_signature(rel regclass)
RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(string_agg(format('%I %s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                    CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END),
                             ', ' ORDER BY a.attnum), '')
         || ' / ' || (SELECT format('%I.%I', n.nspname, c.relname)
                        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel)
         || ' / key ' || coalesce((SELECT array_to_string(k.pieces, ' AND ') || CASE WHEN k.key_deferrable THEN ' deferrable' ELSE '' END
                                     FROM drift_sql.key_condition(rel) k), 'none')
    FROM pg_attribute a
   WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$$;
