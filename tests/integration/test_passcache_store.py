#!/usr/bin/env python3
"""Pass caches in a store (pregreet.pass_store, dnsbl.pass_store: postscreen_cache_map), against
a real LMDB directory, a real redis-server and a DNS list server that counts its queries.

Before, both caches lived in the process's memory only: after a restart every client faced
the pregreet wait again and every list was queried again, and two nodes behind one balancer
each tested the same client.

- LMDB: a client that passed is greeted at once, without the teaser, by the next process on
  the same directory (LMDB answers inline, before the teaser) and the lists are not asked
  about it again; a new client is tested; a reload keeps it;
  `flush passcache` makes the stored passes unknown, for the next process too;
  `mxgatectl passcache` lists both caches with their store and this process's hits.
- An LMDB directory that cannot be opened: logged, every new client tested.
- Redis: a client that passed on node A is greeted on node B as soon as the connect stage is
  done (the teaser went out, the store was asked during its delay) and B asks no list; a
  pass expires with its pass_ttl (a reload made it short) and B tests that client; with
  Redis down a client is tested (the wait, the lookups), never passed by the error.
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
CTL = mt.mxgatectl()
DELAY = 3.0
dnsp = mt.dns_peer({}, 'dns_peer')      # every name NXDOMAIN: nobody is listed
be = mt.Backend()


def asked(ip):
    """The A queries of bl.test about ip the DNS peer answered (its log: "query NAME A ...")."""
    name = '.'.join(reversed(ip.split('.'))) + '.bl.test'
    return len(re.findall(r'(?m)^query %s A\b' % re.escape(name), mt.log_of('dns_peer')))


def cfg(store, sock, pg_ttl='1h'):
    return mt.proxied_config(
        [be.url], dns={'resolvers': ['127.0.0.1:%d' % dnsp.port], 'timeout': '2s'},
        pregreet={'delay': '%ds' % DELAY, 'action': 'score', 'pass_ttl': pg_ttl, 'pass_store': store},
        dnsbl={'threshold': 3, 'pass_ttl': '1h', 'pass_store': store,
               'lists': [{'zone': 'bl.test', 'weight': 3}]},
        control={'socket': sock})


def show(sock):
    """`mxgatectl --json passcache`: {module: its entry}."""
    r = subprocess.run([CTL, '-s', sock, '--json', 'passcache'], capture_output=True, text=True,
                       timeout=mt.slack(30))
    if r.returncode != 0 or not r.stdout.strip():
        return {'rc': r.returncode, 'err': r.stderr + r.stdout}
    return {c['module']: c for c in json.loads(r.stdout)['passcaches']}


def redis_calls(port):
    """{command: calls} Redis has run (INFO commandstats), the test's own INFO and CLIENT
    left out."""
    out = mt.redis_cmd(port, 'INFO', 'commandstats') or b''
    out = out.decode() if isinstance(out, bytes) else str(out)
    return {m.group(1): int(m.group(2)) for m in re.finditer(r'(?m)^cmdstat_(\S+?):calls=(\d+)', out)
            if m.group(1) != 'info' and not m.group(1).startswith('client')}


def handshakes_done(port, n):
    """n connections to the Redis on port have sent their handshake's PING (the last step)."""
    out = mt.redis_cmd(port, 'CLIENT', 'LIST') or b''
    out = out.decode() if isinstance(out, bytes) else str(out)
    return len([ln for ln in out.splitlines() if 'cmd=ping' in ln]) >= n


def flush(sock):
    r = subprocess.run([CTL, '-s', sock, '--json', 'flush', 'passcache'], capture_output=True, text=True,
                       timeout=mt.slack(30))
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else {'rc': r.returncode,
                                                                                   'err': r.stderr + r.stdout}


# ------------------------------------------------------------------------------- -t
for bad in ('lmdb:', 'memcache:127.0.0.1:11211'):
    c = cfg('local', os.path.join(mt.TMP, 'x.sock'))
    c['pregreet']['pass_store'] = bad
    c['dnsbl']['pass_store'] = bad
    c['listen'][0]['address'] = '127.0.0.1:25'     # -t binds nothing; 0 is for the runner
    rc, out = mt.config_check(c, 'bad')
    mt.check(rc == 1 and re.search(r'bad\.yaml:\d+:\d+: pregreet\.pass_store: expected local, lmdb:/dir', out)
             and re.search(r'bad\.yaml:\d+:\d+: dnsbl\.pass_store: expected local', out),
             'mxgate -t refuses pass_store %r with FILE:LINE:COL: %r' % (bad, out))

# ------------------------------------------------------------------------------- LMDB
LDIR = os.path.join(mt.TMP, 'passdb')
SOCK1 = os.path.join(mt.TMP, 'ctl1.sock')
STORE = 'lmdb:' + LDIR
mx = mt.Mxgate(cfg(STORE, SOCK1), 'lmdb1')
first, waited, r = mt.patient_mail(mx.port, '198.18.70.1', 'l1')
mt.check(first is not None and first.startswith('220-') and r[0] == 250 and waited >= DELAY - 0.5,
         'a new client gets the teaser, waits out the delay and passes: %r %.1fs %r' % (first, waited, r))
