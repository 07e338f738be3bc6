-- price_quote over stored mesh metadata: golden figures computed by hand,
-- warnings, errors with their SQLSTATEs, and agreement with the naive SQL
-- formula (bench/pricing_naive.sql) on many meshes.
\set VERBOSITY terse
\set SHOW_CONTEXT never

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/include/try.sql

-- The price list and materials these figures assume (the shipped version 1;
-- set explicitly in case an earlier test changed them).
UPDATE alexandrite.price_rules
   SET currency = 'EUR', currency_exponent = 2, labour_base = 25.00,
       complexity_tiers = '[{"from_triangles": 0, "charge": 0}, {"from_triangles": 50000, "charge": 5.00},
                            {"from_triangles": 250000, "charge": 15.00}, {"from_triangles": 1000000, "charge": 30.00}]',
       finishing_per_cm2 = 0.80, stone_setting_per_stone = 4.50, margin_pct = 30,
       minimum_price = 40.00, rounding_increment = 0.05, rounding_mode = 'half_up'
 WHERE (currency, currency_exponent, labour_base, complexity_tiers, finishing_per_cm2,
        stone_setting_per_stone, margin_pct, minimum_price, rounding_increment, rounding_mode)
       IS DISTINCT FROM
       ('EUR', 2, 25.00, '[{"from_triangles": 0, "charge": 0}, {"from_triangles": 50000, "charge": 5.00},
                           {"from_triangles": 250000, "charge": 15.00}, {"from_triangles": 1000000, "charge": 30.00}]'::jsonb,
        0.80, 4.50, 30, 40.00, 0.05, 'half_up');
UPDATE alexandrite.materials m
   SET density_g_cm3 = v.d, price_per_gram = v.p, casting_loss_pct = v.l, active = true
  FROM (VALUES ('ag925', 10.36, 1.10, 6), ('au750_yellow', 15.58, 60.00, 5), ('au585_yellow', 13.07, 47.00, 5),
               ('pt950', 20.80, 34.00, 4), ('brass', 8.40, 0.05, 8)) AS v(code, d, p, l)
 WHERE m.code = v.code
   AND (m.density_g_cm3, m.price_per_gram, m.casting_loss_pct, m.active) IS DISTINCT FROM (v.d, v.p, v.l, true);

-- Test meshes with known geometry (ids from 910001 up, clear of the others).
INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
                                size_x_mm, size_y_mm, size_z_mm, shells, watertight,
                                boundary_edges, nonmanifold_edges, degenerate_triangles)
