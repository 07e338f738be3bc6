/* sql/alexandrite--1.0--1.1.sql: generated from the fragments in sql/1.1, do not edit */
\echo Use "ALTER EXTENSION alexandrite UPDATE TO '1.1'" to load this file. \quit

-- ---- sql/1.1/10_mesh.sql ----
/* sql/1.1/10_mesh.sql: mesh analysis (mesh_stats, mesh_analyze, mesh_ingest) */

------------------------------------------------------------------------------
-- The statistics of one analysed mesh.  The first thirteen columns are the
-- contract (CONTRACT.md section 1); the rest explain them.
------------------------------------------------------------------------------
CREATE TYPE alexandrite.mesh_stats AS (
    triangles              bigint,
    vertices               bigint,
    volume_mm3             float8,
    area_mm2               float8,
    size_x_mm              float8,
    size_y_mm              float8,
    size_z_mm              float8,
    shells                 integer,
    watertight             boolean,
    boundary_edges         bigint,
    nonmanifold_edges      bigint,
    degenerate_triangles   bigint,
    sha256                 bytea,
    format                 text,
    unit_scale_mm          float8,
    inconsistent_edges     bigint,
    faces_reoriented       bigint,
    euler_characteristic   bigint,
    genus                  integer,
    volume_uncertainty_mm3 float8,
    min_x_mm               float8,
    min_y_mm               float8,
    min_z_mm               float8,
    warnings               text[],
    analyzer_version       integer,
    analysis_ms            float8
);
COMMENT ON TYPE alexandrite.mesh_stats IS 'metrics of a mesh file in millimetres, computed by alexandrite-meshd (see docs/mesh.md)';

------------------------------------------------------------------------------
-- meshes: the columns the analysis adds to the 1.0 table
------------------------------------------------------------------------------
ALTER TABLE alexandrite.meshes
    ADD COLUMN unit_scale_mm          float8,
    ADD COLUMN inconsistent_edges     bigint,
    ADD COLUMN faces_reoriented       bigint,
    ADD COLUMN euler_characteristic   bigint,
    ADD COLUMN genus                  integer,
    ADD COLUMN volume_uncertainty_mm3 float8,
    ADD COLUMN min_x_mm               float8,
    ADD COLUMN min_y_mm               float8,
    ADD COLUMN min_z_mm               float8,
    ADD COLUMN warnings               text[] NOT NULL DEFAULT '{}',
    ADD COLUMN analyzer_version       integer,
    ADD COLUMN size_bytes             bigint,
    ADD CONSTRAINT meshes_unit_check
        CHECK (unit OPERATOR(pg_catalog.=) ANY (ARRAY['mm', 'cm', 'm', 'in']::text[]));
COMMENT ON COLUMN alexandrite.meshes.unit IS 'unit the caller declared for unitless formats (STL, OBJ, PLY); glTF is metres and 3MF carries its own unit';
COMMENT ON COLUMN alexandrite.meshes.unit_scale_mm IS 'factor from the file''s unit to millimetres that was applied';
COMMENT ON COLUMN alexandrite.meshes.warnings IS 'flags for review: open_mesh, overlapping_shells, inner_void, unit_suspect, ... (docs/mesh.md)';
COMMENT ON COLUMN alexandrite.meshes.analyzer_version IS 'version of the metrics code that produced the row';
COMMENT ON COLUMN alexandrite.meshes.genus IS 'number of through-holes of a closed orientable mesh, NULL otherwise';
COMMENT ON COLUMN alexandrite.meshes.volume_uncertainty_mm3 IS 'error bound of the volume of an open mesh (0 when watertight)';

------------------------------------------------------------------------------
-- Functions.  Both spawn a helper process per call, so PUBLIC may not run
-- them; grant EXECUTE to the roles that upload models (docs/mesh.md).
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.mesh_analyze(data bytea, format text DEFAULT NULL, unit text DEFAULT 'mm')
    RETURNS alexandrite.mesh_stats
    AS 'MODULE_PATHNAME', 'alexandrite_mesh_analyze'
    LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION alexandrite.mesh_analyze(bytea, text, text)
    IS 'parse a mesh file (STL, OBJ, PLY, glTF/GLB, 3MF) in an isolated helper and return its metrics; stores nothing';
REVOKE ALL ON FUNCTION alexandrite.mesh_analyze(bytea, text, text) FROM PUBLIC;

CREATE FUNCTION alexandrite.mesh_ingest(data bytea, filename text, unit text DEFAULT 'mm')
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_mesh_ingest'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.mesh_ingest(bytea, text, text)
    IS 'analyse a mesh file and store it in alexandrite.meshes; the same bytes in the same unit return the same id without parsing again';
REVOKE ALL ON FUNCTION alexandrite.mesh_ingest(bytea, text, text) FROM PUBLIC;

-- ---- sql/1.1/20_pricing.sql ----
/* sql/1.1/20_pricing.sql: versioned price list, quotes and order pricing */


------------------------------------------------------------------------------
-- Materials: the pricing code works on exact fixed-point figures, so the
-- figures it reads must have a bounded number of decimals.
------------------------------------------------------------------------------
ALTER TABLE alexandrite.materials
    ADD CONSTRAINT materials_pricing_scale CHECK (
        pg_catalog.scale(density_g_cm3) OPERATOR(pg_catalog.<=) 6
        AND density_g_cm3 OPERATOR(pg_catalog.<) 1000
        AND pg_catalog.scale(price_per_gram) OPERATOR(pg_catalog.<=) 6
        AND price_per_gram OPERATOR(pg_catalog.<) 1000000000
        AND pg_catalog.scale(casting_loss_pct) OPERATOR(pg_catalog.<=) 6);

------------------------------------------------------------------------------
-- Price list versions: one immutable row per version.  The newest row is
-- the current price list (the view alexandrite.price_rules); an UPDATE of
-- that view adds a new row.  Metal prices live in alexandrite.materials and
-- are not part of a version (they change daily); every quote records the
-- metal figures it used in its breakdown.
------------------------------------------------------------------------------
CREATE SEQUENCE alexandrite.price_list_version_seq AS bigint;
COMMENT ON SEQUENCE alexandrite.price_list_version_seq IS 'price list version numbers';

CREATE TABLE alexandrite.price_list_versions (
    version                 bigint PRIMARY KEY
                            DEFAULT pg_catalog.nextval('alexandrite.price_list_version_seq'::pg_catalog.regclass),
    currency                text NOT NULL CHECK (currency OPERATOR(pg_catalog.~) '^[A-Z]{3}$'),
    currency_exponent       integer NOT NULL
                            CHECK (currency_exponent OPERATOR(pg_catalog.>=) 0 AND currency_exponent OPERATOR(pg_catalog.<=) 4),
    labour_base             numeric NOT NULL,
    complexity_tiers        jsonb NOT NULL,
    finishing_per_cm2       numeric NOT NULL,
    stone_setting_per_stone numeric NOT NULL,
    margin_pct              numeric NOT NULL,
    minimum_price           numeric NOT NULL,
    rounding_increment      numeric NOT NULL,
    rounding_mode           text NOT NULL,
    valid_from              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    changed_by              text DEFAULT alexandrite.current_actor(NULL),
    change_note             text,
    CONSTRAINT price_list_money_checks CHECK (
        labour_base OPERATOR(pg_catalog.>=) 0 AND labour_base OPERATOR(pg_catalog.<) 1000000000
        AND pg_catalog.scale(labour_base) OPERATOR(pg_catalog.<=) 6
        AND finishing_per_cm2 OPERATOR(pg_catalog.>=) 0 AND finishing_per_cm2 OPERATOR(pg_catalog.<) 1000000000
        AND pg_catalog.scale(finishing_per_cm2) OPERATOR(pg_catalog.<=) 6
        AND stone_setting_per_stone OPERATOR(pg_catalog.>=) 0 AND stone_setting_per_stone OPERATOR(pg_catalog.<) 1000000000
        AND pg_catalog.scale(stone_setting_per_stone) OPERATOR(pg_catalog.<=) 6
        AND margin_pct OPERATOR(pg_catalog.>=) 0 AND margin_pct OPERATOR(pg_catalog.<) 10000
        AND pg_catalog.scale(margin_pct) OPERATOR(pg_catalog.<=) 6
        AND minimum_price OPERATOR(pg_catalog.>=) 0 AND minimum_price OPERATOR(pg_catalog.<) 1000000000
        AND pg_catalog.scale(minimum_price) OPERATOR(pg_catalog.<=) currency_exponent
        AND rounding_increment OPERATOR(pg_catalog.>) 0 AND rounding_increment OPERATOR(pg_catalog.<) 1000000
        AND pg_catalog.scale(rounding_increment) OPERATOR(pg_catalog.<=) currency_exponent),
    CONSTRAINT price_list_rounding_mode CHECK (
        rounding_mode OPERATOR(pg_catalog.=) 'half_up' OR rounding_mode OPERATOR(pg_catalog.=) 'up'
        OR rounding_mode OPERATOR(pg_catalog.=) 'down'),
    CONSTRAINT price_list_tiers_array CHECK (pg_catalog.jsonb_typeof(complexity_tiers) OPERATOR(pg_catalog.=) 'array')
);
ALTER SEQUENCE alexandrite.price_list_version_seq OWNED BY alexandrite.price_list_versions.version;
COMMENT ON TABLE alexandrite.price_list_versions IS
    'every version of the price list, immutable; the newest is current';


-- The current price list: the newest version.  UPDATE it to make a new one.
CREATE VIEW alexandrite.price_rules AS
    SELECT v.version, v.currency, v.currency_exponent, v.labour_base, v.complexity_tiers,
           v.finishing_per_cm2, v.stone_setting_per_stone, v.margin_pct, v.minimum_price,
           v.rounding_increment, v.rounding_mode, v.valid_from, v.changed_by, v.change_note
      FROM alexandrite.price_list_versions v
     ORDER BY v.version DESC
     LIMIT 1;
COMMENT ON VIEW alexandrite.price_rules IS
    'the current price list; an UPDATE creates a new version (see alexandrite.price_list_versions)';

-- Raise 22023 unless tiers is a valid complexity tier list.
CREATE FUNCTION alexandrite.check_complexity_tiers(tiers jsonb) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tier jsonb;
    v_prev bigint := -1;
    v_from numeric;
    v_charge numeric;
    v_hint text := 'Give an array of {"from_triangles": n, "charge": x} objects, the first from 0, '
                   'from_triangles increasing, e.g. [{"from_triangles": 0, "charge": 0}, {"from_triangles": 100000, "charge": 12.5}].';
BEGIN
    IF tiers IS NULL OR pg_catalog.jsonb_typeof(tiers) OPERATOR(pg_catalog.<>) 'array'
       OR pg_catalog.jsonb_array_length(tiers) OPERATOR(pg_catalog.=) 0 THEN
        RAISE EXCEPTION 'complexity_tiers must be a non-empty JSON array'
            USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
    END IF;
    IF pg_catalog.jsonb_array_length(tiers) OPERATOR(pg_catalog.>) 100 THEN
        RAISE EXCEPTION 'complexity_tiers has more than 100 tiers'
            USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
    END IF;
    FOR v_tier IN SELECT e FROM pg_catalog.jsonb_array_elements(tiers) AS e LOOP
        IF pg_catalog.jsonb_typeof(v_tier) OPERATOR(pg_catalog.<>) 'object'
           OR NOT (v_tier OPERATOR(pg_catalog.?&) ARRAY['from_triangles', 'charge'])
           OR (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(v_tier)) OPERATOR(pg_catalog.<>) 2
           OR pg_catalog.jsonb_typeof(v_tier OPERATOR(pg_catalog.->) 'from_triangles') OPERATOR(pg_catalog.<>) 'number'
           OR pg_catalog.jsonb_typeof(v_tier OPERATOR(pg_catalog.->) 'charge') OPERATOR(pg_catalog.<>) 'number' THEN
            RAISE EXCEPTION 'invalid complexity tier %', v_tier
                USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
        END IF;
        v_from := (v_tier OPERATOR(pg_catalog.->>) 'from_triangles')::numeric;
        v_charge := (v_tier OPERATOR(pg_catalog.->>) 'charge')::numeric;
        IF pg_catalog.scale(v_from) OPERATOR(pg_catalog.<>) 0 OR v_from OPERATOR(pg_catalog.<) 0
           OR v_from OPERATOR(pg_catalog.>) 1000000000000
           OR v_charge OPERATOR(pg_catalog.<) 0 OR v_charge OPERATOR(pg_catalog.>=) 1000000000
           OR pg_catalog.scale(v_charge) OPERATOR(pg_catalog.>) 6 THEN
            RAISE EXCEPTION 'invalid complexity tier %', v_tier
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'from_triangles is a whole number >= 0; charge is >= 0 with at most 6 decimals.';
        END IF;
        IF v_prev OPERATOR(pg_catalog.<) 0 AND v_from OPERATOR(pg_catalog.<>) 0 THEN
            RAISE EXCEPTION 'the first complexity tier must start at 0 triangles'
                USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
        END IF;
        IF v_from::bigint OPERATOR(pg_catalog.<=) v_prev THEN
            RAISE EXCEPTION 'complexity tiers must have increasing from_triangles'
                USING ERRCODE = 'invalid_parameter_value', HINT = v_hint;
        END IF;
        v_prev := v_from::bigint;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION alexandrite.check_complexity_tiers(jsonb) IS
    'internal: raises invalid_parameter_value unless the argument is a valid complexity tier list';

-- Serialises the writers of price list versions until the end of the
-- transaction.  An advisory lock (on the table's OID under a fixed
-- alexandrite key) rather than LOCK TABLE, which would need UPDATE rights
-- on a table nobody may update.
CREATE FUNCTION alexandrite.price_list_lock() RETURNS void
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT pg_catalog.pg_advisory_xact_lock(1095520336,   -- 'ALXP'
               'alexandrite.price_list_versions'::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int4);
END;
COMMENT ON FUNCTION alexandrite.price_list_lock() IS
    'internal: serialises writers of alexandrite.price_list_versions until the end of the transaction';

