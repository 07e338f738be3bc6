-- sla_priority: the formula, its properties, the policy cache and errors
\set VERBOSITY terse
SET timezone = 'UTC';

-- The worked example of docs/sla.md: orders created 2026-03-01 00:00 UTC with
-- the default targets, evaluated on 2026-03-08 00:00 and 2026-03-25 00:00.
SELECT p.channel, p.target, p.weight,
       round(alexandrite.sla_priority('2026-03-01', '2026-03-01'::timestamptz + p.target, p.channel,
                                      '2026-03-08')::numeric, 6) AS at_day_7,
       round(alexandrite.sla_priority('2026-03-01', '2026-03-01'::timestamptz + p.target, p.channel,
                                      '2026-03-25')::numeric, 6) AS at_day_24
  FROM alexandrite.sla_policies p
 WHERE p.customer_id IS NULL
 ORDER BY p.channel;

-- Priority against time for each channel (docs/sla.md, table): created at
-- day 0, due at day 0 + target, evaluated every few days.
SELECT d AS day,
       round(alexandrite.sla_priority('2026-03-01', '2026-03-22', 'shop',    '2026-03-01'::timestamptz + d * interval '1 day')::numeric, 3) AS shop,
       round(alexandrite.sla_priority('2026-03-01', '2026-03-15', 'crm',     '2026-03-01'::timestamptz + d * interval '1 day')::numeric, 3) AS crm,
       round(alexandrite.sla_priority('2026-03-01', '2026-03-11', 'b2b_api', '2026-03-01'::timestamptz + d * interval '1 day')::numeric, 3) AS b2b_api
  FROM unnest(ARRAY[0, 3, 7, 10, 12, 14, 17, 21, 24, 28]) d
 ORDER BY d;

-- Property 1: strictly increasing in "at", for every channel, from long
-- before the due time to long after it, in steps of one second to a week.
WITH steps AS (
    SELECT c.channel, s.step,
           '2026-03-11'::timestamptz + (i * s.step) AS at
      FROM unnest(ARRAY['shop', 'crm', 'b2b_api']) c(channel),
           unnest(ARRAY[interval '1 second', interval '1 minute', interval '1 hour', interval '1 day', interval '7 days']) s(step),
           generate_series(-400, 400) i),
     pr AS (
    SELECT channel, step, at,
           alexandrite.sla_priority('2026-03-01', '2026-03-11', channel, at) AS p
      FROM steps)
SELECT channel, bool_and(d > 0) AS strictly_increasing, count(*) AS pairs
  FROM (SELECT channel, p - lag(p) OVER (PARTITION BY channel, step ORDER BY at) AS d FROM pr) x
 WHERE d IS NOT NULL
 GROUP BY channel
 ORDER BY channel;

-- Property 2: once past due it rises faster: the gain over any hour after
-- the due time exceeds the gain over any hour before it.
WITH g AS (
    SELECT c.channel, h,
           alexandrite.sla_priority('2026-03-01', '2026-03-11', c.channel, '2026-03-11'::timestamptz + h * interval '1 hour')
         - alexandrite.sla_priority('2026-03-01', '2026-03-11', c.channel, '2026-03-11'::timestamptz + (h - 1) * interval '1 hour') AS gain
      FROM unnest(ARRAY['shop', 'crm', 'b2b_api']) c(channel), generate_series(-24 * 30, 24 * 30) h)
SELECT channel,
       (SELECT min(gain) FROM g g2 WHERE g2.channel = g.channel AND h > 0)
         > (SELECT max(gain) FROM g g2 WHERE g2.channel = g.channel AND h <= 0) AS faster_after_due
  FROM g GROUP BY channel ORDER BY channel;

-- Property 3: same channel and creation time: the earlier due time is more
-- urgent, whatever the moment of evaluation.
SELECT bool_and(alexandrite.sla_priority('2026-03-01', due1, c, at) > alexandrite.sla_priority('2026-03-01', due1 + gap, c, at))
       AS earlier_due_more_urgent
  FROM unnest(ARRAY['shop', 'crm', 'b2b_api']) c,
       generate_series('2026-03-02'::timestamptz, '2026-04-30', interval '3 days 5 hours') due1,
       unnest(ARRAY[interval '1 second', interval '1 hour', interval '2 days']) gap,
       generate_series('2026-02-01'::timestamptz, '2026-06-01', interval '6 days') at;

-- Property 4: a B2B contract outranks a shop order of the same lateness
-- (the same time before or after its own due time), early or late.
SELECT bool_and(alexandrite.sla_priority('2026-03-01', '2026-03-11', 'b2b_api', '2026-03-11'::timestamptz + l)
              > alexandrite.sla_priority('2026-02-18', '2026-03-11', 'shop',    '2026-03-11'::timestamptz + l))
       AS b2b_outranks_shop
  FROM generate_series(-1440, 1440, 7) h, LATERAL (SELECT h * interval '1 hour' AS l) x;

