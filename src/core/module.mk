# the order core (sql/schema/core.sql); tests listed here
REGRESS   += core_install core_orders core_security core_upgrade
ISOLATION += core_create_order_race core_set_status_race
