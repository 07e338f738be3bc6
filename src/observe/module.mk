# operations: metrics(), tracing, timeline (SQL: sql/schema/observe.sql)
OBJS    += src/observe/metrics.o
REGRESS += observe_metrics observe_trace
