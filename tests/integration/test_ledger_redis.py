#!/usr/bin/env python3
"""The delivery ledger in Redis (backends.retry_ledger.store: redis://host:port/db; docs/
operations.md "LMTP backends: one reply per recipient"): several mxgate nodes behind one load
balancer share it, so a client's retry that reaches another node does not give the recipients
a backend took on the first try a second copy. The LMTP server of test_lmtp_ledger: 250, 250,
452 (r3 over quota); the client hears 451 and sends the message again.

- twoproc: two mxgate processes on one Redis: the first try at a (451) writes r1's and r2's
  keys and their pair marks (mxledger:*, with Redis's expiry: the ledger's ttl;
  event=ledger_stored store=redis://...); the retry at b skips r1 and r2 (event=ledger_hit):
  one copy each. On main the store was refused at its FILE:LINE:COL (and in memory each node
  gave r1 and r2 a second copy).
- reload: a reload from memory to redis://: the try after it is in Redis, another process's
  retry skips r1 and r2.
- down: Redis stopped mid-run: messages are still delivered (the client's 250 after the
  backend's 250), event=ledger_store_error ... action=deliver logged once for the outage;
  Redis started again (event=redis_up): the next message logs event=ledger_store_ok.
- silent: Redis goes silent after the connection is up (a forwarder that passes nothing back):
  the message's lookup ends at backends.retry_ledger.timeout (reason=timeout) and it is
  delivered; a server that accepts and never answers from the start (a listener that reads
  and never replies): the store never comes up, messages are delivered (reason=store_down);
  a client that leaves while its message's lookup waits: the session ends after the lookup
  (its pending count), the next client is served (no sanitizer report in the ASan build).
- config: redis:// taken by mxgate -t; the timeout's bounds at FILE:LINE:COL.
"""
import os
import re
import socket
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

FROM = 's@example.org'
R = ['r1@example.test', 'r2@example.test', 'r3@example.test']
A = mt.message('ledgerRA', body='Hello redis ledger.\r\n')

mt.need('redis-server')


copies = mt.copies


def held(be, body):
    """Messages holding body the server took."""
    with be.lock:
        return sum(1 for m in be.messages if body in m['data'])


def send(mx, data, rcpts=R):
    return mt.send_mail(mx.port, FROM, rcpts, data, timeout=30)


def clients(port):
    """The ids of the connections to the Redis on port now."""
    out = mt.redis_cmd(port, 'CLIENT', 'LIST') or b''
    return set(re.findall(r'(?m)^id=(\d+) ', out.decode()))


def connected(port, n, before=frozenset()):
    """Waits until n connections to the Redis on port (not among the ids before) have sent
    their handshake's PING (its last step: a worker's ledger store is up; a message sent
    before would be delivered as without a ledger, event=ledger_store_error reason=store_down)."""
    def look():
        out = mt.redis_cmd(port, 'CLIENT', 'LIST') or b''
        return len([ln for ln in out.decode().splitlines()
                    if 'cmd=ping' in ln and re.match(r'id=(\d+) ', ln).group(1) not in before]) >= n
    mt.check(mt.wait_for(look, 30), 'the ledger stores of %d workers connected to Redis' % n)


def ledger(port, **kw):
    d = {'store': 'redis://127.0.0.1:%d/0' % port}
    d.update(kw)
    return {'retry_ledger': d}


def plain(i):
    return mt.message('ledgerR%d' % i, body='Plain message %d.\r\n' % i)


