-- The versioned price list: every change makes a version, history stays,
-- the backend cache follows (own transaction, rollback), old quotes can be
-- recomputed, other currencies and rounding modes are exact.
-- Runs after pricing_quote (its meshes 910001.. and pricing_naive).
\set VERBOSITY terse
\set SHOW_CONTEXT never
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/include/try.sql

SELECT version AS v0 FROM alexandrite.price_rules \gset
SELECT total, price_list_version - :v0 AS version FROM alexandrite.price_quote(910001, 'ag925');

-- a price change is a new version, made by the current actor
SET alexandrite.actor = 'pricing-team';
UPDATE alexandrite.price_rules SET margin_pct = 40, change_note = 'margin 40 %'
RETURNING version - :v0 AS version, margin_pct, changed_by, change_note;
RESET alexandrite.actor;
-- cube in ag925 again: 41.88 + 40 % = 41.88 + 16.752 -> 16.75 = 58.63 -> 58.65
SELECT total, breakdown->'margin' AS margin, price_list_version - :v0 AS version
  FROM alexandrite.price_quote(910001, 'ag925');
-- the old version is still there and still prices the same way
SELECT total FROM alexandrite.price_quote(910001, 'ag925', jsonb_build_object('price_list_version', :v0));
SELECT version - :v0 AS version, margin_pct, changed_by, change_note
  FROM alexandrite.price_list_versions WHERE version >= :v0 ORDER BY version;

-- the note belongs to one change only
UPDATE alexandrite.price_rules SET labour_base = 26.00;
SELECT version - :v0 AS version, labour_base, change_note FROM alexandrite.price_rules;

-- metal prices are not part of a version (they change daily): the cache
-- follows them at once, and each quote records the figures it used
UPDATE alexandrite.materials SET price_per_gram = 1.25 WHERE code = 'ag925';
SELECT max(version) - :v0 AS latest FROM alexandrite.price_list_versions;
-- 10.982 g * 1.25 = 13.7275 -> 13.73; labour 26.00; finishing 4.80;
-- subtotal 44.53; margin 40 % 17.812 -> 17.81; 62.34 -> 62.35
SELECT total, metal_cost, breakdown->'price_per_gram' AS price_per_gram, price_list_version - :v0 AS version
  FROM alexandrite.price_quote(910001, 'ag925');

-- inside a transaction the quote follows the transaction's own change,
-- and a rollback brings the old list back
BEGIN;
UPDATE alexandrite.price_rules SET finishing_per_cm2 = 2.00;
-- finishing 6 * 2.00 = 12.00; subtotal 51.73; margin 20.692 -> 20.69; 72.42 -> 72.40
SELECT total, finishing_cost FROM alexandrite.price_quote(910001, 'ag925');
ROLLBACK;
SELECT total, finishing_cost, price_list_version - :v0 AS version FROM alexandrite.price_quote(910001, 'ag925');

-- invalid changes are refused, and make no version
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET version = 99$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET changed_by = 'me'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET complexity_tiers = '[]'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET complexity_tiers = '{"from_triangles": 0}'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET complexity_tiers = '[{"from_triangles": 10, "charge": 1}]'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET complexity_tiers = '[{"from_triangles": 0, "charge": 1}, {"from_triangles": 0, "charge": 2}]'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET complexity_tiers = '[{"from_triangles": 0, "charge": -1}]'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET complexity_tiers = '[{"from_triangles": 0.5, "charge": 1}]'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET complexity_tiers = '[{"from_triangles": 0, "charge": 1, "x": 1}]'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET complexity_tiers = '[{"from_triangles": 0, "charge": "1"}]'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET rounding_mode = 'bankers'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET rounding_increment = 0.001$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET rounding_increment = 0$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET margin_pct = -5$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET labour_base = 1.0000001$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET currency = 'euro'$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_rules SET currency_exponent = 0$$);
SELECT pg_temp.try($$UPDATE alexandrite.materials SET price_per_gram = 1.0000001 WHERE code = 'ag925'$$);
SELECT pg_temp.try($$INSERT INTO alexandrite.price_rules (margin_pct) VALUES (1)$$);
SELECT pg_temp.try($$DELETE FROM alexandrite.price_rules$$);
SELECT pg_temp.try($$UPDATE alexandrite.price_list_versions SET margin_pct = 1$$);
SELECT pg_temp.try($$DELETE FROM alexandrite.price_list_versions$$);
SELECT pg_temp.try($$TRUNCATE alexandrite.price_list_versions CASCADE$$);
SELECT max(version) - :v0 AS latest FROM alexandrite.price_list_versions;

-- Yen: no decimals, whole-100 prices rounded up
UPDATE alexandrite.price_rules
   SET currency = 'JPY', currency_exponent = 0, labour_base = 4000, finishing_per_cm2 = 120,
       stone_setting_per_stone = 700, margin_pct = 25, minimum_price = 6000,
       rounding_increment = 100, rounding_mode = 'up';
