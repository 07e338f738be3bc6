/*-------------------------------------------------------------------------
 *
 * amqp.c
 *	  The relay's RabbitMQ client: one connection, channel 1 in confirm mode,
 *	  persistent mandatory publishes, and a frame pump that turns basic.ack,
 *	  basic.nack and basic.return into per-message outcomes.
 *
 * rabbitmq-c 0.11 has no amqp_publisher_confirm_wait(), so the pump reads
 * frames itself with amqp_simple_wait_frame_noblock().  Every call is bounded:
 * the socket is opened with a timeout, the handshake and RPCs have timeouts,
 * heartbeats are on (a publish blocked on a dead peer ends at the heartbeat
 * deadline) and the pump waits at most the time it is given.  Any protocol or
 * socket trouble marks the connection broken; the relay then reconnects and
 * republishes whatever was not confirmed.
 *
 * IDENTIFICATION
 *	  src/outbox/amqp.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "common/hashfn.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_bswap.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "outbox/outbox.h"

#define ALX_AMQP_HEARTBEAT_S	5
#define ALX_AMQP_OPEN_TIMEOUT_S 5
#define ALX_AMQP_RPC_TIMEOUT_S	10

/* frame type, channel and size before a frame's payload */
#define ALX_AMQP_FRAME_OVERHEAD 7

static amqp_connection_state_t conn = NULL;

/* a frame may be half written: the connection can only be dropped */
static bool stream_broken = false;

/*
 * Whether the last message went out with MSG_MORE: the kernel holds a
 * partial segment of it until more is written or AlxAmqpFlush pushes it.
 */
static bool corked = false;

/*
 * RabbitMQ's max_message_size as the broker stated it when it refused a
 * message (0: not known, ALX_AMQP_MESSAGE_MAX applies).  The broker does not
 * announce it; it closes the channel with 406 PRECONDITION_FAILED "message
 * size N is larger than [configured] max size M".  Without this, the relay
 * would reconnect and send the same event for ever: a refused round records
 * no outcome.  Kept for the reconnect that the refusal caused; forgotten on
 * any other reconnect (a broker restart may have changed the limit) and on a
 * configuration reload (AlxAmqpForgetLimits).  So each oversized event costs
 * at most one broken round, after which it is a dead letter.
 */
static uint64 broker_message_max = 0;
static bool closed_by_refusal = false;
/* the broker it was learned from, and the one connected (hashes of their URLs) */
static uint32 learned_url_hash = 0;
static uint32 conn_url_hash = 0;

static inline void
put16(char *buf, uint16 v)
{
	uint16		n = pg_hton16(v);

	memcpy(buf, &n, sizeof(n));
}

static inline void
put32(char *buf, uint32 v)
{
	uint32		n = pg_hton32(v);

	memcpy(buf, &n, sizeof(n));
}

static inline void
put64(char *buf, uint64 v)
{
	uint64		n = pg_hton64(v);

	memcpy(buf, &n, sizeof(n));
}

/* the messages of the current round, indexed by delivery tag - base */
static AlxMsg **round_bytag = NULL;
static int	round_cap = 0;
static int	round_used = 0;
static uint64 round_base = 1;
static uint64 next_tag = 1;

/*
 * Copies url into out with the password replaced by "***": everything
 * between the first ':' after the scheme and the last '@' of the URL, so
 * that a password holding an unescaped '@' or '/' (which the URL parser
 * refuses, and the error then shows the URL) is hidden whole.  A URL
 * without "://" is masked from its start.
 */
