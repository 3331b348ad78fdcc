#!/usr/bin/env python3
"""`flush reputation IP` end to end, with the LMDB store and with Redis, two workers: a client
whose messages keep being rejected turns bad and is refused at connect (421 poor
reputation); `mxgatectl flush reputation IP` answers how many records it removed (the IP's
and its network's); right after the answer the same client is unknown again on every
worker (served: 220 at every connection). Through mxgatectl (text) and through the raw
socket (--json, with a pipelined request held until the flush has answered). Bad input:
a word that is not an IP, missing/extra words. Redis stopped: the flush fails (exit 1)
and says the store did not confirm it.

Timing: the test waits for what it can observe (the refusal at connect), never for a fixed
time; after the flush's answer nothing is waited for: the answer comes once every worker has
deleted the records (LMDB: the batch is committed; Redis: the DELs are answered)."""
import json
import os
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'redis-server')
CTL = mt.mxgatectl()


def ctl(sock, *args):
    r = subprocess.run([CTL, '-s', sock] + list(args), capture_output=True, text=True, timeout=mt.slack(30))
    return r.returncode, r.stdout, r.stderr


def raw(sock, data):
    """Sends data on a fresh connection, half-closes, reads until the daemon closes it."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(mt.slack(15))
    s.connect(sock)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    with s:
        return b''.join(iter(lambda: s.recv(65536), b''))


def replies(data):
    """Splits "OK|ERR LEN\\n" + payload replies into [(ok, payload)]."""
    out = []
    while data:
        head, rest = data.split(b'\n', 1)
        word, n = head.split(b' ')
        out.append((word == b'OK', rest[:int(n)].decode()))
        data = rest[int(n):]
    return out


def greeting(mx, src):
    c = mt.Client(mx.port, proxy_src=src, timeout=15)
    c.close()
    return c.greeting


def send(mx, src, tag):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src, timeout=15)


def make_bad(mx, src, name):
    """Sends from src until it is refused at connect: a byte limit that one message
    exhausts rejects every later one at end of data, and reputation learns from that."""
    codes = []
    deadline = time.time() + mt.slack(20)
    while time.time() < deadline and len(codes) < 500 and (not codes or codes[-1] != 421):
        codes.append(send(mx, src, 'bad%d' % len(codes))[0])
    mt.check(codes and codes[-1] == 421, '%s: %s is refused at connect after %d rejected messages: %s'
             % (name, src, codes.count(550), codes[-6:]))
    code, text = greeting(mx, src)
    mt.check(code == 421 and 'poor reputation of %s' % src in text, '%s: %s has a bad reputation: %s %r'
             % (name, src, code, text))


def served_everywhere(mx, src, name, what):
    """Eight connections (the kernel spreads them over both workers): all greeted 220."""
    got = [greeting(mx, src)[0] for _ in range(8)]
    mt.check(got == [220] * 8, '%s: %s %s: greeted 220 on every connection: %s' % (name, src, what, got))


def run(store, name, stored=None, outage=None):
    """stored(ip): the IP's record as Redis has it (None when absent), or None for LMDB.
    outage(): stops the store (Redis), for the flush that cannot be confirmed."""
    sock = os.path.join(mt.TMP, name + '.sock')
    be = mt.Backend()
    rep = {'store': store, 'bad_action': 'tempfail', 'bad_threshold': -0.45, 'flush_interval': '100ms',
           'timeout': '3s'}
    rl = {'rules': [{'key': 'ip', 'count': 'bytes', 'limit': '1/1h', 'action': 'reject'}]}
    mx = mt.Mxgate(mt.proxied_config([be.url], reputation=rep, ratelimit=rl, workers=2,
                                     control={'socket': sock}), name)

    # ---- through mxgatectl, text
    bad = '198.18.5.5'
    make_bad(mx, bad, name)
    if stored:
        mt.check(stored(bad) is not None, '%s: the record is in Redis before the flush' % name)
    rc, out, err = ctl(sock, 'flush', 'reputation', bad)
    mt.check(rc == 0 and out == 'reputation of %s flushed: 2 records removed (ip:%s net:198.18.5.0/24)\n'
             % (bad, bad), '%s: mxgatectl flush reputation: the IP and its network removed (%r %r)'
             % (name, out, err))
    if stored:
        mt.check(stored(bad) is None, '%s: the record is gone from Redis' % name)
    served_everywhere(mx, bad, name, 'right after the flush')
    r = send(mx, bad, 'after-flush')
    mt.check(r[0] in (250, 550) and r.stage != 'connect', '%s: and reaches the end of data again: %r' % (name, r))
    mt.check(mx.wait_log(r'event=reputation_flush client=%s records=2 removed=ip:%s,net:198\.18\.5\.0/24 '
                         r'workers=2 failed=0' % (bad, bad)) is not None,
             '%s: the flush is logged (event=reputation_flush, both workers)' % name)
    rc, out, _ = ctl(sock, 'flush', 'reputation', '198.18.200.1')
    mt.check(rc == 0 and '0 records removed (none was held)' in out, '%s: a client never seen: 0 records (%r)'
             % (name, out))

    # ---- through the raw socket, --json, with a request pipelined behind it
    bad2 = '198.18.6.6'
    make_bad(mx, bad2, name)
    got = replies(raw(sock, ('flush reputation %s --json\nbackends --json\n' % bad2).encode()))
    mt.check(len(got) == 2 and got[0][0] and got[1][0], '%s: raw socket: two OK replies (%r)' % (name, got))
    if len(got) == 2:
        js = json.loads(got[0][1])
        mt.check(js == {'flushed': 'reputation', 'ip': bad2, 'entries': 2,
                        'records': ['ip:' + bad2, 'net:198.18.6.0/24'], 'workers': 2},
                 '%s: the JSON answer: %r' % (name, js))
        mt.check('"backends"' in got[1][1] or '"url"' in got[1][1],
                 '%s: the pipelined request is answered after it, in order' % name)
    served_everywhere(mx, bad2, name, 'after the raw flush')

    # ---- bad input
    for args, want in ((['flush', 'reputation'], 'usage: flush reputation IP'),
                       (['flush', 'reputation', '198.18.5.5', 'x'], 'usage: flush reputation IP'),
                       (['flush', 'reputation', 'example.org'], 'is not an IP address')):
        rc, _, err = ctl(sock, *args)
        mt.check(rc == 1 and want in err, '%s: mxgatectl %s: exit 1, "%s" (%r)' % (name, ' '.join(args), want, err))
    if outage:
        outage()
        rc, _, err = ctl(sock, 'flush', 'reputation', bad)
        mt.check(rc == 1 and 'did not confirm' in err, '%s: store down: the flush fails, exit 1 (%r)' % (name, err))
        mt.check(mx.wait_log(r'event=reputation_flush client=%s records=0 removed=- workers=2 failed=[1-9]' % bad)
                 is not None, '%s: and is logged with failed=N' % name)
    mt.check(mx.alive(), '%s: mxgate alive' % name)
    mt.check(not mx.malformed_log_lines(), '%s: every log line is well formed (%r)' % (name, mx.malformed_log_lines()[:3]))
    mx.stop()


run('lmdb:' + os.path.join(mt.TMP, 'rep'), 'lmdb')
red = mt.redis()
run('redis://127.0.0.1:%d' % red.port, 'redis',
    lambda ip: mt.redis_cmd(red.port, 'HGETALL', 'mxgate:rep:ip:' + ip) or None, lambda: mt.stop_proc(red))
mt.finish()