-- Every version, however it is inserted, has valid complexity tiers.
CREATE FUNCTION alexandrite.price_list_versions_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM alexandrite.check_complexity_tiers(NEW.complexity_tiers);
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION alexandrite.price_list_versions_check() IS
    'internal: validates the complexity tiers of a new price list version';
CREATE TRIGGER price_list_versions_check BEFORE INSERT ON alexandrite.price_list_versions
    FOR EACH ROW EXECUTE FUNCTION alexandrite.price_list_versions_check();

-- UPDATE alexandrite.price_rules: store the new values as the next version.
-- Runs as the caller (no SECURITY DEFINER in alexandrite): changing the
-- price list needs UPDATE on the view, INSERT on price_list_versions and
-- USAGE on its sequence (docs/pricing.md, "Privileges").
CREATE FUNCTION alexandrite.price_rules_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.version IS DISTINCT FROM OLD.version OR NEW.valid_from IS DISTINCT FROM OLD.valid_from
       OR NEW.changed_by IS DISTINCT FROM OLD.changed_by THEN
        RAISE EXCEPTION 'version, valid_from and changed_by of the price list are set automatically'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Update only the price columns (and change_note); a new version is created.';
    END IF;
    PERFORM alexandrite.check_complexity_tiers(NEW.complexity_tiers);
    -- one writer of versions at a time; a version committed since this
    -- transaction read the list would be silently overwritten: refuse
    PERFORM alexandrite.price_list_lock();
    IF alexandrite.price_list_head() OPERATOR(pg_catalog.<>) OLD.version THEN
        RAISE EXCEPTION 'could not serialize access due to a concurrent price list change'
            USING ERRCODE = 'serialization_failure', HINT = 'Retry the transaction.';
    END IF;
    INSERT INTO alexandrite.price_list_versions
           (version, currency, currency_exponent, labour_base, complexity_tiers, finishing_per_cm2,
            stone_setting_per_stone, margin_pct, minimum_price, rounding_increment, rounding_mode,
            valid_from, changed_by, change_note)
    VALUES (pg_catalog.nextval('alexandrite.price_list_version_seq'::pg_catalog.regclass),
            NEW.currency, NEW.currency_exponent, NEW.labour_base, NEW.complexity_tiers,
            NEW.finishing_per_cm2, NEW.stone_setting_per_stone, NEW.margin_pct, NEW.minimum_price,
            NEW.rounding_increment, NEW.rounding_mode, pg_catalog.clock_timestamp(), alexandrite.current_actor(NULL),
            CASE WHEN NEW.change_note IS DISTINCT FROM OLD.change_note THEN NEW.change_note END)
    RETURNING version, valid_from, changed_by, change_note
         INTO NEW.version, NEW.valid_from, NEW.changed_by, NEW.change_note;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION alexandrite.price_rules_update() IS
    'internal: INSTEAD OF UPDATE trigger of alexandrite.price_rules, adds a price list version';

CREATE TRIGGER price_rules_update INSTEAD OF UPDATE ON alexandrite.price_rules
    FOR EACH ROW EXECUTE FUNCTION alexandrite.price_rules_update();

-- History is immutable: old quotes must stay explainable.
CREATE FUNCTION alexandrite.price_list_versions_immutable() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'price list versions cannot be changed or deleted'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'UPDATE alexandrite.price_rules to make a new version.';
END;
$$;
COMMENT ON FUNCTION alexandrite.price_list_versions_immutable() IS
    'internal: rejects UPDATE, DELETE and TRUNCATE of alexandrite.price_list_versions';
CREATE TRIGGER price_list_versions_immutable BEFORE UPDATE OR DELETE ON alexandrite.price_list_versions
    FOR EACH ROW EXECUTE FUNCTION alexandrite.price_list_versions_immutable();
CREATE TRIGGER price_list_versions_no_truncate BEFORE TRUNCATE ON alexandrite.price_list_versions
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.price_list_versions_immutable();

-- The newest committed version (or this transaction's own), whatever the
-- snapshot of the calling transaction: writers compare it with what they read.
CREATE FUNCTION alexandrite.price_list_head() RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_price_list_head'
    LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION alexandrite.price_list_head() IS
    'the newest price list version, as of now rather than as of the transaction snapshot';

-- Backends cache the current price list; a new version invalidates the caches.
CREATE FUNCTION alexandrite.price_list_invalidate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'alexandrite_price_list_invalidate'
    LANGUAGE C;
REVOKE ALL ON FUNCTION alexandrite.price_list_invalidate() FROM PUBLIC;
COMMENT ON FUNCTION alexandrite.price_list_invalidate() IS
    'internal: statement trigger that makes every backend reload its cached price list';
CREATE TRIGGER price_list_versions_invalidate AFTER INSERT ON alexandrite.price_list_versions
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.price_list_invalidate();
-- the cache holds the materials too
CREATE TRIGGER materials_price_cache_invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON alexandrite.materials
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.price_list_invalidate();

-- Version 1: an example list in EUR (see docs/pricing.md for the figures).
-- Its row is the same in every installation (valid_from -infinity), so that
-- pg_dump can leave it out ('WHERE version > 1') and a restore finds it.
INSERT INTO alexandrite.price_list_versions
       (version, currency, currency_exponent, labour_base, complexity_tiers, finishing_per_cm2,
        stone_setting_per_stone, margin_pct, minimum_price, rounding_increment, rounding_mode,
        valid_from, changed_by, change_note)
VALUES (pg_catalog.nextval('alexandrite.price_list_version_seq'::pg_catalog.regclass),
        'EUR', 2, 25.00,
        '[{"from_triangles": 0, "charge": 0},
          {"from_triangles": 50000, "charge": 5.00},
          {"from_triangles": 250000, "charge": 15.00},
          {"from_triangles": 1000000, "charge": 30.00}]',
        0.80, 4.50, 30, 40.00, 0.05, 'half_up',
        '-infinity', 'alexandrite', 'initial price list');

------------------------------------------------------------------------------
-- Quotes
------------------------------------------------------------------------------
CREATE TYPE alexandrite.quote AS (
    total              numeric,
    currency           text,
    metal_weight_g     numeric,
    metal_cost         numeric,
    labour_cost        numeric,
    finishing_cost     numeric,
    price_list_version bigint,
    breakdown          jsonb
);
COMMENT ON TYPE alexandrite.quote IS 'a price for one mesh in one material, with every term in breakdown';

CREATE FUNCTION alexandrite.price_quote(mesh_id bigint, material text, options jsonb DEFAULT '{}')
    RETURNS alexandrite.quote
    AS 'MODULE_PATHNAME', 'alexandrite_price_quote'
    LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION alexandrite.price_quote(bigint, text, jsonb) IS
    'prices a stored mesh in a material with the current (or an older) price list version';

CREATE TABLE alexandrite.quotes (
    id                 bigserial PRIMARY KEY,
    order_id           bigint NOT NULL REFERENCES alexandrite.orders (id) ON DELETE CASCADE,
    mesh_id            bigint NOT NULL REFERENCES alexandrite.meshes (id),
    mesh_sha256        bytea NOT NULL,
    material           text NOT NULL REFERENCES alexandrite.materials (code) ON UPDATE CASCADE,
    options            jsonb NOT NULL,
    price_list_version bigint NOT NULL REFERENCES alexandrite.price_list_versions (version),
    total              numeric NOT NULL,
    currency           text NOT NULL,
    metal_weight_g     numeric NOT NULL,
    metal_cost         numeric NOT NULL,
    labour_cost        numeric NOT NULL,
    finishing_cost     numeric NOT NULL,
    needs_review       boolean NOT NULL,
    breakdown          jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by         text
);
COMMENT ON TABLE alexandrite.quotes IS 'quotes given for orders, kept for audit with the price list version used';
CREATE INDEX quotes_order_idx ON alexandrite.quotes (order_id, id);
CREATE INDEX quotes_key_idx ON alexandrite.quotes (mesh_sha256, material, price_list_version);

CREATE FUNCTION alexandrite.price_order(order_id bigint, options jsonb DEFAULT '{}')
    RETURNS alexandrite.quote
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_order alexandrite.orders;
    v_mesh  alexandrite.meshes;
    v_quote alexandrite.quote;
    v_opts  jsonb := COALESCE(options, '{}'::jsonb);
BEGIN
    SELECT * INTO v_order FROM alexandrite.orders o
     WHERE o.id OPERATOR(pg_catalog.=) price_order.order_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order % does not exist', order_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_order.status OPERATOR(pg_catalog.<>) 'new'::alexandrite.order_status THEN
        RAISE EXCEPTION 'cannot price order % in status "%"', order_id, v_order.status
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Only orders in status "new" can be priced; see alexandrite.quotes for earlier quotes.';
    END IF;
    IF v_order.mesh_id IS NULL OR v_order.material IS NULL THEN
        RAISE EXCEPTION 'cannot price order % without a %', order_id,
              CASE WHEN v_order.mesh_id IS NULL THEN 'mesh' ELSE 'material' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Set the order''s mesh_id and material first.';
    END IF;

    IF pg_catalog.jsonb_typeof(v_opts) OPERATOR(pg_catalog.=) 'object'
       AND v_opts OPERATOR(pg_catalog.?) 'price_list_version' THEN
        RAISE EXCEPTION 'price_order always uses the current price list'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Remove "price_list_version"; it is for recomputing old quotes with price_quote().';
    END IF;

    v_quote := alexandrite.price_quote(v_order.mesh_id, v_order.material, v_opts);

    IF (v_quote.breakdown OPERATOR(pg_catalog.->>) 'needs_review')::boolean
       AND NOT COALESCE((v_opts OPERATOR(pg_catalog.->>) 'accept_review')::boolean, false) THEN
        RAISE EXCEPTION 'order % needs review before it can be priced', order_id
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('Mesh %s: %s.', v_order.mesh_id,
                               (SELECT pg_catalog.string_agg(w, ', ')
                                  FROM pg_catalog.jsonb_array_elements_text(
                                           v_quote.breakdown OPERATOR(pg_catalog.->) 'warnings') AS w)),
                  HINT = 'Repair the mesh, or pass {"accept_review": true} to price it as it is.';
    END IF;

    SELECT * INTO v_mesh FROM alexandrite.meshes m WHERE m.id OPERATOR(pg_catalog.=) v_order.mesh_id;
    INSERT INTO alexandrite.quotes
           (order_id, mesh_id, mesh_sha256, material, options, price_list_version, total, currency,
            metal_weight_g, metal_cost, labour_cost, finishing_cost, needs_review, breakdown, created_by)
    VALUES (v_order.id, v_order.mesh_id, v_mesh.sha256, v_order.material, v_opts,
            v_quote.price_list_version, v_quote.total, v_quote.currency, v_quote.metal_weight_g,
            v_quote.metal_cost, v_quote.labour_cost, v_quote.finishing_cost,
            (v_quote.breakdown OPERATOR(pg_catalog.->>) 'needs_review')::boolean, v_quote.breakdown,
            alexandrite.current_actor(NULL));

    -- The one direct write of orders outside the order core: the price.
    -- set_status then records the order_event (and with it order.priced).
    UPDATE alexandrite.orders o
       SET price = v_quote.total
     WHERE o.id OPERATOR(pg_catalog.=) v_order.id;
    PERFORM alexandrite.set_status(v_order.id, 'priced'::alexandrite.order_status, NULL::text);
    RETURN v_quote;
END;
$$;
COMMENT ON FUNCTION alexandrite.price_order(bigint, jsonb) IS
    'quotes an order''s mesh and material, stores the quote, sets the order price and moves it to priced';

SELECT pg_catalog.pg_extension_config_dump('alexandrite.price_list_versions',
                                           'WHERE version OPERATOR(pg_catalog.>) 1');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.price_list_version_seq', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.quotes', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.quotes_id_seq', '');

-- ---- sql/1.1/30_sla.sql ----
/* sql/1.1/30_sla.sql: SLA priority, assignment to operators, escalation, order board */

------------------------------------------------------------------------------
-- The score (C, src/sla/sla.c; formula and proofs in docs/sla.md)
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.sla_priority(created_at timestamptz, sla_due_at timestamptz,
                                         channel text, at timestamptz DEFAULT pg_catalog.now())
    RETURNS float8
    AS 'MODULE_PATHNAME', 'alexandrite_sla_priority'
    LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.sla_priority(timestamptz, timestamptz, text, timestamptz)
    IS 'urgency of an order at time "at": weight * phi((at - sla_due_at) / target) of the channel policy; higher is more urgent';

CREATE FUNCTION alexandrite.sla_due_for_priority(priority float8, channel text, at timestamptz)
    RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'alexandrite_sla_due_for_priority'
    LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.sla_due_for_priority(float8, text, timestamptz)
    IS 'the due time at which an order of the channel scores "priority" at time "at" (sla_priority inverted in the due time)';

CREATE FUNCTION alexandrite.sla_at_for_priority(priority float8, channel text, sla_due_at timestamptz)
    RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'alexandrite_sla_at_for_priority'
    LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.sla_at_for_priority(float8, text, timestamptz)
    IS 'the moment at which an order of the channel due at sla_due_at scores "priority" (sla_priority inverted in "at")';

CREATE FUNCTION alexandrite.sla_channels() RETURNS text[]
    AS 'MODULE_PATHNAME', 'alexandrite_sla_channels'
    LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.sla_channels()
    IS 'the channels that have an SLA policy, from the per-backend cache';

-- Every backend caches the channel policies; a change to the table tells
-- them all to reload (relcache invalidation, as pg_cron does for cron.job).
CREATE FUNCTION alexandrite.sla_policies_invalidate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'alexandrite_sla_policies_invalidate'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.sla_policies_invalidate()
    IS 'internal: trigger that makes every backend reload its cached SLA policies';
CREATE TRIGGER sla_policies_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON alexandrite.sla_policies
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.sla_policies_invalidate();
COMMENT ON TRIGGER sla_policies_invalidate ON alexandrite.sla_policies
    IS 'invalidates the per-backend cache of sla_priority when the policies change';

