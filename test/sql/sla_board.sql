-- order_board: ranking, keyset pagination, one operator's board, errors;
-- and the proof obligation: the index-merged order is the sla_priority order
\set VERBOSITY terse

-- Earlier test files may leave open orders behind: close them, so that the
-- pool and the board hold only this file's orders.
SELECT count(alexandrite.set_status(id, 'cancelled', 'sla-tests')) >= 0 AS leftovers_closed
  FROM alexandrite.orders WHERE status < 'shipped';

-- 600 open orders over the three channels, due times from 40 days ago to 30
-- days ahead, many sharing a due time (orders created in one batch), some
-- held by operators, some closed.  Times set directly as a test fixture.
INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('sla_b1', 'B1', 1000), ('sla_b2', 'B2', 1000);
SELECT count(alexandrite.create_order('BRD-' || g, (ARRAY['shop', 'b2b_api', 'crm'])[1 + g % 3], 'c', NULL, NULL))
  FROM generate_series(1, 600) g;
UPDATE alexandrite.orders o
   SET sla_due_at = date_trunc('hour', now()) + ((hashint4(substr(o.external_ref, 5)::int) % 1680) / 2) * interval '1 hour'
  WHERE o.external_ref LIKE 'BRD-%';
SELECT count(alexandrite.assign_next(CASE WHEN g % 2 = 0 THEN 'sla_b1' ELSE 'sla_b2' END)) FROM generate_series(1, 80) g;
SELECT count(alexandrite.set_status(id, 'cancelled')) FROM alexandrite.orders
 WHERE external_ref LIKE 'BRD-%' AND substr(external_ref, 5)::int % 17 = 0 AND status < 'assigned';
SELECT count(*) AS open_orders, count(DISTINCT sla_due_at) AS distinct_due_times
  FROM alexandrite.orders WHERE status < 'shipped';

BEGIN;   -- one now() for the whole comparison
-- the first page is the top of the sla_priority ranking
SELECT array_agg(b.id ORDER BY n) = (SELECT array_agg(id) FROM (
           SELECT id FROM alexandrite.orders WHERE status < 'shipped'
            ORDER BY alexandrite.sla_priority(created_at, sla_due_at, channel) DESC, id LIMIT 50) x) AS first_page_is_top_50
  FROM alexandrite.order_board() WITH ORDINALITY AS b(id, external_ref, status, channel, operator_id, sla_due_at, priority, n);
-- the priority column is sla_priority now
SELECT bool_and(b.priority = alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel)) AS priority_is_sla_priority
  FROM alexandrite.order_board(NULL, 200) b JOIN alexandrite.orders o USING (id);

-- paging through everything, 37 rows at a time, gives the whole ranking:
-- each row once, in order
CREATE TEMP TABLE pages (n serial, id bigint, priority float8);
DO $$
DECLARE
    v_p float8;
    v_id bigint;
    v_got int;
BEGIN
    LOOP
        INSERT INTO pages (id, priority)
        SELECT b.id, b.priority FROM alexandrite.order_board(NULL, 37, v_p, v_id) b;
        GET DIAGNOSTICS v_got = ROW_COUNT;
        EXIT WHEN v_got = 0;
        SELECT p.priority, p.id INTO v_p, v_id FROM pages p ORDER BY p.n DESC LIMIT 1;
    END LOOP;
END $$;
SELECT count(*) AS paged_rows, count(DISTINCT id) AS distinct_rows,
       array_agg(id ORDER BY n) = (SELECT array_agg(id ORDER BY alexandrite.sla_priority(created_at, sla_due_at, channel) DESC, id)
                                     FROM alexandrite.orders WHERE status < 'shipped') AS pages_are_the_ranking
  FROM pages;
COMMIT;

-- pages fetched at different moments still neither repeat nor skip: later
-- pages are ranked at the moment of the first one
TRUNCATE pages RESTART IDENTITY;
INSERT INTO pages (id, priority) SELECT id, priority FROM alexandrite.order_board(NULL, 100);
SELECT pg_sleep(0.05);
INSERT INTO pages (id, priority)
SELECT b.id, b.priority
  FROM (SELECT priority, id FROM pages ORDER BY n DESC LIMIT 1) last,
       alexandrite.order_board(NULL, 100, last.priority, last.id) b;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows,
       array_agg(id ORDER BY n) = (SELECT array_agg(id) FROM (
           SELECT id FROM alexandrite.orders WHERE status < 'shipped'
            ORDER BY alexandrite.sla_priority(created_at, sla_due_at, channel,
                                              (SELECT alexandrite.sla_at_for_priority(p.priority, o.channel, o.sla_due_at)
                                                 FROM pages p JOIN alexandrite.orders o USING (id) WHERE p.n = 1)) DESC, id
            LIMIT 200) x) AS consistent
  FROM pages;
DROP TABLE pages;

-- one operator's board: only their open orders, in rank order
BEGIN;
SELECT count(*) AS b1_rows, bool_and(operator_id = 'sla_b1') AS only_b1,
       array_agg(id ORDER BY n) = (SELECT array_agg(id ORDER BY alexandrite.sla_priority(created_at, sla_due_at, channel) DESC, id)
                                     FROM alexandrite.orders WHERE operator_id = 'sla_b1' AND status < 'shipped') AS in_order
  FROM alexandrite.order_board('sla_b1', 1000) WITH ORDINALITY AS b(id, external_ref, status, channel, operator_id, sla_due_at, priority, n);
SELECT count(*) AS b1_page2
  FROM (SELECT priority, id FROM alexandrite.order_board('sla_b1', 30) OFFSET 29) last,
       alexandrite.order_board('sla_b1', 100, last.priority, last.id);
COMMIT;
SELECT count(*) FROM alexandrite.order_board('nobody');

-- served from the indexes: bounded range scans per channel, no full sort
-- (fresh statistics: the plan must not depend on when autovacuum last ran)
ANALYZE alexandrite.orders;
EXPLAIN (COSTS OFF)
SELECT o.id FROM alexandrite.orders o
 WHERE o.channel = 'crm' AND o.status < 'shipped'
 ORDER BY o.sla_due_at, o.id LIMIT 50;
EXPLAIN (COSTS OFF)
SELECT o.id FROM alexandrite.orders o
 WHERE o.channel = 'crm' AND o.status < 'assigned' AND o.operator_id IS NULL
 ORDER BY o.sla_due_at, o.id LIMIT 16;

-- errors and edges
SELECT count(*) FROM alexandrite.order_board(NULL, 0);
SELECT * FROM alexandrite.order_board(NULL, -1);
SELECT * FROM alexandrite.order_board(NULL, NULL);
SELECT * FROM alexandrite.order_board(NULL, 10, 1.5);
SELECT * FROM alexandrite.order_board(NULL, 10, 'NaN', 1);
-- a cursor row that no longer exists: ranked now, against after_priority
SELECT count(*) > 0 AS rows_below FROM alexandrite.order_board(NULL, 10, 1.0, -1);
SELECT bool_and(priority < 1.0) AS all_below FROM alexandrite.order_board(NULL, 10, 1.0, -1);
-- nothing scores at or below zero
SELECT count(*) FROM alexandrite.order_board(NULL, 10, 0, 1);

-- clean up
DELETE FROM alexandrite.orders WHERE external_ref LIKE 'BRD-%';
DELETE FROM alexandrite.operator_load;
DELETE FROM alexandrite.operators WHERE id IN ('sla_b1', 'sla_b2');