void
AlxMaskUrl(const char *url, char *out, size_t outlen)
{
	const char *scheme_end = strstr(url, "://");
	const char *start = scheme_end ? scheme_end + 3 : url;
	const char *at = strrchr(start, '@');
	const char *colon;

	strlcpy(out, url, outlen);
	if (at == NULL)
	{
		/*
		 * No "@": "host:port", or a user and password whose "@host" is
		 * missing (a typo must not show the password).  The first colon
		 * outside an IPv6 "[...]" is kept with what follows only when a
		 * port follows (1-5 digits, at most 65535, then "/" or the end);
		 * otherwise everything after it is masked.
		 */
		const char *p = start;
		int			digits = 0;
		long		port = 0;

		if (*p == '[')
		{
			p = strchr(p, ']');
			if (p == NULL)
				p = start;
		}
		colon = strchr(p, ':');
		if (colon == NULL)
			return;
		for (p = colon + 1; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
			port = port * 10 + (*p - '0');
		if (digits >= 1 && digits <= 5 && port <= 65535 && (*p == '\0' || *p == '/'))
			return;
		snprintf(out, outlen, "%.*s***", (int) (colon + 1 - url), url);
		return;
	}
	colon = memchr(start, ':', at - start);
	if (colon == NULL)
		return;
	snprintf(out, outlen, "%.*s***%s", (int) (colon + 1 - url), url, at);
}

/* Describes a failed RPC reply in err. */
static void
reply_error(amqp_rpc_reply_t r, const char *what, char *err, size_t errlen)
{
	switch (r.reply_type)
	{
		case AMQP_RESPONSE_NORMAL:
			snprintf(err, errlen, "%s: ok", what);
			break;
		case AMQP_RESPONSE_NONE:
			snprintf(err, errlen, "%s: missing RPC reply", what);
			break;
		case AMQP_RESPONSE_LIBRARY_EXCEPTION:
			snprintf(err, errlen, "%s: %s", what, amqp_error_string2(r.library_error));
			break;
		case AMQP_RESPONSE_SERVER_EXCEPTION:
			if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
			{
				amqp_connection_close_t *m = r.reply.decoded;

				snprintf(err, errlen, "%s: server closed the connection: %u %.*s", what,
						 m->reply_code, (int) m->reply_text.len, (char *) m->reply_text.bytes);
			}
			else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
			{
				amqp_channel_close_t *m = r.reply.decoded;

				snprintf(err, errlen, "%s: server closed the channel: %u %.*s", what,
						 m->reply_code, (int) m->reply_text.len, (char *) m->reply_text.bytes);
			}
			else
				snprintf(err, errlen, "%s: unexpected server method 0x%08X", what, r.reply.id);
			break;
	}
}

/* The number right after the first label in text (*rest: the text after it); 0 when none. */
static unsigned long long
number_after(const char *text, const char *label, const char **rest)
{
	const char *p = strstr(text, label);
	char	   *end;
	unsigned long long v;

	if (p == NULL)
		return 0;
	p += strlen(label);
	if (*p < '0' || *p > '9')
		return 0;
	errno = 0;
	v = strtoull(p, &end, 10);
	if (errno != 0)
		return 0;
	*rest = end;
	return v;
}

/*
 * Learns the broker's max_message_size from a channel.close reply: RabbitMQ
 * (rabbit_channel:check_msg_size) says "PRECONDITION_FAILED - message size
 * N is larger than configured max size M" (or "max size M" at its default).
 * Other 406s are ignored.
 */
static void
learn_message_max(const amqp_channel_close_t *c)
{
	char		text[256];
	const char *rest = "";
	unsigned long long n;
	unsigned long long m;

	if (c->reply_code != AMQP_PRECONDITION_FAILED)
		return;
	snprintf(text, sizeof(text), "%.*s", (int) c->reply_text.len, (char *) c->reply_text.bytes);
	n = number_after(text, "message size ", &rest);
	if (n == 0 || strncmp(rest, " is larger than ", strlen(" is larger than ")) != 0)
		return;
	m = number_after(rest, "max size ", &rest);
	/* a limit below the refused size, and below ours (else nothing to learn) */
	if (m == 0 || m >= n || m >= ALX_AMQP_MESSAGE_MAX)
		return;
	closed_by_refusal = true;
	learned_url_hash = conn_url_hash;
	broker_message_max = m;
	ereport(LOG,
			(errmsg("alexandrite relay: the broker accepts messages of at most %llu bytes (its max_message_size)", m),
			 errdetail("Events with a larger payload become dead letters without being sent, until the relay reconnects for another reason or the configuration is reloaded.")));
}

/* True when the broker refused a message too large for it: reconnect to the same one. */
bool
AlxAmqpClosedByRefusal(void)
{
	return closed_by_refusal;
}

/* Forgets what the broker's refusals taught (a reload: the operator may have raised the limit). */
void
AlxAmqpForgetLimits(void)
{
	broker_message_max = 0;
	closed_by_refusal = false;
}

bool
AlxAmqpConnected(void)
{
	return conn != NULL;
}

int
AlxAmqpSocket(void)
{
	return conn ? amqp_get_sockfd(conn) : -1;
}

/* true when frames or bytes are buffered, so waiting on the socket could hang */
bool
AlxAmqpHasBuffered(void)
{
	return conn != NULL && (amqp_frames_enqueued(conn) || amqp_data_in_buffer(conn));
}

/*
 * Sends connection.close, waiting at most timeout_ms for room in the socket
 * and serving no interrupts (this runs on the way out, in proc_exit too).
 * The reply is not awaited: the socket is closed right after.
 */
static void
send_close(int timeout_ms)
{
	amqp_connection_close_t req;
	char		buf[64];
	amqp_bytes_t out;
	int			len;
	int			fd = amqp_get_sockfd(conn);
	size_t		off = 0;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	memset(&req, 0, sizeof(req));
	req.reply_code = AMQP_REPLY_SUCCESS;
	req.reply_text = amqp_cstring_bytes("relay stops");
	out.bytes = buf + ALX_AMQP_FRAME_OVERHEAD + 4;
	out.len = sizeof(buf) - ALX_AMQP_FRAME_OVERHEAD - 4 - 1;
	len = amqp_encode_method(AMQP_CONNECTION_CLOSE_METHOD, &req, out);
	if (len < 0 || fd < 0)
		return;
	buf[0] = AMQP_FRAME_METHOD;
	put16(buf + 1, 0);
	put32(buf + 3, len + 4);
	put32(buf + ALX_AMQP_FRAME_OVERHEAD, AMQP_CONNECTION_CLOSE_METHOD);
	buf[ALX_AMQP_FRAME_OVERHEAD + 4 + len] = (char) AMQP_FRAME_END;
	len += ALX_AMQP_FRAME_OVERHEAD + 4 + 1;
	while (off < (size_t) len)
	{
		ssize_t		n = send(fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		struct pollfd pfd;
		long		left;

		if (n > 0)
		{
			off += n;
			continue;
		}
		if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return;
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0)
			return;
		pfd.fd = fd;
		pfd.events = POLLOUT;
		(void) poll(&pfd, 1, (int) left);
	}
}

/*
 * Drops the connection, never blocking for long: a broker that stopped
 * reading (blocked publishers) must not hold up a relay that is asked to
 * stop.
 */
void
AlxAmqpDisconnect(void)
{
	if (conn == NULL)
		return;
	/* a polite close, unless a frame may be half written (the broker would read garbage) */
	if (!stream_broken)
		send_close(500);
	amqp_destroy_connection(conn);
	conn = NULL;
	stream_broken = false;
	corked = false;
	round_used = 0;
}

/*
 * Opens a connection to one broker URL, opens channel 1, declares the
 * durable topic exchange and selects confirm mode.  On failure returns false
 * with a description (never containing the password) in err.
 */
bool
AlxAmqpConnect(const char *url, const char *exchange, char *err, size_t errlen)
{
	struct amqp_connection_info ci;
	char	   *copy = pstrdup(url);
	amqp_socket_t *sock;
	struct timeval tv;
	amqp_rpc_reply_t r;
	amqp_table_entry_t props[1];
	amqp_table_t props_table;
	char		cname[128];
	int			st;
	const char *vhost;

	AlxAmqpDisconnect();
	/* the limit holds for the broker that refused, on the reconnect it caused */
	if (!closed_by_refusal || hash_bytes((const unsigned char *) url, strlen(url)) != learned_url_hash)
		broker_message_max = 0;

	amqp_default_connection_info(&ci);
	if (amqp_parse_url(copy, &ci) != AMQP_STATUS_OK)
	{
		snprintf(err, errlen, "invalid broker URL");
		pfree(copy);
		return false;
	}
	/* "amqp://host/" names the empty vhost; everyone means the default "/" */
	vhost = (ci.vhost == NULL || ci.vhost[0] == '\0') ? "/" : ci.vhost;
	if (ci.ssl)
	{
		snprintf(err, errlen, "amqps:// is not supported by this build");
		pfree(copy);
		return false;
	}

	conn = amqp_new_connection();
	sock = amqp_tcp_socket_new(conn);
	if (sock == NULL)
	{
		snprintf(err, errlen, "could not create a socket");
		goto fail;
	}
	tv.tv_sec = ALX_AMQP_OPEN_TIMEOUT_S;
	tv.tv_usec = 0;
	st = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv);
	if (st != AMQP_STATUS_OK)
	{
		snprintf(err, errlen, "could not connect: %s", amqp_error_string2(st));
		goto fail;
	}
	tv.tv_sec = ALX_AMQP_RPC_TIMEOUT_S;
	amqp_set_handshake_timeout(conn, &tv);
	amqp_set_rpc_timeout(conn, &tv);

	snprintf(cname, sizeof(cname), "alexandrite relay (pid %d)", MyProcPid);
	props[0].key = amqp_cstring_bytes("connection_name");
	props[0].value.kind = AMQP_FIELD_KIND_UTF8;
	props[0].value.value.bytes = amqp_cstring_bytes(cname);
	props_table.num_entries = 1;
	props_table.entries = props;

	r = amqp_login_with_properties(conn, vhost, 0, ALX_AMQP_FRAME_MAX, ALX_AMQP_HEARTBEAT_S,
								   &props_table, AMQP_SASL_METHOD_PLAIN,
								   ci.user, ci.password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		reply_error(r, "login failed", err, errlen);
		goto fail;
	}
	amqp_channel_open(conn, 1);
	r = amqp_get_rpc_reply(conn);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		reply_error(r, "could not open channel", err, errlen);
		goto fail;
	}
	amqp_exchange_declare(conn, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes("topic"),
						  0, 1, 0, 0, amqp_empty_table);
	r = amqp_get_rpc_reply(conn);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		reply_error(r, "could not declare exchange", err, errlen);
		goto fail;
	}
	amqp_confirm_select(conn, 1);
	r = amqp_get_rpc_reply(conn);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		reply_error(r, "could not select confirm mode", err, errlen);
		goto fail;
	}
	next_tag = 1;
	round_used = 0;
	closed_by_refusal = false;
	conn_url_hash = hash_bytes((const unsigned char *) url, strlen(url));
	pfree(copy);
	return true;

