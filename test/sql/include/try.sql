-- pg_temp.try(sql): runs a statement and returns 'ok', or its error as
-- "SQLSTATE: message (hint)" so that the code shows in the expected output;
-- order ids (which depend on the tests that ran before) read "order N".
-- Included by the tests that need it:
--   \getenv abs_srcdir PG_ABS_SRCDIR
--   \i :abs_srcdir/sql/include/try.sql
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state text; v_msg text; v_hint text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
    RETURN regexp_replace(v_state || ': ' || v_msg || COALESCE(NULLIF(' (' || v_hint || ')', ' ()'), ''),
                          'order -?[0-9]+', 'order N');
END;
$$;
