/*
 * raw_publisher.c
 *	  The peer of the outbox benchmark: a bare rabbitmq-c 0.11 publisher that
 *	  sends N persistent, mandatory messages with the same properties and
 *	  headers as the relay, with publisher confirms and a window of W
 *	  unconfirmed messages (waiting for the whole window, as the relay does
 *	  per chunk).  No database: the upper bound for the relay.
 *
 *	  raw_publisher HOST PORT EXCHANGE N WINDOW PAYLOAD_BYTES
 *	  prints: messages seconds msgs_per_second
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

static double
now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec + tv.tv_usec / 1e6;
}

static void
check(amqp_rpc_reply_t r, const char *what)
{
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		fprintf(stderr, "%s failed\n", what);
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	const char *host = argv[1];
	int			port = atoi(argv[2]);
	const char *exchange = argv[3];
	long		n = atol(argv[4]);
	long		window = atol(argv[5]);
	int			plen = atoi(argv[6]);
	char	   *payload = malloc(plen + 1);
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = amqp_tcp_socket_new(c);
	uint64_t	sent = 0,
				acked = 0;
	double		t0;

	if (argc < 7)
		return 2;
	memset(payload, 'x', plen);
	payload[0] = '"';
	payload[plen - 1] = '"';
	payload[plen] = 0;
	if (amqp_socket_open(s, host, port))
		return 1;
	check(amqp_login(c, "/", 0, 131072, 5, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login");
	amqp_channel_open(c, 1);
	check(amqp_get_rpc_reply(c), "channel");
	amqp_confirm_select(c, 1);
	check(amqp_get_rpc_reply(c), "confirm");

	t0 = now();
	while (acked < (uint64_t) n)
	{
		long		w = 0;

		while (w < window && sent < (uint64_t) n)
		{
			amqp_basic_properties_t p;
			amqp_table_entry_t h[4];
			char		id[32],
						agg[32];

			snprintf(id, sizeof(id), "%lu", (unsigned long) sent + 1);
			snprintf(agg, sizeof(agg), "%lu", (unsigned long) (sent % 1000));
			h[0].key = amqp_cstring_bytes("aggregate_type");
			h[0].value.kind = AMQP_FIELD_KIND_UTF8;
			h[0].value.value.bytes = amqp_cstring_bytes("bench");
			h[1].key = amqp_cstring_bytes("aggregate_id");
			h[1].value.kind = AMQP_FIELD_KIND_UTF8;
			h[1].value.value.bytes = amqp_cstring_bytes(agg);
			h[2].key = amqp_cstring_bytes("aggregate_seq");
			h[2].value.kind = AMQP_FIELD_KIND_I64;
			h[2].value.value.i64 = sent / 1000 + 1;
			h[3].key = amqp_cstring_bytes("event_type");
			h[3].value.kind = AMQP_FIELD_KIND_UTF8;
			h[3].value.value.bytes = amqp_cstring_bytes("bench.tick");
			memset(&p, 0, sizeof(p));
			p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
				AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_APP_ID_FLAG |
				AMQP_BASIC_HEADERS_FLAG;
			p.content_type = amqp_cstring_bytes("application/json");
			p.delivery_mode = 2;
			p.message_id = amqp_cstring_bytes(id);
			p.type = amqp_cstring_bytes("bench.tick");
			p.app_id = amqp_cstring_bytes("raw");
			p.headers.num_entries = 4;
			p.headers.entries = h;
			if (amqp_basic_publish(c, 1, amqp_cstring_bytes(exchange),
								   amqp_cstring_bytes("bench.tick"), 1, 0, &p,
								   amqp_cstring_bytes(payload)) != AMQP_STATUS_OK)
				return 1;
			sent++;
			w++;
		}
		while (acked < sent)
		{
			amqp_frame_t f;

			if (amqp_simple_wait_frame(c, &f) != AMQP_STATUS_OK)
				return 1;
			if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD)
			{
				amqp_basic_ack_t *a = f.payload.method.decoded;

				acked = a->multiple ? a->delivery_tag : acked + 1;
			}
			else if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_NACK_METHOD)
				return 1;
			amqp_maybe_release_buffers(c);
		}
	}
	{
		double		t = now() - t0;

		printf("%ld %.3f %.0f\n", n, t, n / t);
	}
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
	return 0;
}
