# operations: metrics(), tracing, timeline (SQL: sql/schema/observe.sql)
REGRESS += observe_metrics observe_trace
