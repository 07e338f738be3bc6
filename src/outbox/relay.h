/*-------------------------------------------------------------------------
 *
 * relay.h
 *	  Declarations shared by the files of the outbox relay worker: the loop
 *	  (relay.c), the batch reader (relay_batch.c), the publisher
 *	  (relay_publish.c) and the retry and dead-letter policy (relay_retry.c).
 *
 * IDENTIFICATION
 *	  src/outbox/relay.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_RELAY_H
#define ALX_RELAY_H

#include "outbox/outbox.h"

#define ALX_RELAY_CONFIRM_TIMEOUT_MS	30000
#define ALX_RELAY_AGGKEY_LEN	320

/*
 * The columns of an event read by the relay (see AlxRelayReadMsgs): 1 id,
 * 2 aggregate_type, 3 aggregate_id, 4 aggregate_seq, 5 event_type,
 * 6 payload, 7 headers, 8 created_at in ms; a query's own columns follow.
 */
#define ALX_RELAY_EVENT_NCOLS	8
#define ALX_RELAY_EVENT_COLS(alias) \
	alias ".id, " alias ".aggregate_type, " alias ".aggregate_id, " alias ".aggregate_seq, " \
	alias ".event_type, " alias ".payload, " alias ".headers, " \
	"(pg_catalog.date_part('epoch', " alias ".created_at) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8"

/*
 * At most this much payload and header text per chunk, and per read of the
 * retry heads (but at least one event; relay_batch.c, relay_retry.c): a
 * chunk of events near the 16 MB limit is read in well under a second, so
 * that the broker's heartbeats are answered in time, and the relay's memory
 * stays bounded whatever the batch size.  Sized from the payloads as
 * stored, before they are detoasted or converted to text.
 */
#define ALX_RELAY_CHUNK_MAX_BYTES	(32 * 1024 * 1024)

/* what a message costs besides its payload and headers, for the budget */
#define ALX_RELAY_MSG_OVERHEAD		256

/* relay.c: per-round memory, configuration, state, transactions, broker */
extern MemoryContext AlxRelayRoundCxt;
extern char *AlxRelayExchange;
extern void AlxRelaySetError(const char *msg);
extern void AlxRelayCount(uint64 ok, uint64 failed);
extern void AlxRelayCountLatency(AlxMsg *msgs, int n);
extern void AlxRelayBeginTxn(const char *what);
extern void AlxRelayEndTxn(void);
extern void AlxRelayExec(const char *sql, int nargs, Oid *types, Datum *values,
						 const char *nulls, int expect);
extern void AlxRelayExecKept(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, int expect, int cursor_options);
extern char *AlxRelayGetText(int row, int col);
extern int64 AlxRelayGetInt8(int row, int col, bool *isnull);
extern bool AlxRelayOutboxInstalled(void);
extern bool AlxRelayFlushWal(void);
extern bool AlxRelayEnsureConnected(void);
extern void AlxRelayConnectionBroken(const char *err);
extern void AlxRelayReopenAfterNacks(void);

/* a failed message that the broker nacked (not returned, not unframeable) */
#define ALX_RELAY_NACKED(m) \
	((m)->state == ALX_MSG_FAILED && !(m)->returned && !(m)->unframeable)

/* relay_publish.c: publishing a round of messages in per-aggregate order */
typedef struct AlxRelayAgg
{
	char		key[ALX_RELAY_AGGKEY_LEN];
	AlxMsg	   *last;			/* latest message of the aggregate this round */
	bool		blocked;
} AlxRelayAgg;

extern void AlxRelayAggKey(AlxMsg *m, char *buf);
extern bool AlxRelayPublishAll(AlxMsg *msgs, int n, TimestampTz deadline, char *err, size_t errlen);
extern bool AlxRelaySettleAll(AlxMsg *msgs, int n, TimestampTz deadline, char *err, size_t errlen);
extern bool AlxRelayPublishRound(AlxMsg *msgs, int n, char *err, size_t errlen);

/* relay_batch.c: the stream of new events, batch by batch */
extern AlxMsg *AlxRelayReadMsgs(int *nout, int extra_cols, int64 *budget);
extern int	AlxRelayDrainStream(void);
extern bool AlxRelayBacklog;

/* relay_retry.c: retries with backoff, dead letters */
extern void AlxRelayRecordDiverted(AlxMsg *m);
typedef struct AlxAggregateProbe AlxAggregateProbe;
extern AlxAggregateProbe *AlxRelayProbeBegin(void);
extern bool AlxRelayProbeWaits(AlxAggregateProbe *p, const char *aggregate_type, const char *aggregate_id);
extern void AlxRelayProbeEnd(AlxAggregateProbe *p);
extern int	AlxRelayProcessRetries(int *wait_ms);
extern bool AlxRelayRetryNow;
extern TimestampTz AlxRelayRetryDueAt;

#endif							/* ALX_RELAY_H */
