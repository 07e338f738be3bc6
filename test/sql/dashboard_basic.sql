-- Dashboards: declaring one, what capture writes, folding, rebuild,
-- reconcile, lag, TRUNCATE, bad definitions, scheduling and privileges.
\set VERBOSITY terse
SET client_min_messages = warning;
-- the background worker folds nothing in this instance (test/nofold.conf:
-- alexandrite.fold_interval = 0): only this file's folds run
SELECT current_setting('alexandrite.fold_interval') = '0' AS worker_paused;

-- the registry holds the three contract dashboards' building blocks
SELECT name, base_table, key_names, count_name, filter, due_expr, horizons, horizon_names, builtin
  FROM alexandrite.dashboards ORDER BY id;

-- a DBA's own dashboard over their own table
CREATE TABLE public.shipments (
    id      bigserial PRIMARY KEY,
    carrier text,
    country text NOT NULL,
    weight  numeric,
    parcels int NOT NULL DEFAULT 1,
    note    text
);
INSERT INTO public.shipments (carrier, country, weight, parcels)
VALUES ('dhl', 'de', 1.5, 1), ('dhl', 'de', 2.0, 2), ('ups', 'fr', 0.5, 1), (NULL, 'fr', 3.0, 4);
SELECT alexandrite.create_dashboard('shipments_by_carrier', 'public.shipments',
                                    ARRAY['carrier', 'upper(country)'],
                                    count_name => 'shipments',
                                    sums => ARRAY['weight', 'parcels'],
                                    filter => 'weight > 0',
                                    key_names => ARRAY['carrier', 'country']);
-- populated from the table at creation
SELECT * FROM alexandrite.dashboard_shipments_by_carrier ORDER BY carrier NULLS FIRST, country;
SELECT count(*) AS summary_rows FROM alexandrite.dashboard_shipments_by_carrier_summary;

-- one delta row per group and statement, signed, pre-aggregated
INSERT INTO public.shipments (carrier, country, weight, parcels)
SELECT 'dhl', 'de', 1, 1 FROM generate_series(1, 100);
SELECT carrier, country, shipments, sum_weight, sum_parcels
  FROM alexandrite.dashboard_shipments_by_carrier_delta ORDER BY 1, 2;
UPDATE public.shipments SET carrier = 'ups' WHERE carrier = 'dhl' AND id > 50;
SELECT carrier, country, shipments, sum_weight, sum_parcels
  FROM alexandrite.dashboard_shipments_by_carrier_delta ORDER BY logged_at, carrier, shipments;
-- an update that changes no key and no measure writes nothing
SELECT count(*) AS deltas_before FROM alexandrite.dashboard_shipments_by_carrier_delta \gset
UPDATE public.shipments SET note = 'checked';
UPDATE public.shipments SET country = lower(country);
SELECT count(*) - :deltas_before AS deltas_written FROM alexandrite.dashboard_shipments_by_carrier_delta;
-- rows outside the filter count nowhere; moving across the filter does
INSERT INTO public.shipments (carrier, country, weight) VALUES ('dhl', 'de', 0), ('dhl', 'de', NULL);
UPDATE public.shipments SET weight = 5 WHERE weight IS NULL;
DELETE FROM public.shipments WHERE carrier = 'ups' AND id % 2 = 0;
-- a savepoint rolled back takes its deltas with it
BEGIN;
SAVEPOINT s1;
DELETE FROM public.shipments;
ROLLBACK TO SAVEPOINT s1;
UPDATE public.shipments SET parcels = parcels + 1 WHERE carrier IS NULL;
COMMIT;
SELECT * FROM alexandrite.dashboard_shipments_by_carrier ORDER BY carrier NULLS FIRST, country;
SELECT carrier, upper(country) AS country, count(*) AS shipments, sum(weight), sum(parcels)
  FROM public.shipments WHERE weight > 0 GROUP BY 1, 2 ORDER BY carrier NULLS FIRST, country;

