/* sql/schema/pricing.sql: versioned price list, quotes and order pricing
 * Part of the current install script (make concatenates the files of sql/schema in the
 * order of SCHEMA in the Makefile into alexandrite--<version>.sql).  A change
 * here needs the same change in the current upgrade script. */


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
-- transaction, on a lock of the library's own that pg_advisory_lock()
-- cannot take (so no role can hold off price changes with it), rather than
-- LOCK TABLE, which would need UPDATE rights on a table nobody may update.
CREATE FUNCTION alexandrite.price_list_lock() RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_price_list_lock'
    LANGUAGE C VOLATILE;
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

-- Quotes an order's mesh and material with the current price list, keeps
-- the quote, and sets the price and the status 'priced' in one write of
-- the order with its order_event, order.status_changed and order.priced
-- (C: src/pricing/order.c through the order core).  Runs its statements as
-- the extension owner: a caller needs EXECUTE on it only.
CREATE FUNCTION alexandrite.price_order(order_id bigint, options jsonb DEFAULT '{}')
    RETURNS alexandrite.quote
    AS 'MODULE_PATHNAME', 'alexandrite_price_order'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.price_order(bigint, jsonb) IS
    'quotes an order''s mesh and material, stores the quote, sets the order price and moves it to priced';
REVOKE ALL ON FUNCTION alexandrite.price_order(bigint, jsonb) FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('alexandrite.price_list_versions',
                                           'WHERE version OPERATOR(pg_catalog.>) 1');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.price_list_version_seq', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.quotes', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.quotes_id_seq', '');