------------------------------------------------------------------------------
-- Index-friendly order.  For one channel and one moment, sla_priority is
-- strictly decreasing in sla_due_at, so (sla_due_at, id) ascending within a
-- channel is (priority descending, id ascending); the global order is the
-- merge of the channels' index scans by priority (docs/sla.md, "Proof").
------------------------------------------------------------------------------
-- the pool: open orders nobody holds (what assign_next and rebalance take)
CREATE INDEX orders_pool_due_idx ON alexandrite.orders (channel, sla_due_at, id)
    WHERE status OPERATOR(pg_catalog.<) 'assigned'::alexandrite.order_status AND operator_id IS NULL;
-- every open order (order_board, escalate_overdue)
CREATE INDEX orders_open_due_idx ON alexandrite.orders (channel, sla_due_at, id)
    WHERE status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status;

------------------------------------------------------------------------------
-- Claiming
------------------------------------------------------------------------------

-- How many open orders each operator holds, kept by a trigger on orders so
-- that assign_next checks capacity in O(1) instead of counting the
-- operator's orders (which a benchmark operator with a large capacity holds
-- by the ten thousand).  Only transitions that change who holds an open
-- order touch it: assignment, release, and shipping or cancelling a held
-- order.  assign_next reads it under the operator's row lock.
--
-- A missing row or a NULL count means "unknown": after TRUNCATE, a restore
-- (whose COPY fires the triggers row by row, at the end of the statement),
-- or a new operator.  A delta leaves an unknown count unknown (NULL + 1);
-- assign_next turns it into a known one under the operator's lock
-- (sla_known_load).  So the table is exact whenever it is not NULL, and it
-- is never both dumped and re-derived.
CREATE TABLE alexandrite.operator_load (
    operator_id text PRIMARY KEY,
    open_orders integer CHECK (open_orders OPERATOR(pg_catalog.>=) 0)
);
COMMENT ON TABLE alexandrite.operator_load
    IS 'open orders held per operator, kept by the orders_operator_load triggers; NULL or no row: unknown, counted on demand; derived data, not dumped';

-- The open orders an operator holds, made known: called with the operator's
-- row locked when operator_load has no count for them.  The load row is
-- locked before counting, so a concurrent change either committed before
-- the count (and is in it) or applies its delta after ours.
CREATE FUNCTION alexandrite.sla_known_load(operator_id text) RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_open integer;
BEGIN
    INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders)
    VALUES (sla_known_load.operator_id, NULL)
    ON CONFLICT ON CONSTRAINT operator_load_pkey DO NOTHING;
    SELECT l.open_orders INTO v_open
      FROM alexandrite.operator_load l
     WHERE l.operator_id OPERATOR(pg_catalog.=) sla_known_load.operator_id
       FOR UPDATE;
    IF v_open IS NULL THEN
        SELECT pg_catalog.count(*) INTO v_open
          FROM alexandrite.orders o
         WHERE o.operator_id OPERATOR(pg_catalog.=) sla_known_load.operator_id
           AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status;
        UPDATE alexandrite.operator_load l
           SET open_orders = v_open
         WHERE l.operator_id OPERATOR(pg_catalog.=) sla_known_load.operator_id;
    END IF;
    RETURN v_open;
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_known_load(text)
    IS 'internal: counts and records the open orders of an operator whose load is unknown (caller holds the operator lock)';

CREATE FUNCTION alexandrite.orders_operator_load() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' AND OLD.operator_id IS NOT NULL
       AND OLD.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status THEN
        -- a count that would go negative has drifted (writes that skipped
        -- the triggers): it becomes unknown rather than failing the write
        UPDATE alexandrite.operator_load l
           SET open_orders = CASE WHEN l.open_orders OPERATOR(pg_catalog.>) 0
                                  THEN l.open_orders OPERATOR(pg_catalog.-) 1 END
         WHERE l.operator_id OPERATOR(pg_catalog.=) OLD.operator_id;
        IF NOT FOUND THEN            -- no row: unknown, counted on demand
            INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders)
            VALUES (OLD.operator_id, NULL)
            ON CONFLICT ON CONSTRAINT operator_load_pkey DO NOTHING;
        END IF;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' AND NEW.operator_id IS NOT NULL
       AND NEW.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status THEN
        UPDATE alexandrite.operator_load l
           SET open_orders = l.open_orders OPERATOR(pg_catalog.+) 1
         WHERE l.operator_id OPERATOR(pg_catalog.=) NEW.operator_id;
        IF NOT FOUND THEN
            INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders)
            VALUES (NEW.operator_id, NULL)
            ON CONFLICT ON CONSTRAINT operator_load_pkey DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION alexandrite.orders_operator_load()
    IS 'internal: trigger keeping alexandrite.operator_load in step with orders';

CREATE TRIGGER orders_operator_load_ins
    AFTER INSERT ON alexandrite.orders FOR EACH ROW
    WHEN (NEW.operator_id IS NOT NULL)
    EXECUTE FUNCTION alexandrite.orders_operator_load();
CREATE TRIGGER orders_operator_load_upd
    AFTER UPDATE OF operator_id, status ON alexandrite.orders FOR EACH ROW
    WHEN (OLD.operator_id IS DISTINCT FROM NEW.operator_id
          OR (OLD.operator_id IS NOT NULL
              AND (OLD.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status)
                  OPERATOR(pg_catalog.<>) (NEW.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status)))
    EXECUTE FUNCTION alexandrite.orders_operator_load();
CREATE TRIGGER orders_operator_load_del
    AFTER DELETE ON alexandrite.orders FOR EACH ROW
    WHEN (OLD.operator_id IS NOT NULL)
    EXECUTE FUNCTION alexandrite.orders_operator_load();
COMMENT ON TRIGGER orders_operator_load_ins ON alexandrite.orders IS 'keeps alexandrite.operator_load';
COMMENT ON TRIGGER orders_operator_load_upd ON alexandrite.orders IS 'keeps alexandrite.operator_load';
COMMENT ON TRIGGER orders_operator_load_del ON alexandrite.orders IS 'keeps alexandrite.operator_load';

-- Rebuild operator_load from orders (after writes with
-- session_replication_role = replica, which skip the triggers).
-- Locks every operator, so it never races a claim.
CREATE FUNCTION alexandrite.sla_recount_load() RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    PERFORM 1 FROM alexandrite.operators op ORDER BY op.id FOR NO KEY UPDATE;
    LOCK TABLE alexandrite.operator_load IN EXCLUSIVE MODE;
    DELETE FROM alexandrite.operator_load;
    INSERT INTO alexandrite.operator_load (operator_id, open_orders)
    SELECT o.operator_id, pg_catalog.count(*)
      FROM alexandrite.orders o
     WHERE o.operator_id IS NOT NULL
       AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status
     GROUP BY o.operator_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_recount_load()
    IS 'rebuilds alexandrite.operator_load from the orders; returns the number of operators holding orders';

CREATE FUNCTION alexandrite.orders_operator_load_truncate() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE alexandrite.operator_load SET open_orders = 0;   -- no orders, no load
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION alexandrite.orders_operator_load_truncate()
    IS 'internal: empties alexandrite.operator_load when orders is truncated';
CREATE TRIGGER orders_operator_load_truncate
    AFTER TRUNCATE ON alexandrite.orders FOR EACH STATEMENT
    EXECUTE FUNCTION alexandrite.orders_operator_load_truncate();
COMMENT ON TRIGGER orders_operator_load_truncate ON alexandrite.orders IS 'keeps alexandrite.operator_load';

-- orders that existed before the upgrade
INSERT INTO alexandrite.operator_load (operator_id, open_orders)
SELECT o.operator_id, pg_catalog.count(*)
  FROM alexandrite.orders o
 WHERE o.operator_id IS NOT NULL
   AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status
 GROUP BY o.operator_id;

-- assign_next and rebalance lock an operator row and then count that
-- operator's open orders with a fresh snapshot; under REPEATABLE READ or
-- SERIALIZABLE the count would come from the transaction's first snapshot
-- and could miss a concurrent claim, so they refuse to run there.
CREATE FUNCTION alexandrite.sla_require_read_committed(what text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
        RAISE EXCEPTION '% requires the READ COMMITTED isolation level', what
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Call it in a READ COMMITTED transaction: capacity is checked under the operator''s row lock with a fresh snapshot.';
    END IF;
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_require_read_committed(text)
    IS 'internal: raises feature_not_supported outside READ COMMITTED';

-- The most urgent unheld order (new or priced, no operator), at time "at",
-- due before due_before, locked FOR NO KEY UPDATE; NULL when every such
-- order is taken or locked by a concurrent claimer.
--
-- Plans are generic (plan_cache_mode): replanning the candidate query on
-- every call cost four times its execution.
--
-- Candidates are the first lim rows of each channel's pool index (an index
-- range scan each), ranked by (priority desc, id asc).  The same statement
-- locks the first candidate nobody else holds (Limit over LockRows with SKIP
-- LOCKED: only the row returned is locked; a row claimed since the snapshot
-- fails the re-check and is skipped).  The ranking of truncated lists is
-- exact up to the last candidate of each truncated list; when lim or more
-- candidates were skipped (more concurrent claimers than lim), the row we
-- locked may lie beyond one, and we try again with a larger lim.  The row
-- locked by the failed attempt stays locked until commit, which only makes
-- other claimers skip it meanwhile (docs/sla.md).
CREATE FUNCTION alexandrite.sla_claim(at timestamptz, due_before timestamptz DEFAULT 'infinity')
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_lim  integer := 16;
    v_id   bigint;
    v_rank bigint;
BEGIN
    LOOP
        -- c: the candidates in rank order (the subquery's ORDER BY feeds the
        -- nested loop in order, so LockRows probes orders row by row and
        -- stops at the first one it can lock)
        SELECT o.id, c.rk INTO v_id, v_rank
          FROM (SELECT k.id, k.p, pg_catalog.row_number() OVER (ORDER BY k.p DESC, k.id) AS rk
                  FROM (SELECT h.id,
                               alexandrite.sla_priority(h.created_at, h.sla_due_at, ch.channel, sla_claim.at) AS p
                          FROM pg_catalog.unnest(alexandrite.sla_channels()) ch(channel)
                         CROSS JOIN LATERAL (
                               SELECT o2.id, o2.sla_due_at, o2.created_at
                                 FROM alexandrite.orders o2
                                WHERE o2.channel OPERATOR(pg_catalog.=) ch.channel
                                  AND o2.status OPERATOR(pg_catalog.<) 'assigned'::alexandrite.order_status
                                  AND o2.operator_id IS NULL
                                  AND o2.sla_due_at OPERATOR(pg_catalog.<) sla_claim.due_before
                                ORDER BY o2.sla_due_at, o2.id
                                LIMIT v_lim) h) k
                 ORDER BY k.p DESC, k.id) c
          JOIN alexandrite.orders o ON o.id OPERATOR(pg_catalog.=) c.id
         WHERE o.status OPERATOR(pg_catalog.<) 'assigned'::alexandrite.order_status
           AND o.operator_id IS NULL
         ORDER BY c.p DESC, c.id
         LIMIT 1
           FOR NO KEY UPDATE OF o SKIP LOCKED;
        -- Exact when fewer than lim candidates were skipped: a cut list's
        -- last candidate ranks after all of that list's others (Lemma 1),
        -- so it can precede the claimed row only if lim candidates did.
        IF v_id IS NOT NULL AND v_rank OPERATOR(pg_catalog.<=) v_lim THEN
            RETURN v_id;
        END IF;
        IF v_id IS NULL THEN
            -- nothing lockable among the candidates: done unless a list was cut short
            PERFORM 1 WHERE EXISTS (
                SELECT 1 FROM pg_catalog.unnest(alexandrite.sla_channels()) ch(channel)
                 CROSS JOIN LATERAL (
                       SELECT pg_catalog.count(*) AS n
                         FROM (SELECT 1 FROM alexandrite.orders o2
                                WHERE o2.channel OPERATOR(pg_catalog.=) ch.channel
                                  AND o2.status OPERATOR(pg_catalog.<) 'assigned'::alexandrite.order_status
                                  AND o2.operator_id IS NULL
                                  AND o2.sla_due_at OPERATOR(pg_catalog.<) sla_claim.due_before
                                LIMIT v_lim OPERATOR(pg_catalog.+) 1) x) k
                 WHERE k.n OPERATOR(pg_catalog.>) v_lim);
            IF NOT FOUND THEN
                RETURN NULL;
            END IF;
        END IF;
        v_lim := v_lim OPERATOR(pg_catalog.*) 8;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_claim(timestamptz, timestamptz)
    IS 'internal: locks and returns the most urgent order of the pool (new or priced, no operator) due before due_before';

-- Lock an operator and return the number of open orders they hold; ERROR for
-- an unknown operator, or (when must_be_active) an inactive one.
CREATE FUNCTION alexandrite.sla_lock_operator(operator_id text, must_be_active boolean,
                                              OUT capacity integer, OUT open_orders integer, OUT active boolean)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF operator_id IS NULL THEN
        RAISE EXCEPTION 'operator_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- One claimer per operator at a time.  NO KEY UPDATE leaves foreign-key
    -- checks on the operator (FOR KEY SHARE) unblocked.
    SELECT op.capacity, op.active INTO capacity, active
      FROM alexandrite.operators op
     WHERE op.id OPERATOR(pg_catalog.=) sla_lock_operator.operator_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'operator "%" does not exist', operator_id
            USING ERRCODE = 'no_data_found';
    END IF;
    IF must_be_active AND NOT active THEN
        RAISE EXCEPTION 'operator "%" is not active', operator_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Set alexandrite.operators.active to true to let the operator take orders.';
    END IF;
    -- a fresh snapshot (READ COMMITTED): every committed claim is counted;
    -- an uncommitted release or shipment still counts (errs on the safe side)
    SELECT l.open_orders INTO open_orders
      FROM alexandrite.operator_load l
     WHERE l.operator_id OPERATOR(pg_catalog.=) sla_lock_operator.operator_id;
    IF open_orders IS NULL THEN
        open_orders := alexandrite.sla_known_load(sla_lock_operator.operator_id);
    END IF;
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_lock_operator(text, boolean)
    IS 'internal: locks an operator row and counts the open orders the operator holds';