fail:
	amqp_destroy_connection(conn);
	conn = NULL;
	pfree(copy);
	return false;
}

/* Starts a round: the messages published next are tracked until confirmed. */
void
AlxAmqpBeginRound(AlxMsg *msgs, int nmsgs)
{
	if (round_cap < nmsgs)
	{
		if (round_bytag)
			pfree(round_bytag);
		round_bytag = MemoryContextAlloc(TopMemoryContext, sizeof(AlxMsg *) * nmsgs);
		round_cap = nmsgs;
	}
	round_used = 0;
	round_base = next_tag;
}

/* Ends a round: later acks for its tags are ignored. */
void
AlxAmqpEndRound(void)
{
	round_used = 0;
	round_base = next_tag;
}

/*
 * The routing key of an event: "<aggregate_type>.<event_type>", without
 * repeating a prefix already there.  outbox_emit checks it too (produce.c).
 */
char *
AlxOutboxRoutingKey(const char *aggregate_type, const char *event_type)
{
	size_t		tl = strlen(aggregate_type);

	if (strncmp(event_type, aggregate_type, tl) == 0 && event_type[tl] == '.')
		return pstrdup(event_type);
	return psprintf("%s.%s", aggregate_type, event_type);
}

static char *
routing_key(const AlxMsg *m)
{
	return AlxOutboxRoutingKey(m->aggregate_type, m->event_type);
}