-- the fold moves the deltas into the summary; the view does not change
SELECT count(*) AS pending FROM alexandrite.dashboard_shipments_by_carrier_delta;
SELECT alexandrite.refresh_dashboards() > 0 AS folded;
SELECT count(*) AS pending FROM alexandrite.dashboard_shipments_by_carrier_delta;
SELECT * FROM alexandrite.dashboard_shipments_by_carrier ORDER BY carrier NULLS FIRST, country;
SELECT alexandrite.refresh_dashboards() AS nothing_left;
SELECT dashboard, pending_changes, oldest_pending_age IS NULL AS no_age, folds > 0 AS folded,
       last_fold_rows >= 0 AS has_rows, rebuild_needed
  FROM alexandrite.dashboard_lag WHERE dashboard = 'shipments_by_carrier';
-- groups that became empty leave the summary
DELETE FROM public.shipments WHERE carrier IS NULL;
SELECT alexandrite.refresh_dashboards() > 0 AS folded;
SELECT count(*) AS null_carrier_groups FROM alexandrite.dashboard_shipments_by_carrier_summary WHERE carrier IS NULL;

-- TRUNCATE empties the dashboard in the same transaction
TRUNCATE public.shipments;
SELECT count(*) AS groups_after_truncate FROM alexandrite.dashboard_shipments_by_carrier;
SELECT last_truncate_at IS NOT NULL AS truncate_recorded FROM alexandrite.dashboard_lag WHERE dashboard = 'shipments_by_carrier';
INSERT INTO public.shipments (carrier, country, weight) VALUES ('dhl', 'it', 2);
SELECT * FROM alexandrite.dashboard_shipments_by_carrier;

-- reconcile compares with the base table; a damaged summary is found and rebuilt
SELECT dashboard, groups, mismatched_groups, ok FROM alexandrite.reconcile_dashboards('shipments_by_carrier');
INSERT INTO alexandrite.dashboard_shipments_by_carrier_summary VALUES ('bogus', 'XX', 7, 0, 0);
SELECT dashboard, groups, mismatched_groups, ok FROM alexandrite.reconcile_dashboards('shipments_by_carrier');
SELECT rebuild_needed, rebuild_reason FROM alexandrite.dashboard_lag WHERE dashboard = 'shipments_by_carrier';
SELECT alexandrite.rebuild_dashboard('shipments_by_carrier') AS groups;
SELECT rebuild_needed FROM alexandrite.dashboard_lag WHERE dashboard = 'shipments_by_carrier';
SELECT dashboard, ok FROM alexandrite.reconcile_dashboards('shipments_by_carrier');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT alexandrite.rebuild_dashboard('shipments_by_carrier');
ROLLBACK;

-- a second dashboard on the same table shares the capture triggers
SELECT alexandrite.create_dashboard('shipments_by_country', 'public.shipments', ARRAY['country']) IS NOT NULL AS created;
SELECT count(*) AS capture_triggers FROM pg_trigger
 WHERE tgrelid = 'public.shipments'::regclass AND tgname LIKE 'alx_dashboard_%';
INSERT INTO public.shipments (carrier, country, weight) VALUES ('fedex', 'it', 1), ('fedex', 'es', 1);
SELECT * FROM alexandrite.dashboard_shipments_by_country ORDER BY country;
SELECT * FROM alexandrite.dashboard_shipments_by_carrier ORDER BY carrier, country;

