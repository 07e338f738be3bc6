/* sql/schema/core.sql: the order core: statuses, reference data, orders, their history and API
 * Part of the current install script (make concatenates the files of sql/schema in the
 * order of SCHEMA in the Makefile into alexandrite--<version>.sql).  A change
 * here needs the same change in the current upgrade script. */

------------------------------------------------------------------------------
-- Statuses and their transitions
------------------------------------------------------------------------------
CREATE TYPE alexandrite.order_status AS ENUM
    ('new', 'priced', 'assigned', 'in_production', 'quality_check', 'shipped', 'cancelled');
COMMENT ON TYPE alexandrite.order_status IS 'life cycle of an order; shipped and cancelled are final';

CREATE TABLE alexandrite.status_transitions (
    from_status alexandrite.order_status NOT NULL,
    to_status   alexandrite.order_status NOT NULL,
    description text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
COMMENT ON TABLE alexandrite.status_transitions IS 'the order state machine: every allowed status change';
INSERT INTO alexandrite.status_transitions (from_status, to_status, description) VALUES
    ('new',           'priced',        'a quote was accepted'),
    ('new',           'assigned',      'claimed by an operator before pricing'),
    ('new',           'cancelled',     'cancelled'),
    ('priced',        'assigned',      'claimed by an operator'),
    ('priced',        'cancelled',     'cancelled'),
    ('assigned',      'new',           'released back to the pool before pricing'),
    ('assigned',      'priced',        'released back to the pool'),
    ('assigned',      'in_production', 'production started'),
    ('assigned',      'cancelled',     'cancelled'),
    ('in_production', 'quality_check', 'production finished'),
    ('in_production', 'cancelled',     'cancelled'),
    ('quality_check', 'in_production', 'rework after a failed check'),
    ('quality_check', 'shipped',       'passed and shipped'),
    ('quality_check', 'cancelled',     'cancelled');

-- Every backend caches the state machine (src/core/transitions.c); a change
-- to the table tells them all to reload it.
CREATE FUNCTION alexandrite.status_transitions_invalidate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'alexandrite_status_transitions_invalidate'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.status_transitions_invalidate()
    IS 'internal: trigger that makes every backend reload its cached state machine';
REVOKE ALL ON FUNCTION alexandrite.status_transitions_invalidate() FROM PUBLIC;
CREATE TRIGGER status_transitions_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON alexandrite.status_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.status_transitions_invalidate();
COMMENT ON TRIGGER status_transitions_invalidate ON alexandrite.status_transitions
    IS 'invalidates the per-backend cache of the state machine when the transitions change';

-- The payload of order.status_changed, built and checked by the order
-- core's C code, for its one-statement status write (src/core/orders.c).
CREATE FUNCTION alexandrite.order_status_payload(
    order_id bigint, external_ref text, from_status text, to_status text, at timestamptz,
    actor text, operator_id text, sla_due_at timestamptz, headers jsonb)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'alexandrite_order_status_payload'
    LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.order_status_payload(bigint, text, text, text, timestamptz, text, text, timestamptz, jsonb)
    IS 'internal: the order.status_changed payload of a status write, checked against the relay''s limits';
REVOKE ALL ON FUNCTION alexandrite.order_status_payload(bigint, text, text, text, timestamptz, text, text, timestamptz, jsonb) FROM PUBLIC;

-- Open = neither shipped nor cancelled.  Kept as an immutable function so
-- that partial indexes and views say the same thing.
CREATE FUNCTION alexandrite.is_open(s alexandrite.order_status) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN s OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status;
COMMENT ON FUNCTION alexandrite.is_open(alexandrite.order_status) IS 'true unless the status is shipped or cancelled';

------------------------------------------------------------------------------
-- Reference data: materials, SLA policies, operators
------------------------------------------------------------------------------
CREATE TABLE alexandrite.materials (
    code             text PRIMARY KEY CHECK (code OPERATOR(pg_catalog.~) '^[a-z0-9_]{1,63}$'),
    name             text NOT NULL,
    density_g_cm3    numeric NOT NULL CHECK (density_g_cm3 OPERATOR(pg_catalog.>) 0),
    price_per_gram   numeric NOT NULL CHECK (price_per_gram OPERATOR(pg_catalog.>=) 0),
    casting_loss_pct numeric NOT NULL DEFAULT 5
                     CHECK (casting_loss_pct OPERATOR(pg_catalog.>=) 0 AND casting_loss_pct OPERATOR(pg_catalog.<) 100),
    active           boolean NOT NULL DEFAULT true,
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    seeded           boolean NOT NULL DEFAULT false,  -- installed by the extension, never changed since
    -- castability: thinnest wall the process holds, largest piece it takes
    -- (NULL: no limit); price_quote flags a mesh outside them for review
    min_wall_mm      numeric CHECK (min_wall_mm OPERATOR(pg_catalog.>) 0 AND min_wall_mm OPERATOR(pg_catalog.<) 100),
    max_build_x_mm   numeric CHECK (max_build_x_mm OPERATOR(pg_catalog.>) 0 AND max_build_x_mm OPERATOR(pg_catalog.<) 100000),
    max_build_y_mm   numeric CHECK (max_build_y_mm OPERATOR(pg_catalog.>) 0 AND max_build_y_mm OPERATOR(pg_catalog.<) 100000),
    max_build_z_mm   numeric CHECK (max_build_z_mm OPERATOR(pg_catalog.>) 0 AND max_build_z_mm OPERATOR(pg_catalog.<) 100000),
    -- the pricing code works on exact fixed-point figures: bounded decimals
    CONSTRAINT materials_pricing_scale CHECK (
        pg_catalog.scale(density_g_cm3) OPERATOR(pg_catalog.<=) 6
        AND density_g_cm3 OPERATOR(pg_catalog.<) 1000
        AND pg_catalog.scale(price_per_gram) OPERATOR(pg_catalog.<=) 6
        AND price_per_gram OPERATOR(pg_catalog.<) 1000000000
        AND pg_catalog.scale(casting_loss_pct) OPERATOR(pg_catalog.<=) 6)
);
COMMENT ON TABLE alexandrite.materials IS 'alloys an order can be cast in, with density and metal price';
COMMENT ON COLUMN alexandrite.materials.min_wall_mm IS 'thinnest wall the casting process holds in this alloy; a mesh with a thinner wall needs review (docs/pricing.md)';
COMMENT ON COLUMN alexandrite.materials.max_build_x_mm IS 'largest piece the process takes, first extent (the mesh may be turned: sorted extents are compared)';
COMMENT ON COLUMN alexandrite.materials.max_build_y_mm IS 'largest piece the process takes, second extent';
COMMENT ON COLUMN alexandrite.materials.max_build_z_mm IS 'largest piece the process takes, third extent';

-- Densities: Stuller specific-gravity tables, AU Enterprises and
-- 24carat.co.uk (see docs/pricing.md).  Prices per gram are placeholders in
-- EUR that the price list owner is expected to maintain.
-- Castability (docs/pricing.md): 0.8 mm walls, the minimum jewellery
-- casting guides ask for; a 76.2 x 101.6 x 101.6 mm flask (3 x 4 in, the
-- largest piece a CAD-to-cast service takes).
INSERT INTO alexandrite.materials (code, name, density_g_cm3, price_per_gram, casting_loss_pct, seeded,
                                   min_wall_mm, max_build_x_mm, max_build_y_mm, max_build_z_mm) VALUES
    ('au999',        'Fine gold 24k',             19.32, 78.00, 3, true, 0.8, 76.2, 101.6, 101.6),
    ('au750_yellow', '18k yellow gold',           15.58, 60.00, 5, true, 0.8, 76.2, 101.6, 101.6),
    ('au750_white',  '18k white gold (Pd)',       16.00, 64.00, 5, true, 0.8, 76.2, 101.6, 101.6),
    ('au750_rose',   '18k rose gold',             15.18, 59.00, 5, true, 0.8, 76.2, 101.6, 101.6),
    ('au585_yellow', '14k yellow gold',           13.07, 47.00, 5, true, 0.8, 76.2, 101.6, 101.6),
    ('au585_white',  '14k white gold',            12.61, 48.00, 5, true, 0.8, 76.2, 101.6, 101.6),
    ('au585_rose',   '14k rose gold',             13.00, 46.50, 5, true, 0.8, 76.2, 101.6, 101.6),
    ('ag925',        'Sterling silver 925',       10.36,  1.10, 6, true, 0.8, 76.2, 101.6, 101.6),
    ('ag999',        'Fine silver',               10.49,  1.20, 6, true, 0.8, 76.2, 101.6, 101.6),
    ('pt950',        'Platinum 950 (Co)',         20.80, 34.00, 4, true, 0.8, 76.2, 101.6, 101.6),
    ('pd950',        'Palladium 950',             12.00, 33.00, 4, true, 0.8, 76.2, 101.6, 101.6),
    ('brass',        'Brass (yellow, CuZn)',       8.40,  0.05, 8, true, 0.8, 76.2, 101.6, 101.6);

CREATE TABLE alexandrite.sla_policies (
    id          bigserial PRIMARY KEY,
    channel     text NOT NULL CHECK (channel OPERATOR(pg_catalog.~) '^[a-z0-9_]{1,63}$'),
    customer_id text,                      -- NULL: the channel's default
    target      interval NOT NULL CHECK (target OPERATOR(pg_catalog.>) '0'::interval),
    -- finite and positive ('NaN' compares greater than 'Infinity')
    weight      float8 NOT NULL DEFAULT 1
                CONSTRAINT sla_policies_weight_check
                CHECK (weight OPERATOR(pg_catalog.>) 0 AND weight OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.float8),
    note        text,
    seeded      boolean NOT NULL DEFAULT false,   -- installed by the extension, never changed since
    UNIQUE NULLS NOT DISTINCT (channel, customer_id)
);
COMMENT ON TABLE alexandrite.sla_policies IS 'promised processing time per channel, and per customer where a contract says so';
INSERT INTO alexandrite.sla_policies (channel, customer_id, target, weight, note, seeded) VALUES
    ('shop',    NULL, '21 days', 1.0, 'web shop: delivery promised within 3 weeks', true),
    ('b2b_api', NULL, '10 days', 3.0, 'B2B partners: contractual 10 days, penalties when late', true),
    ('crm',     NULL, '14 days', 1.5, 'orders taken by sales through the CRM', true);

-- Seed rows and pg_dump.  Both tables are dumped (pg_extension_config_dump),
-- and CREATE EXTENSION seeds them again before pg_restore loads the dump.  A
-- row that arrives with the key of a seed nobody has changed replaces that
-- seed, so a restore keeps the dumped values (and the user's edits of the
-- seeds) instead of failing on a duplicate key.  Any UPDATE makes a seed
-- the user's own.
CREATE FUNCTION alexandrite.seed_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
        NEW.seeded := false;
    ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'materials' THEN
        DELETE FROM alexandrite.materials m
         WHERE m.code OPERATOR(pg_catalog.=) NEW.code AND m.seeded;
    ELSE
        DELETE FROM alexandrite.sla_policies p
         WHERE p.channel OPERATOR(pg_catalog.=) NEW.channel
           AND p.customer_id IS NOT DISTINCT FROM NEW.customer_id AND p.seeded;
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION alexandrite.seed_guard() IS 'internal: lets pg_restore replace unchanged seed rows; an update makes a seed user-owned';
CREATE TRIGGER materials_seed_guard BEFORE INSERT OR UPDATE ON alexandrite.materials
    FOR EACH ROW EXECUTE FUNCTION alexandrite.seed_guard();
CREATE TRIGGER sla_policies_seed_guard BEFORE INSERT OR UPDATE ON alexandrite.sla_policies
    FOR EACH ROW EXECUTE FUNCTION alexandrite.seed_guard();

CREATE TABLE alexandrite.operators (
    -- 1 to 200 characters: it is a key of several indexes (operator_load,
    -- the dashboards), which a longer one would overflow
    id         text PRIMARY KEY
               CONSTRAINT operators_id_check
               CHECK (id OPERATOR(pg_catalog.<>) '' AND pg_catalog.length(id) OPERATOR(pg_catalog.<=) 200),
    name       text NOT NULL,
    capacity   integer NOT NULL DEFAULT 10 CHECK (capacity OPERATOR(pg_catalog.>=) 0),
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE alexandrite.operators IS 'people who work orders; capacity = open orders one may hold';


------------------------------------------------------------------------------
-- Orders and their history
------------------------------------------------------------------------------
CREATE TABLE alexandrite.orders (
    id                bigserial PRIMARY KEY,
    external_ref      text NOT NULL UNIQUE
                      CHECK (pg_catalog.length(external_ref) OPERATOR(pg_catalog.<=) 200),
    channel           text NOT NULL,
    customer_id       text NOT NULL,
    mesh_id           bigint REFERENCES alexandrite.meshes (id),
    material          text REFERENCES alexandrite.materials (code) ON UPDATE CASCADE,
    status            alexandrite.order_status NOT NULL DEFAULT 'new',
    operator_id       text REFERENCES alexandrite.operators (id) ON UPDATE CASCADE,
    price             numeric,
    payload           jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    sla_due_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    status_changed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    event_seq         bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE alexandrite.orders IS 'customer orders; write them through create_order and set_status';
COMMENT ON COLUMN alexandrite.orders.event_seq
    IS 'aggregate_seq of the order''s last outbox event (the order row is its lock and counter)';
CREATE INDEX orders_operator_open_idx ON alexandrite.orders (operator_id, sla_due_at)
    WHERE operator_id IS NOT NULL AND status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status;
CREATE INDEX orders_open_changed_idx ON alexandrite.orders (status_changed_at)
    WHERE status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status;
CREATE INDEX orders_customer_idx ON alexandrite.orders (customer_id, created_at);
CREATE INDEX orders_created_idx ON alexandrite.orders (created_at);

CREATE TABLE alexandrite.order_events (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES alexandrite.orders (id) ON DELETE CASCADE,
    from_status alexandrite.order_status,          -- NULL for the creation
    to_status   alexandrite.order_status NOT NULL,
    at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    actor       text,
    traceparent text,                              -- W3C trace context of the writer
    detail      jsonb
);
COMMENT ON TABLE alexandrite.order_events IS 'one row per status change of an order, written in the same transaction';
CREATE INDEX order_events_order_idx ON alexandrite.order_events (order_id, id);

CREATE TABLE alexandrite.sla_breaches (
    order_id         bigint PRIMARY KEY REFERENCES alexandrite.orders (id) ON DELETE CASCADE,
    sla_due_at       timestamptz NOT NULL,
    breached_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    status_at_breach alexandrite.order_status NOT NULL,
    operator_id      text
);
COMMENT ON TABLE alexandrite.sla_breaches IS 'orders that passed their due time while open, recorded once per order';

-- pg_dump keeps the rows of every table that holds user data
SELECT pg_catalog.pg_extension_config_dump('alexandrite.materials', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.sla_policies', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.sla_policies_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.operators', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.orders', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.orders_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.order_events', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.order_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.sla_breaches', '');

------------------------------------------------------------------------------
-- The order API
------------------------------------------------------------------------------

-- Who made a change: the explicit actor, else alexandrite.actor (which an
-- MES can SET LOCAL per transaction), else the database user.
CREATE FUNCTION alexandrite.current_actor(actor text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN COALESCE(NULLIF(actor, ''),
                    NULLIF(pg_catalog.current_setting('alexandrite.actor', true), ''),
                    CURRENT_USER::text);
COMMENT ON FUNCTION alexandrite.current_actor(text) IS 'the actor recorded for a change: argument, alexandrite.actor, or current_user';

-- The W3C traceparent the MES attached to this transaction
-- (SET LOCAL alexandrite.traceparent = '00-<trace-id>-<span-id>-01'), or NULL.
CREATE FUNCTION alexandrite.current_traceparent() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN NULLIF(pg_catalog.current_setting('alexandrite.traceparent', true), '');
COMMENT ON FUNCTION alexandrite.current_traceparent() IS 'the W3C traceparent set for this transaction (alexandrite.traceparent), or NULL';

-- The SLA policy that applies to a (channel, customer): the customer's own
-- contract first, else the channel default.  No row: unknown channel.
CREATE FUNCTION alexandrite.sla_policy_for(channel text, customer_id text)
    RETURNS alexandrite.sla_policies
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT p.* FROM alexandrite.sla_policies p
     WHERE p.channel OPERATOR(pg_catalog.=) sla_policy_for.channel
       AND (p.customer_id OPERATOR(pg_catalog.=) sla_policy_for.customer_id OR p.customer_id IS NULL)
     ORDER BY p.customer_id IS NULL, p.id
     LIMIT 1;
END;
COMMENT ON FUNCTION alexandrite.sla_policy_for(text, text) IS 'the SLA policy for a channel and customer (customer contract first)';

-- The model and alloy an order names must exist (the alloy must be active).
CREATE FUNCTION alexandrite.check_order_model(mesh_id bigint, material text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF mesh_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM alexandrite.meshes m WHERE m.id OPERATOR(pg_catalog.=) check_order_model.mesh_id) THEN
        RAISE EXCEPTION 'mesh % does not exist', mesh_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Store the model with alexandrite.mesh_ingest() first, or pass NULL until it is known.';
    END IF;
    IF material IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM alexandrite.materials m
         WHERE m.code OPERATOR(pg_catalog.=) check_order_model.material AND m.active) THEN
        RAISE EXCEPTION 'unknown material "%"', material
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See alexandrite.materials for the active materials.';
    END IF;
END;
$$;
COMMENT ON FUNCTION alexandrite.check_order_model(bigint, text)
    IS 'internal: raises 22023 for a missing mesh or an unknown or inactive material';

-- The order API: thin C entry points (src/core) into the one write routine
-- for orders.  They run as their caller (SECURITY INVOKER), capture the
-- caller as the default actor, and run their compiled statements as the
-- extension owner: a caller needs EXECUTE on them and nothing on the tables.
CREATE FUNCTION alexandrite.create_order(
    external_ref text, channel text, customer_id text, mesh_id bigint, material text,
    payload jsonb DEFAULT '{}')
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_create_order'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.create_order(text, text, text, bigint, text, jsonb)
    IS 'creates an order with its order.created event; idempotent on external_ref (a retry returns the same id)';

CREATE FUNCTION alexandrite.set_status(order_id bigint, status alexandrite.order_status, actor text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_set_status'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.set_status(bigint, alexandrite.order_status, text)
    IS 'moves an order along the state machine (alexandrite.status_transitions) and records the change and its event';

-- Giving an order to an operator changes two columns, operator_id and the
-- status, in one write.  Like every assignment it locks the operator's row
-- first and checks that the operator is active and has room.  Assignment
-- policies (alexandrite.assign_next) choose the order; this records a
-- choice made by hand.
CREATE FUNCTION alexandrite.assign_order(order_id bigint, operator_id text, actor text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_assign_order'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.assign_order(bigint, text, text)
    IS 'gives a new or priced order to an active operator below capacity: operator, status assigned and the order event in one update';

-- The model or the alloy of an order is often known only after the order:
-- attach them while the order is still new (a priced order keeps the model
-- its price was computed for).
CREATE FUNCTION alexandrite.set_order_model(order_id bigint, mesh_id bigint, material text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_set_order_model'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.set_order_model(bigint, bigint, text)
    IS 'attaches the mesh (and optionally the material) to a new order';

REVOKE ALL ON FUNCTION alexandrite.create_order(text, text, text, bigint, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.set_status(bigint, alexandrite.order_status, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.assign_order(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.set_order_model(bigint, bigint, text) FROM PUBLIC;

CREATE FUNCTION alexandrite.stuck_orders(older_than interval DEFAULT '24 hours')
    RETURNS TABLE (id bigint, external_ref text, status alexandrite.order_status, channel text,
                   operator_id text, status_changed_at timestamptz, stuck_for interval,
                   sla_due_at timestamptz, overdue boolean)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT o.id, o.external_ref, o.status, o.channel, o.operator_id, o.status_changed_at,
           pg_catalog.now() OPERATOR(pg_catalog.-) o.status_changed_at,
           o.sla_due_at, o.sla_due_at OPERATOR(pg_catalog.<) pg_catalog.now()
      FROM alexandrite.orders o
     WHERE o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status
       AND o.status_changed_at OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.-) stuck_orders.older_than)
     ORDER BY o.status_changed_at, o.id;
END;
COMMENT ON FUNCTION alexandrite.stuck_orders(interval)
    IS 'open orders whose status has not changed for at least older_than, longest first';