/* true when the user header key k is one the relay sets itself */
static bool
reserved_header(const char *k)
{
	return strcmp(k, "aggregate_type") == 0 || strcmp(k, "aggregate_id") == 0 ||
		strcmp(k, "aggregate_seq") == 0 || strcmp(k, "event_type") == 0;
}

/*
 * Fills the basic properties of m (persistent, JSON, message_id = the outbox
 * id, headers: the relay's four and the event's own).  idbuf must have 32
 * bytes; the header entries are palloc'd.  A user header that repeats one of
 * the relay's keys (possible only in rows not written by outbox_emit) is left
 * out: the relay's value wins.
 */
static void
build_properties(const AlxMsg *m, char *idbuf, amqp_basic_properties_t *p)
{
	amqp_table_entry_t *h = palloc(sizeof(amqp_table_entry_t) * (4 + m->nheaders));
	int			nh = 4;

	h[0].key = amqp_cstring_bytes("aggregate_type");
	h[0].value.kind = AMQP_FIELD_KIND_UTF8;
	h[0].value.value.bytes = amqp_cstring_bytes(m->aggregate_type);
	h[1].key = amqp_cstring_bytes("aggregate_id");
	h[1].value.kind = AMQP_FIELD_KIND_UTF8;
	h[1].value.value.bytes = amqp_cstring_bytes(m->aggregate_id);
	h[2].key = amqp_cstring_bytes("aggregate_seq");
	h[2].value.kind = AMQP_FIELD_KIND_I64;
	h[2].value.value.i64 = m->aggregate_seq;
	h[3].key = amqp_cstring_bytes("event_type");
	h[3].value.kind = AMQP_FIELD_KIND_UTF8;
	h[3].value.value.bytes = amqp_cstring_bytes(m->event_type);
	for (int i = 0; i < m->nheaders; i++)
	{
		if (reserved_header(m->hkeys[i]))
			continue;
		h[nh].key = amqp_cstring_bytes(m->hkeys[i]);
		h[nh].value.kind = AMQP_FIELD_KIND_UTF8;
		h[nh].value.value.bytes = amqp_cstring_bytes(m->hvalues[i]);
		nh++;
	}

	snprintf(idbuf, 32, INT64_FORMAT, m->id);
	memset(p, 0, sizeof(*p));
	p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
		AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG |
		AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
	p->content_type = amqp_cstring_bytes("application/json");
	p->delivery_mode = AMQP_DELIVERY_PERSISTENT;
	p->message_id = amqp_cstring_bytes(idbuf);
	p->type = amqp_cstring_bytes(m->event_type);
	p->timestamp = (uint64) (m->created_at / 1000);
	p->app_id = amqp_cstring_bytes("alexandrite");
	p->headers.num_entries = nh;
	p->headers.entries = h;
}