-- every write path reaches the dashboards.  mesh_ingest stores its row from
-- C through SPI and stops at the first RETURNING row, so the statement
-- triggers of 1.1 never fired for it; the row capture counts it, before a
-- commit or a fold as after
SELECT last_value AS mesh_seq_last, is_called AS mesh_seq_called FROM alexandrite.meshes_id_seq \gset
SELECT alexandrite.mesh_ingest(convert_to(E'solid t\nfacet normal 0 0 -1\nouter loop\nvertex 0 0 0\nvertex 0 1 0\nvertex 1 0 0\nendloop\nendfacet\nfacet normal 0 -1 0\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 0 1\nendloop\nendfacet\nfacet normal -1 0 0\nouter loop\nvertex 0 0 0\nvertex 0 0 1\nvertex 0 1 0\nendloop\nendfacet\nfacet normal 1 1 1\nouter loop\nvertex 1 0 0\nvertex 0 1 0\nvertex 0 0 1\nendloop\nendfacet\nendsolid t\n', 'UTF8'), 'dash-tetra.stl') AS dash_mesh \gset
SELECT dashboard, ok FROM alexandrite.reconcile_dashboards('mesh_analysis_time');
BEGIN;
SELECT alexandrite.mesh_ingest(convert_to(E'solid u\nfacet normal 0 0 -1\nouter loop\nvertex 0 0 0\nvertex 0 2 0\nvertex 2 0 0\nendloop\nendfacet\nfacet normal 0 -1 0\nouter loop\nvertex 0 0 0\nvertex 2 0 0\nvertex 0 0 2\nendloop\nendfacet\nfacet normal -1 0 0\nouter loop\nvertex 0 0 0\nvertex 0 0 2\nvertex 0 2 0\nendloop\nendfacet\nfacet normal 1 1 1\nouter loop\nvertex 2 0 0\nvertex 0 2 0\nvertex 0 0 2\nendloop\nendfacet\nendsolid u\n', 'UTF8'), 'dash-tetra2.stl') > 0 AS ingested;
SELECT (SELECT sum(analyses) FROM alexandrite.dashboard_mesh_analysis_time)
     = (SELECT count(*) FROM alexandrite.meshes WHERE analysis_ms IS NOT NULL) AS counted_in_the_same_transaction;
ROLLBACK;
DELETE FROM alexandrite.meshes WHERE id = :dash_mesh;
SELECT dashboard, ok FROM alexandrite.reconcile_dashboards('mesh_analysis_time');
SELECT pg_catalog.setval('alexandrite.meshes_id_seq', :mesh_seq_last, :'mesh_seq_called'::boolean) IS NOT NULL AS ids_given_back;

-- a partitioned table: rows written through the parent, straight into a
-- partition (with its own column order), moved between partitions, and into
-- a partition attached later are all counted
CREATE TABLE public.jobs (id int, region text, kg numeric) PARTITION BY LIST (region);
CREATE TABLE public.jobs_eu PARTITION OF public.jobs FOR VALUES IN ('eu');
CREATE TABLE public.jobs_us (kg numeric, note text, id int, region text);
ALTER TABLE public.jobs_us DROP COLUMN note;
ALTER TABLE public.jobs ATTACH PARTITION public.jobs_us FOR VALUES IN ('us');
INSERT INTO public.jobs VALUES (1, 'eu', 2), (2, 'us', 3);
SELECT alexandrite.create_dashboard('jobs_kg', 'public.jobs', ARRAY['region'], sums => ARRAY['kg']) IS NOT NULL AS created;
INSERT INTO public.jobs VALUES (4, 'eu', 1), (5, 'us', 1);
INSERT INTO public.jobs_us (kg, id, region) VALUES (5, 3, 'us');
UPDATE public.jobs SET region = 'us' WHERE id = 1;
DELETE FROM public.jobs_eu WHERE id = 4;
CREATE TABLE public.jobs_asia PARTITION OF public.jobs FOR VALUES IN ('asia');
INSERT INTO public.jobs_asia VALUES (6, 'asia', 7);
SELECT * FROM alexandrite.dashboard_jobs_kg ORDER BY region;
SELECT region, count(*), sum(kg) FROM public.jobs GROUP BY region ORDER BY region;
SELECT dashboard, ok FROM alexandrite.reconcile_dashboards('jobs_kg');
TRUNCATE public.jobs;
SELECT count(*) AS groups_after_truncate FROM alexandrite.dashboard_jobs_kg;
SELECT alexandrite.create_dashboard('bad', 'public.jobs_eu', ARRAY['region']);
-- a float8 sum: every value is summed as numeric, by the capture, a rebuild
-- and reconcile alike (float8 addition rounds by row order: 0.1 + 0.2 + 0.3
-- is 0.6000000000000001 in float8)
CREATE TABLE public.timings (id serial, step text, ms float8);
INSERT INTO public.timings (step, ms) VALUES ('cast', 0.1);
SELECT alexandrite.create_dashboard('timings_ms', 'public.timings', ARRAY['step'], sums => ARRAY['ms']) IS NOT NULL AS created;
INSERT INTO public.timings (step, ms) VALUES ('cast', 0.2);
INSERT INTO public.timings (step, ms) VALUES ('cast', 0.3), ('polish', 54.847058);
INSERT INTO public.timings (step, ms) VALUES ('polish', 65.502001);
SELECT step, count(*), sum(ms) AS float8_sum, sum(ms::numeric) AS numeric_sum FROM public.timings GROUP BY step ORDER BY step;
SELECT * FROM alexandrite.dashboard_timings_ms ORDER BY step;
SELECT dashboard, groups, mismatched_groups, ok FROM alexandrite.reconcile_dashboards('timings_ms');
SELECT alexandrite.refresh_dashboards() IS NOT NULL AS folded;
SELECT dashboard, groups, mismatched_groups, ok FROM alexandrite.reconcile_dashboards('timings_ms');
SELECT alexandrite.rebuild_dashboard('timings_ms') AS groups;
SELECT * FROM alexandrite.dashboard_timings_ms ORDER BY step;
SELECT dashboard, ok FROM alexandrite.reconcile_dashboards('timings_ms');
SELECT alexandrite.drop_dashboard('timings_ms');
DROP TABLE public.timings;
SELECT alexandrite.drop_dashboard('jobs_kg');
DROP TABLE public.jobs;

