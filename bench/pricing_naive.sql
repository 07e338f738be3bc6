-- bench/pricing_naive.sql: the quote formula of docs/pricing.md written the
-- obvious way, in PL/pgSQL with numeric and table lookups on every call.
-- It is the peer of alexandrite.price_quote in bench/pricing.sh and its
-- oracle in the regression test sql/pricing_quote.sql (both must agree to
-- the last digit, breakdown included).
CREATE SCHEMA pricing_naive;

CREATE FUNCTION pricing_naive.price_quote(p_mesh_id bigint, p_material text, p_options jsonb DEFAULT '{}')
    RETURNS alexandrite.quote
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r        alexandrite.price_rules;
    mat      alexandrite.materials;
    mesh     alexandrite.meshes;
    e        int;
    stones   bigint := COALESCE((p_options ->> 'stones')::bigint, 0);
    vol      numeric;
    area     numeric;
    net_g    numeric;
    metal_g  numeric;
    metal    numeric;
    finish   numeric;
    t_from   bigint;
    t_charge numeric;
    labour   numeric;
    subtotal numeric;
    margin   numeric;
    price    numeric;
    minimum_applied boolean;
    total    numeric;
    warnings text[] := '{}';
    review   boolean;
    maxdim   float8;
BEGIN
    SELECT * INTO r FROM alexandrite.price_rules;
    SELECT * INTO mat FROM alexandrite.materials m WHERE m.code = p_material;
    IF NOT FOUND OR NOT mat.active THEN
        RAISE EXCEPTION 'unknown material "%"', p_material USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO mesh FROM alexandrite.meshes m WHERE m.id = p_mesh_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mesh % does not exist', p_mesh_id USING ERRCODE = 'no_data_found';
    END IF;
    e := r.currency_exponent;

    -- geometry to 0.001 mm3 / mm2 (round(float8) rounds half to even)
    vol  := round(mesh.volume_mm3 * 1000::float8)::numeric * 0.001;
    area := round(mesh.area_mm2 * 1000::float8)::numeric * 0.001;
    -- metal: exact products, one rounding each
    net_g   := round(vol * mat.density_g_cm3 * 0.001, 3);
    metal_g := round(vol * mat.density_g_cm3 * (100 + mat.casting_loss_pct) * 0.00001, 3);
    metal   := round(metal_g * mat.price_per_gram, e);
    finish  := round(area * r.finishing_per_cm2 * 0.01, e);
    SELECT t.from_triangles, t.charge INTO t_from, t_charge
      FROM jsonb_to_recordset(r.complexity_tiers) AS t(from_triangles bigint, charge numeric)
     WHERE t.from_triangles <= mesh.triangles
     ORDER BY t.from_triangles DESC LIMIT 1;
    labour   := round(r.labour_base + t_charge + stones * r.stone_setting_per_stone, e);
    subtotal := metal + labour + finish;
    margin   := round(subtotal * r.margin_pct * 0.01, e);
    price    := subtotal + margin;
    minimum_applied := price < r.minimum_price;
    price    := greatest(price, r.minimum_price);
    total    := CASE r.rounding_mode
                    WHEN 'half_up' THEN round(price / r.rounding_increment)
                    WHEN 'up' THEN ceil(price / r.rounding_increment)
                    ELSE trunc(price / r.rounding_increment) END * r.rounding_increment;
    total    := round(total, e);

    IF NOT mesh.watertight OR mesh.boundary_edges > 0 THEN warnings := warnings || 'open_mesh'::text; END IF;
    IF mesh.nonmanifold_edges > 0 THEN warnings := warnings || 'nonmanifold_edges'::text; END IF;
    IF mesh.shells > 1 THEN warnings := warnings || 'multiple_shells'::text; END IF;
    IF vol = 0 THEN warnings := warnings || 'no_volume'::text; END IF;
    maxdim := greatest(mesh.size_x_mm, mesh.size_y_mm, mesh.size_z_mm);
    IF NOT (maxdim >= 1 AND maxdim <= 300) THEN warnings := warnings || 'unit_suspect'::text; END IF;
    review := cardinality(warnings) > 0;
    IF mesh.degenerate_triangles > 0 THEN warnings := warnings || 'degenerate_triangles'::text; END IF;

    RETURN ROW(total, r.currency, metal_g, metal, labour, finish, r.version,
               jsonb_build_object(
                   'mesh_id', p_mesh_id, 'material', p_material, 'price_list_version', r.version,
                   'currency', r.currency, 'volume_mm3', vol, 'area_mm2', area,
                   'triangles', mesh.triangles, 'density_g_cm3', mat.density_g_cm3,
                   'casting_loss_pct', mat.casting_loss_pct, 'net_weight_g', net_g,
                   'metal_weight_g', metal_g, 'price_per_gram', mat.price_per_gram, 'metal_cost', metal,
                   'labour_base', r.labour_base, 'complexity_tier_from', t_from,
                   'complexity_charge', t_charge, 'stones', stones,
                   'stone_setting_per_stone', r.stone_setting_per_stone,
                   'stone_setting', stones * r.stone_setting_per_stone, 'labour_cost', labour,
                   'finishing_per_cm2', r.finishing_per_cm2, 'finishing_cost', finish,
                   'subtotal', subtotal, 'margin_pct', r.margin_pct, 'margin', margin,
                   'minimum_price', r.minimum_price, 'minimum_applied', minimum_applied,
                   'rounding_increment', r.rounding_increment, 'rounding_mode', r.rounding_mode,
                   'rounding_adjustment', total - price, 'total', total,
                   'needs_review', review, 'warnings', to_jsonb(warnings)))::alexandrite.quote;
END;
$$;