/*
 * Encodes the content header frame of m (type, channel, size, class, weight,
 * body size, properties, end) into buf of frame_max bytes.  Returns its
 * length, or -1 when the properties do not fit in one frame.
 */
static int
encode_header_frame(const AlxMsg *m, const amqp_basic_properties_t *p, char *buf, int frame_max)
{
	amqp_bytes_t out;
	int			len;

	out.bytes = buf + ALX_AMQP_FRAME_OVERHEAD + 12;
	out.len = frame_max - ALX_AMQP_FRAME_OVERHEAD - 12 - 1;
	len = amqp_encode_properties(AMQP_BASIC_CLASS, (void *) p, out);
	if (len < 0)
		return -1;
	len += 12;
	buf[0] = AMQP_FRAME_HEADER;
	put16(buf + 1, 1);
	put32(buf + 3, len);
	put16(buf + 7, AMQP_BASIC_CLASS);
	put16(buf + 9, 0);
	put64(buf + 11, strlen(m->payload));
	buf[ALX_AMQP_FRAME_OVERHEAD + len] = (char) AMQP_FRAME_END;
	return ALX_AMQP_FRAME_OVERHEAD + len + 1;
}

/*
 * Why m cannot be published as one AMQP 0-9-1 message by rabbitmq-c 0.11 on
 * a connection whose frame_max is frame_max, or NULL when it can.  The
 * limits: the routing key (and so the event type, the "type" property) and
 * every header key are short strings of at most 255 bytes (rabbitmq-c
 * silently truncates the length of a longer table key, which corrupts the
 * frame); all properties with the headers must fit in one content header
 * frame; the payload must not exceed ALX_AMQP_MESSAGE_MAX (RabbitMQ's
 * default max_message_size).  The reason is palloc'd.
 */
char *
AlxAmqpUnframeable(const AlxMsg *m, int frame_max)
{
	char	   *rkey = routing_key(m);
	size_t		payload_len = strlen(m->payload);
	amqp_basic_properties_t p;
	char		idbuf[32];
	char	   *buf;
	int			len;

	if (strlen(rkey) > ALX_AMQP_SHORTSTR_MAX)
		return psprintf("cannot be framed: the routing key \"%.40s...\" is %zu bytes long, AMQP allows %d",
						rkey, strlen(rkey), ALX_AMQP_SHORTSTR_MAX);
	for (int i = 0; i < m->nheaders; i++)
	{
		size_t		kl = strlen(m->hkeys[i]);

		if (kl > ALX_AMQP_SHORTSTR_MAX)
			return psprintf("cannot be framed: the header key \"%.40s...\" is %zu bytes long, AMQP allows %d",
							m->hkeys[i], kl, ALX_AMQP_SHORTSTR_MAX);
	}
	if (payload_len > ALX_AMQP_MESSAGE_MAX)
		return psprintf("cannot be framed: the payload is %zu bytes, more than the %d a message may carry",
						payload_len, ALX_AMQP_MESSAGE_MAX);
	if (broker_message_max > 0 && payload_len > broker_message_max)
		return psprintf("cannot be framed: the payload is %zu bytes, more than the %llu the broker accepts (its max_message_size)",
						payload_len, (unsigned long long) broker_message_max);
	build_properties(m, idbuf, &p);
	buf = palloc(frame_max);
	len = encode_header_frame(m, &p, buf, frame_max);
	pfree(buf);
	pfree(p.headers.entries);
	if (len < 0)
		return psprintf("cannot be framed: the headers do not fit in one AMQP content header frame (frame_max %d bytes)",
						frame_max);
	return NULL;
}

/*
 * Writes len bytes to the broker's socket, waiting for room at most until
 * deadline and never without serving interrupts (SIGTERM, postmaster
 * death), so that a broker that stops reading (a memory or disk alarm blocks
 * publishers) cannot hold the relay.  False, with err set, when the deadline
 * passed or the socket failed; the connection is then unusable (a frame may
 * be half written: stream_broken stays set).
 */
