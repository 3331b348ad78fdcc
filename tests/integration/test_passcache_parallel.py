#!/usr/bin/env python3
"""The connect checks' slow lookups run together: the DNS lists' Redis pass-store lookup and
the rDNS PTR query start when the connect stage begins (hook_module.prefetch), so they
overlap each other and the pregreet test's own store lookup instead of following them.

Before, the connect stage asked its peers one after the other: pregreet.pass_store (Redis),
then the PTR (helo_checks.fcrdns holds the stage for the name), then dnsbl.pass_store
(Redis), each up to its timeout — a client both stores knew waited the sum of the three
before its greeting. Now it waits about the slowest one.

Peers: a real redis-server behind mt.TcpForwarder holding each reply SLOW s (a slow
Redis), dns_peer answering the client's PTR after SLOW s. Every verdict stays the same: a
client both stores know is greeted without the teaser's wait and no list is asked about it;
a new client waits the delay, is asked about once and passes; a listed one is refused at
MAIL naming the list.

That they run together is seen in the order of events, not on a clock (a loaded machine
answers late): for the client both stores know, the peers answer nothing until all three
lookups are out (the forwarder holds Redis's replies until both store lookups and the PTR
query have come; dns_peer holds the PTR answer until both store lookups have). A connect
stage that waited for one answer before asking the next would never see its answer (until
the lookup's own timeout: then the store does not know the client and the teaser waits).

SLOW defaults to 0.4 s; MX_PASSCACHE_SLOW=0.15 the brief's 150 ms (the wait from teaser to
greeting is printed, not checked). The stores' pass_store_timeout is STORE_TIMEOUT, 2.5 s:
far beyond SLOW (a loaded machine answers late, and a lookup given up on fails the check),
still below the teaser's DELAY (a store answer is what greets the client both stores know)
and far below HOLD (a stage asking one after the other meets the first lookup's timeout
while the gate holds its answer: event=passcache_error).
"""
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
SLOW = float(os.environ.get('MX_PASSCACHE_SLOW', '0.4'))
DELAY = 3.0
KNOWN, NEW, LISTED = '198.18.73.1', '198.18.73.2', '198.18.73.9'


def rev(ip):
    return '.'.join(reversed(ip.split('.')))


PTR_GO = os.path.join(mt.TMP, 'ptr-go')   # KNOWN's PTR is answered once this file exists
HOLD = mt.slack(10)                        # the longest the gate holds an answer back
STORE_TIMEOUT = DELAY - 0.5                # pass_store_timeout (at most 5 s)
assert SLOW * 3 <= STORE_TIMEOUT < HOLD


class Gate:
    """While armed: the store lookups about KNOWN seen going to Redis ('pregreet', 'dnsbl');
    once both are, PTR_GO is made (dns_peer answers the PTR); each Redis reply is held until
    both are out and dns_peer has the PTR query. .released: for each reply let go, whether
    all three lookups were out then (False: let go after HOLD). .pongs: while not armed,
    the handshake PINGs' answers let go (node B's connections are up once it has them)."""

    def __init__(self):
        self.armed, self.out, self.released, self.pongs = False, set(), [], 0
        self.lock = threading.Lock()

    ptr0 = 0        # KNOWN's PTR queries before the gate was armed (node A's)

    def ptr_asked(self):
        return dnsp.queries(rev(KNOWN) + '.in-addr.arpa', 'PTR') > self.ptr0

    def all_out(self):
        return self.out >= {'pregreet', 'dnsbl'} and self.ptr_asked()

    def chunk(self, direction, data):
        if not self.armed:
            if direction == 'down':
                with self.lock:
                    self.pongs += data.count(b'+PONG\r\n')
            return None
        if direction == 'up':
            with self.lock:
                if b'pass:pregreet:' + KNOWN.encode() in data:
                    self.out.add('pregreet')
                if b'pass:dnsbl:' + KNOWN.encode() in data:
                    self.out.add('dnsbl')
                if self.out >= {'pregreet', 'dnsbl'} and not os.path.exists(PTR_GO):
                    open(PTR_GO, 'w').close()
            return None
        end = time.time() + HOLD
        while not self.all_out() and time.time() < end:
            time.sleep(0.01)
        self.released.append(self.all_out())
        return None


gate = Gate()
open(PTR_GO, 'w').close()                  # node A's phase: answered at once
zone = {}
for ip, host in ((KNOWN, 'known.example.org'), (NEW, 'new.example.org'), (LISTED, 'listed.example.org')):
    zone[rev(ip) + '.in-addr.arpa'] = [{'ptr': host}, {'delay': SLOW}]
    zone[host] = [{'a': ip}]
zone[rev(KNOWN) + '.in-addr.arpa'] = [{'ptr': 'known.example.org'}, {'until': PTR_GO, 'most': HOLD}]
zone[rev(LISTED) + '.bl.test'] = [{'a': '127.0.0.2'}, {'txt': ['listed for the test']}]
dnsp = mt.dns_peer(zone, 'dns_peer')
be = mt.Backend()
rd = mt.redis()
slow = mt.TcpForwarder(rd.port, reply_delay=SLOW, on_chunk=gate.chunk)