-- Give a locked pool order to an operator.  The core's assign_order writes
-- operator_id, status 'assigned' and the order event in ONE update of
-- alexandrite.orders (going through set_status took two non-HOT updates:
-- every index twice, the capture triggers twice, 30 % of the assignment rate,
-- docs/benchmarks-sla.md).  The outbox event follows from its trigger on
-- order_events.  The caller holds the row lock (sla_claim).
CREATE FUNCTION alexandrite.sla_give(order_id bigint, operator_id text) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM alexandrite.assign_order(sla_give.order_id, sla_give.operator_id);
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_give(bigint, text)
    IS 'internal: gives a locked pool order to an operator through the core''s assign_order';

CREATE FUNCTION alexandrite.assign_next(operator_id text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_capacity integer;
    v_open     integer;
    v_id       bigint;
BEGIN
    -- sla_require_read_committed's check, inlined: the call is only made
    -- to raise its error
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
        PERFORM alexandrite.sla_require_read_committed('assign_next');
    END IF;
    -- one claimer per operator at a time; its load under the lock
    SELECT l.capacity, l.open_orders INTO v_capacity, v_open
      FROM alexandrite.sla_lock_operator(assign_next.operator_id, true) l;
    IF v_open OPERATOR(pg_catalog.>=) v_capacity THEN
        RETURN NULL;                 -- at capacity
    END IF;
    v_id := alexandrite.sla_claim(pg_catalog.now());
    IF v_id IS NULL THEN
        RETURN NULL;                 -- nothing eligible
    END IF;
    -- operator, status and order event in one update of orders (the core's
    -- assign_order; the actor is alexandrite.actor, else the operator)
    PERFORM alexandrite.assign_order(v_id, assign_next.operator_id);
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION alexandrite.assign_next(text)
    IS 'claims the most urgent unassigned order (new or priced) for an active operator below capacity; NULL when none';

-- Back to the pool: the status the order had before it was assigned
-- ('priced' or 'new', from its history; else 'priced' when it has a price).
CREATE FUNCTION alexandrite.release_order(order_id bigint, actor text DEFAULT NULL)
    RETURNS alexandrite.order_status
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_order alexandrite.orders;
    v_back  alexandrite.order_status;
BEGIN
    SELECT * INTO v_order FROM alexandrite.orders o
     WHERE o.id OPERATOR(pg_catalog.=) release_order.order_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order % does not exist', order_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_order.status OPERATOR(pg_catalog.<>) 'assigned'::alexandrite.order_status THEN
        RAISE EXCEPTION 'cannot release order % in status "%"', order_id, v_order.status
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Only assigned orders go back to the pool; production has started on the others.';
    END IF;
    SELECT e.from_status INTO v_back
      FROM alexandrite.order_events e
     WHERE e.order_id OPERATOR(pg_catalog.=) release_order.order_id
       AND e.to_status OPERATOR(pg_catalog.=) 'assigned'::alexandrite.order_status
     ORDER BY e.id DESC
     LIMIT 1;
    IF v_back IS NULL OR v_back OPERATOR(pg_catalog.>=) 'assigned'::alexandrite.order_status THEN
        v_back := CASE WHEN v_order.price IS NOT NULL THEN 'priced'::alexandrite.order_status
                       ELSE 'new'::alexandrite.order_status END;
    END IF;
    -- set_status clears operator_id on the way back to new/priced
    PERFORM alexandrite.set_status(release_order.order_id, v_back, release_order.actor);
    RETURN v_back;
END;
$$;
COMMENT ON FUNCTION alexandrite.release_order(bigint, text)
    IS 'puts an assigned order back into the pool (status new or priced, no operator); returns the new status';

-- Spread the urgent part of the pool over the active operators by load:
-- 1. 'assigned' orders held by inactive operators go back to the pool;
-- 2. operators above capacity (it was lowered) give back their least urgent
--    'assigned' orders;
-- 3. pool orders due before now() + horizon, most urgent first, each go to
--    the active operator with the lowest load (open / capacity) who has room.
-- Returns one row per move.  All operator rows are locked (in id order) for
-- the duration, so assign_next cannot overfill anyone meanwhile.
CREATE FUNCTION alexandrite.rebalance(horizon interval DEFAULT '24 hours')
    RETURNS TABLE (order_id bigint, from_operator text, to_operator text)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now  timestamptz := pg_catalog.now();
    v_ops  text[];
    v_cap  integer[];
    v_open integer[];
    v_best integer;
    v_id   bigint;
    r      record;
BEGIN
    PERFORM alexandrite.sla_require_read_committed('rebalance');
    IF horizon IS NULL THEN
        RAISE EXCEPTION 'horizon must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM 1 FROM alexandrite.operators op ORDER BY op.id FOR NO KEY UPDATE;

    -- 1 and 2: give back what inactive or overfull operators hold
    FOR r IN
        SELECT o.id, o.operator_id
          FROM (SELECT o2.id, o2.operator_id, o2.status,
                       pg_catalog.row_number() OVER (PARTITION BY o2.operator_id
                                                     ORDER BY o2.sla_due_at, o2.id) AS rk,
                       op.capacity, op.active
                  FROM alexandrite.orders o2
                  JOIN alexandrite.operators op ON op.id OPERATOR(pg_catalog.=) o2.operator_id
                 WHERE o2.operator_id IS NOT NULL
                   AND o2.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status) o
         WHERE o.status OPERATOR(pg_catalog.=) 'assigned'::alexandrite.order_status
           AND (NOT o.active OR o.rk OPERATOR(pg_catalog.>) o.capacity)
         ORDER BY o.operator_id, o.id
    LOOP
        -- an order someone is changing right now is left for the next run
        -- (never wait on an order row while holding operator and load rows)
        PERFORM 1 FROM alexandrite.orders o
          WHERE o.id OPERATOR(pg_catalog.=) r.id
            AND o.status OPERATOR(pg_catalog.=) 'assigned'::alexandrite.order_status
            AND o.operator_id OPERATOR(pg_catalog.=) r.operator_id
            FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        PERFORM alexandrite.release_order(r.id, NULL);
        order_id := r.id; from_operator := r.operator_id; to_operator := NULL;
        RETURN NEXT;
    END LOOP;

    -- 3: fill the free capacity with the urgent pool (loads after 1 and 2,
    -- made known where they were not)
    v_ops := '{}'; v_cap := '{}'; v_open := '{}';
    FOR r IN SELECT op.id, op.capacity, l.open_orders
               FROM alexandrite.operators op
               LEFT JOIN alexandrite.operator_load l ON l.operator_id OPERATOR(pg_catalog.=) op.id
              WHERE op.active
              ORDER BY op.id
    LOOP
        v_ops := v_ops OPERATOR(pg_catalog.||) r.id;
        v_cap := v_cap OPERATOR(pg_catalog.||) r.capacity;
        v_open := v_open OPERATOR(pg_catalog.||) COALESCE(r.open_orders, alexandrite.sla_known_load(r.id));
    END LOOP;
    LOOP
        v_best := NULL;
        FOR i IN 1 .. COALESCE(pg_catalog.array_length(v_ops, 1), 0) LOOP
            CONTINUE WHEN v_open[i] OPERATOR(pg_catalog.>=) v_cap[i];
            IF v_best IS NULL
               OR (v_open[i]::float8 OPERATOR(pg_catalog./) v_cap[i])
                  OPERATOR(pg_catalog.<) (v_open[v_best]::float8 OPERATOR(pg_catalog./) v_cap[v_best]) THEN
                v_best := i;
            END IF;
        END LOOP;
        EXIT WHEN v_best IS NULL;    -- nobody has room
        v_id := alexandrite.sla_claim(v_now, v_now OPERATOR(pg_catalog.+) horizon);
        EXIT WHEN v_id IS NULL;      -- nothing urgent left
        PERFORM alexandrite.sla_give(v_id, v_ops[v_best]);
        v_open[v_best] := v_open[v_best] OPERATOR(pg_catalog.+) 1;
        order_id := v_id; from_operator := NULL; to_operator := v_ops[v_best];
        RETURN NEXT;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION alexandrite.rebalance(interval)
    IS 'releases orders of inactive or overfull operators and spreads pool orders due within horizon over active operators by load';

------------------------------------------------------------------------------
-- Escalation
------------------------------------------------------------------------------

-- Where the next escalate_overdue() must look.  An order can become
-- overdue-and-unrecorded only by its due time passing (the window since the
-- last run), or by a write that puts its due time in the past (an insert or
-- a changed sla_due_at: the orders_sla_backdated trigger asks for a full
-- scan).  A margin of one hour covers transactions that commit an order
-- after a run has already looked past its due time, and a full scan at
-- least every hour bounds anything else.  Derived state: not dumped (a
-- restore starts with a full scan).
CREATE TABLE alexandrite.sla_escalation_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    scan_from      timestamptz,          -- NULL: the next run scans every open order
    last_run       timestamptz,
    last_full_scan timestamptz
);
COMMENT ON TABLE alexandrite.sla_escalation_state
    IS 'internal: the due-time window the next escalate_overdue() scans (NULL: all)';
INSERT INTO alexandrite.sla_escalation_state (singleton) VALUES (true);

CREATE FUNCTION alexandrite.orders_sla_backdated() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- once per window: later rows find it NULL already and write nothing
    UPDATE alexandrite.sla_escalation_state s SET scan_from = NULL
     WHERE s.scan_from IS NOT NULL AND s.scan_from OPERATOR(pg_catalog.>) NEW.sla_due_at;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION alexandrite.orders_sla_backdated()
    IS 'internal: an order written with a due time already past makes the next escalate_overdue() scan everything';
-- create_order always writes a due time in the future: it never fires
CREATE TRIGGER orders_sla_backdated_ins
    AFTER INSERT ON alexandrite.orders FOR EACH ROW
    WHEN (NEW.sla_due_at OPERATOR(pg_catalog.<) pg_catalog.now())
    EXECUTE FUNCTION alexandrite.orders_sla_backdated();
CREATE TRIGGER orders_sla_backdated_upd
    AFTER UPDATE OF sla_due_at ON alexandrite.orders FOR EACH ROW
    WHEN (NEW.sla_due_at OPERATOR(pg_catalog.<) pg_catalog.now()
          AND NEW.sla_due_at OPERATOR(pg_catalog.<) OLD.sla_due_at)
    EXECUTE FUNCTION alexandrite.orders_sla_backdated();
COMMENT ON TRIGGER orders_sla_backdated_ins ON alexandrite.orders IS 'keeps escalate_overdue() complete for back-dated orders';
COMMENT ON TRIGGER orders_sla_backdated_upd ON alexandrite.orders IS 'keeps escalate_overdue() complete for back-dated orders';

