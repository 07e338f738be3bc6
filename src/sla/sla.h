/*-------------------------------------------------------------------------
 *
 * sla.h
 *	  SLA priority: the score shared by the SQL functions of src/sla.
 *
 * IDENTIFICATION
 *	  src/sla/sla.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_SLA_H
#define ALX_SLA_H

#include "datatype/timestamp.h"
#include "utils/timestamp.h"

/* the score of an order of "channel" due at "due", evaluated at "at" */
extern double AlxSlaPriority(TimestampTz due, const char *channel,
							 int channel_len, TimestampTz at);
/* a channel's policy as of one moment (AlxSlaPolicies), for a claim */
typedef struct AlxSlaPolicyCopy
{
	char	   *name;
	int			len;
	double		weight;
	double		target_us;
} AlxSlaPolicyCopy;

extern AlxSlaPolicyCopy *AlxSlaPolicies(int *n);
extern double AlxSlaScore(const AlxSlaPolicyCopy *c, TimestampTz due, TimestampTz at);
extern TimestampTz AlxSlaBound(const AlxSlaPolicyCopy *c, double p, TimestampTz at);

/* the SLA target of a new order; false for a channel without policy */
extern bool AlxSlaPolicyTarget(const char *channel, const char *customer, Interval *target);
extern char *AlxSlaChannelList(void);

/* assign.c: operators and their load */
extern void AlxOperatorLock(const char *operator_id, bool must_be_active,
							int *capacity, bool *active);
extern int	AlxOperatorLoad(const char *operator_id);
extern void AlxRequireReadCommitted(const char *what);

/* claim.c: the claim of the most urgent pool order (AlxOrderRow: core/core.h) */
struct AlxOrderRow;
extern bool AlxClaimOrder(TimestampTz at, TimestampTz due_before, struct AlxOrderRow *row);

#endif							/* ALX_SLA_H */
