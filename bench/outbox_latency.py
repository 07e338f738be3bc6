#!/usr/bin/python3
"""Consumes the bench queue for SECONDS and prints latency percentiles of
(receive time - payload "t"), the emit-to-consumer latency in ms.
   outbox_latency.py PORT QUEUE SECONDS"""
import json
import sys
import time

import pika

port, queue, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
c = pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', port))
ch = c.channel()
ch.basic_qos(prefetch_count=500)
lat = []
end = time.time() + seconds
for method, props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=0.5):
    if method is not None:
        t = json.loads(body).get('t')
        if t is not None:
            lat.append((time.time() - float(t)) * 1000.0)
    if time.time() > end:
        break
lat.sort()
if not lat:
    print('0 NaN NaN NaN')
else:
    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))]
    print('%d %.1f %.1f %.1f' % (len(lat), pct(0.50), pct(0.99), lat[-1]))