-- Record each open order whose due time has passed in sla_breaches, once
-- (the primary key and ON CONFLICT make a repeat a no-op; the outbox
-- capability's trigger on sla_breaches emits order.sla_breached).  A run
-- that finds another one in progress returns 0 at once instead of queueing.
-- A run looks at the due times since the previous run (minus a margin),
-- unless a full scan is due (see sla_escalation_state) or asked for.
CREATE FUNCTION alexandrite.escalate_overdue(full_scan boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now  timestamptz := pg_catalog.now();
    v_from timestamptz;
    v_full timestamptz;
    v_n    bigint;
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('alexandrite.escalate_overdue')::bigint) THEN
        RETURN 0;
    END IF;
    -- the state row lock also orders us after a concurrent back-dating write
    SELECT s.scan_from, s.last_full_scan INTO v_from, v_full
      FROM alexandrite.sla_escalation_state s FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO alexandrite.sla_escalation_state (singleton) VALUES (true) ON CONFLICT DO NOTHING;
    END IF;
    IF COALESCE(full_scan, false) OR v_from IS NULL OR v_full IS NULL
       OR v_full OPERATOR(pg_catalog.<) (v_now OPERATOR(pg_catalog.-) '1 hour'::interval) THEN
        v_from := NULL;
    END IF;

    IF v_from IS NULL THEN
        -- every open order past due
        WITH ins AS (
            INSERT INTO alexandrite.sla_breaches AS b
                   (order_id, sla_due_at, breached_at, status_at_breach, operator_id)
            SELECT o.id, o.sla_due_at, v_now, o.status, o.operator_id
              FROM alexandrite.orders o
             WHERE o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status
               AND o.sla_due_at OPERATOR(pg_catalog.<) v_now
               AND NOT EXISTS (SELECT 1 FROM alexandrite.sla_breaches x
                                WHERE x.order_id OPERATOR(pg_catalog.=) o.id)
             ORDER BY o.sla_due_at, o.id
            ON CONFLICT (order_id) DO NOTHING
            RETURNING b.order_id)
        SELECT pg_catalog.count(*) INTO v_n FROM ins;
    ELSE
        -- the window since the last run: a range scan per channel
        WITH ins AS (
            INSERT INTO alexandrite.sla_breaches AS b
                   (order_id, sla_due_at, breached_at, status_at_breach, operator_id)
            SELECT o.id, o.sla_due_at, v_now, o.status, o.operator_id
              FROM alexandrite.orders o
             WHERE o.channel OPERATOR(pg_catalog.=) ANY (alexandrite.sla_channels())
               AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status
               AND o.sla_due_at OPERATOR(pg_catalog.>=) v_from
               AND o.sla_due_at OPERATOR(pg_catalog.<) v_now
               AND NOT EXISTS (SELECT 1 FROM alexandrite.sla_breaches x
                                WHERE x.order_id OPERATOR(pg_catalog.=) o.id)
             ORDER BY o.sla_due_at, o.id
            ON CONFLICT (order_id) DO NOTHING
            RETURNING b.order_id)
        SELECT pg_catalog.count(*) INTO v_n FROM ins;
    END IF;

    UPDATE alexandrite.sla_escalation_state s
       SET scan_from = v_now OPERATOR(pg_catalog.-) '1 hour'::interval,
           last_run = v_now,
           last_full_scan = CASE WHEN v_from IS NULL THEN v_now ELSE s.last_full_scan END;
    RETURN v_n;
END;
$$;
COMMENT ON FUNCTION alexandrite.escalate_overdue(boolean)
    IS 'records a breach (once per order) for every open order past its due time; returns how many were new';

-- Run escalate_overdue() from pg_cron (1.4: one-minute granularity).  The
-- job name is fixed, so calling again changes the schedule of the same job.
CREATE FUNCTION alexandrite.schedule_escalation(every text DEFAULT '* * * * *') RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF every IS NULL OR every OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'schedule must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                    WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'undefined_object',
                  HINT = 'Run CREATE EXTENSION pg_cron in the database named by cron.database_name, or call alexandrite.escalate_overdue() from another scheduler every minute.';
    END IF;
    RETURN cron.schedule('alexandrite-escalate-overdue'::text, every::text,
                         'SELECT alexandrite.escalate_overdue()'::text);
END;
$$;
COMMENT ON FUNCTION alexandrite.schedule_escalation(text)
    IS 'registers escalate_overdue() with pg_cron under the job name alexandrite-escalate-overdue; returns the job id';

------------------------------------------------------------------------------
-- The order board (CONTRACT.md section 3)
------------------------------------------------------------------------------
CREATE TYPE alexandrite.order_board_row AS (
    id           bigint,
    external_ref text,
    status       alexandrite.order_status,
    channel      text,
    operator_id  text,
    sla_due_at   timestamptz,
    priority     float8
);
COMMENT ON TYPE alexandrite.order_board_row IS 'one line of alexandrite.order_board()';

-- The most urgent open orders, by (priority desc, id asc), lim at a time.
-- Next page: pass the last row's priority and id.  Later pages are ranked at
-- the moment of the first (recovered from the cursor row), so pages neither
-- repeat nor skip rows while the clock moves.  Served from indexes: one
-- bounded range scan per channel (orders_open_due_idx), or one operator's
-- open orders (orders_operator_open_idx).
CREATE FUNCTION alexandrite.order_board(operator_id text DEFAULT NULL, lim integer DEFAULT 50,
                                        after_priority float8 DEFAULT NULL, after_id bigint DEFAULT NULL)
    RETURNS SETOF alexandrite.order_board_row
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_at        timestamptz := pg_catalog.now();
    v_channel   text;           -- the cursor row's channel and due time
    v_due       timestamptz;
    v_cursor_ok boolean := false;
BEGIN
    IF lim IS NULL OR lim OPERATOR(pg_catalog.<) 0 OR lim OPERATOR(pg_catalog.>) 10000 THEN
        RAISE EXCEPTION 'lim must be between 0 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (after_priority IS NULL) OPERATOR(pg_catalog.<>) (after_id IS NULL) THEN
        RAISE EXCEPTION 'after_priority and after_id must be given together'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the priority and id of the last row of the previous page.';
    END IF;
    IF after_priority OPERATOR(pg_catalog.=) 'NaN'::float8 THEN
        RAISE EXCEPTION 'after_priority must not be NaN' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF after_id IS NOT NULL THEN
        SELECT o.channel, o.sla_due_at INTO v_channel, v_due
          FROM alexandrite.orders o WHERE o.id OPERATOR(pg_catalog.=) order_board.after_id;
        IF FOUND THEN
            -- rank this page at the moment the cursor row scored after_priority
            v_at := COALESCE(alexandrite.sla_at_for_priority(after_priority, v_channel, v_due), v_at);
            v_cursor_ok := true;
        END IF;
    END IF;

    IF order_board.operator_id IS NOT NULL THEN
        RETURN QUERY
        SELECT q.id, q.external_ref, q.status, q.channel, q.operator_id, q.sla_due_at, q.p
          FROM (SELECT o.id, o.external_ref, o.status, o.channel, o.operator_id, o.sla_due_at,
                       alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, v_at) AS p
                  FROM alexandrite.orders o
                 WHERE o.operator_id OPERATOR(pg_catalog.=) order_board.operator_id
                   AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status) q
         WHERE after_id IS NULL
            OR (v_cursor_ok AND q.channel OPERATOR(pg_catalog.=) v_channel
                AND (q.sla_due_at, q.id) OPERATOR(pg_catalog.>) (v_due, after_id))
            OR ((NOT v_cursor_ok OR q.channel OPERATOR(pg_catalog.<>) v_channel)
                AND (q.p OPERATOR(pg_catalog.<) after_priority
                     OR (q.p OPERATOR(pg_catalog.=) after_priority AND q.id OPERATOR(pg_catalog.>) after_id)))
         ORDER BY q.p DESC, q.id
         LIMIT lim;
        RETURN;
    END IF;

    RETURN QUERY
    SELECT k.id, k.external_ref, k.status, k.channel, k.operator_id, k.sla_due_at, k.p
      FROM pg_catalog.unnest(alexandrite.sla_channels()) ch(channel)
     CROSS JOIN LATERAL (
           SELECT o.id, o.external_ref, o.status, o.channel, o.operator_id, o.sla_due_at,
                  alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, v_at) AS p
             FROM alexandrite.orders o
            WHERE o.channel OPERATOR(pg_catalog.=) ch.channel
              AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status
              -- index bound: due times scoring at most after_priority (with a
              -- margin for rounding); the exact test follows
              AND (after_id IS NULL
                   OR o.sla_due_at OPERATOR(pg_catalog.>=)
                      (alexandrite.sla_due_for_priority(after_priority, ch.channel, v_at)
                       OPERATOR(pg_catalog.-) '1 second'::interval))
              AND (after_id IS NULL
                   OR (v_cursor_ok AND ch.channel OPERATOR(pg_catalog.=) v_channel
                       AND (o.sla_due_at, o.id) OPERATOR(pg_catalog.>) (v_due, after_id))
                   OR ((NOT v_cursor_ok OR ch.channel OPERATOR(pg_catalog.<>) v_channel)
                       AND (alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, v_at)
                                OPERATOR(pg_catalog.<) after_priority
                            OR (alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, v_at)
                                    OPERATOR(pg_catalog.=) after_priority
                                AND o.id OPERATOR(pg_catalog.>) after_id))))
            ORDER BY o.sla_due_at, o.id
            LIMIT lim) k
     ORDER BY k.p DESC, k.id
     LIMIT lim;
END;
$$;
COMMENT ON FUNCTION alexandrite.order_board(text, integer, float8, bigint)
    IS 'the most urgent open orders (all, or one operator''s) by priority, with keyset pagination on (priority, id)';

