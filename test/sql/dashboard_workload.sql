-- Randomized workload: every dashboard view against the same GROUP BY over
-- alexandrite.orders, before and after folds, with due times straddling now
-- and now + 24 h.  Prints only whether they match, plus operation counts.
\set VERBOSITY terse
SET client_min_messages = warning;
-- the background worker folds nothing in this instance (test/nofold.conf:
-- alexandrite.fold_interval = 0): only this file's folds run
SELECT current_setting('alexandrite.fold_interval') = '0' AS worker_paused;
-- the order ids this file uses are given back at the end (later tests print ids)
SELECT last_value AS dw_seq_last, is_called AS dw_seq_called FROM alexandrite.orders_id_seq \gset
SELECT pg_catalog.setseed(0.4242);

INSERT INTO alexandrite.operators (id, name, capacity)
SELECT 'dwop' || g, 'Dashboard tester ' || g, 50 FROM generate_series(1, 5) g;

-- the reference: the contract's figures straight from the base table
CREATE FUNCTION pg_temp.dash_check(label text)
    RETURNS TABLE (step text, status_counts boolean, operator_load boolean, sla boolean, generic boolean)
    LANGUAGE plpgsql AS $$
BEGIN
    step := label;
    -- each comparison is one statement: one snapshot for view and base table
    SELECT NOT EXISTS (
        (SELECT status, channel, orders FROM alexandrite.dashboard_status_counts
         EXCEPT ALL
         SELECT status, channel, count(*) FROM alexandrite.orders GROUP BY status, channel)
        UNION ALL
        (SELECT status, channel, count(*) FROM alexandrite.orders GROUP BY status, channel
         EXCEPT ALL
         SELECT status, channel, orders FROM alexandrite.dashboard_status_counts))
      INTO status_counts;
    SELECT NOT EXISTS (
        (SELECT operator_id, open_orders, overdue_orders FROM alexandrite.dashboard_operator_load
         EXCEPT ALL
         SELECT operator_id, count(*), count(*) FILTER (WHERE sla_due_at < now())
           FROM alexandrite.orders WHERE operator_id IS NOT NULL AND alexandrite.is_open(status)
          GROUP BY operator_id)
        UNION ALL
        (SELECT operator_id, count(*), count(*) FILTER (WHERE sla_due_at < now())
           FROM alexandrite.orders WHERE operator_id IS NOT NULL AND alexandrite.is_open(status)
          GROUP BY operator_id
         EXCEPT ALL
         SELECT operator_id, open_orders, overdue_orders FROM alexandrite.dashboard_operator_load))
      INTO operator_load;
    SELECT NOT EXISTS (
        (SELECT channel, open_orders, at_risk_orders, breached_orders FROM alexandrite.dashboard_sla
         EXCEPT ALL
         SELECT channel, count(*),
                count(*) FILTER (WHERE sla_due_at >= now() AND sla_due_at < now() + interval '24 hours'),
                count(*) FILTER (WHERE sla_due_at < now())
           FROM alexandrite.orders WHERE alexandrite.is_open(status) GROUP BY channel)
        UNION ALL
        (SELECT channel, count(*),
                count(*) FILTER (WHERE sla_due_at >= now() AND sla_due_at < now() + interval '24 hours'),
                count(*) FILTER (WHERE sla_due_at < now())
           FROM alexandrite.orders WHERE alexandrite.is_open(status) GROUP BY channel
         EXCEPT ALL
         SELECT channel, open_orders, at_risk_orders, breached_orders FROM alexandrite.dashboard_sla))
      INTO sla;
    -- a DBA dashboard with sums and a filter, through reconcile
    IF EXISTS (SELECT 1 FROM alexandrite.dashboards WHERE name = 'dw_value') THEN
        SELECT r.ok INTO generic FROM alexandrite.reconcile_dashboards('dw_value') r;
    END IF;
    RETURN NEXT;
END;
$$;

SELECT alexandrite.create_dashboard('dw_value', 'alexandrite.orders', ARRAY['channel', 'operator_id'],
                                    count_name => 'priced_orders', sums => ARRAY['price', 'price * 2 + 1'],
                                    filter => 'price IS NOT NULL AND alexandrite.is_open(status)') IS NOT NULL AS created;

SELECT * FROM pg_temp.dash_check('start');

