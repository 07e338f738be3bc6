#!/usr/bin/python3
"""Sustained order traffic for the HA chaos test (python3-psycopg2).

  ha_traffic.py URL ACKFILE RATE THREADS

Each thread runs orders through the state machine, one change per
transaction (create_order, set_status priced, assign_order, set_status
in_production, quality_check, shipped), each transaction also recording its
outbox events in the ledger (ledger_mine()).  A change is written to ACKFILE
(one JSON line) only after its COMMIT returned: these are the acknowledged
changes.  Connection failures are retried through the libpq multi-host URL
(target_session_attrs=read-write) until a primary answers; every change is
idempotent (create_order on its external_ref, set_status and assign_order on
the target status), so a change whose COMMIT outcome is unknown is simply
sent again.  Any other error (a refused change, a missing privilege) stops
the traffic and makes the exit status 1.  RATE is the total target in changes per second.  Runs until
SIGTERM; prints a summary line to stderr at the end.
"""
import json
import random
import signal
import sys
import threading
import time

import psycopg2

stop = threading.Event()
lock = threading.Lock()
stats = {'acked': 0, 'retries': 0, 'reconnects': 0, 'errors': 0}

STEPS = [('set_status', 'priced'), ('assign', 'assigned'), ('set_status', 'in_production'),
         ('set_status', 'quality_check'), ('set_status', 'shipped')]


def on_term(signum, frame):
    stop.set()


def connect(url):
    while not stop.is_set():
        try:
            c = psycopg2.connect(url)
            c.autocommit = False
            return c
        except psycopg2.Error:
            time.sleep(0.05)
    return None


def run_change(conn, op, arg):
    """One change and its ledger rows in one transaction; returns the order id."""
    with conn.cursor() as cur:
        if op == 'create':
            ref, channel = arg
            cur.execute("SELECT alexandrite.create_order(%s, %s, %s, NULL, 'ag925')",
                        (ref, channel, 'cust-' + ref[-3:]))
            oid = cur.fetchone()[0]
        elif op == 'assign':
            oid, operator = arg
            cur.execute('SELECT alexandrite.assign_order(%s, %s)', (oid, operator))
        else:
            oid, status = arg
            cur.execute('SELECT alexandrite.set_status(%s, %s)', (oid, status))
        cur.execute('SELECT ledger_mine()')
    conn.commit()
    return oid


def worker(n, url, out, period):
    conn = connect(url)
    orders = []                    # [order id, next step index]
    seq = 0
    next_t = time.time()
    while not stop.is_set() and conn is not None:
        now = time.time()
        if now < next_t:
            time.sleep(next_t - now)
        next_t = max(next_t + period, time.time() - 1)
        # keep about 20 orders in flight per thread; finished ones leave
        if len(orders) < 20 or random.random() < 0.15:
            seq += 1
            ref = 'HA-%d-%d-%d' % (int(time.time()), n, seq)
            op, arg, to = 'create', (ref, random.choice(['shop', 'b2b_api', 'crm'])), 'new'
            item = None
        else:
            item = random.choice(orders)
            kind, to = STEPS[item[1]]
            if kind == 'assign':
                op, arg = 'assign', (item[0], 'op%d' % random.randint(1, 4))
            else:
                op, arg = 'set_status', (item[0], to)
        t0 = time.time()
        while True:
            try:
                oid = run_change(conn, op, arg)
                break
            except psycopg2.Error as e:
                # not acknowledged: the change may or may not have committed;
                # reconnect to whatever is primary now and send it again.
                # Anything but a lost or read-only server is a bug: stop.
                if not (isinstance(e, (psycopg2.OperationalError, psycopg2.InterfaceError))
                        or (e.pgcode or '')[:2] in ('08', '25', '57', '40')):
                    sys.stderr.write('traffic: %s failed: %s\n' % (op, e))
                    stats['errors'] += 1
                    stop.set()
                    return
                with lock:
                    stats['retries'] += 1
                try:
                    conn.close()
                except psycopg2.Error:
                    pass
                if stop.is_set():
                    return
                conn = connect(url)
                if conn is None:
                    return
                with lock:
                    stats['reconnects'] += 1
        t1 = time.time()
        rec = {'op': op, 'id': oid, 'to': to, 't0': t0, 't1': t1}
        if op == 'create':
            rec['ref'] = arg[0]
            orders.append([oid, 0])
        else:
            item[1] += 1
            if item[1] == len(STEPS):
                orders.remove(item)
        with lock:
            out.write(json.dumps(rec) + '\n')
            out.flush()
            stats['acked'] += 1


def main():
    url, ackfile, rate, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    out = open(ackfile, 'a')
    t_start = time.time()
    ts = [threading.Thread(target=worker, args=(i, url, out, threads / rate), daemon=True)
          for i in range(threads)]
    for t in ts:
        t.start()
    while not stop.is_set():
        stop.wait(0.5)
    for t in ts:
        t.join(30)
    out.close()
    el = time.time() - t_start
    sys.stderr.write('traffic: %d changes acknowledged in %.0f s (%.0f/s), %d retries, %d reconnects\n'
                     % (stats['acked'], el, stats['acked'] / el, stats['retries'], stats['reconnects']))
    sys.exit(1 if stats['errors'] else 0)


if __name__ == '__main__':
    main()
