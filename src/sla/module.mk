# SLA priority and assignment (src/sla, sql/schema/sla.sql, docs/sla.md)
OBJS      += src/sla/sla.o src/sla/assign.o src/sla/claim.o src/sla/escalate.o src/sla/maintain.o
REGRESS   += sla_priority sla_assign sla_escalate sla_board
ISOLATION += sla_operators_race sla_assign_order_capacity sla_capacity_edge sla_release_race sla_escalate_race sla_policy_cache sla_pool_edge sla_claim_window
