# dashboards: incrementally maintained grouped counts (the MES first page)
OBJS      += src/dashboard/define.o src/dashboard/registry.o src/dashboard/sqlgen.o \
             src/dashboard/objects.o src/dashboard/admin.o src/dashboard/rebuild.o src/dashboard/capture.o \
             src/dashboard/pending.o src/dashboard/fold.o src/dashboard/worker.o \
             src/dashboard/compat.o
REGRESS   += dashboard_basic dashboard_workload
ISOLATION += dashboard_fold dashboard_snapshot
