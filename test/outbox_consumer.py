#!/usr/bin/python3
"""Independent RabbitMQ consumer for the outbox tests (python3-pika).

  outbox_consumer.py declare PORT QUEUE EXCHANGE KEY...   durable quorum queue
                                                          bound to a topic exchange
  outbox_consumer.py declare_full PORT QUEUE EXCHANGE KEY  max-length 1, reject-publish
  outbox_consumer.py unbind  PORT QUEUE EXCHANGE KEY
  outbox_consumer.py consume PORT QUEUE OUTFILE [PORT2...]
      records every delivery as one JSON line (message_id, routing_key,
      headers, redelivered, body, recv_t), flushed and fsynced before the
      ack (acknowledged in batches of up to 50, or when the queue is idle
      for 0.2 s); it reconnects (trying each port in turn) until SIGTERM.

ALX_AMQP_USER and ALX_AMQP_PASSWORD give the credentials (default guest).
"""
import json
import os
import signal
import sys
import time

import pika

stop = False


def on_term(signum, frame):
    global stop
    stop = True


def connect(port):
    creds = pika.PlainCredentials(os.environ.get('ALX_AMQP_USER', 'guest'),
                                  os.environ.get('ALX_AMQP_PASSWORD', 'guest'))
    return pika.BlockingConnection(pika.ConnectionParameters(
        host='127.0.0.1', port=int(port), heartbeat=10, credentials=creds,
        blocked_connection_timeout=10, connection_attempts=1,
        socket_timeout=2))


def declare(port, queue, exchange, keys):
    c = connect(port)
    ch = c.channel()
    ch.exchange_declare(exchange, exchange_type='topic', durable=True)
    ch.queue_declare(queue, durable=True, arguments={'x-queue-type': 'quorum', 'x-single-active-consumer': True})
    for k in keys:
        ch.queue_bind(queue, exchange, routing_key=k)
    c.close()


def declare_full(port, queue, exchange, key):
    """A classic queue that holds one message and nacks the rest."""
    c = connect(port)
    ch = c.channel()
    ch.exchange_declare(exchange, exchange_type='topic', durable=True)
    ch.queue_declare(queue, durable=True,
                     arguments={'x-max-length': 1, 'x-overflow': 'reject-publish'})
    ch.queue_bind(queue, exchange, routing_key=key)
    c.close()


def unbind(port, queue, exchange, key):
    c = connect(port)
    c.channel().queue_unbind(queue, exchange, routing_key=key)
    c.close()


def consume(ports, queue, outfile):
    signal.signal(signal.SIGTERM, on_term)
    out = open(outfile, 'a')
    i = 0
    while not stop:
        port = ports[i % len(ports)]
        i += 1
        try:
            c = connect(port)
            ch = c.channel()
            ch.basic_qos(prefetch_count=200)
            unacked = None      # the last delivery written but not yet acknowledged
            n_unacked = 0
            for method, props, body in ch.consume(queue, inactivity_timeout=0.2):
                if stop:
                    break
                if method is None or n_unacked >= 50:
                    # fsync what was written, then acknowledge it all at once
                    if unacked is not None:
                        os.fsync(out.fileno())
                        ch.basic_ack(unacked, multiple=True)
                        unacked, n_unacked = None, 0
                    if method is None:
                        continue
                h = props.headers or {}
                rec = {
                    'message_id': props.message_id,
                    'routing_key': method.routing_key,
                    'redelivered': method.redelivered,
                    'type': props.type,
                    'content_type': props.content_type,
                    'delivery_mode': props.delivery_mode,
                    'aggregate_type': h.get('aggregate_type'),
                    'aggregate_id': h.get('aggregate_id'),
                    'aggregate_seq': h.get('aggregate_seq'),
                    'event_type': h.get('event_type'),
                    'traceparent': h.get('traceparent'),
                    'nheaders': len(h),
                    'header_bytes': sum(len(str(k).encode()) + len(str(v).encode()) for k, v in h.items()),
                    'longest_header_name': max((len(str(k).encode()) for k in h), default=0),
                    # every header in the order of the wire, values as text
                    'header_list': [[str(k), v.decode('utf-8', 'replace') if isinstance(v, bytes) else str(v)]
                                    for k, v in h.items()],
                    'body': body.decode('utf-8', 'replace'),
                    'port': port,
                    'recv_t': time.time(),
                }
                out.write(json.dumps(rec) + '\n')
                out.flush()
                unacked = method.delivery_tag
                n_unacked += 1
            try:
                c.close()
            except Exception:
                pass
        except Exception:
            time.sleep(0.2)
    out.close()


def main():
    cmd = sys.argv[1]
    if cmd == 'declare':
        declare(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    elif cmd == 'declare_full':
        declare_full(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif cmd == 'unbind':
        unbind(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif cmd == 'consume':
        consume([sys.argv[2]] + sys.argv[5:], sys.argv[3], sys.argv[4])
    else:
        sys.exit('unknown command ' + cmd)


if __name__ == '__main__':
    main()
