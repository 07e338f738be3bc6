# dashboards: incrementally maintained grouped counts (the MES first page)
OBJS      += src/dashboard/capture.o src/dashboard/fold.o
REGRESS   += dashboard_basic dashboard_workload
ISOLATION += dashboard_fold