def cfg(redis_port):
    store = 'redis://127.0.0.1:%d' % redis_port
    return mt.proxied_config(
        [be.url], dns={'resolvers': ['127.0.0.1:%d' % dnsp.port], 'timeout': '3s'},
        pregreet={'delay': '%ds' % DELAY, 'action': 'score', 'pass_ttl': '1h', 'pass_store': store,
                  'pass_store_timeout': '%dms' % int(STORE_TIMEOUT * 1000)},
        dnsbl={'threshold': 3, 'pass_ttl': '1h', 'pass_store': store,
               'pass_store_timeout': '%dms' % int(STORE_TIMEOUT * 1000),
               'lists': [{'zone': 'bl.test', 'weight': 3}]},
        helo_checks={'enabled': True, 'fcrdns': {'enabled': True, 'action': 'score'}})


# node A, on Redis directly: KNOWN passes both tests and both stores note it
a = mt.Mxgate(cfg(rd.port), 'nodeA')
first, waited, r = mt.patient_mail(a.port, KNOWN, 'a1')
mt.check(first.startswith('220-') and waited >= DELAY - 0.5 and r[0] == 250,
         'node A tests the client and it passes: %r %.2fs %r' % (first, waited, r))
mt.check(mt.wait_for(lambda: mt.redis_cmd(rd.port, 'EXISTS', 'mxgate:pass:pregreet:' + KNOWN) == 1 and
                     len(mt.redis_cmd(rd.port, 'KEYS', 'mxgate:pass:dnsbl:%s#*' % KNOWN) or []) == 1, 10),
         'both passes are in Redis')
a.stop()

# node B, on the slow Redis: the client both stores know
b = mt.Mxgate(cfg(slow.port), 'nodeB')


def handshakes_done():
    """Node B's four Redis connections (two workers, two stores) have sent their handshake's
    PING: each is up once its answer passed the forwarder (SLOW later)."""
    out = mt.redis_cmd(rd.port, 'CLIENT', 'LIST') or b''
    out = out.decode() if isinstance(out, bytes) else str(out)
    return len([ln for ln in out.splitlines() if 'cmd=ping' in ln]) >= 4


mt.check(mt.wait_for(handshakes_done, 15), 'node B\'s Redis connections are set up')
# the PINGs' answers, held SLOW by the forwarder: all let go before the gate is armed
mt.check(mt.wait_for(lambda: gate.pongs >= 4, 15), 'node B\'s handshake PINGs are answered (%d)' % gate.pongs)
asked0 = dnsp.queries(rev(KNOWN) + '.bl.test')
gate.ptr0 = dnsp.queries(rev(KNOWN) + '.in-addr.arpa', 'PTR')
os.unlink(PTR_GO)
mark = b.log_size()
gate.armed = True
first, last, waited, c = mt.teased(b.port, KNOWN)
c.close()
gate.armed = False
print('connect stage of a client both stores know, behind a Redis answering in %.2f s and a PTR '
      'answered once both store lookups are out: teaser to greeting %.3f s' % (SLOW, waited))
mt.check(first.startswith('220-') and last is not None and last.startswith('220 '),
         'node B sends the teaser, then the greeting: %r %r' % (first, last))
mt.check(b.wait_log(r'event=pregreet_skipped reason=pass_store client=%s' % KNOWN.replace('.', r'\.'), 5)
         is not None, 'the pregreet store knew it: reason=pass_store')
# none of the three given up on while the others were asked: a stage asking one after the
# other meets the first lookup's timeout before the gate lets its answer go (on a chain
# without the prefetch: event=passcache_error reason=no_reply, redis_down reason=timeout,
# fcrdns_tempfail)
gave_up = re.findall(r'event=(?:passcache_error|redis_down|fcrdns_tempfail)[^\n]*', b.log()[mark:])
mt.check(gate.out == {'pregreet', 'dnsbl'} and gate.released and all(gate.released)
         and 'until_expired' not in mt.log_of('dns_peer') and not gave_up,
         'the lookups run together: both store lookups and the PTR query were out before any of '
         'them was answered, none given up on (store lookups %s, Redis replies let go with all out: '
         '%s, PTR answered after both store lookups: %s, given up: %s)'
         % (sorted(gate.out), gate.released, 'until_expired' not in mt.log_of('dns_peer'), gave_up))
mt.check(dnsp.queries(rev(KNOWN) + '.bl.test') == asked0,
         'the DNS lists\' store knew it: no list asked (%d)' % (dnsp.queries(rev(KNOWN) + '.bl.test') - asked0))

# a new client: tested as always, its lookups made, its pass noted
first, waited, r = mt.patient_mail(b.port, NEW, 'b1')
mt.check(first.startswith('220-') and waited >= DELAY - 0.5 and r[0] == 250,
         'a new client waits out the delay and passes: %r %.2fs %r' % (first, waited, r))
mt.check(dnsp.queries(rev(NEW) + '.bl.test') == 1, 'the list is asked about it once')
mt.check(mt.wait_for(lambda: mt.redis_cmd(rd.port, 'EXISTS', 'mxgate:pass:pregreet:' + NEW) == 1 and
                     len(mt.redis_cmd(rd.port, 'KEYS', 'mxgate:pass:dnsbl:%s#*' % NEW) or []) == 1, 10),
         'and both passes are noted')

# a listed client: refused at MAIL with the list's name, no pass noted
first, waited, r = mt.patient_mail(b.port, LISTED, 'b2')
mt.check(r[0] == 550 and 'bl.test' in r[1], 'a listed client is refused at MAIL naming the list: %r' % (r,))
mt.check(len(mt.redis_cmd(rd.port, 'KEYS', 'mxgate:pass:dnsbl:%s#*' % LISTED) or []) == 0,
         'and the DNS lists note no pass for it')
b.stop()
mt.finish()
