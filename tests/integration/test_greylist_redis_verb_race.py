#!/usr/bin/env python3
"""greylist disallow|untrap on Redis while another writer changes the client's record between
the verb's read and its delete (filters/limits_control.c lc_ip_redis). The verb read the record
(HGET s, PTTL) and then sent a plain DEL: a record written in between — a trap another node's
outage queue delivered (gl_lua_trap) or another operator's verb, for disallow; an allow, for
untrap — was deleted, though the verb deletes only a record in its own state (as on LMDB,
where the state is checked in the deleting transaction). Now the delete is one script that
checks the state and deletes in one step, and the answer says what it found.

The interleaving is pinned, not raced: the daemon's path to Redis is a forwarder that, when the
verb's connection first sends a command naming the record other than its reads (HGET, PTTL),
writes the other state on a connection of its own and only then passes the command on.

Peers: redis-server, the forwarder (threads), the recording Backend."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
mt.mxgatectl()
red = mt.redis()


class Injector:
    """Before the first command up the forwarder naming `key` that is neither HGET nor PTTL,
    runs `write` (a list of commands) against Redis directly (fwd's on_chunk)."""

    def __init__(self):
        self.key, self.write, self.done = None, [], threading.Event()

    def on_chunk(self, direction, d):
        parts = d.split(b'\r\n')
        name = parts[2].upper() if len(parts) > 2 else b''
        if (direction == 'up' and self.key and not self.done.is_set() and self.key.encode() in d and
                name not in (b'HGET', b'PTTL')):
            for cmd in self.write:
                mt.redis_cmd(red.port, *cmd)
            self.done.set()


inj = Injector()
fwd = mt.TcpForwarder(red.port, on_chunk=inj.on_chunk)
be = mt.Backend()
sock = os.path.join(mt.TMP, 'ctl.sock')
mx = mt.Mxgate(mt.proxied_config([be.url], control={'socket': sock},
                                 greylist={'enabled': True, 'store': 'redis://127.0.0.1:%d' % fwd.port,
                                           'delay': '1h', 'trap_ttl': '1h'}))
STATE = {'trapped': b'1', 'allowed': b'2'}
ROWS = [  # verb, the record it reads, the one written before its delete
    ('disallow', 'allowed', 'trapped'),
    ('untrap', 'trapped', 'allowed'),
]
for i, (verb, seen, other) in enumerate(ROWS):
    ip = '198.18.13.%d' % (i + 1)
    key = 'mxgate:glip:' + ip
    now = int(time.time() * 1000)
    mt.redis_cmd(red.port, 'HSET', key, 's', STATE[seen].decode(), 't', now - 1000)
    mt.redis_cmd(red.port, 'PEXPIRE', key, 3600000)
    inj.done.clear()
    inj.write = [('HSET', key, 's', STATE[other].decode(), 't', now), ('PEXPIRE', key, 3600000)]
    inj.key = key
    rc, out, err = mt.ctl(sock, 'greylist', verb, ip)
    inj.key = None
    mt.check(inj.done.is_set(), '%s: the other write was made before the verb\'s delete step' % verb)
    got = mt.redis_cmd(red.port, 'HGET', key, 's')
    mt.check(got == STATE[other], '%s %s: the %s record written meanwhile is kept (got s=%r; a plain DEL '
             'removed it)' % (verb, ip, other, got))
    mt.check(rc == 0 and ('%s for' % other) in out and 'not changed' in out,
             '%s: the answer says the %s record is there, not changed: rc=%d %r %r' % (verb, other, rc, out, err))

# nothing written meanwhile: the verb deletes its own state as before
ip, key = '198.18.13.9', 'mxgate:glip:198.18.13.9'
mt.redis_cmd(red.port, 'HSET', key, 's', '2', 't', int(time.time() * 1000))
mt.redis_cmd(red.port, 'PEXPIRE', key, 3600000)
rc, out, err = mt.ctl(sock, 'greylist', 'disallow', ip)
mt.check(rc == 0 and 'record deleted (was allowed)' in out, 'disallow alone deletes: %r %r' % (out, err))
mt.check(mt.redis_cmd(red.port, 'EXISTS', key) == 0, 'disallow alone: the record is gone')
mx.stop()
mt.finish()
