# operations: metrics(), tracing, timeline (SQL only: sql/1.1/60_observe.sql)
REGRESS += observe_metrics observe_trace
