/* sql/schema/dashboard.sql: incrementally maintained dashboards (the MES first page)
 * Part of the current install script (make concatenates the files of sql/schema in the
 * order of SCHEMA in the Makefile into alexandrite--<version>.sql).  A change
 * here needs the same change in the current upgrade script. */

------------------------------------------------------------------------------
-- The registry: one row per declared dashboard
--
-- A dashboard is a grouped count (and optional sums) over one table.  For
-- each one create_dashboard() generates, in schema alexandrite:
--   dashboard_<name>_def      the definition: keys and measures per base row
--   dashboard_<name>_summary  folded state, one row per group
--   dashboard_<name>_delta    pending signed deltas, append-only, no index
--   dashboard_<name>          the read view: summary (+) pending deltas
-- One set of C statement triggers per base table (alexandrite.dashboard_capture)
-- appends the deltas; refresh_dashboards() folds them.
--
-- Time-relative counts ("rows whose due time is before now() + h") move with
-- the clock without any write.  For them a dashboard declares a due
-- expression and horizons h.  The summary holds, per group, the count of rows
-- due before watermark + h, where the watermark is the minute of the last
-- fold; deltas carry the due time to the minute; a read adds the pending
-- deltas due before watermark + h and an index probe of the base table for
-- the rows due in [watermark + h, now() + h), which spans only the time since
-- the last fold.  Each fold moves the watermark forward.
------------------------------------------------------------------------------
CREATE TABLE alexandrite.dashboards (
    id                  serial PRIMARY KEY,
    name                text NOT NULL UNIQUE
                        CHECK (name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,39}$'),
    base_table          regclass NOT NULL,
    key_names           text[] NOT NULL,
    key_exprs           text[] NOT NULL,
    count_name          text NOT NULL,
    sum_names           text[] NOT NULL DEFAULT '{}',
    sum_exprs           text[] NOT NULL DEFAULT '{}',
    filter              text,
    due_expr            text,
    horizons            interval[] NOT NULL DEFAULT '{}',
    horizon_names       text[] NOT NULL DEFAULT '{}',
    def_view            regclass NOT NULL,
    summary_table       regclass NOT NULL,
    delta_table         regclass NOT NULL,
    read_view           regclass NOT NULL,
    fold_sql            text NOT NULL,
    builtin             boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE alexandrite.dashboards IS 'registry of incrementally maintained dashboards (grouped count/sum over one table)';
-- user-declared dashboards survive pg_dump; the built-in ones are recreated by the script
SELECT pg_catalog.pg_extension_config_dump('alexandrite.dashboards', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.dashboards_id_seq', '');

-- Runtime state of each dashboard: the watermark of its time-relative counts,
-- fold, rebuild and reconcile bookkeeping.  Not dumped: after a restore the
-- fold recreates missing rows and flags dashboards with horizons for rebuild.
CREATE TABLE alexandrite.dashboard_state (
    dashboard_id        integer PRIMARY KEY REFERENCES alexandrite.dashboards (id) ON DELETE CASCADE,
    watermark           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    needs_rebuild       boolean NOT NULL DEFAULT false,
    rebuild_reason      text,
    last_rebuild_at     timestamptz,
    last_truncate_at    timestamptz,
    last_fold_at        timestamptz,
    last_fold_ms        float8,
    last_fold_rows      bigint,
    folds               bigint NOT NULL DEFAULT 0,
    folded_total        bigint NOT NULL DEFAULT 0,
    last_reconcile_at   timestamptz,
    last_reconcile_ok   boolean
);
COMMENT ON TABLE alexandrite.dashboard_state
    IS 'runtime state per dashboard: watermark of the time-relative counts, fold, rebuild and reconcile bookkeeping';

------------------------------------------------------------------------------
-- C entry points
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.dashboard_capture() RETURNS trigger
    AS 'MODULE_PATHNAME', 'alexandrite_dashboard_capture'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.dashboard_capture()
    IS 'internal: statement trigger that appends signed, pre-aggregated deltas of every dashboard over the table';
REVOKE ALL ON FUNCTION alexandrite.dashboard_capture() FROM PUBLIC;

CREATE FUNCTION alexandrite.dashboard_check(dashboard_id integer) RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_dashboard_check'
    LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.dashboard_check(integer)
    IS 'internal: compiles a dashboard definition as the capture trigger will, raising an error if it cannot be maintained';
REVOKE ALL ON FUNCTION alexandrite.dashboard_check(integer) FROM PUBLIC;

CREATE FUNCTION alexandrite.dashboard_invalidate(base_table regclass) RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_dashboard_invalidate'
    LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.dashboard_invalidate(regclass)
    IS 'internal: makes every backend reload the dashboards of a table at its next write (at commit)';
REVOKE ALL ON FUNCTION alexandrite.dashboard_invalidate(regclass) FROM PUBLIC;

CREATE FUNCTION alexandrite.refresh_dashboards() RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_refresh_dashboards'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.refresh_dashboards()
    IS 'folds the pending dashboard deltas into the summaries; returns the number of delta rows folded (0 when another fold is running)';
REVOKE ALL ON FUNCTION alexandrite.refresh_dashboards() FROM PUBLIC;

------------------------------------------------------------------------------
-- Declaring and dropping dashboards
------------------------------------------------------------------------------
-- internal: the aggregate of a dashboard's definition view as of a time
-- (an SQL expression): keys, count, sums, and the horizon counts
CREATE FUNCTION alexandrite.dashboard_agg_sql(d alexandrite.dashboards, at_time text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keys text;
    v_sel  text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(k), ', ') INTO v_keys FROM pg_catalog.unnest(d.key_names) k;
    v_sel := v_keys OPERATOR(pg_catalog.||) ', pg_catalog.count(*)::pg_catalog.int8';
    FOR i IN 1 .. pg_catalog.cardinality(d.sum_names) LOOP
        v_sel := v_sel OPERATOR(pg_catalog.||) pg_catalog.format(', COALESCE(pg_catalog.sum(%I), 0)', d.sum_names[i]);
    END LOOP;
    FOR i IN 1 .. pg_catalog.cardinality(d.horizons) LOOP
        v_sel := v_sel OPERATOR(pg_catalog.||) pg_catalog.format(
            ', (pg_catalog.count(*) FILTER (WHERE alx_due OPERATOR(pg_catalog.<) ((%s) OPERATOR(pg_catalog.+) %L::interval)))::pg_catalog.int8',
            at_time, d.horizons[i]);
    END LOOP;
    RETURN pg_catalog.format('SELECT %s FROM %s GROUP BY %s', v_sel, d.def_view, v_keys);
END;
$$;
COMMENT ON FUNCTION alexandrite.dashboard_agg_sql(alexandrite.dashboards, text)
    IS 'internal: the GROUP BY over a dashboard''s definition view, with time-relative counts as of the given time';
REVOKE ALL ON FUNCTION alexandrite.dashboard_agg_sql(alexandrite.dashboards, text) FROM PUBLIC;

CREATE FUNCTION alexandrite.create_dashboard(
    name text, base_table regclass, group_by text[],
    count_name text DEFAULT 'count', sums text[] DEFAULT '{}', filter text DEFAULT NULL,
    key_names text[] DEFAULT NULL, sum_names text[] DEFAULT NULL,
    due text DEFAULT NULL, horizons interval[] DEFAULT '{}', horizon_names text[] DEFAULT NULL)
    RETURNS regclass
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keys      text[] := COALESCE(key_names, '{}');
    v_snames    text[] := COALESCE(sum_names, '{}');
    v_hnames    text[] := COALESCE(horizon_names, '{}');
    v_all       text[];
    v_def       text;
    v_summary   text;
    v_delta     text;
    v_view      text;
    v_sel       text := '';
    v_keylist   text;
    v_kl_k      text;       -- keys qualified with k.
    v_sumlist   text := ''; -- ", s1, s2"
    v_sumzero   text := ''; -- ", 0::numeric, ..." (one per sum)
    v_aggsums   text := ''; -- ", sum(s1) AS s1, ..."
    v_hlist     text := ''; -- ", h1, h2"
    v_aggh      text := ''; -- ", sum(h1)::int8 AS h1, ..."
    v_upd       text := '';
    v_branches  text;
    v_hdelta    text;
    v_fold      text;
    v_wm        text;
    v_has_due   boolean;
    v_watermark timestamptz;
    v_id        integer;
    v_row       alexandrite.dashboards;
    i           integer;
BEGIN
    IF name IS NULL OR name OPERATOR(pg_catalog.!~) '^[a-z][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid dashboard name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A name is 1 to 40 lower-case letters, digits or underscores, starting with a letter.';
    END IF;
    IF base_table IS NULL THEN
        RAISE EXCEPTION 'base_table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) base_table)
       NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', base_table
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF group_by IS NULL OR pg_catalog.cardinality(group_by) OPERATOR(pg_catalog.=) 0
       OR pg_catalog.array_position(group_by, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'group_by must list at least one expression, none of them null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    sums := COALESCE(sums, '{}');
    horizons := COALESCE(horizons, '{}');
    IF pg_catalog.array_position(sums, NULL) IS NOT NULL OR pg_catalog.array_position(horizons, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'sums and horizons must not contain nulls' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_has_due := NULLIF(due, '') IS NOT NULL;
    IF v_has_due OPERATOR(pg_catalog.<>) (pg_catalog.cardinality(horizons) OPERATOR(pg_catalog.>) 0) THEN
        RAISE EXCEPTION 'due and horizons go together'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A due expression needs at least one horizon, e.g. horizons => ARRAY[''0''::interval].';
    END IF;
    FOR i IN 1 .. pg_catalog.cardinality(horizons) LOOP
        -- the watermark moves in whole minutes: horizons must be whole minutes of
        -- fixed length (days and months depend on the time zone)
        IF pg_catalog.date_part('day', horizons[i]) OPERATOR(pg_catalog.<>) 0
           OR pg_catalog.date_part('month', horizons[i]) OPERATOR(pg_catalog.<>) 0
           OR pg_catalog.date_part('year', horizons[i]) OPERATOR(pg_catalog.<>) 0
           OR pg_catalog.date_part('epoch', horizons[i])::numeric OPERATOR(pg_catalog.%) 60 OPERATOR(pg_catalog.<>) 0 THEN
            RAISE EXCEPTION 'invalid horizon "%"', horizons[i]
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give horizons in whole minutes or hours, e.g. ''24 hours'', not days or months.';
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM alexandrite.dashboards d WHERE d.name OPERATOR(pg_catalog.=) create_dashboard.name) THEN
        RAISE EXCEPTION 'dashboard "%" already exists', name USING ERRCODE = 'duplicate_object';
    END IF;

    -- column names: given, or derived from the expression
    FOR i IN 1 .. pg_catalog.cardinality(group_by) LOOP
        IF v_keys[i] IS NULL THEN
            v_keys[i] := CASE WHEN group_by[i] OPERATOR(pg_catalog.~) '^[a-z_][a-z0-9_]*$'
                              THEN group_by[i] ELSE 'key_' OPERATOR(pg_catalog.||) i END;
        END IF;
    END LOOP;
    FOR i IN 1 .. pg_catalog.cardinality(sums) LOOP
        IF v_snames[i] IS NULL THEN
            v_snames[i] := CASE WHEN sums[i] OPERATOR(pg_catalog.~) '^[a-z_][a-z0-9_]*$'
                                THEN 'sum_' OPERATOR(pg_catalog.||) sums[i] ELSE 'sum_' OPERATOR(pg_catalog.||) i END;
        END IF;
    END LOOP;
    FOR i IN 1 .. pg_catalog.cardinality(horizons) LOOP
        IF v_hnames[i] IS NULL THEN
            v_hnames[i] := 'due_before_' OPERATOR(pg_catalog.||) i;
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(v_keys) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(group_by)
       OR pg_catalog.cardinality(v_snames) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(sums)
       OR pg_catalog.cardinality(v_hnames) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(horizons) THEN
        RAISE EXCEPTION 'key_names, sum_names and horizon_names must have one entry per expression'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_all := v_keys OPERATOR(pg_catalog.||) count_name OPERATOR(pg_catalog.||) v_snames OPERATOR(pg_catalog.||) v_hnames;
    IF count_name IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.unnest(v_all) n
                                      WHERE n IS NULL OR n OPERATOR(pg_catalog.!~) '^[a-z_][a-z0-9_]{0,62}$'
                                         OR n OPERATOR(pg_catalog.~) '^alx_' OR n OPERATOR(pg_catalog.=) 'logged_at') THEN
        RAISE EXCEPTION 'invalid column name in dashboard "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Column names are lower-case identifiers; "logged_at" and names starting with "alx_" are reserved.';
    END IF;
    IF (SELECT pg_catalog.count(DISTINCT n) FROM pg_catalog.unnest(v_all) n)
       OPERATOR(pg_catalog.<>) pg_catalog.cardinality(v_all) THEN
        RAISE EXCEPTION 'column names of dashboard "%" are not distinct', name
            USING ERRCODE = 'duplicate_column';
    END IF;

    v_id      := pg_catalog.nextval('alexandrite.dashboards_id_seq');
    v_def     := pg_catalog.format('alexandrite.%I', 'dashboard_' OPERATOR(pg_catalog.||) name OPERATOR(pg_catalog.||) '_def');
    v_summary := pg_catalog.format('alexandrite.%I', 'dashboard_' OPERATOR(pg_catalog.||) name OPERATOR(pg_catalog.||) '_summary');
    v_delta   := pg_catalog.format('alexandrite.%I', 'dashboard_' OPERATOR(pg_catalog.||) name OPERATOR(pg_catalog.||) '_delta');
    v_view    := pg_catalog.format('alexandrite.%I', 'dashboard_' OPERATOR(pg_catalog.||) name);
    v_wm      := pg_catalog.format('(SELECT r.watermark FROM alexandrite.dashboard_state r WHERE r.dashboard_id OPERATOR(pg_catalog.=) %s)', v_id);

    -- no writer is in flight while the dashboard is populated and its
    -- capture starts (the triggers need this lock level anyway)
    EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', base_table);

    -- the definition view: what each counted base row contributes
    FOR i IN 1 .. pg_catalog.cardinality(group_by) LOOP
        v_sel := v_sel OPERATOR(pg_catalog.||) pg_catalog.format('(%s) AS %I, ', group_by[i], v_keys[i]);
    END LOOP;
    FOR i IN 1 .. pg_catalog.cardinality(sums) LOOP
        v_sel := v_sel OPERATOR(pg_catalog.||) pg_catalog.format('(%s)::pg_catalog.numeric AS %I, ', sums[i], v_snames[i]);
    END LOOP;
    IF v_has_due THEN
        v_sel := v_sel OPERATOR(pg_catalog.||) pg_catalog.format('(%s)::pg_catalog.timestamptz AS alx_due, ', due);
    END IF;
    v_sel := pg_catalog.rtrim(v_sel, ', ');
    EXECUTE pg_catalog.format('CREATE VIEW %s AS SELECT %s FROM %s b WHERE %s',
                              v_def, v_sel, base_table, COALESCE(NULLIF(filter, ''), 'true'));
    EXECUTE pg_catalog.format('COMMENT ON VIEW %s IS %L', v_def,
                              pg_catalog.format('definition of dashboard %s: group keys and measures of each counted row of %s', name, base_table));

    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(k), ', '),
           pg_catalog.string_agg('k.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(k), ', ')
      INTO v_keylist, v_kl_k FROM pg_catalog.unnest(v_keys) k;
    FOR i IN 1 .. pg_catalog.cardinality(v_snames) LOOP
        v_sumlist := v_sumlist OPERATOR(pg_catalog.||) ', ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(v_snames[i]);
        v_sumzero := v_sumzero OPERATOR(pg_catalog.||) ', 0::pg_catalog.numeric';
        v_aggsums := v_aggsums OPERATOR(pg_catalog.||) pg_catalog.format(', pg_catalog.sum(%1$I) AS %1$I', v_snames[i]);
        v_upd := v_upd OPERATOR(pg_catalog.||) pg_catalog.format(', %1$I = t.%1$I OPERATOR(pg_catalog.+) excluded.%1$I', v_snames[i]);
    END LOOP;
    FOR i IN 1 .. pg_catalog.cardinality(v_hnames) LOOP
        v_hlist := v_hlist OPERATOR(pg_catalog.||) ', ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(v_hnames[i]);
        v_aggh := v_aggh OPERATOR(pg_catalog.||) pg_catalog.format(', pg_catalog.sum(%1$I)::pg_catalog.int8 AS %1$I', v_hnames[i]);
        v_upd := v_upd OPERATOR(pg_catalog.||) pg_catalog.format(', %1$I = t.%1$I OPERATOR(pg_catalog.+) excluded.%1$I', v_hnames[i]);
    END LOOP;

    -- folded state: one row per group (NULL keys are one group, as in GROUP BY);
    -- the horizon counts are as of the watermark
    EXECUTE pg_catalog.format('CREATE TABLE %s AS SELECT %s, 0::pg_catalog.int8 AS %I%s%s FROM %s WITH NO DATA',
                              v_summary, v_keylist, count_name,
                              (SELECT COALESCE(pg_catalog.string_agg(pg_catalog.format(', 0::pg_catalog.numeric AS %I', s), ''), '')
                                 FROM pg_catalog.unnest(v_snames) s),
                              (SELECT COALESCE(pg_catalog.string_agg(pg_catalog.format(', 0::pg_catalog.int8 AS %I', h), ''), '')
                                 FROM pg_catalog.unnest(v_hnames) h),
                              v_def);
    FOREACH v_sel IN ARRAY count_name OPERATOR(pg_catalog.||) v_snames OPERATOR(pg_catalog.||) v_hnames LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', v_summary, v_sel);
    END LOOP;
    EXECUTE pg_catalog.format('CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT', v_summary, v_keylist);
    -- groups that became empty, removed after each fold
    EXECUTE pg_catalog.format('CREATE INDEX ON %s (%I) WHERE %I OPERATOR(pg_catalog.=) 0',
                              v_summary, count_name, count_name);
    EXECUTE pg_catalog.format('COMMENT ON TABLE %s IS %L', v_summary,
                              pg_catalog.format('folded state of dashboard %s (written by refresh_dashboards only)', name));

    -- pending deltas: append-only, no index (the capture trigger writes heap
    -- tuples): keys, [due minute], count, sums, logged_at
    EXECUTE pg_catalog.format('CREATE TABLE %s AS SELECT %s%s, 0::pg_catalog.int8 AS %I%s FROM %s WITH NO DATA',
                              v_delta, v_keylist,
                              CASE WHEN v_has_due THEN ', NULL::pg_catalog.timestamptz AS alx_due_bucket' ELSE '' END,
                              count_name,
                              (SELECT COALESCE(pg_catalog.string_agg(pg_catalog.format(', 0::pg_catalog.numeric AS %I', s), ''), '')
                                 FROM pg_catalog.unnest(v_snames) s),
                              v_def);
    EXECUTE pg_catalog.format('ALTER TABLE %s ADD COLUMN logged_at timestamptz NOT NULL DEFAULT pg_catalog.now()', v_delta);
    EXECUTE pg_catalog.format('ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000, '
                              'autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_insert_scale_factor = 0, '
                              'autovacuum_vacuum_insert_threshold = 100000)', v_delta);
    EXECUTE pg_catalog.format('COMMENT ON TABLE %s IS %L', v_delta,
                              pg_catalog.format('pending signed deltas of dashboard %s (appended by the capture trigger, emptied by refresh_dashboards)', name));

    -- the read view: summary (+) pending deltas (+) for each horizon a probe of
    -- the rows due between watermark + h and now() + h; exact at the reader's
    -- snapshot, with or without a fold
    v_hdelta := '';
    FOR i IN 1 .. pg_catalog.cardinality(horizons) LOOP
        v_hdelta := v_hdelta OPERATOR(pg_catalog.||) pg_catalog.format(
            ', CASE WHEN k.alx_due_bucket OPERATOR(pg_catalog.<) (w.wm OPERATOR(pg_catalog.+) %L::interval) THEN k.%I ELSE 0 END',
            horizons[i], count_name);
    END LOOP;
    v_branches := pg_catalog.format('SELECT %s, %I%s%s FROM %s', v_keylist, count_name, v_sumlist, v_hlist, v_summary)
        OPERATOR(pg_catalog.||) ' UNION ALL '
        OPERATOR(pg_catalog.||) CASE WHEN v_has_due
            THEN pg_catalog.format('SELECT %s, k.%I%s%s FROM %s k, (SELECT %s AS wm) w',
                                   v_kl_k, count_name,
                                   (SELECT COALESCE(pg_catalog.string_agg(', k.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(s), ''), '')
                                      FROM pg_catalog.unnest(v_snames) s),
                                   v_hdelta, v_delta, v_wm)
            ELSE pg_catalog.format('SELECT %s, %I%s FROM %s', v_keylist, count_name, v_sumlist, v_delta) END;
    FOR i IN 1 .. pg_catalog.cardinality(horizons) LOOP
        v_branches := v_branches OPERATOR(pg_catalog.||) ' UNION ALL ' OPERATOR(pg_catalog.||) pg_catalog.format(
            'SELECT %1$s, 0::pg_catalog.int8%2$s%3$s FROM %4$s p, (SELECT %5$s AS wm) w '
            'WHERE p.alx_due OPERATOR(pg_catalog.>=) (LEAST(w.wm, pg_catalog.now()) OPERATOR(pg_catalog.+) %6$L::interval) '
            'AND p.alx_due OPERATOR(pg_catalog.<) (GREATEST(w.wm, pg_catalog.now()) OPERATOR(pg_catalog.+) %6$L::interval) '
            'GROUP BY %1$s, w.wm',
            v_keylist, v_sumzero,
            (SELECT pg_catalog.string_agg(CASE WHEN j OPERATOR(pg_catalog.=) i
                THEN ', (CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.>=) w.wm THEN 1 ELSE -1 END OPERATOR(pg_catalog.*) pg_catalog.count(*))::pg_catalog.int8'
                ELSE ', 0::pg_catalog.int8' END, '' ORDER BY j)
               FROM pg_catalog.generate_series(1, pg_catalog.cardinality(horizons)) j),
            v_def, v_wm, horizons[i]);
    END LOOP;
    EXECUTE pg_catalog.format(
        'CREATE VIEW %s WITH (security_invoker = true) AS '
        'SELECT %s, pg_catalog.sum(u.%I)::pg_catalog.int8 AS %I%s%s FROM (%s) u '
        'GROUP BY %s HAVING pg_catalog.sum(u.%I) OPERATOR(pg_catalog.<>) 0',
        v_view, v_keylist, count_name, count_name, v_aggsums, v_aggh, v_branches,
        v_keylist, count_name);
    EXECUTE pg_catalog.format('COMMENT ON VIEW %s IS %L', v_view,
                              pg_catalog.format('dashboard %s: %s grouped by %s, exact at the reading transaction''s snapshot',
                                                name, base_table, pg_catalog.array_to_string(v_keys, ', ')));

    -- the fold: move the deltas visible now into the summary, atomically, and
    -- (with a due expression) move the watermark to the current minute,
    -- adding the rows that came due in between (one statement, one snapshot)
    IF v_has_due THEN
        v_branches := pg_catalog.format('SELECT %s, d.%I%s', v_keylist, count_name,
                          (SELECT COALESCE(pg_catalog.string_agg(', d.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(s), ''), '')
                             FROM pg_catalog.unnest(v_snames) s))
            OPERATOR(pg_catalog.||) (SELECT pg_catalog.string_agg(pg_catalog.format(
                ', CASE WHEN d.alx_due_bucket OPERATOR(pg_catalog.<) (w.w_old OPERATOR(pg_catalog.+) %L::interval) THEN d.%I ELSE 0 END AS %I',
                x.h, count_name, x.hn), '' ORDER BY x.ord)
                FROM ROWS FROM (pg_catalog.unnest(horizons), pg_catalog.unnest(v_hnames)) WITH ORDINALITY x(h, hn, ord))
            OPERATOR(pg_catalog.||) ', 1 AS alx_n FROM d, w';
        FOR i IN 1 .. pg_catalog.cardinality(horizons) LOOP
            v_branches := v_branches OPERATOR(pg_catalog.||) ' UNION ALL ' OPERATOR(pg_catalog.||) pg_catalog.format(
                'SELECT %1$s, 0::pg_catalog.int8%2$s%3$s, 0 FROM %4$s p, w '
                'WHERE p.alx_due OPERATOR(pg_catalog.>=) (w.w_old OPERATOR(pg_catalog.+) %5$L::interval) '
                'AND p.alx_due OPERATOR(pg_catalog.<) (w.w_new OPERATOR(pg_catalog.+) %5$L::interval) GROUP BY %1$s',
                v_keylist, v_sumzero,
                (SELECT pg_catalog.string_agg(CASE WHEN j OPERATOR(pg_catalog.=) i THEN ', pg_catalog.count(*)' ELSE ', 0::pg_catalog.int8' END, '' ORDER BY j)
                   FROM pg_catalog.generate_series(1, pg_catalog.cardinality(horizons)) j),
                v_def, horizons[i]);
        END LOOP;
        v_fold := pg_catalog.format(
            'WITH w AS (SELECT r.watermark AS w_old, GREATEST(r.watermark, alexandrite.dashboard_due_bucket(pg_catalog.now())) AS w_new '
            'FROM alexandrite.dashboard_state r WHERE r.dashboard_id OPERATOR(pg_catalog.=) %1$s), '
            'd AS (DELETE FROM %2$s RETURNING *), '
            'a AS (SELECT %3$s, pg_catalog.sum(%4$I)::pg_catalog.int8 AS %4$I%5$s%6$s, pg_catalog.sum(alx_n) AS alx_n FROM (%7$s) x GROUP BY %3$s), '
            'u AS (INSERT INTO %8$s AS t (%3$s, %4$I%9$s%10$s) SELECT %3$s, %4$I%9$s%10$s FROM a '
            'ON CONFLICT (%3$s) DO UPDATE SET %4$I = t.%4$I OPERATOR(pg_catalog.+) excluded.%4$I%11$s), '
            'r AS (UPDATE alexandrite.dashboard_state r SET watermark = w.w_new FROM w WHERE r.dashboard_id OPERATOR(pg_catalog.=) %1$s) '
            'SELECT COALESCE(pg_catalog.sum(alx_n), 0)::pg_catalog.int8 FROM a',
            v_id, v_delta, v_keylist, count_name, v_aggsums, v_aggh, v_branches,
            v_summary, v_sumlist, v_hlist, v_upd);
    ELSE
        v_fold := pg_catalog.format(
            'WITH d AS (DELETE FROM %1$s RETURNING %2$s, %3$I%4$s), '
            'a AS (SELECT %2$s, pg_catalog.sum(%3$I)::pg_catalog.int8 AS %3$I%5$s, pg_catalog.count(*) AS alx_n FROM d GROUP BY %2$s), '
            'u AS (INSERT INTO %6$s AS t (%2$s, %3$I%4$s) SELECT %2$s, %3$I%4$s FROM a '
            'ON CONFLICT (%2$s) DO UPDATE SET %3$I = t.%3$I OPERATOR(pg_catalog.+) excluded.%3$I%7$s) '
            'SELECT COALESCE(pg_catalog.sum(alx_n), 0)::pg_catalog.int8 FROM a',
            v_delta, v_keylist, count_name, v_sumlist, v_aggsums, v_summary, v_upd);
    END IF;

    INSERT INTO alexandrite.dashboards AS d
           (id, name, base_table, key_names, key_exprs, count_name, sum_names, sum_exprs, filter,
            due_expr, horizons, horizon_names,
            def_view, summary_table, delta_table, read_view, fold_sql)
    VALUES (v_id, name, base_table, v_keys, group_by, count_name, v_snames, sums, NULLIF(filter, ''),
            NULLIF(due, ''), horizons, v_hnames,
            v_def::regclass, v_summary::regclass, v_delta::regclass, v_view::regclass, v_fold)
    RETURNING * INTO v_row;
    v_watermark := CASE WHEN v_has_due THEN alexandrite.dashboard_due_bucket(pg_catalog.now()) END;
    INSERT INTO alexandrite.dashboard_state (dashboard_id, watermark) VALUES (v_id, v_watermark);

    -- refuses definitions the capture trigger cannot maintain exactly
    PERFORM alexandrite.dashboard_check(v_id);

    -- populate from the base table (writers are held off by the lock above)
    EXECUTE pg_catalog.format('INSERT INTO %s %s', v_summary,
                              alexandrite.dashboard_agg_sql(v_row, COALESCE(pg_catalog.quote_literal(v_watermark), 'NULL') OPERATOR(pg_catalog.||) '::pg_catalog.timestamptz'));

    -- one set of capture triggers per table serves all its dashboards
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid OPERATOR(pg_catalog.=) base_table
                      AND t.tgname OPERATOR(pg_catalog.=) 'alx_dashboard_ins') THEN
        EXECUTE pg_catalog.format('CREATE TRIGGER alx_dashboard_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS alx_new '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture()', base_table);
        EXECUTE pg_catalog.format('CREATE TRIGGER alx_dashboard_upd AFTER UPDATE ON %s REFERENCING OLD TABLE AS alx_old NEW TABLE AS alx_new '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture()', base_table);
        EXECUTE pg_catalog.format('CREATE TRIGGER alx_dashboard_del AFTER DELETE ON %s REFERENCING OLD TABLE AS alx_old '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture()', base_table);
        EXECUTE pg_catalog.format('CREATE TRIGGER alx_dashboard_trunc AFTER TRUNCATE ON %s '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture()', base_table);
    END IF;
    PERFORM alexandrite.dashboard_invalidate(base_table);
    RETURN v_view::regclass;
END;
$$;
COMMENT ON FUNCTION alexandrite.create_dashboard(text, regclass, text[], text, text[], text, text[], text[], text, interval[], text[])
    IS 'declares an incrementally maintained grouped count/sum dashboard over a table (optionally with time-relative counts); returns its read view';
REVOKE ALL ON FUNCTION alexandrite.create_dashboard(text, regclass, text[], text, text[], text, text[], text[], text, interval[], text[]) FROM PUBLIC;

CREATE FUNCTION alexandrite.drop_dashboard(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d alexandrite.dashboards;
BEGIN
    SELECT * INTO d FROM alexandrite.dashboards x WHERE x.name OPERATOR(pg_catalog.=) drop_dashboard.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dashboard "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    IF d.builtin THEN
        RAISE EXCEPTION 'dashboard "%" is part of the extension and cannot be dropped', name
            USING ERRCODE = 'dependent_objects_still_exist';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(1634498660, 1);
    EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', d.base_table);
    DELETE FROM alexandrite.dashboards x WHERE x.id OPERATOR(pg_catalog.=) d.id;
    EXECUTE pg_catalog.format('DROP VIEW %s', d.read_view);
    EXECUTE pg_catalog.format('DROP TABLE %s, %s', d.summary_table, d.delta_table);
    EXECUTE pg_catalog.format('DROP VIEW %s', d.def_view);
    IF NOT EXISTS (SELECT 1 FROM alexandrite.dashboards x WHERE x.base_table OPERATOR(pg_catalog.=) d.base_table) THEN
        EXECUTE pg_catalog.format('DROP TRIGGER alx_dashboard_ins ON %1$s; DROP TRIGGER alx_dashboard_upd ON %1$s; '
                                  'DROP TRIGGER alx_dashboard_del ON %1$s; DROP TRIGGER alx_dashboard_trunc ON %1$s',
                                  d.base_table);
    END IF;
    PERFORM alexandrite.dashboard_invalidate(d.base_table);
END;
$$;
COMMENT ON FUNCTION alexandrite.drop_dashboard(text) IS 'drops a user-declared dashboard and its generated objects';
REVOKE ALL ON FUNCTION alexandrite.drop_dashboard(text) FROM PUBLIC;

------------------------------------------------------------------------------
-- Rebuild and reconcile
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.rebuild_dashboard(name text, watermark timestamptz DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d       alexandrite.dashboards;
    v_wm    timestamptz;
    v_n     bigint;
BEGIN
    SELECT * INTO d FROM alexandrite.dashboards x WHERE x.name OPERATOR(pg_catalog.=) rebuild_dashboard.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dashboard "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
        RAISE EXCEPTION 'rebuild_dashboard() must run in a READ COMMITTED transaction'
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'It recomputes the summary after locking the base table, which needs a fresh snapshot.';
    END IF;
    -- no fold in between, no writer in flight: the recompute sees every commit
    PERFORM pg_catalog.pg_advisory_xact_lock(1634498660, 1);
    EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE', d.base_table);
    IF d.due_expr IS NOT NULL THEN
        v_wm := alexandrite.dashboard_due_bucket(COALESCE(rebuild_dashboard.watermark, pg_catalog.now()));
    END IF;
    EXECUTE pg_catalog.format('DELETE FROM %s', d.delta_table);
    EXECUTE pg_catalog.format('DELETE FROM %s', d.summary_table);
    EXECUTE pg_catalog.format('INSERT INTO %s %s', d.summary_table,
                              alexandrite.dashboard_agg_sql(d, COALESCE(pg_catalog.quote_literal(v_wm), 'NULL')
                                                               OPERATOR(pg_catalog.||) '::pg_catalog.timestamptz'));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    INSERT INTO alexandrite.dashboard_state AS x (dashboard_id, watermark, last_rebuild_at)
    VALUES (d.id, v_wm, pg_catalog.clock_timestamp())
    ON CONFLICT (dashboard_id) DO UPDATE
       SET needs_rebuild = false, rebuild_reason = NULL, last_rebuild_at = excluded.last_rebuild_at,
           watermark = excluded.watermark;
    RETURN v_n;
END;
$$;
COMMENT ON FUNCTION alexandrite.rebuild_dashboard(text, timestamptz)
    IS 'recomputes a dashboard from its base table (briefly blocks writers of that table), with its time-relative counts as of watermark (default: the current minute); returns the number of groups';
REVOKE ALL ON FUNCTION alexandrite.rebuild_dashboard(text, timestamptz) FROM PUBLIC;

-- The minute a due time falls in (UTC-aligned): the due-time resolution of
-- the deltas and of the watermark.  Immutable and total: infinite due times
-- are their own bucket.  The capture trigger computes the same in C.
CREATE FUNCTION alexandrite.dashboard_due_bucket(due timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN pg_catalog.isfinite(due)
                THEN pg_catalog.date_bin('00:01:00'::interval, due, '2000-01-01 00:00:00+00'::timestamptz)
                ELSE due END;
COMMENT ON FUNCTION alexandrite.dashboard_due_bucket(timestamptz)
    IS 'the minute (UTC-aligned) a due time falls in: the resolution of dashboard deltas and watermarks';

------------------------------------------------------------------------------
-- The contract dashboards (CONTRACT.md section 3) as instances
------------------------------------------------------------------------------
-- probes of the current, partial due-time bucket
CREATE INDEX orders_open_due_at_idx ON alexandrite.orders (sla_due_at) INCLUDE (channel, operator_id)
    WHERE status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status;

SELECT alexandrite.create_dashboard('status_counts', 'alexandrite.orders', ARRAY['status', 'channel'],
                                    count_name => 'orders');
-- the contract view dashboard_operator_load is this dashboard's read view
SELECT alexandrite.create_dashboard('operator_load', 'alexandrite.orders', ARRAY['operator_id'],
                                    count_name => 'open_orders',
                                    filter => 'operator_id IS NOT NULL AND alexandrite.is_open(status)',
                                    due => 'sla_due_at', horizons => ARRAY['0'::interval],
                                    horizon_names => ARRAY['overdue_orders']);
SELECT alexandrite.create_dashboard('sla_due', 'alexandrite.orders', ARRAY['channel'],
                                    count_name => 'open_orders',
                                    filter => 'alexandrite.is_open(status)',
                                    due => 'sla_due_at', horizons => ARRAY['0'::interval, '24:00:00'::interval],
                                    horizon_names => ARRAY['breached_orders', 'due_within_24h_or_past']);
UPDATE alexandrite.dashboards SET builtin = true;
COMMENT ON VIEW alexandrite.dashboard_operator_load
    IS 'open and overdue (past due) orders per operator holding open orders, exact at the reading transaction''s snapshot';

CREATE VIEW alexandrite.dashboard_sla WITH (security_invoker = true) AS
SELECT s.channel,
       s.open_orders,
       (s.due_within_24h_or_past OPERATOR(pg_catalog.-) s.breached_orders) AS at_risk_orders,
       s.breached_orders
  FROM alexandrite.dashboard_sla_due s;
COMMENT ON VIEW alexandrite.dashboard_sla
    IS 'per channel: open orders, at risk (open, due in [now, now + 24 h)) and breached (open, past due), exact at the reading transaction''s snapshot';

------------------------------------------------------------------------------
-- Reconcile: every dashboard against its base table, at one snapshot
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.reconcile_dashboards(name text DEFAULT NULL)
    RETURNS TABLE (dashboard text, groups bigint, mismatched_groups bigint, ok boolean)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d      alexandrite.dashboards;
    v_cols text;
    v_any  boolean := false;
BEGIN
    FOR d IN SELECT * FROM alexandrite.dashboards x
              WHERE reconcile_dashboards.name IS NULL OR x.name OPERATOR(pg_catalog.=) reconcile_dashboards.name
              ORDER BY x.id LOOP
        v_any := true;
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ') INTO v_cols
          FROM pg_catalog.unnest(d.key_names OPERATOR(pg_catalog.||) d.count_name
                                 OPERATOR(pg_catalog.||) d.sum_names OPERATOR(pg_catalog.||) d.horizon_names) c;
        EXECUTE pg_catalog.format(
            'WITH v AS (SELECT %1$s FROM %2$s), b AS (%3$s), '
            'x AS ((SELECT * FROM v EXCEPT ALL SELECT * FROM b) UNION ALL (SELECT * FROM b EXCEPT ALL SELECT * FROM v)) '
            'SELECT (SELECT pg_catalog.count(*) FROM b), (SELECT pg_catalog.count(*) FROM x)',
            v_cols, d.read_view, alexandrite.dashboard_agg_sql(d, 'pg_catalog.now()'))
          INTO groups, mismatched_groups;
        dashboard := d.name;
        ok := mismatched_groups OPERATOR(pg_catalog.=) 0;
        IF NOT ok THEN
            RAISE WARNING 'dashboard "%" differs from its base table in % groups', d.name, mismatched_groups
                USING HINT = pg_catalog.format('Run SELECT alexandrite.rebuild_dashboard(%L).', d.name);
        END IF;
        UPDATE alexandrite.dashboard_state x
           SET last_reconcile_at = pg_catalog.clock_timestamp(), last_reconcile_ok = reconcile_dashboards.ok,
               needs_rebuild = x.needs_rebuild OR NOT reconcile_dashboards.ok,
               rebuild_reason = CASE WHEN reconcile_dashboards.ok THEN x.rebuild_reason
                                     ELSE 'reconcile found ' OPERATOR(pg_catalog.||) mismatched_groups OPERATOR(pg_catalog.||) ' differing groups' END
         WHERE x.dashboard_id OPERATOR(pg_catalog.=) d.id;
        RETURN NEXT;
    END LOOP;
    IF NOT v_any AND name IS NOT NULL THEN
        RAISE EXCEPTION 'dashboard "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
END;
$$;
COMMENT ON FUNCTION alexandrite.reconcile_dashboards(text)
    IS 'compares each dashboard (or the named one) with the same GROUP BY over its base table; flags mismatches for rebuild';
REVOKE ALL ON FUNCTION alexandrite.reconcile_dashboards(text) FROM PUBLIC;

------------------------------------------------------------------------------
-- Lag
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.dashboard_pending(delta_table regclass,
                                              OUT pending_changes bigint, OUT oldest_pending timestamptz)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE pg_catalog.format('SELECT pg_catalog.count(*), pg_catalog.min(logged_at) FROM %s', delta_table)
       INTO pending_changes, oldest_pending;
END;
$$;
COMMENT ON FUNCTION alexandrite.dashboard_pending(regclass)
    IS 'internal: the number of pending delta rows of a dashboard and the time of the oldest';

CREATE VIEW alexandrite.dashboard_lag WITH (security_invoker = true) AS
SELECT d.name AS dashboard,
       p.pending_changes,
       pg_catalog.now() OPERATOR(pg_catalog.-) p.oldest_pending AS oldest_pending_age,
       pg_catalog.pg_relation_size(d.delta_table) AS delta_bytes,
       s.watermark,
       s.last_fold_at,
       s.last_fold_ms,
       s.last_fold_rows,
       s.folds,
       s.folded_total,
       COALESCE(s.needs_rebuild, true) AS rebuild_needed,
       CASE WHEN s.dashboard_id IS NULL THEN 'no state (restored from a dump?)' ELSE s.rebuild_reason END AS rebuild_reason,
       s.last_rebuild_at,
       s.last_truncate_at,
       s.last_reconcile_at,
       s.last_reconcile_ok
  FROM alexandrite.dashboards d
  LEFT JOIN alexandrite.dashboard_state s ON s.dashboard_id OPERATOR(pg_catalog.=) d.id,
       LATERAL alexandrite.dashboard_pending(d.delta_table) p;
COMMENT ON VIEW alexandrite.dashboard_lag
    IS 'per dashboard: pending (unfolded) changes and the age of the oldest, last fold, rebuild and reconcile state';

------------------------------------------------------------------------------
-- Scheduling with pg_cron (optional; 1.4.2 has one-minute granularity)
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.schedule_refresh(every text DEFAULT '* * * * *') RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    IF every IS NULL OR pg_catalog.btrim(every) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'schedule must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- pg_cron 1.4 reads five fields and silently ignores a sixth (seconds)
    IF pg_catalog.left(pg_catalog.btrim(every), 1) OPERATOR(pg_catalog.<>) '@'
       AND pg_catalog.cardinality(pg_catalog.regexp_split_to_array(pg_catalog.btrim(every), '\s+'))
           OPERATOR(pg_catalog.<>) 5 THEN
        RAISE EXCEPTION 'invalid schedule "%"', every
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a five-field cron schedule such as ''* * * * *''; pg_cron 1.4 cannot run jobs more often than once a minute.';
    END IF;
    IF pg_catalog.to_regprocedure('cron.schedule(text,text,text)') IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database and run CREATE EXTENSION pg_cron; or fold from the background worker (alexandrite.fold_interval).';
    END IF;
    EXECUTE 'SELECT cron.schedule($1, $2, $3)'
       INTO v_id
      USING 'alexandrite-refresh-dashboards'::text, every, 'SELECT alexandrite.refresh_dashboards()'::text;
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION alexandrite.schedule_refresh(text)
    IS 'registers (or updates) the pg_cron job alexandrite-refresh-dashboards that folds dashboard deltas; returns the job id';
REVOKE ALL ON FUNCTION alexandrite.schedule_refresh(text) FROM PUBLIC;