VALUES
 -- a 10 mm cube: V = 1000 mm3, A = 600 mm2
 (910001, sha256('pricing cube 10'), 'cube10.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0),
 -- ring band, annular prism N = 1024, R = 10, r = 8.5, h = 4 (design note 5.5)
 (910002, sha256('pricing band'), 'band.stl', 'stl', 8192, 4096, 348.714596, 639.312282, 20, 20, 4, 1, true, 0, 0, 0),
 -- torus R = 10, r = 1.5 at 1000 x 500 segments: 1,000,000 triangles
 (910003, sha256('pricing torus'), 'torus.stl', 'stl', 1000000, 500000, 444.117588, 592.169933, 23, 23, 3, 1, true, 0, 0, 0),
 -- an ear stud: 20 mm3, 50 mm2
 (910004, sha256('pricing stud'), 'stud.obj', 'obj', 2000, 1002, 20, 50, 4, 4, 2, 1, true, 0, 0, 0),
 -- the cube with one face missing
 (910005, sha256('pricing open cube'), 'open.stl', 'stl', 10, 8, 1000, 500, 10, 10, 10, 1, false, 4, 0, 0),
 -- two overlapping cubes exported as two shells
 (910006, sha256('pricing two cubes'), 'two.stl', 'stl', 24, 16, 2000, 1200, 15, 10, 10, 2, true, 0, 0, 0),
 -- a cube that was drawn in cm and read as mm
 (910007, sha256('pricing cm cube'), 'cm.stl', 'stl', 12, 8, 0.064, 0.96, 0.4, 0.4, 0.4, 1, true, 0, 0, 0),
 -- the 10 mm cube with two zero-area triangles
 (910008, sha256('pricing degenerate'), 'degen.stl', 'stl', 14, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 2),
 -- non-manifold edges, and nothing enclosed
 (910009, sha256('pricing flat'), 'flat.stl', 'stl', 4, 5, 0, 200, 10, 10, 0, 1, false, 0, 2, 0);

-- Cube in sterling silver (ag925: 10.36 g/cm3, 1.10 EUR/g, 6 % loss):
--   metal  1 cm3 * 10.36 * 1.06 = 10.9816 -> 10.982 g; * 1.10 = 12.0802 -> 12.08
--   labour 25.00 (12 triangles: tier 0, charge 0); finishing 6 cm2 * 0.80 = 4.80
--   subtotal 41.88; margin 30 % = 12.564 -> 12.56; 54.44 -> to 0.05: 54.45
SELECT total, currency, metal_weight_g, metal_cost, labour_cost, finishing_cost
  FROM alexandrite.price_quote(910001, 'ag925');

-- Cube in 18k yellow gold with 3 stones (15.58 g/cm3, 60.00 EUR/g, 5 %):
--   metal 15.58 * 1.05 = 16.359 g; * 60 = 981.54
--   labour 25.00 + 3 * 4.50 = 38.50; finishing 4.80; subtotal 1024.84
--   margin 307.452 -> 307.45; 1332.29 -> 1332.30
SELECT total, metal_weight_g, metal_cost, labour_cost, finishing_cost
  FROM alexandrite.price_quote(910001, 'au750_yellow', '{"stones": 3}');

-- Ring band in platinum 950 (20.80 g/cm3, 34.00 EUR/g, 4 %):
--   V 348.714596 -> 348.715 mm3; net 0.348715 * 20.80 = 7.253272 -> 7.253 g
--   metal 7.253272 * 1.04 = 7.54340288 -> 7.543 g; * 34 = 256.462 -> 256.46
--   A 639.312 mm2 = 6.39312 cm2 * 0.80 = 5.114496 -> 5.11; labour 25.00 (8192 tri)
--   subtotal 286.57; margin 85.971 -> 85.97; 372.54 -> 372.55
SELECT total, metal_weight_g, metal_cost, labour_cost, finishing_cost,
       breakdown->'net_weight_g' AS net_g, breakdown->'volume_mm3' AS v, breakdown->'area_mm2' AS a
  FROM alexandrite.price_quote(910002, 'pt950');

-- Torus in 14k yellow gold (13.07 g/cm3, 47.00 EUR/g, 5 %), 1M triangles:
--   V 444.118 mm3; metal 0.444118 * 13.07 * 1.05 = 6.094853373 -> 6.095 g
--   * 47 = 286.465 -> 286.47 (half up); finishing 5.92170 * 0.80 = 4.73736 -> 4.74
--   labour 25.00 + 30.00 (tier from 1,000,000); subtotal 346.21
--   margin 103.863 -> 103.86; 450.07 -> 450.05 (adjustment -0.02)
SELECT total, metal_weight_g, metal_cost, labour_cost, finishing_cost,
       breakdown->'complexity_tier_from' AS tier, breakdown->'rounding_adjustment' AS adj
  FROM alexandrite.price_quote(910003, 'au585_yellow');
-- one triangle less is the tier below
UPDATE alexandrite.meshes SET triangles = 999999 WHERE id = 910003;
SELECT labour_cost, breakdown->'complexity_tier_from' AS tier, breakdown->'complexity_charge' AS charge
  FROM alexandrite.price_quote(910003, 'au585_yellow');
UPDATE alexandrite.meshes SET triangles = 1000000 WHERE id = 910003;

-- Ear stud in silver: 0.020 cm3 -> 0.219632 -> 0.220 g -> 0.24; finishing 0.40
--   subtotal 25.64; margin 7.69; 33.33 is below the minimum: 40.00
SELECT total, metal_weight_g, metal_cost, breakdown->'subtotal' AS subtotal,
       breakdown->'minimum_applied' AS minimum_applied
  FROM alexandrite.price_quote(910004, 'ag925');

-- The whole breakdown of the first quote
SELECT jsonb_pretty(breakdown - 'price_list_version'),
       (breakdown->>'price_list_version')::bigint = price_list_version
       AND price_list_version = (SELECT version FROM alexandrite.price_rules) AS current_version
  FROM alexandrite.price_quote(910001, 'ag925');

-- Meshes that need a look before the price is binding: quoted, flagged
SELECT m.id, q.total, q.breakdown->'needs_review' AS needs_review, q.breakdown->'warnings' AS warnings
  FROM alexandrite.meshes m, alexandrite.price_quote(m.id, 'ag925') q
 WHERE m.id BETWEEN 910001 AND 910009
 ORDER BY m.id;

-- Errors
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'unobtainium')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(999999999, 'ag925')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(NULL, 'ag925')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, NULL)$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'ag925', '{"stone": 2}')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'ag925', '[2]')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'ag925', '"x"')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'ag925', '{"stones": -1}')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'ag925', '{"stones": 2.5}')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'ag925', '{"stones": "2"}')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'ag925', '{"stones": 100001}')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'ag925', '{"accept_review": 1}')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'ag925', '{"price_list_version": 0}')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'ag925', '{"price_list_version": 987654321}')$$);
-- NULL options mean none
SELECT total FROM alexandrite.price_quote(910001, 'ag925', NULL);
-- an inactive material cannot be quoted
UPDATE alexandrite.materials SET active = false WHERE code = 'brass';
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910001, 'brass')$$);
UPDATE alexandrite.materials SET active = true WHERE code = 'brass';
SELECT total FROM alexandrite.price_quote(910001, 'brass');
-- geometry that cannot be priced
INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
                                size_x_mm, size_y_mm, size_z_mm, shells, watertight,
                                boundary_edges, nonmanifold_edges, degenerate_triangles)