------------------------------------------------------------------------------
-- Privileges: administrative functions are not for PUBLIC (docs/sla.md)
------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION alexandrite.rebalance(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.escalate_overdue(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.schedule_escalation(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.sla_recount_load() FROM PUBLIC;

-- ---- sql/1.1/40_outbox.sql ----
/* sql/1.1/40_outbox.sql: transactional outbox drained to RabbitMQ by the relay worker */


------------------------------------------------------------------------------
-- Storage
--
-- Events are written once and never updated: an insert-only log spread over
-- three tables (outbox_events_0..2, children of outbox_events) of which one is
-- current.  The relay reads the log in batches defined by two snapshots (an
-- event belongs to the batch when its transaction is visible in the new
-- snapshot and was not in the previous one, as in PgQ), so a transaction that
-- commits late is never skipped, and it recycles a table with TRUNCATE once
-- every event in it has been handled.  No UPDATE or DELETE ever touches the
-- log, so it never bloats whatever xmin is held.  Delivery state is derived
-- from the relay's cursor (outbox_relay) and the small retry and dead-letter
-- tables.
------------------------------------------------------------------------------

-- CACHE 1: ids must follow the order in which producers take them (see
-- docs/outbox.md, "ordering argument").
CREATE SEQUENCE alexandrite.outbox_id_seq CACHE 1;
COMMENT ON SEQUENCE alexandrite.outbox_id_seq IS 'outbox event ids (the AMQP message_id)';

CREATE TABLE alexandrite.outbox_events (
    id             bigint      NOT NULL,
    txid           xid8        NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    aggregate_seq  bigint      NOT NULL,
    event_type     text        NOT NULL,
    payload        jsonb       NOT NULL,
    headers        jsonb       NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE alexandrite.outbox_events IS 'the outbox event log (parent of the rotating tables outbox_events_0..2; insert-only)';

CREATE TABLE alexandrite.outbox_events_0 () INHERITS (alexandrite.outbox_events)
    WITH (fillfactor = 100, autovacuum_enabled = false, toast.autovacuum_enabled = false);
CREATE TABLE alexandrite.outbox_events_1 () INHERITS (alexandrite.outbox_events)
    WITH (fillfactor = 100, autovacuum_enabled = false, toast.autovacuum_enabled = false);
CREATE TABLE alexandrite.outbox_events_2 () INHERITS (alexandrite.outbox_events)
    WITH (fillfactor = 100, autovacuum_enabled = false, toast.autovacuum_enabled = false);
CREATE UNIQUE INDEX outbox_events_0_id_idx ON alexandrite.outbox_events_0 (id);
CREATE UNIQUE INDEX outbox_events_1_id_idx ON alexandrite.outbox_events_1 (id);
CREATE UNIQUE INDEX outbox_events_2_id_idx ON alexandrite.outbox_events_2 (id);
CREATE INDEX outbox_events_0_txid_idx ON alexandrite.outbox_events_0 (txid);
CREATE INDEX outbox_events_1_txid_idx ON alexandrite.outbox_events_1 (txid);
CREATE INDEX outbox_events_2_txid_idx ON alexandrite.outbox_events_2 (txid);
COMMENT ON TABLE alexandrite.outbox_events_0 IS 'outbox event log, rotating table 0 (truncated by the relay when drained)';
COMMENT ON TABLE alexandrite.outbox_events_1 IS 'outbox event log, rotating table 1 (truncated by the relay when drained)';
COMMENT ON TABLE alexandrite.outbox_events_2 IS 'outbox event log, rotating table 2 (truncated by the relay when drained)';

-- One row per aggregate: its row lock serialises the producers of one
-- aggregate until commit and gives the gap-free aggregate_seq.
CREATE TABLE alexandrite.outbox_aggregates (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_seq       bigint NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITH (fillfactor = 70);
COMMENT ON TABLE alexandrite.outbox_aggregates IS 'last aggregate_seq given out per aggregate';

-- The relay's cursor (one row).
CREATE TABLE alexandrite.outbox_relay (
    one             boolean     PRIMARY KEY DEFAULT true CHECK (one),
    cur_table       int         NOT NULL DEFAULT 0 CHECK (cur_table OPERATOR(pg_catalog.>=) 0 AND cur_table OPERATOR(pg_catalog.<) 3),
    rotated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_snapshot   pg_snapshot NOT NULL,   -- every event visible here is handled
    batch_snapshot  pg_snapshot,            -- the batch being drained, or NULL
    batch_pos       bigint      NOT NULL DEFAULT 0,  -- batch events with id <= this are handled
    batch_end       bigint      NOT NULL DEFAULT 0,  -- the largest id in the batch
    published_total bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
) WITH (fillfactor = 50);
COMMENT ON TABLE alexandrite.outbox_relay IS 'the relay''s durable cursor and table rotation state (one row, written by the relay only)';
-- The empty snapshot: every event in the log is new to this relay row.  On a
-- fresh install the log is empty; after pg_restore (which recreates this row
-- but restores the events) the restored events are published again
-- (at least once; consumers dedupe on message_id).
INSERT INTO alexandrite.outbox_relay (last_snapshot) VALUES ('1:1:');

-- Events waiting for another attempt: the one that failed and every later
-- event of its aggregate (the aggregate is blocked until they are through).
CREATE TABLE alexandrite.outbox_retry (
    id              bigint      PRIMARY KEY,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    aggregate_seq   bigint      NOT NULL,
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    headers         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_error      text
);
CREATE INDEX outbox_retry_aggregate_idx ON alexandrite.outbox_retry (aggregate_type, aggregate_id, id);
COMMENT ON TABLE alexandrite.outbox_retry IS 'outbox events of blocked aggregates, retried in order with backoff';

CREATE TABLE alexandrite.outbox_dead (
    id             bigint      PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    aggregate_seq  bigint      NOT NULL,
    event_type     text        NOT NULL,
    payload        jsonb       NOT NULL,
    headers        jsonb       NOT NULL,
    created_at     timestamptz NOT NULL,
    attempts       int         NOT NULL,
    reason         text        NOT NULL,
    dead_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX outbox_dead_aggregate_idx ON alexandrite.outbox_dead (aggregate_type, aggregate_id, id);
COMMENT ON TABLE alexandrite.outbox_dead IS 'outbox events that exhausted alexandrite.outbox_max_attempts; their aggregate stays blocked until outbox_requeue or outbox_discard';

SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_events_0', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_events_1', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_events_2', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_aggregates', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_retry', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_dead', '');

------------------------------------------------------------------------------
-- Producing
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.outbox_wakeup_at_commit() RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_wakeup_at_commit'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.outbox_wakeup_at_commit() IS 'wakes the relay when the calling transaction commits (used by outbox_emit)';

CREATE FUNCTION alexandrite.outbox_emit(aggregate_type text, aggregate_id text, event_type text,
                                        payload jsonb, headers jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_seq   bigint;
    v_id    bigint;
    v_cur   int;
    v_hdr   jsonb := COALESCE(headers, '{}'::jsonb);
    v_trace text;
BEGIN
    IF aggregate_type IS NULL OR aggregate_id IS NULL OR event_type IS NULL OR payload IS NULL THEN
        RAISE EXCEPTION 'aggregate_type, aggregate_id, event_type and payload must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF aggregate_type OPERATOR(pg_catalog.!~) '^[A-Za-z0-9_-]{1,100}$' THEN
        RAISE EXCEPTION 'invalid aggregate_type "%"', aggregate_type
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An aggregate type is 1 to 100 letters, digits, hyphens or underscores.';
    END IF;
    IF event_type OPERATOR(pg_catalog.!~) '^[A-Za-z0-9_.-]{1,140}$' THEN
        RAISE EXCEPTION 'invalid event_type "%"', event_type
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An event type is 1 to 140 letters, digits, periods, hyphens or underscores.';
    END IF;
    IF aggregate_id OPERATOR(pg_catalog.=) '' OR pg_catalog.octet_length(aggregate_id) OPERATOR(pg_catalog.>) 200 THEN
        RAISE EXCEPTION 'aggregate_id must be 1 to 200 bytes long'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.jsonb_typeof(v_hdr) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION 'headers must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_hdr OPERATOR(pg_catalog.?|) ARRAY['aggregate_id', 'aggregate_type', 'aggregate_seq', 'event_type'] THEN
        RAISE EXCEPTION 'headers must not set aggregate_id, aggregate_type, aggregate_seq or event_type'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The relay sets these headers itself.';
    END IF;
    IF pg_catalog.pg_column_size(payload) OPERATOR(pg_catalog.>) 16777216 THEN
        RAISE EXCEPTION 'outbox payload is larger than 16 MB'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    v_trace := alexandrite.current_traceparent();
    IF v_trace IS NOT NULL AND NOT v_hdr OPERATOR(pg_catalog.?) 'traceparent' THEN
        v_hdr := v_hdr OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('traceparent', v_trace);
    END IF;

    -- 1. the aggregate's row lock (held until commit) and its next seq
    INSERT INTO alexandrite.outbox_aggregates AS a (aggregate_type, aggregate_id, last_seq)
    VALUES (outbox_emit.aggregate_type, outbox_emit.aggregate_id, 1)
    ON CONFLICT ON CONSTRAINT outbox_aggregates_pkey
    DO UPDATE SET last_seq = a.last_seq OPERATOR(pg_catalog.+) 1
    RETURNING a.last_seq INTO v_seq;
    -- 2. the id, only after the lock: ids of one aggregate follow its seq
    v_id := pg_catalog.nextval('alexandrite.outbox_id_seq'::pg_catalog.regclass);
    -- 3. the current table of the rotating log
    SELECT r.cur_table INTO v_cur FROM alexandrite.outbox_relay r;
    IF v_cur OPERATOR(pg_catalog.=) 1 THEN
        INSERT INTO alexandrite.outbox_events_1 (id, aggregate_type, aggregate_id, aggregate_seq, event_type, payload, headers)
        VALUES (v_id, outbox_emit.aggregate_type, outbox_emit.aggregate_id, v_seq, outbox_emit.event_type, outbox_emit.payload, v_hdr);
    ELSIF v_cur OPERATOR(pg_catalog.=) 2 THEN
        INSERT INTO alexandrite.outbox_events_2 (id, aggregate_type, aggregate_id, aggregate_seq, event_type, payload, headers)
        VALUES (v_id, outbox_emit.aggregate_type, outbox_emit.aggregate_id, v_seq, outbox_emit.event_type, outbox_emit.payload, v_hdr);
    ELSE
        INSERT INTO alexandrite.outbox_events_0 (id, aggregate_type, aggregate_id, aggregate_seq, event_type, payload, headers)
        VALUES (v_id, outbox_emit.aggregate_type, outbox_emit.aggregate_id, v_seq, outbox_emit.event_type, outbox_emit.payload, v_hdr);
    END IF;
    -- 4. wake the relay when (if) this transaction commits
    PERFORM alexandrite.outbox_wakeup_at_commit();
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION alexandrite.outbox_emit(text, text, text, jsonb, jsonb)
    IS 'writes an event to the outbox in the calling transaction; returns its id (the AMQP message_id)';

------------------------------------------------------------------------------
-- Order events, emitted by triggers on the order core
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.outbox_restoring() RETURNS boolean
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_restoring'
    LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.outbox_restoring() IS 'true while rows are loaded by COPY (pg_restore): the triggers then emit nothing';

CREATE FUNCTION alexandrite.outbox_order_event_trigger() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o   alexandrite.orders;
    hdr jsonb := '{}';
BEGIN
    IF alexandrite.outbox_restoring() THEN
        RETURN NULL;        -- restored rows: their events are restored with the outbox
    END IF;
    SELECT * INTO o FROM alexandrite.orders x WHERE x.id OPERATOR(pg_catalog.=) NEW.order_id;
    IF NEW.traceparent IS NOT NULL THEN
        hdr := pg_catalog.jsonb_build_object('traceparent', NEW.traceparent);
    END IF;
    IF NEW.from_status IS NULL THEN
        PERFORM alexandrite.outbox_emit('order', NEW.order_id::text, 'order.created',
            pg_catalog.jsonb_build_object(
                'order_id', o.id, 'external_ref', o.external_ref, 'channel', o.channel,
                'customer_id', o.customer_id, 'mesh_id', o.mesh_id, 'material', o.material,
                'status', NEW.to_status, 'price', o.price, 'created_at', o.created_at,
                'sla_due_at', o.sla_due_at, 'actor', NEW.actor),
            hdr);
    ELSE
        PERFORM alexandrite.outbox_emit('order', NEW.order_id::text, 'order.status_changed',
            pg_catalog.jsonb_build_object(
                'order_id', NEW.order_id, 'external_ref', o.external_ref,
                'from_status', NEW.from_status, 'to_status', NEW.to_status,
                'at', NEW.at, 'actor', NEW.actor, 'operator_id', o.operator_id,
                'sla_due_at', o.sla_due_at),
            hdr);
        IF NEW.to_status OPERATOR(pg_catalog.=) 'priced'::alexandrite.order_status THEN
            PERFORM alexandrite.outbox_emit('order', NEW.order_id::text, 'order.priced',
                pg_catalog.jsonb_build_object(
                    'order_id', NEW.order_id, 'external_ref', o.external_ref,
                    'price', o.price, 'material', o.material, 'mesh_id', o.mesh_id,
                    'at', NEW.at, 'actor', NEW.actor),
                hdr);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION alexandrite.outbox_order_event_trigger()
    IS 'emits order.created / order.status_changed / order.priced for each order_events row';

CREATE TRIGGER outbox_emit_order_event AFTER INSERT ON alexandrite.order_events
    FOR EACH ROW EXECUTE FUNCTION alexandrite.outbox_order_event_trigger();

CREATE FUNCTION alexandrite.outbox_sla_breach_trigger() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o   alexandrite.orders;
    hdr jsonb := '{}';
BEGIN
    IF alexandrite.outbox_restoring() THEN
        RETURN NULL;
    END IF;
    SELECT * INTO o FROM alexandrite.orders x WHERE x.id OPERATOR(pg_catalog.=) NEW.order_id;
    PERFORM alexandrite.outbox_emit('order', NEW.order_id::text, 'order.sla_breached',
        pg_catalog.jsonb_build_object(
            'order_id', NEW.order_id, 'external_ref', o.external_ref, 'channel', o.channel,
            'sla_due_at', NEW.sla_due_at, 'breached_at', NEW.breached_at,
            'status_at_breach', NEW.status_at_breach, 'operator_id', NEW.operator_id),
        hdr);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION alexandrite.outbox_sla_breach_trigger()
    IS 'emits order.sla_breached for each sla_breaches row';

CREATE TRIGGER outbox_emit_sla_breach AFTER INSERT ON alexandrite.sla_breaches
    FOR EACH ROW EXECUTE FUNCTION alexandrite.outbox_sla_breach_trigger();

------------------------------------------------------------------------------
-- Reading the outbox
------------------------------------------------------------------------------
-- true when the relay has handled the event (published it, or moved it to
-- retry or dead letters)
CREATE FUNCTION alexandrite.outbox_handled(r alexandrite.outbox_relay, txid xid8, id bigint)
    RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN pg_catalog.pg_visible_in_snapshot(txid, r.last_snapshot)
        OR (r.batch_snapshot IS NOT NULL
            AND pg_catalog.pg_visible_in_snapshot(txid, r.batch_snapshot)
            AND id OPERATOR(pg_catalog.<=) r.batch_pos);
COMMENT ON FUNCTION alexandrite.outbox_handled(alexandrite.outbox_relay, xid8, bigint)
    IS 'true when the relay cursor is past the event';

CREATE VIEW alexandrite.outbox WITH (security_invoker = true) AS
SELECT e.id, e.aggregate_type, e.aggregate_id, e.aggregate_seq, e.event_type, e.payload, e.headers,
       e.created_at,
       CASE WHEN d.id IS NOT NULL THEN 'dead'
            WHEN q.id IS NOT NULL THEN 'retrying'
            WHEN alexandrite.outbox_handled(r, e.txid, e.id) THEN 'published'
            ELSE 'pending' END AS state,
       COALESCE(d.attempts, q.attempts, 0) AS attempts,
       COALESCE(d.reason, q.last_error) AS last_error
  FROM alexandrite.outbox_events e
 CROSS JOIN alexandrite.outbox_relay r
  LEFT JOIN alexandrite.outbox_retry q ON q.id OPERATOR(pg_catalog.=) e.id
  LEFT JOIN alexandrite.outbox_dead d ON d.id OPERATOR(pg_catalog.=) e.id
UNION ALL
SELECT q.id, q.aggregate_type, q.aggregate_id, q.aggregate_seq, q.event_type, q.payload, q.headers,
       q.created_at, 'retrying', q.attempts, q.last_error
  FROM alexandrite.outbox_retry q
 WHERE NOT EXISTS (SELECT 1 FROM alexandrite.outbox_events e WHERE e.id OPERATOR(pg_catalog.=) q.id)
UNION ALL
SELECT d.id, d.aggregate_type, d.aggregate_id, d.aggregate_seq, d.event_type, d.payload, d.headers,
       d.created_at, 'dead', d.attempts, d.reason
  FROM alexandrite.outbox_dead d
 WHERE NOT EXISTS (SELECT 1 FROM alexandrite.outbox_events e WHERE e.id OPERATOR(pg_catalog.=) d.id);
COMMENT ON VIEW alexandrite.outbox IS 'outbox events still retained, with their delivery state (pending, published, retrying, dead)';

CREATE FUNCTION alexandrite.outbox_relay_info(
    OUT relay_pid int, OUT relay_connected boolean, OUT broker text, OUT last_error text,
    OUT last_error_at timestamptz, OUT published_since_start bigint, OUT confirms_failed bigint,
    OUT reconnects bigint)
    RETURNS record
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_relay_info'
    LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.outbox_relay_info()
    IS 'state of the relay worker from shared memory (broker URLs with their passwords masked)';

CREATE FUNCTION alexandrite.outbox_latency(OUT le_ms float8, OUT confirmed bigint, OUT sum_ms float8)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_latency'
    LANGUAGE C VOLATILE PARALLEL SAFE ROWS 14;
COMMENT ON FUNCTION alexandrite.outbox_latency()
    IS 'histogram of event creation -> broker confirm latency since server start: cumulative confirms per upper bound (ms)';

CREATE VIEW alexandrite.outbox_blocked WITH (security_invoker = true) AS
SELECT b.aggregate_type, b.aggregate_id, pg_catalog.min(b.id) AS head_id,
       pg_catalog.count(*) AS waiting_events,
       pg_catalog.bool_or(b.dead) AS dead,
       pg_catalog.min(b.created_at) AS oldest_created_at,
       (pg_catalog.array_agg(b.error ORDER BY b.id))[1] AS head_error
  FROM (SELECT q.id, q.aggregate_type, q.aggregate_id, false AS dead, q.created_at, q.last_error AS error
          FROM alexandrite.outbox_retry q
        UNION ALL
        SELECT d.id, d.aggregate_type, d.aggregate_id, true, d.created_at, d.reason
          FROM alexandrite.outbox_dead d) b
 GROUP BY b.aggregate_type, b.aggregate_id;
COMMENT ON VIEW alexandrite.outbox_blocked IS 'aggregates whose events wait behind a failed one (retrying, or dead until requeued)';

CREATE VIEW alexandrite.outbox_status WITH (security_invoker = true) AS
SELECT p.pending OPERATOR(pg_catalog.+) q.retrying AS pending,
       pg_catalog.now() OPERATOR(pg_catalog.-) LEAST(p.oldest, q.oldest) AS oldest_pending_age,
       r.published_total,
       (SELECT pg_catalog.count(*) FROM alexandrite.outbox_dead) AS dead_letters,
       COALESCE(i.relay_connected, false) AS relay_connected,
       i.last_error,
       (SELECT pg_catalog.count(*) FROM alexandrite.outbox_blocked) AS blocked_aggregates,
       q.retrying,
       i.relay_pid,
       i.broker,
       i.last_error_at
  FROM alexandrite.outbox_relay r
 CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) AS pending, pg_catalog.min(e.created_at) AS oldest
          FROM alexandrite.outbox_events e
         WHERE e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin(r.last_snapshot)
           AND NOT alexandrite.outbox_handled(r, e.txid, e.id)) p
 CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) AS retrying, pg_catalog.min(q.created_at) AS oldest
          FROM alexandrite.outbox_retry q) q
 CROSS JOIN alexandrite.outbox_relay_info() i;
COMMENT ON VIEW alexandrite.outbox_status IS 'outbox backlog and relay health';

------------------------------------------------------------------------------
-- Operating on dead letters
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.outbox_requeue(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF ids IS NULL THEN
        RAISE EXCEPTION 'ids must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    WITH moved AS (
        DELETE FROM alexandrite.outbox_dead d
         WHERE d.id OPERATOR(pg_catalog.=) ANY (ids)
        RETURNING d.*)
    INSERT INTO alexandrite.outbox_retry (id, aggregate_type, aggregate_id, aggregate_seq, event_type,
                                          payload, headers, created_at, attempts, next_attempt_at, last_error)
    SELECT m.id, m.aggregate_type, m.aggregate_id, m.aggregate_seq, m.event_type, m.payload, m.headers,
           m.created_at, 0, pg_catalog.now(), 'requeued after: ' OPERATOR(pg_catalog.||) m.reason
      FROM moved m;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM alexandrite.outbox_wakeup_at_commit();
    RETURN n;
END;
$$;
COMMENT ON FUNCTION alexandrite.outbox_requeue(bigint[])
    IS 'puts dead letters back in line (in id order within their aggregate); returns how many';

CREATE FUNCTION alexandrite.outbox_discard(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF ids IS NULL THEN
        RAISE EXCEPTION 'ids must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    DELETE FROM alexandrite.outbox_dead d WHERE d.id OPERATOR(pg_catalog.=) ANY (ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM alexandrite.outbox_wakeup_at_commit();
    RETURN n;
END;
$$;
COMMENT ON FUNCTION alexandrite.outbox_discard(bigint[])
    IS 'drops dead letters for good, unblocking their aggregates; returns how many';

REVOKE ALL ON FUNCTION alexandrite.outbox_requeue(bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.outbox_discard(bigint[]) FROM PUBLIC;

-- ---- sql/1.1/50_dashboard.sql ----
/* sql/1.1/50_dashboard.sql: incrementally maintained dashboards (the MES first page) */


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

-- ---- sql/1.1/60_observe.sql ----
/* sql/1.1/60_observe.sql: operations - Prometheus metrics, tracing, timeline */


------------------------------------------------------------------------------
-- Metrics
--
-- Every capability contributes its figures through one collector: a set-
-- returning function of alexandrite.metric_sample rows, registered in
-- alexandrite.metric_collectors.  alexandrite.metric_samples() runs the
-- registered collectors (all, or the ones named) with the extension owner's
-- rights, so that a monitoring role (pg_monitor) sees counts and ages but no
-- order data; alexandrite.metrics() renders the samples in the Prometheus text
-- exposition format.  A collector that fails is reported by
-- alexandrite_metrics_collector_success{collector="..."} 0 and a WARNING; the
-- other collectors still answer.
--
-- Cost: collectors read dashboards (summary + pending changes; three are
-- declared here: status_age, mesh_analysis_time, quote_counts), the relay's
-- state and single index probes: never a scan of the orders, the meshes or
-- the quotes (docs/benchmarks-observe.md).
------------------------------------------------------------------------------
CREATE TYPE alexandrite.metric_sample AS (
    family text,          -- metric family name, e.g. alexandrite_orders_in_status
    type   text,          -- counter, gauge or histogram
    help   text,          -- one line of help text
    suffix text,          -- '' or, for histograms, _bucket, _sum, _count
    labels jsonb,         -- label name -> value (a JSON object of strings)
    value  float8
);
COMMENT ON TYPE alexandrite.metric_sample IS 'one sample of a metric, as returned by the collectors behind alexandrite.metrics()';

CREATE TABLE alexandrite.metric_collectors (
    name        text PRIMARY KEY CHECK (name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,62}$'),
    collector   regprocedure NOT NULL UNIQUE,
    position    integer NOT NULL UNIQUE,
    description text NOT NULL
);
COMMENT ON TABLE alexandrite.metric_collectors IS 'the collectors behind alexandrite.metrics(): one function per capability, run in position order';

-- Helper: a sample row.
CREATE FUNCTION alexandrite.metric(family text, type text, help text, value float8,
                                   labels jsonb DEFAULT '{}', suffix text DEFAULT '')
    RETURNS alexandrite.metric_sample
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ROW(family, type, help, suffix, labels, value)::alexandrite.metric_sample;
COMMENT ON FUNCTION alexandrite.metric(text, text, text, float8, jsonb, text)
    IS 'internal: builds one alexandrite.metric_sample';

-- The library and the standby/primary role of this server.
CREATE FUNCTION alexandrite.metrics_server() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT alexandrite.metric('alexandrite_build_info', 'gauge',
               'Version of the alexandrite library and of its SQL objects.', 1,
               jsonb_build_object('version', alexandrite.version(),
                                  'extversion', (SELECT e.extversion FROM pg_extension e
                                                  WHERE e.extname = 'alexandrite')))
    UNION ALL
    SELECT alexandrite.metric('alexandrite_in_recovery', 'gauge',
               'Whether this server is a standby (1) or a primary (0).',
               CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END)
$$;
COMMENT ON FUNCTION alexandrite.metrics_server() IS 'metrics collector: library version and recovery state';

-- Stuck orders per status, kept by a dashboard: open orders by status, with
-- the count of those whose last status change is more than 24 hours old (a
-- moving watermark on status_changed_at), so a scrape reads a few groups
-- instead of every stuck order.
SELECT alexandrite.create_dashboard('status_age', 'alexandrite.orders', ARRAY['status'],
                                    count_name => 'open_orders',
                                    filter => 'alexandrite.is_open(status)',
                                    due => 'status_changed_at', horizons => ARRAY['-24:00:00'::interval],
                                    horizon_names => ARRAY['stuck_orders']);

-- Orders: how many are in each status (the status_counts dashboard: summary
-- plus pending changes, exact), which ones stopped moving (the status_age
-- dashboard) and for how long at most (one probe of the core's partial index
-- on open orders by status_changed_at).
CREATE FUNCTION alexandrite.metrics_orders() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    (WITH counts AS (
        SELECT d.status, d.channel, sum(d.orders) AS n
          FROM alexandrite.dashboard_status_counts d GROUP BY d.status, d.channel
     ), channels AS (
        SELECT p.channel FROM alexandrite.sla_policies p UNION SELECT c.channel FROM counts c
     )
     SELECT alexandrite.metric('alexandrite_orders_in_status', 'gauge',
                'Orders in each status, by channel.', COALESCE(c.n, 0),
                jsonb_build_object('status', s.status, 'channel', ch.channel))
       FROM unnest(enum_range(NULL::alexandrite.order_status)) AS s(status)
      CROSS JOIN channels ch
       LEFT JOIN counts c ON c.status = s.status AND c.channel = ch.channel
      ORDER BY s.status, ch.channel)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_stuck_orders', 'gauge',
                'Open orders whose status has not changed for 24 hours or more (alexandrite.stuck_orders()), by status.',
                COALESCE(c.n, 0), jsonb_build_object('status', s.status))
       FROM unnest(enum_range(NULL::alexandrite.order_status)) AS s(status)
       LEFT JOIN (SELECT d.status, sum(d.stuck_orders) AS n FROM alexandrite.dashboard_status_age d
                   GROUP BY d.status) c ON c.status = s.status
      WHERE alexandrite.is_open(s.status)
      ORDER BY s.status)
    UNION ALL
    SELECT alexandrite.metric('alexandrite_orders_max_time_in_status_seconds', 'gauge',
               'Longest time an open order has spent in its current status, in seconds (0 when no order is open).',
               COALESCE(extract(epoch FROM now() - min(o.status_changed_at)), 0)::float8)
      FROM alexandrite.orders o
     WHERE o.status < 'shipped'::alexandrite.order_status
$$;
COMMENT ON FUNCTION alexandrite.metrics_orders() IS 'metrics collector: orders by status and channel, stuck orders';

-- SLA: open, at risk (due within 24 h) and breached orders per channel
-- (dashboard_sla), and the breaches recorded so far.
CREATE FUNCTION alexandrite.metrics_sla() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS (
        SELECT s.channel, s.open_orders, s.at_risk_orders, s.breached_orders FROM alexandrite.dashboard_sla s
    ), channels AS (
        SELECT p.channel FROM alexandrite.sla_policies p UNION SELECT d.channel FROM d
    ), v AS (
        SELECT ch.channel, COALESCE(d.open_orders, 0) AS open_orders,
               COALESCE(d.at_risk_orders, 0) AS at_risk, COALESCE(d.breached_orders, 0) AS breached
          FROM channels ch LEFT JOIN d USING (channel)
    )
    (SELECT alexandrite.metric('alexandrite_sla_open_orders', 'gauge',
                'Open orders (neither shipped nor cancelled), by channel.', v.open_orders,
                jsonb_build_object('channel', v.channel)) FROM v ORDER BY v.channel)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_sla_at_risk_orders', 'gauge',
                'Open orders not yet due but due within 24 hours, by channel.', v.at_risk,
                jsonb_build_object('channel', v.channel)) FROM v ORDER BY v.channel)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_sla_breached_orders', 'gauge',
                'Open orders past their SLA due time, by channel.', v.breached,
                jsonb_build_object('channel', v.channel)) FROM v ORDER BY v.channel)
    UNION ALL
    SELECT alexandrite.metric('alexandrite_sla_breaches_recorded_total', 'counter',
               'Orders ever recorded as having breached their SLA (alexandrite.sla_breaches).',
               (SELECT count(*) FROM alexandrite.sla_breaches)::float8)
