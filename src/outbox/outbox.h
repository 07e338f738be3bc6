/*-------------------------------------------------------------------------
 *
 * outbox.h
 *	  Declarations shared by the outbox producer side (emit.c), the relay
 *	  background worker (relay.c) and its AMQP client (amqp.c).
 *
 * IDENTIFICATION
 *	  src/outbox/outbox.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_OUTBOX_H
#define ALX_OUTBOX_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

#define ALX_OUTBOX_ERRLEN	512
#define ALX_OUTBOX_BROKERLEN 256
#define ALX_OUTBOX_LAT_BUCKETS 14

/* State of the relay, in shared memory; read by outbox_relay_info() */
typedef struct AlxOutboxShared
{
	slock_t		mutex;
	int			relay_pid;		/* 0 when no relay runs */
	int			relay_pgprocno; /* -1 when no relay runs */
	bool		connected;
	bool		retry_poke;		/* outbox_retry changed by another backend */
	char		broker[ALX_OUTBOX_BROKERLEN];	/* masked URL */
	char		last_error[ALX_OUTBOX_ERRLEN];	/* never holds a password */
	TimestampTz last_error_at;
	uint64		published;		/* confirmed since the relay started */
	uint64		failed;			/* nacked, returned or refused */
	uint64		reconnects;
	/* created_at -> broker confirm, in ms: counts per bucket (upper bounds) */
	uint64		latency[ALX_OUTBOX_LAT_BUCKETS];
	double		latency_sum_ms;
} AlxOutboxShared;

extern const double AlxOutboxLatencyBounds[ALX_OUTBOX_LAT_BUCKETS];

extern AlxOutboxShared *AlxOutbox;

/* relay.c */
extern void AlxOutboxShmemRequest(void);
extern void AlxOutboxShmemStartup(void);
extern void AlxOutboxRegisterWorker(void);
PGDLLEXPORT void AlxOutboxRelayMain(Datum main_arg) pg_attribute_noreturn();

/* durability.c: publish only what a failover would keep */
extern bool AlxCheckStandbyFlush(char **newval, void **extra, GucSource source);
extern void AlxAssignStandbyFlush(const char *newval, void *extra);
extern bool AlxOutboxWaitDurable(XLogRecPtr lsn);

/*
 * What one message may carry (AMQP 0-9-1, rabbitmq-c 0.11, RabbitMQ): short
 * strings (routing key, header keys) up to 255 bytes; the properties with
 * the headers in one content header frame of frame_max bytes (the relay asks
 * for ALX_AMQP_FRAME_MAX; the broker may grant less); a payload up to
 * RabbitMQ's default max_message_size.
 */
#define ALX_AMQP_SHORTSTR_MAX	255
#define ALX_AMQP_FRAME_MAX		131072
#define ALX_AMQP_MESSAGE_MAX	(128 * 1024 * 1024)

/* amqp.c: one connection with publisher confirms on channel 1 */
typedef enum AlxMsgState
{
	ALX_MSG_UNSENT = 0,
	ALX_MSG_INFLIGHT,
	ALX_MSG_CONFIRMED,
	ALX_MSG_FAILED
} AlxMsgState;

typedef struct AlxMsg
{
	int64		id;
	char	   *aggregate_type;
	char	   *aggregate_id;
	int64		aggregate_seq;
	char	   *event_type;
	char	   *payload;
	int			nheaders;
	char	  **hkeys;
	char	  **hvalues;
	int64		created_at;		/* unix time in milliseconds */
	/* delivery */
	AlxMsgState state;
	uint64		tag;
	bool		returned;
	int64		confirmed_at;	/* unix ms when the ack arrived */
	char	   *error;			/* why it failed */
	bool		unframeable;	/* failed because it cannot be framed: dead at once */
	/* relay bookkeeping */
	bool		divert;			/* goes to retry without publishing */
	bool		wave_held;		/* diverted by the wave bound (publish_order.c) */
	int			attempts;
} AlxMsg;

extern bool AlxAmqpConnected(void);
extern bool AlxAmqpConnect(const char *url, const char *exchange, char *err, size_t errlen);
extern void AlxAmqpDisconnect(void);
extern void AlxAmqpBeginRound(AlxMsg *msgs, int nmsgs);
extern void AlxAmqpEndRound(void);
extern char *AlxAmqpUnframeable(const AlxMsg *m, int frame_max);
extern void AlxAmqpForgetLimits(void);
extern char *AlxOutboxRoutingKey(const char *aggregate_type, const char *event_type);
extern bool AlxAmqpClosedByRefusal(void);
extern bool AlxAmqpPublish(AlxMsg *msg, const char *exchange, bool more, TimestampTz deadline,
						   char *err, size_t errlen);
extern void AlxAmqpFlush(void);
extern bool AlxAmqpPump(int timeout_ms, char *err, size_t errlen);
extern int	AlxAmqpSocket(void);
extern bool AlxAmqpHasBuffered(void);
extern bool AlxAmqpWritable(void);
extern void AlxMaskUrl(const char *url, char *out, size_t outlen);

/* publish_order.c: a chunk's messages in waves of one per aggregate */
extern void AlxOutboxOrderByWave(AlxMsg *msgs, int n, int max_waves);
/*
 * produce.c: writing events, for outbox_emit() and the order core.
 *
 * An event is refused when it is written if the relay could not frame it
 * (docs/outbox.md, "Limits"; the limits above): rabbitmq-c 0.11 casts a
 * longer short string's length to one byte and corrupts the frame.  The
 * relay checks again before it publishes (AlxAmqpUnframeable: the broker
 * may grant a smaller frame_max, an event may predate these checks).
 */
/* the content header frame without the event's own headers, before the
 * lengths of aggregate_type, aggregate_id and twice event_type */
#define ALX_AMQP_HEADER_FIXED	162
/* what one header "key": "value" adds to that frame, besides its bytes */
#define ALX_AMQP_HEADER_ENTRY	6
/* payload: the JSON text the relay publishes as the body */
#define ALX_OUTBOX_PAYLOAD_MAX	(16 * 1024 * 1024)

extern int	AlxOutboxCurrentTable(void);
extern Jsonb *AlxOutboxHeaders(Jsonb *given);
extern void AlxOutboxCheckEvent(const char *aggregate_type, const char *aggregate_id,
								const char *event_type, Jsonb *payload,
								Jsonb *headers);
extern void AlxOutboxCheckOwnEvent(const char *aggregate_id, const char *event_type,
								   Jsonb *payload, Jsonb *headers);

/* produce.c: outbox_emit() without its refusal of the extension's own event types */
extern int64 AlxOutboxEmit(const char *aggregate_type, const char *aggregate_id,
						   const char *event_type, Jsonb *payload, Jsonb *headers);

/* write.c: the event row, after the aggregate's lock */
extern int64 AlxOutboxWrite(int table, const char *aggregate_type, const char *aggregate_id,
							int64 seq, const char *event_type, Jsonb *payload,
							Jsonb *headers);

/* emit.c */
extern void AlxOutboxWakeupAtCommit(void);

/* aggseq.c */
extern int64 AlxOutboxAggregateNextSeq(const char *aggregate_type, const char *aggregate_id);
extern void AlxOutboxAggseqInit(void);

#endif							/* ALX_OUTBOX_H */