-- time-relative counts: tickets due before now, and due within the next 30 minutes or past
CREATE TABLE public.tickets (id serial PRIMARY KEY, queue text NOT NULL, due timestamptz, open boolean NOT NULL DEFAULT true);
SELECT alexandrite.create_dashboard('ticket_due', 'public.tickets', ARRAY['queue'], filter => 'open',
                                    due => 'due', horizons => ARRAY['0'::interval, '30 minutes'::interval],
                                    horizon_names => ARRAY['overdue', 'due_soon_or_overdue']) IS NOT NULL AS created;
INSERT INTO public.tickets (queue, due)
SELECT (ARRAY['casting', 'polishing'])[1 + g % 2], now() + (g - 10) * interval '5 minutes'
  FROM generate_series(1, 20) g;
INSERT INTO public.tickets (queue, due) VALUES ('casting', NULL), ('casting', 'infinity'), ('polishing', '-infinity');
SELECT * FROM alexandrite.dashboard_ticket_due ORDER BY queue;
SELECT queue, count(*), count(*) FILTER (WHERE due < now()) AS overdue,
       count(*) FILTER (WHERE due < now() + interval '30 minutes') AS due_soon_or_overdue
  FROM public.tickets WHERE open GROUP BY queue ORDER BY queue;
SELECT count(DISTINCT alx_due_bucket) > 1 AS deltas_by_due_minute FROM alexandrite.dashboard_ticket_due_delta;
UPDATE public.tickets SET open = false WHERE id % 3 = 0;
SELECT alexandrite.refresh_dashboards() > 0 AS folded;
SELECT * FROM alexandrite.dashboard_ticket_due ORDER BY queue;
SELECT dashboard, ok FROM alexandrite.reconcile_dashboards('ticket_due');
SELECT alexandrite.create_dashboard('bad', 'public.tickets', ARRAY['queue'], due => 'due', horizons => ARRAY['1 day'::interval]);
SELECT alexandrite.create_dashboard('bad', 'public.tickets', ARRAY['queue'], due => 'due', horizons => ARRAY['90 seconds'::interval]);
SELECT alexandrite.create_dashboard('bad', 'public.tickets', ARRAY['queue'], due => 'due');
SELECT alexandrite.create_dashboard('bad', 'public.tickets', ARRAY['queue'], horizons => ARRAY['0'::interval]);
SELECT alexandrite.create_dashboard('bad', 'public.tickets', ARRAY['queue'], due => 'now()', horizons => ARRAY['0'::interval]);
SELECT alexandrite.drop_dashboard('ticket_due');
DROP TABLE public.tickets;