static bool
send_all(const char *buf, size_t len, bool more, TimestampTz deadline, char *err, size_t errlen)
{
	int			fd = amqp_get_sockfd(conn);
	int			flags = MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0);
	bool		said = false;

	while (len > 0)
	{
		ssize_t		n = send(fd, buf, len, flags);
		long		wait_ms;

		if (n > 0)
		{
			buf += n;
			len -= n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
		{
			snprintf(err, errlen, "could not send to the broker: %s", strerror(errno));
			return false;
		}
		if (!said)
		{
			/* visible in pg_stat_activity.query while it lasts */
			pgstat_report_activity(STATE_RUNNING, "alexandrite relay: waiting for the broker to read (publishers blocked?)");
			said = true;
		}
		wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (wait_ms <= 0)
		{
			snprintf(err, errlen, "could not send to the broker before the deadline: it does not read (blocked publishers: memory or disk alarm?)");
			return false;
		}
		(void) WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_SOCKET_WRITEABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 fd, Min(wait_ms, 1000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

/*
 * Pushes what the messages sent with more (AlxAmqpPublish) left in the
 * socket: setting TCP_NODELAY (rabbitmq-c sets it when it connects) sends
 * the pending segments at once.  Anything that waits for the broker calls
 * it first (AlxAmqpPump), so no confirm waits for a message still held.
 */
void
AlxAmqpFlush(void)
{
	int			one = 1;

	if (!corked || conn == NULL)
		return;
	corked = false;
	(void) setsockopt(amqp_get_sockfd(conn), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* the relay's buffer for the frames of one message, kept for the next */
static char *publish_buf = NULL;
static size_t publish_cap = 0;

static char *
publish_buffer(size_t need)
{
	if (need > publish_cap)
	{
		if (publish_buf != NULL)
			pfree(publish_buf);
		publish_buf = MemoryContextAlloc(TopMemoryContext, need);
		publish_cap = need;
	}
	return publish_buf;
}

/* Writes one frame whose payload is data[0..len) (body frames); more: see send_all. */
static bool
send_frame(uint8 type, const char *data, size_t len, bool more, TimestampTz deadline,
		   char *err, size_t errlen)
{
	char		head[ALX_AMQP_FRAME_OVERHEAD];
	char		end = (char) AMQP_FRAME_END;

	head[0] = type;
	put16(head + 1, 1);
	put32(head + 3, (uint32) len);
	return send_all(head, sizeof(head), true, deadline, err, errlen) &&
		send_all(data, len, true, deadline, err, errlen) &&
		send_all(&end, 1, more, deadline, err, errlen);
}

/*
 * Publishes one message (persistent, mandatory) on channel 1: the method,
 * content header and body frames are encoded by rabbitmq-c's encoders and
 * written by send_all, so every write has the deadline.  Returns false if
 * the connection broke or the deadline passed (err set).  A message that
 * cannot be framed (AlxAmqpUnframeable) is not sent: it is settled at once
 * as failed and unframeable, and the connection stays usable.
 *
 * With more, the caller publishes more messages right after this one: its
 * last bytes go out with MSG_MORE, and the kernel sends the messages in full
 * segments instead of one segment each.  The broker then reads a round in a
 * few large reads: at 9,000 events/s its CPU per event was 71-102 us with a
 * segment per message, more than the write path of the event itself
 * (docs/benchmarks-writepath.md).  The caller ends such a run with
 * AlxAmqpFlush (AlxAmqpPump flushes before it waits).
 */
bool
AlxAmqpPublish(AlxMsg *m, const char *exchange, bool more, TimestampTz deadline, char *err,
			   size_t errlen)
{
	amqp_basic_properties_t p;
	amqp_basic_publish_t pub;
	amqp_bytes_t out;
	char		idbuf[32];
	char	   *rkey;
	char	   *why;
	char	   *buf;
	int			len;
	size_t		pos;
	bool		one_body;
	int			frame_max = amqp_get_frame_max(conn);
	size_t		body_len = strlen(m->payload);
	size_t		chunk = frame_max - ALX_AMQP_FRAME_OVERHEAD - 1;

	Assert(conn != NULL && round_used < round_cap);

	why = AlxAmqpUnframeable(m, frame_max);
	if (why != NULL)
	{
		m->state = ALX_MSG_FAILED;
		m->unframeable = true;
		m->error = why;
		return true;
	}

	/* until the last byte is out, the stream holds a partial message */
	stream_broken = true;

	/*
	 * The method frame, the content header frame and (when the payload fits
	 * in one) the body frame are written with one send: one system call
	 * per message, and one segment for the broker to read.
	 */
	one_body = body_len > 0 && body_len <= chunk;
	buf = publish_buffer(3 * (size_t) frame_max + 16);

	/* method frame: basic.publish(exchange, routing key, mandatory) */
	rkey = routing_key(m);
	memset(&pub, 0, sizeof(pub));
	pub.exchange = amqp_cstring_bytes(exchange);
	pub.routing_key = amqp_cstring_bytes(rkey);
	pub.mandatory = 1;
	out.bytes = buf + ALX_AMQP_FRAME_OVERHEAD + 4;
	out.len = frame_max - ALX_AMQP_FRAME_OVERHEAD - 4 - 1;
	len = amqp_encode_method(AMQP_BASIC_PUBLISH_METHOD, &pub, out);
	if (len < 0)
	{
		snprintf(err, errlen, "could not encode basic.publish: %s", amqp_error_string2(len));
		return false;
	}
	buf[0] = AMQP_FRAME_METHOD;
	put16(buf + 1, 1);
	put32(buf + 3, len + 4);
	put32(buf + ALX_AMQP_FRAME_OVERHEAD, AMQP_BASIC_PUBLISH_METHOD);
	buf[ALX_AMQP_FRAME_OVERHEAD + 4 + len] = (char) AMQP_FRAME_END;
	pos = ALX_AMQP_FRAME_OVERHEAD + 4 + len + 1;

	/* content header frame */
	build_properties(m, idbuf, &p);
	len = encode_header_frame(m, &p, buf + pos, frame_max);
	Assert(len > 0);			/* AlxAmqpUnframeable said it fits */
	pos += len;

	/* the body frame, when there is one only */
	if (one_body)
	{
		buf[pos] = AMQP_FRAME_BODY;
		put16(buf + pos + 1, 1);
		put32(buf + pos + 3, (uint32) body_len);
		memcpy(buf + pos + ALX_AMQP_FRAME_OVERHEAD, m->payload, body_len);
		pos += ALX_AMQP_FRAME_OVERHEAD + body_len;
		buf[pos++] = (char) AMQP_FRAME_END;
	}
	if (!send_all(buf, pos, more || (body_len > 0 && !one_body), deadline, err, errlen))
		return false;

	/* body frames of a larger payload */
	for (size_t off = 0; !one_body && off < body_len; off += chunk)
	{
		if (!send_frame(AMQP_FRAME_BODY, m->payload + off, Min(chunk, body_len - off),
						more || off + chunk < body_len, deadline, err, errlen))
			return false;
	}
	stream_broken = false;
	corked = more;
	pfree(rkey);
	pfree(p.headers.entries);

	m->tag = next_tag++;
	m->state = ALX_MSG_INFLIGHT;
	m->returned = false;
	round_bytag[round_used++] = m;
	return true;
}

/* Settles one delivery tag (or all up to it) of the current round. */
static void
settle(uint64 tag, bool multiple, bool ok)
{
	uint64		lo = multiple ? round_base : tag;
	struct timeval tv;
	int64		now_ms;

	gettimeofday(&tv, NULL);
	now_ms = (int64) tv.tv_sec * 1000 + tv.tv_usec / 1000;

	if (tag < round_base)
		return;					/* from an earlier round */
	for (uint64 t = Max(lo, round_base); t <= tag && t - round_base < (uint64) round_used; t++)
	{
		AlxMsg	   *m = round_bytag[t - round_base];

		if (m->state != ALX_MSG_INFLIGHT)
			continue;
		if (ok && !m->returned)
		{
			m->state = ALX_MSG_CONFIRMED;
			m->confirmed_at = now_ms;
		}
		else
		{
			m->state = ALX_MSG_FAILED;
			if (m->error == NULL)
				m->error = pstrdup("rejected by the broker (basic.nack)");
		}
	}
}

/* basic.return: the message named by its message_id could not be routed. */
static bool
handle_return(amqp_frame_t *f, char *err, size_t errlen)
{
	amqp_basic_return_t *ret = f->payload.method.decoded;
	amqp_message_t msg;
	amqp_rpc_reply_t r;
	char	   *why;
	int64		id;
	bool		used = false;

	why = psprintf("returned by the broker: %u %.*s (exchange \"%.*s\", routing key \"%.*s\")",
				   ret->reply_code, (int) ret->reply_text.len, (char *) ret->reply_text.bytes,
				   (int) ret->exchange.len, (char *) ret->exchange.bytes,
				   (int) ret->routing_key.len, (char *) ret->routing_key.bytes);
	r = amqp_read_message(conn, f->channel, &msg, 0);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		reply_error(r, "could not read a returned message", err, errlen);
		return false;
	}
	if (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG)
	{
		char		buf[32];
		int			len = Min((int) msg.properties.message_id.len, 31);

		memcpy(buf, msg.properties.message_id.bytes, len);
		buf[len] = '\0';
		id = strtoll(buf, NULL, 10);
		for (int i = 0; i < round_used; i++)
		{
			AlxMsg	   *m = round_bytag[i];

			if (m->id == id && m->state == ALX_MSG_INFLIGHT)
			{
				m->returned = true;
				m->error = why;
				used = true;
				break;
			}
		}
	}
	amqp_destroy_message(&msg);
	if (!used)
		pfree(why);				/* a message of an earlier round */
	return true;
}

/* true when a small frame can be written to the broker without blocking */
bool
AlxAmqpWritable(void)
{
	struct pollfd pfd;

	pfd.fd = amqp_get_sockfd(conn);
	pfd.events = POLLOUT;
	pfd.revents = 0;
	return poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLOUT) != 0;
}

/*
 * Reads frames for up to timeout_ms (0: only what is already there) and
 * settles the messages they confirm.  Returns false, with err set, when the
 * connection is unusable; the caller then disconnects.
 *
 * rabbitmq-c sends a heartbeat from inside its frame reader when one is due,
 * with a blocking write that only a frame from the broker interrupts; a
 * broker that blocks publishers keeps sending heartbeats and stops reading.
 * So rabbitmq-c is called only while the socket has room for a small frame;
 * otherwise this waits for room (serving interrupts) and reads nothing.
 */
bool
AlxAmqpPump(int timeout_ms, char *err, size_t errlen)
{
	bool		first = true;

	if (conn == NULL)
	{
		snprintf(err, errlen, "not connected");
		return false;
	}
	/* a confirm awaited may be of a message still held in the socket */
	AlxAmqpFlush();
	if (!AlxAmqpWritable())
	{
		(void) WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_SOCKET_WRITEABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 amqp_get_sockfd(conn), timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (!AlxAmqpWritable())
			return true;
	}
	for (;;)
	{
		amqp_frame_t f;
		struct timeval tv;
		int			st;

		/* wait only for the first frame; then take what is buffered */
		tv.tv_sec = first ? timeout_ms / 1000 : 0;
		tv.tv_usec = first ? (timeout_ms % 1000) * 1000 : 0;
		first = false;
		st = amqp_simple_wait_frame_noblock(conn, &f, &tv);
		if (st == AMQP_STATUS_TIMEOUT)
			return true;
		if (st != AMQP_STATUS_OK)
		{
			snprintf(err, errlen, "connection lost: %s", amqp_error_string2(st));
			return false;
		}
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;			/* stray content frames */
		switch (f.payload.method.id)
		{
			case AMQP_BASIC_ACK_METHOD:
				{
					amqp_basic_ack_t *a = f.payload.method.decoded;

					settle(a->delivery_tag, a->multiple, true);
					break;
				}
			case AMQP_BASIC_NACK_METHOD:
				{
					amqp_basic_nack_t *n = f.payload.method.decoded;

					settle(n->delivery_tag, n->multiple, false);
					break;
				}
			case AMQP_BASIC_RETURN_METHOD:
				if (!handle_return(&f, err, errlen))
					return false;
				break;
			case AMQP_CHANNEL_CLOSE_METHOD:
				{
					amqp_channel_close_t *c = f.payload.method.decoded;
					amqp_channel_close_ok_t ok;

					snprintf(err, errlen, "server closed the channel: %u %.*s",
							 c->reply_code, (int) c->reply_text.len, (char *) c->reply_text.bytes);
					learn_message_max(c);
					(void) amqp_send_method(conn, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
					return false;
				}
			case AMQP_CONNECTION_CLOSE_METHOD:
				{
					amqp_connection_close_t *c = f.payload.method.decoded;
					amqp_connection_close_ok_t ok;

					snprintf(err, errlen, "server closed the connection: %u %.*s",
							 c->reply_code, (int) c->reply_text.len, (char *) c->reply_text.bytes);
					(void) amqp_send_method(conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
					return false;
				}
			default:
				break;			/* connection.blocked and friends: confirms stall, the timeout handles it */
		}
		amqp_maybe_release_buffers(conn);
	}
}
