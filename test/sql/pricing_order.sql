-- price_order: quote an order's mesh and material, keep the quote, set the
-- price and move the order to "priced" (with its order_event).
-- Runs after pricing_quote (meshes 910001..910009).
\set VERBOSITY terse
\set SHOW_CONTEXT never
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/include/try.sql

SELECT alexandrite.create_order('PRICE-1', 'shop', 'cust-p1', 910001, 'au750_yellow') AS o1 \gset
SELECT alexandrite.create_order('PRICE-2', 'shop', 'cust-p2', NULL, 'ag925') AS o2 \gset
SELECT alexandrite.create_order('PRICE-3', 'b2b_api', 'cust-p3', 910005, 'ag925') AS o3 \gset
SELECT alexandrite.create_order('PRICE-4', 'crm', 'cust-p4', 910002, NULL) AS o4 \gset
SELECT alexandrite.create_order('PRICE-5', 'shop', 'cust-p5', 910004, 'ag925') AS o5 \gset

-- the cube in 18k gold with 3 stones: 1332.30 (see pricing_quote)
SET alexandrite.actor = 'mes-pricing';
SELECT total, currency, metal_weight_g, metal_cost, labour_cost, finishing_cost
  FROM alexandrite.price_order(:o1, '{"stones": 3}');
RESET alexandrite.actor;
SELECT status, price FROM alexandrite.orders WHERE id = :o1;
SELECT from_status, to_status, actor FROM alexandrite.order_events WHERE order_id = :o1 ORDER BY id;
SELECT q.mesh_id, q.material, q.options, q.total, q.currency, q.needs_review, q.created_by,
       q.mesh_sha256 = m.sha256 AS hash_kept,
       q.price_list_version = (SELECT version FROM alexandrite.price_rules) AS current_version,
       q.breakdown->'stones' AS stones
  FROM alexandrite.quotes q JOIN alexandrite.meshes m ON m.id = q.mesh_id
 WHERE q.order_id = :o1;
-- the stored quote can be recomputed exactly from its version and options
SELECT (alexandrite.price_quote(q.mesh_id, q.material,
            q.options || jsonb_build_object('price_list_version', q.price_list_version))).breakdown
       = q.breakdown AS reproducible
  FROM alexandrite.quotes q WHERE q.order_id = :o1;

-- a priced order is not priced again
SELECT pg_temp.try(format('SELECT alexandrite.price_order(%s)', :o1));
-- no mesh yet, or no material yet
SELECT pg_temp.try(format('SELECT alexandrite.price_order(%s)', :o2));
SELECT pg_temp.try(format('SELECT alexandrite.price_order(%s)', :o4));
-- no such order
SELECT pg_temp.try('SELECT alexandrite.price_order(-1)');
-- invalid options are the quote's errors
SELECT pg_temp.try(format($$SELECT alexandrite.price_order(%s, '{"stones": "many"}')$$, :o5));
SELECT pg_temp.try(format($$SELECT alexandrite.price_order(%s, '{"stones": 1, "gift_wrap": true}')$$, :o5));
SELECT pg_temp.try(format($$SELECT alexandrite.price_order(%s, '{"price_list_version": 1}')$$, :o5));
-- an open mesh needs review: refused unless accepted explicitly
SELECT pg_temp.try(format('SELECT alexandrite.price_order(%s)', :o3));
SELECT status, price FROM alexandrite.orders WHERE id = :o3;
SELECT total, breakdown->'warnings' AS warnings
  FROM alexandrite.price_order(:o3, '{"accept_review": true}');
SELECT status, price FROM alexandrite.orders WHERE id = :o3;
SELECT needs_review, options FROM alexandrite.quotes WHERE order_id = :o3;

-- once the model is complete, the order can be priced
SELECT alexandrite.set_order_model(:o4, NULL, 'pt950');
SELECT total FROM alexandrite.price_order(:o4);
SELECT o.external_ref, o.status, o.price, q.total = o.price AS same
  FROM alexandrite.orders o JOIN alexandrite.quotes q ON q.order_id = o.id
 WHERE o.external_ref LIKE 'PRICE-%' ORDER BY o.external_ref;

-- a failed pricing leaves nothing behind
SELECT count(*) AS quotes FROM alexandrite.quotes WHERE order_id IN (:o2, :o5);
SELECT status, price FROM alexandrite.orders WHERE id IN (:o2, :o5) ORDER BY id;

-- a price belongs to the model and alloy it was computed for: an order sent
-- back to new keeps it until its model or material changes, then loses it
-- (else a move to priced would carry the old model's price)
INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('price-op', 'Pia', 3);
SELECT alexandrite.assign_order(:o1, 'price-op');
SELECT alexandrite.set_status(:o1, 'new');
SELECT status, price IS NOT NULL AS has_price FROM alexandrite.orders WHERE id = :o1;
SELECT alexandrite.set_order_model(:o1, NULL, 'au750_yellow');
SELECT status, price IS NOT NULL AS has_price FROM alexandrite.orders WHERE id = :o1;
SELECT alexandrite.set_order_model(:o1, NULL, 'ag925');
SELECT status, price FROM alexandrite.orders WHERE id = :o1;
SELECT total > 0 AS priced_again FROM alexandrite.price_order(:o1);
SELECT status, price = (SELECT total FROM alexandrite.quotes WHERE order_id = :o1 ORDER BY id DESC LIMIT 1) AS new_quote
  FROM alexandrite.orders WHERE id = :o1;
SELECT alexandrite.set_status(:o1, 'cancelled');
DELETE FROM alexandrite.operators WHERE id = 'price-op';
DELETE FROM alexandrite.operator_load WHERE operator_id = 'price-op';
