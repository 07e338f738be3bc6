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
 * The waves of a chunk are bounded (alexandrite.outbox_max_waves): one
 * aggregate with hundreds of events in a chunk would otherwise make the
 * chunk, and every aggregate behind it, wait hundreds of round trips.  Its
 * events past the bound are diverted: the relay records them (with every
 * later event of the aggregate) in outbox_retry, not as failures, and the
 * retry rounds send them in order, up to the bound per aggregate per round.
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

/*
 * Reorders msgs[0..n) into waves of one event per aggregate (stable); with
 * max_waves > 0, marks the events past wave max_waves to be diverted (they
 * end up last, each aggregate's in id order).
 */
void
AlxOutboxOrderByWave(AlxMsg *msgs, int n, int max_waves)
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
		if (max_waves > 0 && wave[i] >= max_waves && !msgs[i].divert)
			msgs[i].divert = msgs[i].wave_held = true;
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