mt.check(asked('198.18.70.1') == 1, 'the list was asked once')
mx.stop()            # the writers apply what they hold

mx = mt.Mxgate(cfg(STORE, SOCK1), 'lmdb2')
first, waited, r = mt.patient_mail(mx.port, '198.18.70.1', 'l2')
mt.check(first is not None and first.startswith('220 ') and r[0] == 250,
         'after a restart the client that passed is greeted at once, no teaser (LMDB answers before it): %r %r'
         % (first, r))
mt.check(mx.wait_log(r'event=pregreet_skipped reason=pass_store client=198\.18\.70\.1', 5) is not None,
         'logged: event=pregreet_skipped reason=pass_store')
mt.check(asked('198.18.70.1') == 1,
         'after the restart the list is not asked again about it: %d queries' % asked('198.18.70.1'))
first, last, waited, c = mt.teased(mx.port, '198.18.70.2')
c.close()
mt.check(first is not None and first.startswith('220-') and waited >= DELAY - 0.5,
         'another client is tested: %r %.1fs' % (first, waited))
v = show(SOCK1)
pg, dl = v.get('pregreet', {}), v.get('dnsbl', {})
mt.check(pg.get('enabled') is True and pg.get('store') == 'lmdb' and pg.get('spec') == STORE and
         pg.get('prefix') == 'pass:pregreet:' and pg.get('store_hits', 0) >= 1 and
         pg.get('store_misses', 0) >= 1 and pg.get('entries', 0) >= 1 and pg.get('map_records', 0) >= 2,
         'mxgatectl passcache lists the pregreet cache: LMDB, its prefix, the map, this process\'s '
         'hit (the client that passed before) and miss (the new one): %r' % v)
mt.check(dl.get('enabled') is True and dl.get('store') == 'lmdb' and dl.get('prefix') == 'pass:dnsbl:' and
         dl.get('store_hits', 0) >= 1 and dl.get('entries', 0) >= 1 and dl.get('flushed_ms', 0) is None,
         'and the DNS lists\' cache: %r' % dl)
mark = mx.log_size()
mx.reload(cfg(STORE, SOCK1))
mt.check(mx.wait_log(r'event=reloaded', start=mark), 'reloaded')
first, last, waited, c = mt.teased(mx.port, '198.18.70.1')
c.close()
mt.check(first is not None and first.startswith('220 '), 'a reload keeps the pass: %r' % first)
j = flush(SOCK1)
mt.check(j.get('flushed') == 'passcache' and j.get('stores') == 1 and j.get('store_errors') == 0,
         'flush passcache names the store: %r' % j)
mx.stop()
mx = mt.Mxgate(cfg(STORE, SOCK1), 'lmdb3')
first, last, waited, c = mt.teased(mx.port, '198.18.70.1')
c.close()
mt.check(first is not None and first.startswith('220-') and waited >= DELAY - 0.5,
         'after flush passcache the stored pass is forgotten, for the next process too: %r %.1fs' % (first, waited))
mx.stop()

# an LMDB directory that cannot be opened (a file in its way): the passes stay in memory,
# every new client is tested
NOTDIR = os.path.join(mt.TMP, 'notadir')
with open(NOTDIR, 'w') as f:
    f.write('in the way\n')
mx = mt.Mxgate(cfg('lmdb:' + NOTDIR + '/db', SOCK1), 'lmdb-broken')
mt.check(mx.wait_log(r'event=module_error module=(pregreet|dnsbl) worker=\d+ reason=pass_store', 5) is not None,
         'a store that cannot be opened is logged: event=module_error reason=pass_store')
first, waited, r = mt.patient_mail(mx.port, '198.18.70.1', 'l4')
mt.check(first is not None and first.startswith('220-') and waited >= DELAY - 0.5 and r[0] == 250,
         'and the client is tested and served: %r %.1fs %r' % (first, waited, r))
mt.check(asked('198.18.70.1') == 3, 'the list is asked (%d)' % asked('198.18.70.1'))
r = subprocess.run([CTL, '-s', SOCK1, 'flush', 'passcache'], capture_output=True, text=True, timeout=mt.slack(30))
mt.check(r.returncode == 1 and 'not reached' in r.stdout + r.stderr and NOTDIR in r.stdout + r.stderr,
         'flush passcache cannot mark that store: it fails naming it, never an OK the store did not keep: %r'
         % (r.stdout + r.stderr))
mx.stop()

