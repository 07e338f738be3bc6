/*-------------------------------------------------------------------------
 *
 * publish_order.c
 *	  The order in which the relay sends the messages of a chunk.
 *
 * The relay keeps at most one unconfirmed message per aggregate: before the
 * next message of an aggregate goes out, it waits for the broker's confirm
 * of the previous one, and the messages after it in the chunk wait too.  In
 * id order, a chunk in which many orders have several events (a status
 * change to "priced" alone emits two) therefore waits one confirm round trip
 * per such event; with a quorum queue a confirm takes a replicated, synced
 * write on a majority of the broker nodes, and the relay fell behind a few
 * hundred changes per second.  Sent in waves (every aggregate's first event
 * in id order, then every second event, and so on) a chunk waits about once
 * per wave.  The events of each aggregate keep their order, and an event
 * still goes out only after its predecessor is confirmed, so the ordering
 * argument of docs/outbox.md is unchanged.
 *
 * IDENTIFICATION
 *	  src/outbox/publish_order.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"

#include "outbox/outbox.h"

#define ALX_WAVE_KEYLEN 320

typedef struct WaveCount
{
	char		key[ALX_WAVE_KEYLEN];
	int			seen;
} WaveCount;

/* Reorders msgs[0..n) into waves of one event per aggregate (stable). */
void
AlxOutboxOrderByWave(AlxMsg *msgs, int n)
{
	HASHCTL		ctl;
	HTAB	   *aggs;
	int		   *wave;
	int		   *start;
	int			waves = 0;
	AlxMsg	   *sorted;

	if (n < 2)
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = ALX_WAVE_KEYLEN;
	ctl.entrysize = sizeof(WaveCount);
	ctl.hcxt = CurrentMemoryContext;
	aggs = hash_create("alexandrite relay waves", n, &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	wave = palloc(sizeof(int) * n);
	for (int i = 0; i < n; i++)
	{
		char		key[ALX_WAVE_KEYLEN];
		WaveCount  *c;
		bool		found;

		snprintf(key, sizeof(key), "%s\x01%s", msgs[i].aggregate_type, msgs[i].aggregate_id);
		c = hash_search(aggs, key, HASH_ENTER, &found);
		if (!found)
			c->seen = 0;
		wave[i] = c->seen++;
		waves = Max(waves, wave[i] + 1);
	}
	hash_destroy(aggs);
	if (waves == 1)
	{
		pfree(wave);
		return;					/* one event per aggregate: nothing to gain */
	}

	/* a counting sort on the wave number keeps id order within a wave */
	start = palloc0(sizeof(int) * (waves + 1));
	for (int i = 0; i < n; i++)
		start[wave[i] + 1]++;
	for (int w = 0; w < waves; w++)
		start[w + 1] += start[w];
	sorted = palloc(sizeof(AlxMsg) * n);
	for (int i = 0; i < n; i++)
		sorted[start[wave[i]]++] = msgs[i];
	memcpy(msgs, sorted, sizeof(AlxMsg) * n);
	pfree(sorted);
	pfree(start);
	pfree(wave);
}
