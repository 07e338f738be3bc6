# the order core (sql/schema/core.sql, src/core): the one write routine for
# orders, the state machine cache, the compiled statements; tests listed here
OBJS      += src/core/plans.o src/core/transitions.o src/core/orders.o src/core/create.o src/core/api.o
REGRESS   += core_install core_orders core_privileges core_security core_upgrade
ISOLATION += core_create_order_race core_set_status_race core_internal_locks
