/*-------------------------------------------------------------------------
 *
 * dashboard.h
 *	  Declarations shared by the dashboard capture trigger and the fold.
 *
 * IDENTIFICATION
 *	  src/dashboard/dashboard.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_DASHBOARD_H
#define ALX_DASHBOARD_H

/*
 * Advisory lock (two-int form) held by every fold, rebuild, drop and base
 * table TRUNCATE: "alxd" and 1.  The SQL functions use the same numbers.
 */
#define ALX_DASH_LOCK_CLASS		1634498660
#define ALX_DASH_LOCK_FOLD		1

/* fold every dashboard (fold.c); returns the delta rows folded, 0 if skipped */
extern int64 AlxFoldDashboards(void);

#endif							/* ALX_DASHBOARD_H */
