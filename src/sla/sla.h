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

/* the score of an order of "channel" due at "due", evaluated at "at" */
extern double AlxSlaPriority(TimestampTz due, const char *channel,
							 int channel_len, TimestampTz at);

#endif							/* ALX_SLA_H */