$$;
COMMENT ON FUNCTION alexandrite.metrics_sla() IS 'metrics collector: SLA at risk and breached';

-- Assignment: each operator's open and overdue orders (dashboard_operator_load)
-- against capacity.
CREATE FUNCTION alexandrite.metrics_assignment() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH v AS (
        SELECT op.id, op.capacity, op.active, COALESCE(l.open_orders, 0) AS open_orders,
               COALESCE(l.overdue_orders, 0) AS overdue
          FROM alexandrite.operators op
          LEFT JOIN alexandrite.dashboard_operator_load l ON l.operator_id = op.id
         WHERE op.active OR l.open_orders > 0
    )
    (SELECT alexandrite.metric('alexandrite_operator_open_orders', 'gauge',
                'Open orders assigned to each operator.', v.open_orders,
                jsonb_build_object('operator', v.id)) FROM v ORDER BY v.id)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_operator_overdue_orders', 'gauge',
                'Open orders assigned to each operator that are past their SLA due time.', v.overdue,
                jsonb_build_object('operator', v.id)) FROM v ORDER BY v.id)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_operator_capacity_orders', 'gauge',
                'Open orders each active operator may hold (alexandrite.operators.capacity; 0 when inactive).',
                CASE WHEN v.active THEN v.capacity ELSE 0 END,
                jsonb_build_object('operator', v.id)) FROM v ORDER BY v.id)
$$;
COMMENT ON FUNCTION alexandrite.metrics_assignment() IS 'metrics collector: open and overdue orders per operator';

-- Outbox and relay: backlog, its age, what was published, dead letters, and
-- the relay's connection (outbox_status, outbox_relay_info()).
CREATE FUNCTION alexandrite.metrics_outbox() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH s AS (SELECT * FROM alexandrite.outbox_status), i AS (SELECT * FROM alexandrite.outbox_relay_info())
    SELECT alexandrite.metric('alexandrite_outbox_pending_messages', 'gauge',
               'Outbox events not yet confirmed by the broker (pending or retrying).', s.pending) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_oldest_pending_age_seconds', 'gauge',
               'Age of the oldest outbox event not yet confirmed by the broker, in seconds (0 when none).',
               COALESCE(extract(epoch FROM s.oldest_pending_age), 0)::float8) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_published_total', 'counter',
               'Outbox events confirmed by the broker.', s.published_total) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_dead_letters', 'gauge',
               'Outbox events that exhausted their attempts (alexandrite.outbox_dead).', s.dead_letters) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_retrying_messages', 'gauge',
               'Outbox events waiting for another attempt, with the later events of their aggregates.', s.retrying) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_blocked_aggregates', 'gauge',
               'Aggregates whose events wait behind a failed one (alexandrite.outbox_blocked).', s.blocked_aggregates) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_relay_connected', 'gauge',
               'Whether the relay is connected to a broker (1) or not (0).',
               CASE WHEN s.relay_connected THEN 1 ELSE 0 END) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_relay_running', 'gauge',
               'Whether the relay background worker is running on this server (1) or not (0).',
               CASE WHEN i.relay_pid IS NOT NULL AND i.relay_pid <> 0 THEN 1 ELSE 0 END) FROM i
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_relay_reconnects_total', 'counter',
               'Broker connections the relay opened since the server started.', COALESCE(i.reconnects, 0)) FROM i
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_relay_confirm_failures_total', 'counter',
               'Publishes the broker did not confirm (nack, return, timeout) since the server started.',
               COALESCE(i.confirms_failed, 0)) FROM i
$$;
COMMENT ON FUNCTION alexandrite.metrics_outbox() IS 'metrics collector: outbox backlog, dead letters, relay connection';

-- Dashboards: pending changes and their age, folds (dashboard_lag).
CREATE FUNCTION alexandrite.metrics_dashboards() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH l AS (SELECT * FROM alexandrite.dashboard_lag)
    (SELECT alexandrite.metric('alexandrite_dashboard_pending_changes', 'gauge',
                'Changes captured but not yet folded into the dashboard''s summary.', l.pending_changes,
                jsonb_build_object('dashboard', l.dashboard)) FROM l ORDER BY l.dashboard)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_dashboard_oldest_pending_age_seconds', 'gauge',
                'Age of the oldest change not yet folded, in seconds (0 when none).',
                COALESCE(extract(epoch FROM l.oldest_pending_age), 0)::float8,
                jsonb_build_object('dashboard', l.dashboard)) FROM l ORDER BY l.dashboard)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_dashboard_folds_total', 'counter',
                'Folds of the dashboard''s pending changes into its summary.', COALESCE(l.folds, 0),
                jsonb_build_object('dashboard', l.dashboard)) FROM l ORDER BY l.dashboard)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_dashboard_folded_changes_total', 'counter',
                'Changes folded into the dashboard''s summary.', COALESCE(l.folded_total, 0),
                jsonb_build_object('dashboard', l.dashboard)) FROM l ORDER BY l.dashboard)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_dashboard_rebuild_needed', 'gauge',
                'Whether the dashboard must be rebuilt (1: after a TRUNCATE or a failed reconcile).',
                CASE WHEN l.rebuild_needed THEN 1 ELSE 0 END,
                jsonb_build_object('dashboard', l.dashboard)) FROM l ORDER BY l.dashboard)
$$;
COMMENT ON FUNCTION alexandrite.metrics_dashboards() IS 'metrics collector: dashboard lag and folds';

-- Histogram bounds of durations, in seconds.
CREATE FUNCTION alexandrite.metric_le_seconds(ms float8) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(min(b), 'Infinity'::float8)
      FROM unnest('{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60}'::float8[]) AS b
     WHERE b >= ms / 1000.0
$$;
COMMENT ON FUNCTION alexandrite.metric_le_seconds(float8)
    IS 'internal: the histogram bucket (upper bound, seconds) of a duration given in milliseconds';

-- Mesh analyses: how many stored meshes were analysed and how long it took
-- (meshes.analysis_ms), kept by a dashboard so that a scrape reads a dozen
-- buckets, not the meshes.
SELECT alexandrite.create_dashboard('mesh_analysis_time', 'alexandrite.meshes',
                                    ARRAY['alexandrite.metric_le_seconds(analysis_ms)'],
                                    count_name => 'analyses', sums => ARRAY['analysis_ms'],
                                    filter => 'analysis_ms IS NOT NULL',
                                    key_names => ARRAY['le_seconds'], sum_names => ARRAY['sum_ms']);
-- Quotes given for orders (quotes), by currency and review flag, with their
-- summed totals.
SELECT alexandrite.create_dashboard('quote_counts', 'alexandrite.quotes',
                                    ARRAY['currency', 'needs_review'],
                                    count_name => 'quotes', sums => ARRAY['total'],
                                    sum_names => ARRAY['sum_total']);