-- bad definitions
SELECT alexandrite.create_dashboard('shipments_by_country', 'public.shipments', ARRAY['country']);
SELECT alexandrite.create_dashboard('Bad Name', 'public.shipments', ARRAY['country']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', '{}');
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], filter => 'id < (SELECT 10)');
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], filter => 'random() < 0.5');
SELECT alexandrite.create_dashboard('bad', 'alexandrite.orders', ARRAY['channel'], filter => 'sla_due_at < now()');
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['count(*)']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['no_such_column']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], count_name => 'country');
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], sums => ARRAY['country']);
SELECT alexandrite.create_dashboard('bad', 'pg_catalog.pg_class', ARRAY['relkind']);
SELECT alexandrite.create_dashboard('bad', 'alexandrite.dashboard_status_counts', ARRAY['status']);
-- expressions are checked node by node, types at creation: no code a user
-- wrote, nothing around the expression, no system column
CREATE FUNCTION public.my_bucket(numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT $1';
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['public.my_bucket(weight)']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], sums => ARRAY['public.my_bucket(weight)']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country) FROM pg_catalog.pg_authid --']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country; DROP TABLE public.shipments']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], filter => 'true) OR (true');
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country AS carrier']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['$$x$$ || country']) IS NOT NULL AS dollar_quotes_are_constants;
SELECT alexandrite.drop_dashboard('bad');
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['ctid']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['shipments']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['generate_series(1, parcels)']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], sums => ARRAY['note']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], filter => 'weight');
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], due => 'id', horizons => ARRAY['0'::interval]);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], due => 'now()::date', horizons => ARRAY['0'::interval]);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['row(country, carrier)']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], key_names => ARRAY['"x"; y']);
SELECT alexandrite.create_dashboard('bad', 'public.shipments', ARRAY['country'], key_names => ARRAY['logged_at']);
DROP FUNCTION public.my_bucket(numeric);
SELECT count(*) AS leftovers FROM pg_class WHERE relname LIKE 'dashboard_bad%';
SELECT count(*) AS registry_rows FROM alexandrite.dashboards WHERE name = 'bad';

-- the registry is only ever read back through the same validation: a row
-- edited to hold something else is refused, never run (rolled back here)
BEGIN;
UPDATE alexandrite.dashboards SET filter = 'pg_catalog.pg_sleep(5) IS NOT NULL' WHERE name = 'shipments_by_country';
SELECT alexandrite.rebuild_dashboard('shipments_by_country');
ROLLBACK;
BEGIN;
UPDATE alexandrite.dashboards SET key_exprs = '{"(SELECT rolname FROM pg_catalog.pg_authid LIMIT 1)"}' WHERE name = 'shipments_by_country';
SELECT * FROM alexandrite.reconcile_dashboards('shipments_by_country');
ROLLBACK;
BEGIN;
UPDATE alexandrite.dashboards SET sum_names = '{x}', sum_exprs = '{"country, pg_catalog.pg_sleep(5)"}' WHERE name = 'shipments_by_country';
SELECT alexandrite.refresh_dashboards();
ROLLBACK;
SELECT alexandrite.drop_dashboard('no_such_dashboard');
SELECT alexandrite.drop_dashboard('status_counts');
SELECT alexandrite.rebuild_dashboard('no_such_dashboard');

-- the capture function is a trigger only
SELECT alexandrite.dashboard_capture();

-- dropping a table's last dashboard removes its triggers
SELECT alexandrite.drop_dashboard('shipments_by_carrier');
SELECT alexandrite.drop_dashboard('shipments_by_country');
SELECT count(*) AS capture_triggers FROM pg_trigger
 WHERE tgrelid = 'public.shipments'::regclass AND tgname LIKE 'alx_dashboard_%';
INSERT INTO public.shipments (carrier, country, weight) VALUES ('dhl', 'de', 1);
DROP TABLE public.shipments;