-- One random operation; returns its kind.  Due times are spread over
-- now - 48 h .. now + 48 h at second precision, so they fall into past
-- buckets, the current bucket, the bucket of now + 24 h and beyond.
CREATE FUNCTION pg_temp.dash_random_op() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r    float8 := random();
    v_id bigint;
    due  timestamptz := now() + ((random() * 96 - 48) * interval '1 hour');
    ch   text := (ARRAY['shop', 'b2b_api', 'crm'])[1 + floor(random() * 3)::int];
    op   text := 'dwop' || (1 + floor(random() * 5)::int);
    st   alexandrite.order_status := (enum_range(NULL::alexandrite.order_status))[1 + floor(random() * 7)::int];
    k    int := floor(random() * 7)::int;
BEGIN
    SELECT id INTO v_id FROM alexandrite.orders
     WHERE external_ref LIKE 'dw-%' ORDER BY id OFFSET floor(random() * 200)::int LIMIT 1;
    IF r < 0.20 OR v_id IS NULL THEN
        INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at, price)
        VALUES ('dw-' || nextval('pg_temp.dw_seq'), ch, 'c', due,
                CASE WHEN random() < 0.7 THEN round((random() * 500)::numeric, 2) END);
        RETURN 'insert';
    ELSIF r < 0.40 THEN
        UPDATE alexandrite.orders SET status = st WHERE id = v_id;
        RETURN 'status';
    ELSIF r < 0.50 THEN
        UPDATE alexandrite.orders SET operator_id = CASE WHEN random() < 0.2 THEN NULL ELSE op END,
                                      status = CASE WHEN status < 'assigned' THEN 'assigned' ELSE status END
         WHERE id = v_id;
        RETURN 'reassign';
    ELSIF r < 0.57 THEN
        UPDATE alexandrite.orders SET status = 'cancelled' WHERE id = v_id;
        RETURN 'cancel';
    ELSIF r < 0.65 THEN
        UPDATE alexandrite.orders SET sla_due_at = due WHERE id = v_id;
        RETURN 'reschedule';
    ELSIF r < 0.72 THEN
        UPDATE alexandrite.orders SET price = round((random() * 500)::numeric, 2) WHERE id = v_id;
        RETURN 'price';
    ELSIF r < 0.78 THEN
        DELETE FROM alexandrite.orders WHERE id = v_id;
        RETURN 'delete';
    ELSIF r < 0.84 THEN
        -- changes nothing any dashboard counts
        UPDATE alexandrite.orders SET updated_at = now(), payload = '{"touched": true}' WHERE id = v_id;
        RETURN 'noop';
    ELSIF r < 0.92 THEN
        -- multi-row statement
        UPDATE alexandrite.orders SET status = st, channel = ch
         WHERE external_ref LIKE 'dw-%' AND id % 7 = k;
        RETURN 'multi';
    ELSE
        -- work rolled back to a savepoint
        BEGIN
            INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at)
            VALUES ('dw-rb-' || nextval('pg_temp.dw_seq'), ch, 'c', due);
            UPDATE alexandrite.orders SET status = 'shipped' WHERE id = v_id;
            DELETE FROM alexandrite.orders WHERE external_ref LIKE 'dw-%' AND id % 11 = 0;
            RAISE EXCEPTION 'roll back';
        EXCEPTION WHEN raise_exception THEN
            NULL;
        END;
        RETURN 'rollback';
    END IF;
END;
$$;
CREATE SEQUENCE pg_temp.dw_seq;

-- a bulk load and multi-row inserts
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at, price, operator_id, status)
SELECT 'dw-' || nextval('pg_temp.dw_seq'), (ARRAY['shop', 'b2b_api', 'crm'])[1 + g % 3], 'c',
       now() + ((g % 97 - 48) * interval '1 hour') + (g * interval '37 seconds'),
       CASE WHEN g % 4 <> 0 THEN g * 1.25 END,
       CASE WHEN g % 3 = 0 THEN 'dwop' || (1 + g % 5) END,
       CASE WHEN g % 3 = 0 THEN 'assigned'::alexandrite.order_status ELSE 'new' END
  FROM generate_series(1, 300) g;
COPY alexandrite.orders (external_ref, channel, customer_id, sla_due_at, price, operator_id, status) FROM stdin;
dw-copy-1	shop	c	2000-01-01 00:00:00+00	10	dwop1	in_production
dw-copy-2	crm	c	2100-01-01 00:00:00+00	\N	dwop2	assigned
dw-copy-3	b2b_api	c	infinity	3.5	\N	new
dw-copy-4	b2b_api	c	-infinity	4.5	dwop3	quality_check
dw-copy-5	shop	c	2001-06-01 12:30:00+00	1	\N	shipped
\.
SELECT * FROM pg_temp.dash_check('bulk');