if mt.case_wanted('twoproc'):
    red = mt.redis()
    be = mt.Backend(lmtp=True, lmtp_codes={R[2]: 452}, name='dovecot-redis-two')
    mxa = mt.Mxgate(mt.config([be.url], workers=1, backends=ledger(red.port)), name='mx-redis-a')
    mxb = mt.Mxgate(mt.config([be.url], workers=2, backends=ledger(red.port)), name='mx-redis-b')
    connected(red.port, 3)
    code, text = send(mxa, A)
    mt.check(code == 451, 'twoproc: first try at a: 451, r3 over quota (%s %s)' % (code, text))
    line = mxa.wait_log(r'event=ledger_stored store=redis://127\.0\.0\.1:%d/0 queue_id=\S+ keys=2' % red.port, 30)
    mt.check(line is not None, 'twoproc: a: event=ledger_stored store=redis://... keys=2')
    keys = mt.redis_cmd(red.port, 'KEYS', 'mxledger:*') or []
    mt.check(len(keys) == 4 and all(re.fullmatch(rb'mxledger:[0-9a-f]{64}', k) for k in keys),
             'twoproc: two keys and two pair marks in Redis (%s)' % keys)
    ttls = [mt.redis_cmd(red.port, 'PTTL', k) for k in keys]
    mt.check(all(0 < t <= 5 * 86400 * 1000 for t in ttls), 'twoproc: each with the ttl as its expiry (%s)' % ttls)
    code, text = send(mxb, A)
    mt.check(code == 451, 'twoproc: the retry at b: 451, r3 still over quota (%s %s)' % (code, text))
    got = copies(be, b'Hello redis ledger.')
    mt.check(got == {R[0]: 1, R[1]: 1}, 'twoproc: the retry at b: no second copy for r1 and r2 (%s)' % got)
    line = mxb.wait_log(r'event=ledger_hit [^\n]*', 10)
    mt.check(line is not None and 'skipped=<%s>,<%s>' % (R[0], R[1]) in line.group(0),
             'twoproc: b: ledger_hit names r1 and r2 (%s)' % (line and line.group(0)))
    # the quota frees: the retry at b again, r3 alone gets it, the client's 250
    be.lmtp_codes = {}
    code, text = send(mxb, A)
    mt.check(code == 250 and copies(be, b'Hello redis ledger.') == {a: 1 for a in R},
             'twoproc: the quota freed: 250, one copy each (%s %s %s)' % (code, text, copies(be, b'Hello redis ledger.')))
    for mx in (mxa, mxb):
        mt.check('event=ledger_store_error' not in mx.log(), 'twoproc: %s: no ledger_store_error' % mx.name)
        mt.check(not mx.malformed_log_lines(), 'twoproc: %s: log lines in form: %s' % (mx.name, mx.malformed_log_lines()[:3]))
        mx.stop()
    be.stop()
    red.terminate()
    red.wait()

if mt.case_wanted('reload'):
    # a reload from memory to redis://: the new generation's workers connect and write there
    red = mt.redis()
    be = mt.Backend(lmtp=True, lmtp_codes={R[2]: 452}, name='dovecot-redis-reload')
    mx = mt.Mxgate(mt.config([be.url], workers=2), name='mx-redis-reload')
    at = mx.log_size()
    mx.reload(mt.config([be.url], workers=2, backends=ledger(red.port)))
    mt.check(mx.wait_log(r'event=reloaded', timeout=30, start=at) is not None, 'reload: event=reloaded')
    mx2 = mt.Mxgate(mt.config([be.url], workers=1, backends=ledger(red.port)), name='mx-redis-reload-2')
    connected(red.port, 3)
    code, text = send(mx, A)
    mt.check(code == 451, 'reload: first try: 451 (%s %s)' % (code, text))
    mt.check(mx.wait_log(r'event=ledger_stored store=redis://127\.0\.0\.1:%d/0 queue_id=\S+ keys=2' % red.port, 30)
             is not None, 'reload: event=ledger_stored store=redis://... keys=2')
    code, text = send(mx2, A)
    got = copies(be, b'Hello redis ledger.')
    mt.check(code == 451 and got == {R[0]: 1, R[1]: 1},
             'reload: the retry at another process: 451, no second copy for r1 and r2 (%s %s %s)' % (code, text, got))
    for m in (mx, mx2):
        mt.check('event=ledger_store_error' not in m.log(), 'reload: %s: no ledger_store_error' % m.name)
        m.stop()
    be.stop()
    red.terminate()
    red.wait()