UPDATE alexandrite.dashboards SET builtin = true
 WHERE name OPERATOR(pg_catalog.=) ANY (ARRAY['status_age', 'mesh_analysis_time', 'quote_counts']);

CREATE FUNCTION alexandrite.metrics_meshes() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH h AS (
        SELECT d.le_seconds, sum(d.analyses) AS n, sum(d.sum_ms) AS ms
          FROM alexandrite.dashboard_mesh_analysis_time d GROUP BY d.le_seconds
    ), bounds AS (
        SELECT b FROM unnest('{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,Infinity}'::float8[]) AS b
    ), fam(family, help) AS (
        VALUES ('alexandrite_mesh_analysis_duration_seconds',
                'Time taken to analyse the stored meshes (alexandrite.meshes.analysis_ms), in seconds.')
    )
    (SELECT alexandrite.metric(fam.family, 'histogram', fam.help,
                COALESCE((SELECT sum(h.n) FROM h WHERE h.le_seconds <= bounds.b), 0),
                jsonb_build_object('le', CASE WHEN bounds.b = 'Infinity' THEN '+Inf' ELSE bounds.b::text END),
                '_bucket')
       FROM fam, bounds ORDER BY bounds.b)
    UNION ALL
    SELECT alexandrite.metric(fam.family, 'histogram', fam.help,
               COALESCE((SELECT sum(h.ms) FROM h), 0) / 1000.0, '{}', '_sum') FROM fam
    UNION ALL
    SELECT alexandrite.metric(fam.family, 'histogram', fam.help,
               COALESCE((SELECT sum(h.n) FROM h), 0), '{}', '_count') FROM fam
$$;
COMMENT ON FUNCTION alexandrite.metrics_meshes() IS 'metrics collector: mesh analyses and their duration histogram';

CREATE FUNCTION alexandrite.metrics_quotes() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH counted AS (
        SELECT d.currency, d.needs_review, sum(d.quotes) AS quotes, sum(d.sum_total) AS total
          FROM alexandrite.dashboard_quote_counts d GROUP BY d.currency, d.needs_review
    ), q AS (
        -- zeros for the current price list's currency, so the series exist from the start
        SELECT k.currency, k.needs_review, COALESCE(c.quotes, 0) AS quotes, COALESCE(c.total, 0) AS total
          FROM (SELECT r.currency, f.needs_review FROM alexandrite.price_rules r,
                       (VALUES (false), (true)) AS f(needs_review)
                UNION SELECT c.currency, c.needs_review FROM counted c) k
          LEFT JOIN counted c ON c.currency = k.currency AND c.needs_review = k.needs_review
    )
    (SELECT alexandrite.metric('alexandrite_quotes_total', 'counter',
                'Quotes given for orders (alexandrite.quotes), by currency and whether they need review.', q.quotes,
                jsonb_build_object('currency', q.currency, 'needs_review', q.needs_review::text))
       FROM q ORDER BY q.currency, q.needs_review)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_quotes_value_total', 'counter',
                'Sum of the totals of the quotes given, in their currency.', q.total,
                jsonb_build_object('currency', q.currency, 'needs_review', q.needs_review::text))
       FROM q ORDER BY q.currency, q.needs_review)
$$;
COMMENT ON FUNCTION alexandrite.metrics_quotes() IS 'metrics collector: quotes given, by currency';

INSERT INTO alexandrite.metric_collectors (name, collector, position, description) VALUES
    ('server',     'alexandrite.metrics_server()',     10, 'library version, primary or standby'),
    ('orders',     'alexandrite.metrics_orders()',     20, 'orders by status and channel, stuck orders'),
    ('sla',        'alexandrite.metrics_sla()',        30, 'open, at-risk and breached orders per channel'),
    ('assignment', 'alexandrite.metrics_assignment()', 40, 'open and overdue orders per operator'),
    ('outbox',     'alexandrite.metrics_outbox()',     50, 'outbox backlog, dead letters, relay connection'),
    ('dashboards', 'alexandrite.metrics_dashboards()', 60, 'pending changes and folds per dashboard'),
    ('meshes',     'alexandrite.metrics_meshes()',     70, 'mesh analyses and their duration histogram'),
    ('quotes',     'alexandrite.metrics_quotes()',     80, 'quotes given, by currency');

-- Runs the collectors (all, or those named) as the extension owner.
-- SECURITY DEFINER on purpose (STYLE.md section 4 rule 6): monitoring roles
-- get figures without SELECT on orders.  It takes no text that reaches SQL
-- except collector names matched against the registry, which only the
-- extension owner can write.
CREATE FUNCTION alexandrite.metric_samples(collectors text[] DEFAULT NULL)
    RETURNS SETOF alexandrite.metric_sample
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       record;
    samples alexandrite.metric_sample[];
    started timestamptz;
    ok      boolean;
    unknown text;
    meta    alexandrite.metric_sample[] := '{}';
BEGIN
    SELECT string_agg(format('"%s"', c), ', ') INTO unknown
      FROM unnest(collectors) AS c
     WHERE NOT EXISTS (SELECT 1 FROM alexandrite.metric_collectors m WHERE m.name = c);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown metrics collector: %', unknown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See alexandrite.metric_collectors.';
    END IF;
    FOR r IN SELECT m.name, p.proname, n.nspname
               FROM alexandrite.metric_collectors m
               JOIN pg_proc p ON p.oid = m.collector
               JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE collectors IS NULL OR m.name = ANY (collectors)
              ORDER BY m.position
    LOOP
        started := clock_timestamp();
        BEGIN
            EXECUTE format('SELECT pg_catalog.array_agg(ROW(s.family, s.type, s.help, s.suffix, s.labels, s.value)'
                           '::alexandrite.metric_sample ORDER BY s.n) FROM %I.%I() '
                           'WITH ORDINALITY AS s(family, type, help, suffix, labels, value, n)',
                           r.nspname, r.proname)
               INTO samples;
            ok := true;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'metrics collector "%" failed: %', r.name, SQLERRM;
            samples := NULL;
            ok := false;
        END;
        IF samples IS NOT NULL THEN
            RETURN QUERY SELECT * FROM unnest(samples);
        END IF;
        meta := meta || alexandrite.metric('alexandrite_metrics_collector_success', 'gauge',
            'Whether the collector answered (1) or failed (0) in this scrape.',
            CASE WHEN ok THEN 1 ELSE 0 END, jsonb_build_object('collector', r.name));
        meta := meta || alexandrite.metric('alexandrite_metrics_collector_duration_seconds', 'gauge',
            'Time the collector took in this scrape, in seconds.',
            extract(epoch FROM clock_timestamp() - started)::float8, jsonb_build_object('collector', r.name));
    END LOOP;
    -- one family after the other: all successes, then all durations
    RETURN QUERY SELECT * FROM unnest(meta) AS m WHERE m.family = 'alexandrite_metrics_collector_success';
    RETURN QUERY SELECT * FROM unnest(meta) AS m WHERE m.family <> 'alexandrite_metrics_collector_success';
END;
$$;
COMMENT ON FUNCTION alexandrite.metric_samples(text[])
    IS 'the samples behind alexandrite.metrics(), from all collectors or the named ones; runs as the extension owner';

-- Prometheus text exposition format 0.0.4: HELP and TYPE once per family,
-- then its samples; label values and help text escaped.
CREATE FUNCTION alexandrite.metrics_render(samples alexandrite.metric_sample[])
    RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH s AS (
        SELECT x.*, x.n AS ord FROM unnest(samples) WITH ORDINALITY
               AS x(family, type, help, suffix, labels, value, n)
    ), lines AS (
        SELECT s.family, s.ord,
               s.family || s.suffix ||
               COALESCE((SELECT '{' || string_agg(l.key || '="' ||
                                    replace(replace(replace(COALESCE(l.value, ''), '\', '\\'), '"', '\"'), E'\n', '\n') || '"',
                                    ',' ORDER BY l.key) || '}'
                           FROM jsonb_each_text(s.labels) AS l), '') || ' ' ||
               CASE WHEN s.value IS NULL OR s.value = 'NaN'::float8 THEN 'NaN'
                    WHEN s.value = 'Infinity'::float8 THEN '+Inf'
                    WHEN s.value = '-Infinity'::float8 THEN '-Inf'
                    ELSE s.value::text END AS line
          FROM s
    ), families AS (
        SELECT s.family, min(s.ord) AS first,
               (array_agg(s.type ORDER BY s.ord))[1] AS type,
               (array_agg(s.help ORDER BY s.ord))[1] AS help
          FROM s GROUP BY s.family
    )
    SELECT COALESCE(string_agg(
               '# HELP ' || f.family || ' ' || replace(replace(f.help, '\', '\\'), E'\n', '\n') || E'\n' ||
               '# TYPE ' || f.family || ' ' || f.type || E'\n' ||
               (SELECT string_agg(l.line || E'\n', '' ORDER BY l.ord) FROM lines l WHERE l.family = f.family),
               '' ORDER BY f.first), '')
      FROM families f
$$;
COMMENT ON FUNCTION alexandrite.metrics_render(alexandrite.metric_sample[])
    IS 'renders metric samples in the Prometheus text exposition format';

-- VOLATILE like metric_samples(): each call is a new scrape (durations, ages).
CREATE FUNCTION alexandrite.metrics() RETURNS text
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT alexandrite.metrics_render(ARRAY(
        SELECT ROW(s.family, s.type, s.help, s.suffix, s.labels, s.value)::alexandrite.metric_sample
          FROM alexandrite.metric_samples() WITH ORDINALITY AS s
         ORDER BY s.ordinality))
$$;
COMMENT ON FUNCTION alexandrite.metrics()
    IS 'Prometheus text exposition of alexandrite''s figures (orders, SLA, assignment, outbox, dashboards, meshes, quotes)';

-- Monitoring roles read the figures, nobody else by default.  Collectors are
-- internal: they read order tables with the caller's rights.
REVOKE ALL ON FUNCTION alexandrite.metric_samples(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_server() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_orders() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_sla() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_assignment() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_outbox() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_dashboards() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_meshes() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_quotes() FROM PUBLIC;
GRANT USAGE ON SCHEMA alexandrite TO pg_monitor;
GRANT EXECUTE ON FUNCTION alexandrite.metric_samples(text[]) TO pg_monitor;
GRANT EXECUTE ON FUNCTION alexandrite.metrics() TO pg_monitor;

------------------------------------------------------------------------------
-- Tracing: W3C trace context for the MES's transactions
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.set_traceparent(traceparent text, is_local boolean DEFAULT true)
    RETURNS text
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NULLIF(set_config('alexandrite.traceparent', COALESCE(traceparent, ''), is_local), '')
$$;
COMMENT ON FUNCTION alexandrite.set_traceparent(text, boolean)
    IS 'attaches a W3C traceparent to this transaction (or session, is_local => false); NULL clears it';

CREATE FUNCTION alexandrite.new_traceparent() RETURNS text
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '00-' || replace(gen_random_uuid()::text, '-', '') || '-' ||
           substr(replace(gen_random_uuid()::text, '-', ''), 1, 16) || '-01'
$$;
COMMENT ON FUNCTION alexandrite.new_traceparent()
    IS 'a fresh W3C traceparent (random trace and span ids, sampled) for a caller that has none';

------------------------------------------------------------------------------
-- The timeline of an order
--
-- Same signature and OUT columns as in 1.0; the trace context of each change
-- is in detail: {"traceparent": ..., "trace_id": ...}.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION alexandrite.order_timeline(order_id bigint)
    RETURNS TABLE (at timestamptz, kind text, from_status alexandrite.order_status,
                   to_status alexandrite.order_status, actor text, time_in_status interval,
                   event_type text, message_id bigint, delivery_state text, detail jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM alexandrite.orders o WHERE o.id = order_timeline.order_id) THEN
        RAISE EXCEPTION 'order % does not exist', order_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY
    SELECT t.at, t.kind, t.from_status, t.to_status, t.actor, t.time_in_status,
           t.event_type, t.message_id, t.delivery_state, t.detail
      FROM (
        -- status changes, with the time spent in each: until the next change,
        -- or until now while it lasts
        SELECT e.at, 'status'::text AS kind, e.from_status, e.to_status, e.actor,
               COALESCE(lead(e.at) OVER w, CASE WHEN alexandrite.is_open(e.to_status) THEN now() END) - e.at
                   AS time_in_status,
               NULL::text AS event_type, NULL::bigint AS message_id, NULL::text AS delivery_state,
               CASE WHEN e.traceparent IS NULL THEN e.detail
                    ELSE COALESCE(e.detail, '{}'::jsonb)
                         || jsonb_build_object('traceparent', e.traceparent,
                                               'trace_id', substr(e.traceparent, 4, 32)) END AS detail,
               0 AS sort_kind, e.id AS sort_id
          FROM alexandrite.order_events e
         WHERE e.order_id = order_timeline.order_id
        WINDOW w AS (ORDER BY e.id)
        UNION ALL
        -- the outbox messages about the order, while the outbox keeps them
        SELECT m.created_at, 'message', NULL, NULL, NULL, NULL,
               m.event_type, m.id, m.state,
               jsonb_strip_nulls(jsonb_build_object(
                   -- as the relay builds it: <aggregate_type>.<event_type>, no prefix twice
                   'routing_key', CASE WHEN starts_with(m.event_type, m.aggregate_type || '.') THEN m.event_type
                                       ELSE m.aggregate_type || '.' || m.event_type END,
                   'aggregate_seq', m.aggregate_seq,
                   'attempts', m.attempts,
                   'last_error', m.last_error,
                   'traceparent', m.headers->>'traceparent',
                   'trace_id', substr(m.headers->>'traceparent', 4, 32))),
               1, m.id
          FROM alexandrite.outbox m
         WHERE m.aggregate_type = 'order' AND m.aggregate_id = order_timeline.order_id::text
      ) t
     ORDER BY t.at, t.sort_kind, t.sort_id;
END;
$$;
COMMENT ON FUNCTION alexandrite.order_timeline(bigint)
    IS 'status history of an order with the time spent in each status, its outbox messages with their delivery state, and trace ids';