-- a table dropped with CASCADE takes its dashboard's read view; the
-- declaration left behind is skipped (folds and reconcile go on) and dropped
CREATE TABLE public.orph (id int, g int);
INSERT INTO public.orph SELECT g, g % 3 FROM generate_series(1, 10) g;
SELECT alexandrite.create_dashboard('orph', 'public.orph', ARRAY['g']) IS NOT NULL AS created;
INSERT INTO public.orph VALUES (11, 1);
DROP TABLE public.orph CASCADE;
SELECT alexandrite.refresh_dashboards() >= 0 AS folded;
SELECT count(*) AS reconciled, bool_and(ok) AS ok FROM alexandrite.reconcile_dashboards();
SELECT alexandrite.rebuild_dashboard('orph');
SELECT alexandrite.drop_dashboard('orph');
SELECT count(*) AS leftovers FROM pg_class WHERE relname LIKE 'dashboard_orph%';

-- scheduling with pg_cron: a clear error without it, an upsert by name with it
SELECT alexandrite.schedule_refresh('5 seconds');
SELECT alexandrite.schedule_refresh('*/30 * * * * *');
SELECT alexandrite.schedule_refresh(NULL);
SET client_min_messages = notice;
DO $$
DECLARE
    had_cron boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron');
    id1 bigint;
    id2 bigint;
BEGIN
    IF NOT had_cron THEN
        BEGIN
            PERFORM alexandrite.schedule_refresh();
            RAISE EXCEPTION 'schedule_refresh() without pg_cron did not fail';
        EXCEPTION WHEN object_not_in_prerequisite_state THEN
            RAISE NOTICE 'without pg_cron: %', SQLERRM;
        END;
        CREATE EXTENSION pg_cron;
    END IF;
    id1 := alexandrite.schedule_refresh();
    id2 := alexandrite.schedule_refresh('*/5 * * * *');
    RAISE NOTICE 'same job: %, schedule: %, command: %', id1 = id2,
        (SELECT schedule FROM cron.job WHERE jobid = id2),
        (SELECT command FROM cron.job WHERE jobid = id2);
    PERFORM cron.unschedule(id2);
    IF NOT had_cron THEN
        DROP EXTENSION pg_cron;
    END IF;
END;
$$ LANGUAGE plpgsql;
SET client_min_messages = warning;