-- rounds of random operations, each checked before and after a fold
CREATE TEMP TABLE dw_ops (round int, kind text);
DO $$
BEGIN
    FOR rnd IN 1 .. 7 LOOP
        FOR i IN 1 .. 60 LOOP
            INSERT INTO dw_ops VALUES (rnd, pg_temp.dash_random_op());
        END LOOP;
        IF EXISTS (SELECT 1 FROM pg_temp.dash_check('round') c
                    WHERE NOT (c.status_counts AND c.operator_load AND c.sla AND c.generic)) THEN
            RAISE WARNING 'round % differs before the fold', rnd;
        END IF;
        IF rnd % 2 = 0 THEN
            PERFORM alexandrite.refresh_dashboards();
            IF EXISTS (SELECT 1 FROM pg_temp.dash_check('round') c
                        WHERE NOT (c.status_counts AND c.operator_load AND c.sla AND c.generic)) THEN
                RAISE WARNING 'round % differs after the fold', rnd;
            END IF;
        END IF;
    END LOOP;
END;
$$;
SELECT kind, count(*) FROM dw_ops GROUP BY kind ORDER BY kind;
SELECT * FROM pg_temp.dash_check('random, unfolded tail');
SELECT alexandrite.refresh_dashboards() > 0 AS folded;
SELECT * FROM pg_temp.dash_check('random, folded');
SELECT dashboard, pending_changes FROM alexandrite.dashboard_lag ORDER BY dashboard;

-- time-relative counts kept as of an old watermark: the reads probe the
-- hours since; the next fold moves the watermark and catches up
SELECT alexandrite.rebuild_dashboard('operator_load', now() - interval '3 hours') >= 0 AS rebuilt,
       alexandrite.rebuild_dashboard('sla_due', now() - interval '26 hours') >= 0 AS rebuilt;
SELECT * FROM pg_temp.dash_check('old watermark');
SELECT pg_temp.dash_random_op() IS NOT NULL FROM generate_series(1, 30) \g /dev/null
SELECT * FROM pg_temp.dash_check('old watermark, writes');
SELECT alexandrite.refresh_dashboards() > 0 AS folded;
SELECT dashboard, watermark = alexandrite.dashboard_due_bucket(now()) AS caught_up
  FROM alexandrite.dashboard_lag WHERE watermark IS NOT NULL ORDER BY dashboard;
SELECT * FROM pg_temp.dash_check('watermark caught up');
-- a watermark ahead of the reader's clock (a reader whose transaction began
-- before the last fold) is probed backwards
SELECT alexandrite.rebuild_dashboard('sla_due', now() + interval '90 minutes') >= 0 AS rebuilt;
SELECT pg_temp.dash_random_op() IS NOT NULL FROM generate_series(1, 30) \g /dev/null
SELECT * FROM pg_temp.dash_check('watermark ahead');
SELECT alexandrite.refresh_dashboards() > 0 AS folded;
SELECT * FROM pg_temp.dash_check('watermark ahead, folded');

-- the same workload one transaction per operation, with a fold in between
\o /dev/null
SELECT 'SELECT pg_temp.dash_random_op()' FROM generate_series(1, 40) \gexec
SELECT alexandrite.refresh_dashboards();
SELECT 'SELECT pg_temp.dash_random_op()' FROM generate_series(1, 40) \gexec
\o
SELECT * FROM pg_temp.dash_check('separate transactions');

-- the clock moves, nothing is written: due times a second or two either
-- side of now and now + 24 h change class while we wait.  No assumption on
-- how long anything takes: the count before is read in the inserting
-- transaction, whose now() precedes every due time, and the wait is a poll
-- until the clock has passed them all (with a deadline).
BEGIN;
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at, operator_id, status)
SELECT 'dw-clock-' || g, 'crm', 'c',
       clock_timestamp() + CASE WHEN g % 2 = 0 THEN interval '0' ELSE interval '24 hours' END
                         + interval '1 second' + (g / 2) * interval '0.2 seconds',
       'dwop4', 'assigned'
  FROM generate_series(1, 8) g;