UPDATE alexandrite.materials SET price_per_gram = 9200 WHERE code = 'au750_yellow';
-- cube in au750_yellow: 16.359 g * 9200 = 150502.8 -> 150503; finishing 6 * 120 = 720;
-- labour 4000; subtotal 155223; margin 38805.75 -> 38806; 194029 -> up to 100: 194100
SELECT total, currency, metal_cost, labour_cost, finishing_cost, breakdown->'rounding_adjustment' AS adj
  FROM alexandrite.price_quote(910001, 'au750_yellow');
-- stud in ag925: 0.220 g * 1.25 = 0.275 -> 0; finishing 0.5 * 120 = 60; 4060 + 1015 = 5075 < 6000
SELECT total, metal_cost, breakdown->'minimum_applied' AS minimum_applied
  FROM alexandrite.price_quote(910004, 'ag925');

-- Kuwaiti dinar: three decimals, rounded down to 0.005
UPDATE alexandrite.price_rules
   SET currency = 'KWD', currency_exponent = 3, labour_base = 8, finishing_per_cm2 = 0.25,
       stone_setting_per_stone = 1.5, margin_pct = 20, minimum_price = 12,
       rounding_increment = 0.005, rounding_mode = 'down';
UPDATE alexandrite.materials SET price_per_gram = 18.4 WHERE code = 'au750_yellow';
-- cube in au750_yellow with 2 stones: 16.359 * 18.4 = 301.0056 -> 301.006; finishing 1.500;
-- labour 8 + 3 = 11.000; subtotal 313.506; margin 62.7012 -> 62.701; 376.207 -> 376.205
SELECT total, currency, metal_cost, labour_cost, finishing_cost, breakdown->'rounding_adjustment' AS adj
  FROM alexandrite.price_quote(910001, 'au750_yellow', '{"stones": 2}');

-- C and the naive formula agree under these lists as well
SELECT count(*) AS quotes, count(*) FILTER (WHERE c IS DISTINCT FROM n) AS mismatches
  FROM alexandrite.meshes m
 CROSS JOIN (VALUES ('ag925'), ('au750_yellow'), ('pt950')) AS mt(code)
 CROSS JOIN LATERAL alexandrite.price_quote(m.id, mt.code, jsonb_build_object('stones', m.id % 3)) AS c
 CROSS JOIN LATERAL pricing_naive.price_quote(m.id, mt.code, jsonb_build_object('stones', m.id % 3)) AS n
 WHERE m.id > 920000 AND m.id <= 921000;
UPDATE alexandrite.price_rules
   SET currency = 'JPY', currency_exponent = 0, labour_base = 4000, finishing_per_cm2 = 120,
       stone_setting_per_stone = 700, margin_pct = 25, minimum_price = 6000,
       rounding_increment = 100, rounding_mode = 'up';
SELECT count(*) AS quotes, count(*) FILTER (WHERE c IS DISTINCT FROM n) AS mismatches
  FROM alexandrite.meshes m
 CROSS JOIN (VALUES ('ag925'), ('au750_yellow'), ('pt950')) AS mt(code)
 CROSS JOIN LATERAL alexandrite.price_quote(m.id, mt.code, jsonb_build_object('stones', m.id % 3)) AS c
 CROSS JOIN LATERAL pricing_naive.price_quote(m.id, mt.code, jsonb_build_object('stones', m.id % 3)) AS n
 WHERE m.id > 920000 AND m.id <= 921000;

-- every version can still price (with today's metal prices)
SELECT version - :v0 AS version, currency, rounding_mode, margin_pct, change_note
  FROM alexandrite.price_list_versions WHERE version > :v0 ORDER BY version;
SELECT v.version - :v0 AS version, q.total, q.currency
  FROM alexandrite.price_list_versions v,
       alexandrite.price_quote(910001, 'au750_yellow', jsonb_build_object('price_list_version', v.version)) q
 WHERE v.version >= :v0 ORDER BY v.version;

-- back to the shipped list for the tests that follow
UPDATE alexandrite.price_rules
   SET currency = 'EUR', currency_exponent = 2, labour_base = 25.00, finishing_per_cm2 = 0.80,
       stone_setting_per_stone = 4.50, margin_pct = 30, minimum_price = 40.00,
       rounding_increment = 0.05, rounding_mode = 'half_up', change_note = 'back to the shipped list';
UPDATE alexandrite.materials m SET price_per_gram = v.p
  FROM (VALUES ('ag925', 1.10), ('au750_yellow', 60.00)) AS v(code, p) WHERE m.code = v.code;
SELECT total, price_list_version - :v0 AS version FROM alexandrite.price_quote(910001, 'ag925');

-- materials is read by no view: a limit or a figure retyped by a DBA is
-- 55000 naming the column, not a float8 or a bigint read as a numeric (a
-- crash)
BEGIN;
ALTER TABLE alexandrite.materials ALTER COLUMN min_wall_mm TYPE float8;
SELECT pg_temp.try($$SELECT total FROM alexandrite.price_quote(910001, 'ag925')$$);
ROLLBACK;
BEGIN;
ALTER TABLE alexandrite.materials ALTER COLUMN density_g_cm3 TYPE bigint;
SELECT pg_temp.try($$SELECT total FROM alexandrite.price_quote(910001, 'ag925')$$);
ROLLBACK;
SELECT total, price_list_version - :v0 AS version FROM alexandrite.price_quote(910001, 'ag925');