-- created_at does not enter the score (docs/sla.md: it must depend on the due
-- time alone within a channel for the index order to be the score order)
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-11', 'crm', '2026-03-05')
     = alexandrite.sla_priority('2025-01-01', '2026-03-11', 'crm', '2026-03-05') AS created_at_neutral;

-- "at" defaults to now(): an order due in 21 days from now scores 1/2 for shop
SELECT round(alexandrite.sla_priority(now(), now() + interval '21 days', 'shop')::numeric, 9) AS default_at;

-- The inverses used by order_board
SELECT alexandrite.sla_due_for_priority(
           alexandrite.sla_priority('2026-03-01', '2026-03-11', 'crm', '2026-03-20'), 'crm', '2026-03-20')
       BETWEEN '2026-03-11'::timestamptz - interval '1 ms' AND '2026-03-11'::timestamptz + interval '1 ms' AS due_inverse,
       alexandrite.sla_at_for_priority(
           alexandrite.sla_priority('2026-03-01', '2026-03-11', 'crm', '2026-03-05'), 'crm', '2026-03-11')
       BETWEEN '2026-03-05'::timestamptz - interval '1 ms' AND '2026-03-05'::timestamptz + interval '1 ms' AS at_inverse;
SELECT alexandrite.sla_due_for_priority(0, 'crm', '2026-03-01') AS no_due_scores_zero,
       alexandrite.sla_at_for_priority(-1, 'crm', '2026-03-01') AS never;

-- The policy cache follows the table: in this transaction at once, in others
-- at their next transaction (test/isolation/specs/sla_policy_cache.spec).
BEGIN;
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-11', 'b2b_api', '2026-03-11') AS before_change;
UPDATE alexandrite.sla_policies SET weight = 5 WHERE channel = 'b2b_api' AND customer_id IS NULL;
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-11', 'b2b_api', '2026-03-11') AS weight_5;
UPDATE alexandrite.sla_policies SET target = '5 days' WHERE channel = 'b2b_api' AND customer_id IS NULL;
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-11', 'b2b_api', '2026-03-16') AS target_5_days_late_5_days;
INSERT INTO alexandrite.sla_policies (channel, customer_id, target, weight) VALUES ('retail', NULL, '7 days', 2);
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-08', 'retail', '2026-03-08') AS new_channel;
-- a customer contract does not change the channel's score (sla_due_at carries it)
INSERT INTO alexandrite.sla_policies (channel, customer_id, target, weight) VALUES ('retail', 'vip', '1 day', 9);
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-08', 'retail', '2026-03-08') AS with_contract;
-- a channel with contracts only takes the strictest of them
DELETE FROM alexandrite.sla_policies WHERE channel = 'retail' AND customer_id IS NULL;
INSERT INTO alexandrite.sla_policies (channel, customer_id, target, weight) VALUES ('retail', 'small', '3 days', 1);
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-08', 'retail', '2026-03-09') AS contracts_only;
ROLLBACK;
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-11', 'b2b_api', '2026-03-11') AS after_rollback;
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-08', 'retail', '2026-03-08');
-- TRUNCATE reaches the cache too
BEGIN;
TRUNCATE alexandrite.sla_policies;
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-08', 'shop', '2026-03-08');
ROLLBACK;

-- In a parallel worker: each worker loads its own cache, with the query's
-- snapshot (a worker may not take a new one)
SET force_parallel_mode = on;
SELECT round(sum(alexandrite.sla_priority('2026-03-01', '2026-03-11', c, '2026-03-11'))::numeric, 6) AS in_worker
  FROM unnest(ARRAY['shop', 'crm', 'b2b_api']) c;
RESET force_parallel_mode;

-- Errors and edge cases
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-08', 'fax', '2026-03-08');
SELECT alexandrite.sla_priority('2026-03-01', 'infinity', 'shop', '2026-03-08');
SELECT alexandrite.sla_priority('2026-03-01', '2026-03-08', 'shop', '-infinity');
SELECT alexandrite.sla_priority(NULL, '2026-03-08', 'shop', '2026-03-08') IS NULL AS strict_null;
SELECT alexandrite.sla_due_for_priority('NaN', 'shop', '2026-03-08');
-- extreme but finite times give finite scores
SELECT alexandrite.sla_priority('2026-03-01', '4713-01-01 BC', 'shop', '294276-12-31') > 0 AS finite_huge,
       alexandrite.sla_priority('2026-03-01', '294276-12-31', 'shop', '4713-01-01 BC') > 0 AS finite_tiny;
RESET timezone;