# ------------------------------------------------------------------------------- Redis
rd = mt.redis()
RSTORE = 'redis://127.0.0.1:%d' % rd.port
SOCKA = os.path.join(mt.TMP, 'ctla.sock')
SOCKB = os.path.join(mt.TMP, 'ctlb.sock')
a = mt.Mxgate(cfg(RSTORE, SOCKA), 'nodeA')
b = mt.Mxgate(cfg(RSTORE, SOCKB), 'nodeB')
# `passcache` makes no Redis round trip (the main loop asks no peer for a listing): with both
# nodes idle (their 8 connections, two workers x two stores each, set up) Redis runs no
# command while both answer it; seen in Redis's own counts, not on a clock
mt.check(mt.wait_for(lambda: handshakes_done(rd.port, 8), 15), 'both nodes\' Redis connections are set up')
calls0 = redis_calls(rd.port)
va, vb = show(SOCKA), show(SOCKB)
calls1 = redis_calls(rd.port)
mt.check(va.get('pregreet', {}).get('store') == 'redis' and vb.get('dnsbl', {}).get('store') == 'redis'
         and calls1 == calls0,
         'passcache asks Redis nothing: no command run while it answers (%r -> %r; %r)' % (calls0, calls1, vb))
first, waited, r = mt.patient_mail(a.port, '198.18.71.1', 'r1')
mt.check(first is not None and first.startswith('220-') and r[0] == 250, 'node A tests and passes the client')
mt.check(mt.wait_for(lambda: mt.redis_cmd(rd.port, 'EXISTS', 'mxgate:pass:pregreet:198.18.71.1') == 1, 10),
         'the pregreet pass is in Redis')
mt.check(mt.wait_for(lambda: len(mt.redis_cmd(rd.port, 'KEYS', 'mxgate:pass:dnsbl:198.18.71.1#*') or []) == 1, 10),
         'the DNS lists\' pass is in Redis')
ttl = mt.redis_cmd(rd.port, 'PTTL', 'mxgate:pass:pregreet:198.18.71.1')
mt.check(isinstance(ttl, int) and 3500 * 1000 - 60000 < ttl <= 3600 * 1000, 'with its pass_ttl: %r ms' % ttl)
first, waited, r = mt.patient_mail(b.port, '198.18.71.1', 'r2')
mt.check(first is not None and r[0] == 250 and waited < DELAY - 0.5,
         'node B greets the client that passed on A without the wait: %r %.2fs' % (first, waited))
mt.check(b.wait_log(r'event=pregreet_skipped reason=pass_store client=198\.18\.71\.1', 5) is not None,
         'node B logged reason=pass_store')
mt.check(asked('198.18.71.1') == 1, 'node B asked no list about it: %d' % asked('198.18.71.1'))
v = show(SOCKB)
pg = v.get('pregreet', {})
mt.check(pg.get('store') == 'redis' and pg.get('spec') == 'redis://127.0.0.1:%d/0' % rd.port and
         pg.get('prefix') == 'mxgate:pass:pregreet:' and pg.get('store_hits') == 1 and
         'map_records' not in pg and v.get('dnsbl', {}).get('store_hits') == 1,
         'node B\'s passcache: Redis, its prefix, one hit each, no map figures: %r' % v)

# expiry: node A now keeps passes for 2 s
mark = a.log_size()
a.reload(cfg(RSTORE, SOCKA, pg_ttl='2s'))
mt.check(a.wait_log(r'event=reloaded', start=mark), 'node A reloaded')
first, waited, r = mt.patient_mail(a.port, '198.18.71.2', 'r3')
mt.check(r[0] == 250, 'node A passes another client')
mt.check(mt.wait_for(lambda: mt.redis_cmd(rd.port, 'EXISTS', 'mxgate:pass:pregreet:198.18.71.2') == 1, 10),
         'its pass is in Redis')
mt.check(mt.wait_for(lambda: mt.redis_cmd(rd.port, 'EXISTS', 'mxgate:pass:pregreet:198.18.71.2') == 0, 15),
         'and expires with the 2 s pass_ttl')
first, last, waited, c = mt.teased(b.port, '198.18.71.2')
c.close()
mt.check(first is not None and first.startswith('220-') and waited >= DELAY - 0.5,
         'an expired pass: node B tests the client: %r %.1fs' % (first, waited))

# Redis down: the test runs, the lists are asked
mt.stop_proc(rd)
mark = b.log_size()
first, waited, r = mt.patient_mail(b.port, '198.18.71.3', 'r4')
mt.check(first is not None and first.startswith('220-') and waited >= DELAY - 0.5 and r[0] == 250,
         'with Redis down a new client is tested and served: %r %.1fs %r' % (first, waited, r))
mt.check(asked('198.18.71.3') == 1, 'and the list is asked')
mt.check(b.wait_log(r'event=passcache_error module=(pregreet|dnsbl) store=redis://\S+ reason=\w+', 5, start=mark)
         is not None, 'the store failure is logged: event=passcache_error')
mt.check(b.wait_log(r'event=pregreet_skipped reason=pass_store client=198\.18\.71\.3', 0.5, start=mark) is None,
         'and nothing passed by the error')
v = show(SOCKB)
mt.check(v.get('pregreet', {}).get('store_errors', 0) >= 1 and v.get('dnsbl', {}).get('store_errors', 0) >= 1,
         'with Redis down passcache answers (it asks Redis nothing: above) and counts the errors: %r' % v)
a.stop()
b.stop()
mt.finish()