if mt.case_wanted('down'):
    red = mt.redis()
    port = red.port
    be = mt.Backend(name='sink-redis-down')
    mx = mt.Mxgate(mt.config([be.url], workers=1, backends=ledger(port)), name='mx-redis-down')
    connected(port, 1)
    code, text = send(mx, plain(1))
    mt.check(code == 250, 'down: Redis up: 250 (%s %s)' % (code, text))
    at = mx.log_size()
    red.terminate()
    red.wait()
    mt.check(mx.wait_log(r'event=redis_down store=redis://127\.0\.0\.1:%d/0 [^\n]*module=ledger' % port, 30, start=at)
             is not None, 'down: event=redis_down module=ledger')
    for i in (2, 3):
        code, text = send(mx, plain(i))
        mt.check(code == 250, 'down: message %d delivered while Redis is down: 250 (%s %s)' % (i, code, text))
    mt.check(held(be, b'Plain message') == 3, 'down: each message reached the backend once (%s)'
             % held(be, b'Plain message'))
    errs = re.findall(r'event=ledger_store_error [^\n]*', mx.log())
    mt.check(len(errs) == 1 and 'store=redis://127.0.0.1:%d/0' % port in errs[0] and 'action=deliver' in errs[0],
             'down: one ledger_store_error action=deliver for the outage (%s)' % errs)
    at = mx.log_size()
    red = mt.redis(port)
    mt.check(mx.wait_log(r'event=redis_up store=redis://127\.0\.0\.1:%d/0 [^\n]*module=ledger' % port, 60, start=at)
             is not None, 'down: event=redis_up module=ledger')
    code, text = send(mx, plain(4))
    mt.check(code == 250, 'down: Redis back: 250 (%s %s)' % (code, text))
    line = mx.wait_log(r'event=ledger_store_ok store=redis://127\.0\.0\.1:%d/0' % port, 10, start=at)
    mt.check(line is not None, 'down: event=ledger_store_ok once Redis answers again')
    mt.check(not mx.malformed_log_lines(), 'down: log lines in form: %s' % mx.malformed_log_lines()[:3])
    mx.stop()
    be.stop()
    red.terminate()
    red.wait()