-- administrative functions are not for PUBLIC
CREATE ROLE dash_user;
GRANT USAGE ON SCHEMA alexandrite TO dash_user;
SET ROLE dash_user;
SELECT alexandrite.refresh_dashboards();
SELECT alexandrite.create_dashboard('x', 'alexandrite.orders', ARRAY['channel']);
SELECT alexandrite.drop_dashboard('x');
SELECT alexandrite.rebuild_dashboard('status_counts');
SELECT alexandrite.reconcile_dashboards();
SELECT alexandrite.schedule_refresh();
SELECT * FROM alexandrite.dashboard_status_counts;
RESET ROLE;
-- a writer maintains the dashboards of its table without any right on them,
-- not even EXECUTE on the functions its expressions call (the capture runs
-- them as the extension owner); a reader needs SELECT on the view only (the
-- views have their owner's rights)
CREATE TABLE public.tickets (id serial PRIMARY KEY, queue text NOT NULL, open boolean NOT NULL DEFAULT true,
                             status alexandrite.order_status NOT NULL DEFAULT 'new', ms float8);
SELECT alexandrite.create_dashboard('tickets_open', 'public.tickets', ARRAY['queue', 'alexandrite.metric_le_seconds(ms)'],
                                    filter => 'open AND alexandrite.is_open(status)', key_names => ARRAY['queue', 'le'],
                                    sums => ARRAY['ms']) IS NOT NULL AS created;
REVOKE EXECUTE ON FUNCTION alexandrite.is_open(alexandrite.order_status), alexandrite.metric_le_seconds(float8) FROM PUBLIC;
GRANT INSERT, UPDATE, DELETE, SELECT ON public.tickets TO dash_user;
GRANT USAGE ON SEQUENCE public.tickets_id_seq TO dash_user;
SET ROLE dash_user;
INSERT INTO public.tickets (queue, ms) VALUES ('casting', 3), ('casting', 40), ('polishing', 7);
UPDATE public.tickets SET open = false WHERE queue = 'polishing';
SELECT alexandrite.is_open('new');
SELECT * FROM alexandrite.dashboard_tickets_open;
SELECT * FROM alexandrite.dashboard_tickets_open_summary;
RESET ROLE;
GRANT SELECT ON alexandrite.dashboard_tickets_open TO dash_user;
SET ROLE dash_user;
SELECT * FROM alexandrite.dashboard_tickets_open ORDER BY queue, le;
SELECT * FROM alexandrite.dashboard_tickets_open_delta;
RESET ROLE;
GRANT EXECUTE ON FUNCTION alexandrite.is_open(alexandrite.order_status), alexandrite.metric_le_seconds(float8) TO PUBLIC;
-- row-level security: a dashboard counts every row, so a caller the policies
-- apply to can neither declare one over the table nor rebuild or reconcile
-- one (42501), even with SELECT and TRIGGER on it
CREATE TABLE public.salaries (employee text NOT NULL, salary numeric NOT NULL);
INSERT INTO public.salaries VALUES ('carol', 98765), ('dave', 50000);
ALTER TABLE public.salaries ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_row ON public.salaries USING (employee = current_user);
GRANT SELECT, TRIGGER ON public.salaries TO dash_user;
GRANT EXECUTE ON FUNCTION alexandrite.create_dashboard, alexandrite.rebuild_dashboard,
    alexandrite.reconcile_dashboards TO dash_user;
SET ROLE dash_user;
SELECT count(*) AS rows_dash_user_sees FROM public.salaries;
SELECT alexandrite.create_dashboard('salaries', 'public.salaries', ARRAY['employee'], filter => 'salary > 90000');
RESET ROLE;
-- its owner (not subject to the policies) may
SELECT alexandrite.create_dashboard('salaries', 'public.salaries', ARRAY['employee'], filter => 'salary > 90000') IS NOT NULL AS created;
SET ROLE dash_user;
SELECT alexandrite.rebuild_dashboard('salaries');
SELECT * FROM alexandrite.reconcile_dashboards('salaries');
RESET ROLE;
SELECT alexandrite.drop_dashboard('salaries');
REVOKE EXECUTE ON FUNCTION alexandrite.create_dashboard, alexandrite.rebuild_dashboard,
    alexandrite.reconcile_dashboards FROM dash_user;
DROP TABLE public.salaries;
-- the generated objects belong to the extension owner, whoever declared the dashboard
SELECT c.relname, pg_get_userbyid(c.relowner) = (SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n
                                                  WHERE n.nspname = 'alexandrite') AS owned_by_extension_owner,
       c.reloptions
  FROM pg_class c WHERE c.relname LIKE 'dashboard_tickets_open%' AND c.relkind IN ('r', 'v') ORDER BY 1;
SELECT alexandrite.drop_dashboard('tickets_open');
DROP TABLE public.tickets;
REVOKE ALL ON SCHEMA alexandrite FROM dash_user;
DROP ROLE dash_user;
-- The capture appends to a delta table directly, without the executor: it
-- refuses a delta table that was changed in a way those appends would
-- bypass or break, in a session whose capture was set up before the change
-- too (each flush checks the table it has locked): an index (it would miss
-- the rows), a trigger, a rule, row security, UNLOGGED, a column more.  The
-- write fails with XX001 and nothing is lost; undone, the writes go on; the
-- hint's way back (DROP ... CASCADE, rebuild) gives an exact dashboard.
\set VERBOSITY default
CREATE TABLE public.parcels (id int PRIMARY KEY, carrier text NOT NULL);
SELECT alexandrite.create_dashboard('parcels', 'public.parcels', ARRAY['carrier']) IS NOT NULL AS created;
INSERT INTO public.parcels VALUES (1, 'dhl');
CREATE INDEX parcels_delta_idx ON alexandrite.dashboard_parcels_delta (carrier);
INSERT INTO public.parcels VALUES (2, 'ups');
DROP INDEX alexandrite.parcels_delta_idx;
INSERT INTO public.parcels VALUES (2, 'ups');
ALTER TABLE alexandrite.dashboard_parcels_delta SET UNLOGGED;
INSERT INTO public.parcels VALUES (3, 'ups');
ALTER TABLE alexandrite.dashboard_parcels_delta SET LOGGED;
CREATE FUNCTION public.parcels_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER noop BEFORE INSERT ON alexandrite.dashboard_parcels_delta
    FOR EACH ROW EXECUTE FUNCTION public.parcels_noop();
UPDATE public.parcels SET carrier = 'fedex' WHERE id = 1;
DROP TRIGGER noop ON alexandrite.dashboard_parcels_delta;
CREATE RULE parcels_skip AS ON INSERT TO alexandrite.dashboard_parcels_delta DO INSTEAD NOTHING;
UPDATE public.parcels SET carrier = 'fedex' WHERE id = 1;
DROP RULE parcels_skip ON alexandrite.dashboard_parcels_delta;
ALTER TABLE alexandrite.dashboard_parcels_delta ENABLE ROW LEVEL SECURITY;
DELETE FROM public.parcels WHERE id = 2;
ALTER TABLE alexandrite.dashboard_parcels_delta DISABLE ROW LEVEL SECURITY;
-- in a savepoint, the failed write goes and the transaction goes on
BEGIN;
INSERT INTO public.parcels VALUES (3, 'ups');
SAVEPOINT s;
CREATE INDEX parcels_delta_idx ON alexandrite.dashboard_parcels_delta (carrier);
INSERT INTO public.parcels VALUES (4, 'ups');
ROLLBACK TO s;
INSERT INTO public.parcels VALUES (4, 'dhl');
COMMIT;
SELECT * FROM alexandrite.dashboard_parcels ORDER BY 1;
-- a column retyped (logged_at, which the view does not read) or dropped:
-- the row would be formed for the old type (a text column given a
-- timestamptz crashed the backend)
ALTER TABLE alexandrite.dashboard_parcels_delta ALTER COLUMN logged_at TYPE text USING logged_at::text;
INSERT INTO public.parcels VALUES (5, 'dhl');
ALTER TABLE alexandrite.dashboard_parcels_delta ALTER COLUMN logged_at TYPE timestamptz USING logged_at::timestamptz;
INSERT INTO public.parcels VALUES (5, 'dhl');
DELETE FROM public.parcels WHERE id = 5;
ALTER TABLE alexandrite.dashboard_parcels_delta ADD COLUMN extra int;
DELETE FROM public.parcels WHERE id = 2;
SELECT alexandrite.rebuild_dashboard('parcels');
DROP TABLE alexandrite.dashboard_parcels_delta CASCADE;
SELECT alexandrite.rebuild_dashboard('parcels');
DELETE FROM public.parcels WHERE id = 2;
UPDATE public.parcels SET carrier = 'fedex' WHERE id = 1;
SELECT * FROM alexandrite.dashboard_parcels ORDER BY 1;
SELECT carrier, count(*) FROM public.parcels GROUP BY 1 ORDER BY 1;
SELECT dashboard, ok FROM alexandrite.reconcile_dashboards('parcels');
-- the registry is decoded by the library and read by no view but for id
-- and name: a column retyped is 55000 naming it (a count_name made an
-- integer crashed every write to a table with a dashboard)
BEGIN;
ALTER TABLE alexandrite.dashboards ALTER COLUMN count_name TYPE integer USING 0;
-- (a change of the base table makes the capture read the registry again)
ALTER TABLE public.parcels ADD COLUMN note text;
INSERT INTO public.parcels VALUES (9, 'dhl');
ROLLBACK;
INSERT INTO public.parcels VALUES (9, 'dhl');
SELECT dashboard, ok FROM alexandrite.reconcile_dashboards('parcels');
SELECT alexandrite.drop_dashboard('parcels');
DROP TABLE public.parcels;
DROP FUNCTION public.parcels_noop();
\set VERBOSITY terse
SELECT dashboard, ok FROM alexandrite.reconcile_dashboards() ORDER BY dashboard;
RESET client_min_messages;