VALUES (910010, sha256('pricing nan'), 'nan.stl', 'stl', 12, 8, 'NaN', 600, 10, 10, 10, 1, true, 0, 0, 0),
       (910011, sha256('pricing huge'), 'huge.stl', 'stl', 12, 8, 1e300, 600, 10, 10, 10, 1, true, 0, 0, 0);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910010, 'ag925')$$);
SELECT pg_temp.try($$SELECT alexandrite.price_quote(910011, 'ag925')$$);
DELETE FROM alexandrite.meshes WHERE id IN (910010, 910011);

-- The C function and the naive SQL formula agree to the last digit on
-- 3000 generated meshes x 5 materials x stones, breakdown included.
\getenv abs_srcdir PG_ABS_SRCDIR
\set ECHO none
\i :abs_srcdir/../bench/pricing_naive.sql
\set ECHO all
INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
                                size_x_mm, size_y_mm, size_z_mm, shells, watertight,
                                boundary_edges, nonmanifold_edges, degenerate_triangles)
SELECT 920000 + i, sha256(('pricing gen ' || i)::bytea), 'gen.stl', 'stl',
       (h1 % 2000000), 100, (h2 % 10000000) / 1234.567, (h3 % 10000000) / 987.654,
       1 + (h1 % 50), 1 + (h2 % 50), 1 + (h3 % 50), 1 + (i % 7 = 0)::int, i % 11 <> 0,
       (i % 11 = 0)::int * 3, 0, (i % 13 = 0)::int
  FROM generate_series(1, 3000) AS i,
       LATERAL (SELECT ('x' || substr(md5(i::text), 1, 8))::bit(32)::bigint AS h1,
                       ('x' || substr(md5(i::text), 9, 8))::bit(32)::bigint AS h2,
                       ('x' || substr(md5(i::text), 17, 8))::bit(32)::bigint AS h3) AS h;
SELECT count(*) AS quotes, count(*) FILTER (WHERE c IS DISTINCT FROM n) AS mismatches
  FROM alexandrite.meshes m
 CROSS JOIN (VALUES ('ag925'), ('au750_yellow'), ('au585_yellow'), ('pt950'), ('brass')) AS mt(code)
 CROSS JOIN LATERAL (SELECT jsonb_build_object('stones', m.id % 5) AS o) AS o
 CROSS JOIN LATERAL alexandrite.price_quote(m.id, mt.code, o.o) AS c
 CROSS JOIN LATERAL pricing_naive.price_quote(m.id, mt.code, o.o) AS n
 WHERE m.id > 920000 AND m.id <= 923000;