if mt.case_wanted('silent'):
    red = mt.redis()
    quiet = threading.Event()
    # Redis's replies pass until quiet is set, then nothing comes back (a server that hangs)
    fw = mt.TcpForwarder(red.port, on_chunk=lambda d, data: b'' if d == 'down' and quiet.is_set() else None)
    be = mt.Backend(name='sink-redis-silent')
    mx = mt.Mxgate(mt.config([be.url], workers=1, backends=ledger(fw.port, timeout='1s')), name='mx-redis-silent')
    connected(red.port, 1)
    code, text = send(mx, plain(1))
    mt.check(code == 250, 'silent: Redis answering: 250 (%s %s)' % (code, text))
    mt.check('event=ledger_store_error' not in mx.log(), 'silent: no ledger_store_error while Redis answers')
    quiet.set()
    code, text = send(mx, plain(2))
    mt.check(code == 250, 'silent: Redis silent: delivered after the timeout: 250 (%s %s)' % (code, text))
    errs = re.findall(r'event=ledger_store_error [^\n]*', mx.log())
    mt.check(len(errs) == 1 and 'reason=timeout' in errs[0] and 'action=deliver' in errs[0],
             'silent: ledger_store_error reason=timeout action=deliver (%s)' % errs)
    code, text = send(mx, plain(3))
    mt.check(code == 250, 'silent: the next message delivered too: 250 (%s %s)' % (code, text))
    mt.check(held(be, b'Plain message') == 3, 'silent: three messages at the backend (%s)' % held(be, b'Plain message'))
    mx.stop()

    # the client goes away while its message's lookup waits for the silent Redis: the session
    # ends after the lookup's timeout (its pending count), nothing touched after it is freed
    # (the ASan build), and the next client is served
    quiet.clear()
    was = clients(red.port)
    mx = mt.Mxgate(mt.config([be.url], workers=1, backends=ledger(fw.port, timeout='2s')), name='mx-redis-drop')
    connected(red.port, 1, was)
    quiet.set()
    c = socket.create_connection(('127.0.0.1', mx.port), mt.slack(10))
    f = c.makefile('rb')

    def reply():
        while True:
            line = f.readline()
            if line[3:4] != b'-':
                return line
    reply()
    for cmd in (b'EHLO client.test', b'MAIL FROM:<%s>' % FROM.encode(), b'RCPT TO:<%s>' % R[0].encode(), b'DATA'):
        c.sendall(cmd + b'\r\n')
        r = reply()
    mt.check(r.startswith(b'354'), 'silent: drop: 354 (%s)' % r)
    at = mx.log_size()
    c.sendall(plain(5) + b'.\r\n')
    c.close()
    mt.check(mx.wait_log(r'event=ledger_store_error [^\n]*reason=timeout', 30, start=at) is not None,
             'silent: drop: the lookup ended at its timeout after the client left')
    code, text = send(mx, plain(6))
    mt.check(code == 250, 'silent: drop: the next client served: 250 (%s %s)' % (code, text))
    mx.stop()
    fw.cut()
    red.terminate()
    red.wait()

    # a listener that takes the connection, reads, and never answers: the store never comes up
    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(8)
    held = []

    def swallow():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            held.append(c)
            threading.Thread(target=lambda c=c: [None for _ in iter(lambda: c.recv(4096), b'')], daemon=True).start()
    threading.Thread(target=swallow, daemon=True).start()
    be = mt.Backend(name='sink-redis-mute')
    mx = mt.Mxgate(mt.config([be.url], workers=1, backends=ledger(lsock.getsockname()[1], timeout='1s')),
                   name='mx-redis-mute')
    for i in (1, 2):
        code, text = send(mx, plain(i))
        mt.check(code == 250, 'silent: a mute server: message %d delivered: 250 (%s %s)' % (i, code, text))
    errs = re.findall(r'event=ledger_store_error [^\n]*', mx.log())
    mt.check(len(errs) == 1 and 'action=deliver' in errs[0], 'silent: a mute server: one ledger_store_error (%s)' % errs)
    mx.stop()
    be.stop()
    lsock.close()
    for c in held:
        c.close()

if mt.case_wanted('config'):
    rc, out = mt.config_check(mt.config(['lmtp://127.0.0.1:24'], listen=[{'address': '127.0.0.1:2525'}],
                                        backends=ledger(6379)))
    mt.check(rc == 0, 'config: a redis:// ledger store taken (%s %s)' % (rc, out))
    rc, out = mt.config_check(mt.config(['lmtp://127.0.0.1:24'], listen=[{'address': '127.0.0.1:2525'}],
                                        backends=ledger(6379, timeout='2m')))
    mt.check(rc == 1 and re.search(r':\d+:\d+: backends\.retry_ledger\.timeout: must be between', out) is not None,
             'config: a timeout out of bounds refused at its FILE:LINE:COL (%s %s)' % (rc, out))
    rc, out = mt.config_check(mt.config(['lmtp://127.0.0.1:24'], listen=[{'address': '127.0.0.1:2525'}],
                                        backends={'retry_ledger': {'store': 'redis://'}}))
    mt.check(rc == 1 and re.search(r':\d+:\d+: backends\.retry_ledger\.store: expected memory, lmdb:/dir or redis://', out)
             is not None, 'config: a redis:// URL without a host refused (%s %s)' % (rc, out))

mt.finish()