SELECT * FROM pg_temp.dash_check('clock, before');
SELECT breached_orders AS breached_before FROM alexandrite.dashboard_sla WHERE channel = 'crm' \gset
COMMIT;
SELECT alexandrite.refresh_dashboards() > 0 AS folded;
SELECT * FROM pg_temp.dash_check('clock, folded');
DO $$
DECLARE
    -- the last moment one of them changes class: its due time, or 24 h before
    v_until    timestamptz := (SELECT max(sla_due_at - CASE WHEN sla_due_at > now() + interval '12 hours'
                                                          THEN interval '24 hours' ELSE interval '0' END)
                                 FROM alexandrite.orders WHERE external_ref LIKE 'dw-clock-%');
    v_deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
    WHILE clock_timestamp() <= v_until LOOP
        IF clock_timestamp() > v_deadline THEN
            RAISE EXCEPTION 'the clock did not pass % within 60 s', v_until;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END;
$$;
SELECT * FROM pg_temp.dash_check('clock, after');
-- (at least the four due now + 1 to 1.8 s; a random order may join them)
SELECT breached_orders - :breached_before >= 4 AS newly_breached FROM alexandrite.dashboard_sla WHERE channel = 'crm';

-- a repeatable-read transaction sees its own changes in the views
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT sum(orders) AS total FROM alexandrite.dashboard_status_counts \gset
SELECT pg_temp.dash_random_op() IS NOT NULL AS wrote;
SELECT * FROM pg_temp.dash_check('repeatable read');
COMMIT;

-- A library call writes its deltas when it ends, not at the end of each of
-- its statements (src/dashboard/pending.c): the views show its change before
-- the transaction commits.  A call that fails inside a savepoint must not
-- leave that wait behind: the direct write after it is in the views too
-- (with the wait left, status_counts and sla are false there).
BEGIN;
SELECT alexandrite.create_order('dw-held-' || nextval('pg_temp.dw_seq'), 'crm', 'c', NULL, NULL) AS held_id \gset
SELECT * FROM pg_temp.dash_check('after a library call, before commit');
DO $$
BEGIN
    PERFORM alexandrite.set_status(currval('alexandrite.orders_id_seq'), 'shipped');
    RAISE EXCEPTION 'new -> shipped was accepted';
EXCEPTION WHEN invalid_parameter_value OR object_not_in_prerequisite_state OR check_violation THEN
    NULL;
END $$;
UPDATE alexandrite.orders SET status = 'cancelled', channel = 'shop' WHERE id = :held_id;
SELECT * FROM pg_temp.dash_check('a direct write after a failed call');
-- (rolled back: the order's event would outlive the clean-up of its order)
ROLLBACK;
SELECT * FROM pg_temp.dash_check('after a failed call, rolled back');

-- TRUNCATE empties the dashboards in the same transaction (rolled back here)
BEGIN;
TRUNCATE alexandrite.orders CASCADE;
SELECT * FROM pg_temp.dash_check('truncated');
SELECT count(*) AS rows_after_truncate FROM alexandrite.dashboard_status_counts;
ROLLBACK;
SELECT * FROM pg_temp.dash_check('truncate rolled back');

-- rebuild and reconcile agree
SELECT alexandrite.rebuild_dashboard('dw_value') >= 0 AS rebuilt;
SELECT dashboard, ok FROM alexandrite.reconcile_dashboards() ORDER BY dashboard;
SELECT * FROM pg_temp.dash_check('end');

-- clean up what this file added (the contract dashboards stay)
SELECT alexandrite.drop_dashboard('dw_value');
DELETE FROM alexandrite.orders WHERE external_ref LIKE 'dw-%';
DELETE FROM alexandrite.operators WHERE id LIKE 'dwop%';
-- other capabilities keep per-operator state of their own (the SLA
-- capability's operator_load): leave nothing of our operators behind
DO $$
BEGIN
    IF pg_catalog.to_regclass('alexandrite.operator_load') IS NOT NULL THEN
        EXECUTE 'DELETE FROM alexandrite.operator_load WHERE operator_id LIKE ''dwop%''';
    END IF;
END;
$$;
-- and leave orders as the next tests expect them: no dead rows, the same ids
VACUUM (ANALYZE) alexandrite.orders;
SELECT pg_catalog.setval('alexandrite.orders_id_seq', :dw_seq_last, :'dw_seq_called'::boolean) IS NOT NULL AS ids_given_back;
SELECT * FROM pg_temp.dash_check('cleaned up');
RESET client_min_messages;
