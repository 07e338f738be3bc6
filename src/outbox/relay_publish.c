/*-------------------------------------------------------------------------
 *
 * relay_publish.c
 *	  The relay's publisher: a round of messages goes out in id order, with at
 *	  most one unconfirmed message per aggregate, and is settled by the
 *	  broker's confirms.
 *
 * IDENTIFICATION
 *	  src/outbox/relay_publish.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "alexandrite.h"
#include "outbox/relay.h"

/* The key of m's aggregate in the relay's hash tables. */
void
AlxRelayAggKey(AlxMsg *m, char *buf)
{
	snprintf(buf, ALX_RELAY_AGGKEY_LEN, "%s\x01%s", m->aggregate_type, m->aggregate_id);
}

/* Pumps until m is settled; false if the connection broke (err set). */
static bool
wait_settled(AlxMsg *m, TimestampTz deadline, char *err, size_t errlen)
{
	while (m->state == ALX_MSG_INFLIGHT)
	{
		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (GetCurrentTimestamp() > deadline)
		{
			snprintf(err, errlen, "no publisher confirm within %d ms", ALX_RELAY_CONFIRM_TIMEOUT_MS);
			return false;
		}
		if (!AlxAmqpPump(100, err, errlen))
			return false;
	}
	return true;
}

/*
 * Publishes msgs[0..n) in order, skipping those marked divert and holding
 * back any message whose aggregate failed earlier in the round (it is marked
 * divert too).  At most one unconfirmed message per aggregate: before the
 * next message of an aggregate goes out, the previous one must be confirmed.
 * Returns false if the connection broke: then no outcome may be recorded.
 * The caller then waits for the rest with AlxRelaySettleAll().
 */
bool
AlxRelayPublishAll(AlxMsg *msgs, int n, TimestampTz deadline, char *err, size_t errlen)
{
	HASHCTL		ctl;
	HTAB	   *aggs;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = ALX_RELAY_AGGKEY_LEN;
	ctl.entrysize = sizeof(AlxRelayAgg);
	ctl.hcxt = CurrentMemoryContext;
	aggs = hash_create("alexandrite relay aggregates", Max(n, 16), &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	AlxAmqpBeginRound(msgs, n);
	for (int i = 0; i < n; i++)
	{
		AlxMsg	   *m = &msgs[i];
		char		key[ALX_RELAY_AGGKEY_LEN];
		AlxRelayAgg	   *a;
		bool		found;

		AlxRelayAggKey(m, key);
		a = hash_search(aggs, key, HASH_ENTER, &found);
		if (!found)
		{
			a->last = NULL;
			a->blocked = false;
		}
		if (a->blocked || m->divert)
		{
			a->blocked = true;
			m->divert = true;
			continue;
		}
		if (a->last != NULL)
		{
			/* the previous event of this aggregate must be confirmed first */
			if (!wait_settled(a->last, deadline, err, errlen))
				return false;
			if (a->last->state == ALX_MSG_FAILED)
			{
				a->blocked = true;
				m->divert = true;
				continue;
			}
		}
		/* in full segments: the loop's end, or a wait for a confirm, pushes them */
		if (!AlxAmqpPublish(m, AlxRelayExchange, true, deadline, err, errlen))
			return false;
		a->last = m;
		if ((i & 63) == 63 && !AlxAmqpPump(0, err, errlen))
			return false;
	}
	AlxAmqpFlush();
	return true;
}

/* Waits until every published message of the round is confirmed or failed. */
bool
AlxRelaySettleAll(AlxMsg *msgs, int n, TimestampTz deadline, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++)
	{
		if (msgs[i].state == ALX_MSG_INFLIGHT &&
			!wait_settled(&msgs[i], deadline, err, errlen))
			return false;
	}
	return true;
}

bool
AlxRelayPublishRound(AlxMsg *msgs, int n, char *err, size_t errlen)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ALX_RELAY_CONFIRM_TIMEOUT_MS);

	return AlxRelayPublishAll(msgs, n, deadline, err, errlen) &&
		AlxRelaySettleAll(msgs, n, deadline, err, errlen);
}
