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

#include <sys/time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "outbox/outbox.h"

#define ALX_AMQP_HEARTBEAT_S	5
#define ALX_AMQP_OPEN_TIMEOUT_S 5
#define ALX_AMQP_RPC_TIMEOUT_S	10

static amqp_connection_state_t conn = NULL;

/* the messages of the current round, indexed by delivery tag - base */
static AlxMsg **round_bytag = NULL;
static int	round_cap = 0;
static int	round_used = 0;
static uint64 round_base = 1;
static uint64 next_tag = 1;

/* Copies url into out with the password replaced by "***". */
void
AlxMaskUrl(const char *url, char *out, size_t outlen)
{
	const char *scheme_end = strstr(url, "://");
	const char *at;
	const char *colon;

	strlcpy(out, url, outlen);
	if (scheme_end == NULL)
		return;
	at = strchr(scheme_end + 3, '@');
	if (at == NULL)
		return;
	colon = memchr(scheme_end + 3, ':', at - (scheme_end + 3));
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

/* Drops the connection without any network round trip that could block. */
void
AlxAmqpDisconnect(void)
{
	if (conn == NULL)
		return;
	/* a polite close with a short bounded wait; errors do not matter */
	{
		struct timeval tv = {1, 0};

		amqp_set_rpc_timeout(conn, &tv);
		(void) amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	}
	amqp_destroy_connection(conn);
	conn = NULL;
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

	r = amqp_login_with_properties(conn, vhost, 0, 131072, ALX_AMQP_HEARTBEAT_S,
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

/* Publishes one message (persistent, mandatory); false if the connection broke. */
bool
AlxAmqpPublish(AlxMsg *m, const char *exchange, char *err, size_t errlen)
{
	amqp_basic_properties_t p;
	amqp_table_entry_t *h;
	char		idbuf[32];
	char	   *rkey;
	int			nh = 4 + m->nheaders;
	int			i;
	int			st;

	Assert(conn != NULL && round_used < round_cap);

	h = palloc(sizeof(amqp_table_entry_t) * nh);
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
	for (i = 0; i < m->nheaders; i++)
	{
		h[4 + i].key = amqp_cstring_bytes(m->hkeys[i]);
		h[4 + i].value.kind = AMQP_FIELD_KIND_UTF8;
		h[4 + i].value.value.bytes = amqp_cstring_bytes(m->hvalues[i]);
	}

	snprintf(idbuf, sizeof(idbuf), INT64_FORMAT, m->id);
	memset(&p, 0, sizeof(p));
	p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
		AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG |
		AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
	p.content_type = amqp_cstring_bytes("application/json");
	p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
	p.message_id = amqp_cstring_bytes(idbuf);
	p.type = amqp_cstring_bytes(m->event_type);
	p.timestamp = (uint64) (m->created_at / 1000);
	p.app_id = amqp_cstring_bytes("alexandrite");
	p.headers.num_entries = nh;
	p.headers.entries = h;

	/* "<aggregate_type>.<event_type>", without repeating a prefix already there */
	{
		size_t		tl = strlen(m->aggregate_type);

		if (strncmp(m->event_type, m->aggregate_type, tl) == 0 && m->event_type[tl] == '.')
			rkey = pstrdup(m->event_type);
		else
			rkey = psprintf("%s.%s", m->aggregate_type, m->event_type);
	}
	st = amqp_basic_publish(conn, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes(rkey),
							1, 0, &p, amqp_cstring_bytes(m->payload));
	pfree(rkey);
	pfree(h);
	if (st != AMQP_STATUS_OK)
	{
		snprintf(err, errlen, "could not publish: %s", amqp_error_string2(st));
		return false;
	}
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
				break;
			}
		}
	}
	amqp_destroy_message(&msg);
	return true;
}

/*
 * Reads frames for up to timeout_ms (0: only what is already there) and
 * settles the messages they confirm.  Returns false, with err set, when the
 * connection is unusable; the caller then disconnects.
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
