#!/usr/bin/env python3
"""The pregreet pass cache (postscreen_greet_ttl): a client that passed the pregreet test (it
waited for the greeting's final line without talking) is remembered for pregreet.pass_ttl,
and its next connections get the greeting at once, without the teaser and the wait. Before,
every connection of a client that passed a hundred times still waited pregreet.delay.

A client that talked early (action score here) is not remembered: its next connection is
tested again. Another client is tested. `mxgatectl flush passcache` empties it (with the DNS
lists' pass cache). A reload that sets pass_ttl 0 stops using the cache at once."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
CTL = mt.mxgatectl()
be = mt.Backend()
SOCK = os.path.join(mt.TMP, 'ctl.sock')


def cfg(pass_ttl):
    pg = {'delay': '1s', 'action': 'score'}
    if pass_ttl is not None:
        pg['pass_ttl'] = pass_ttl
    return mt.proxied_config([be.url], pregreet=pg, control={'socket': SOCK})


def patient(src, tag):
    """Waits for the whole greeting, then a transaction; the first line it read."""
    c = mt.Client(mx.port, proxy_src=src, greet=False, timeout=10)
    first = c._line()
    while first is not None and first.startswith('220-'):
        nxt = c._line()
        if nxt is None or not nxt.startswith('220-'):
            break
    c.ehlo('client.example.org')
    r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message(tag), client=c)
    c.close()
    return first, r


def first_line(src):
    """The first line a client reads."""
    c = mt.Client(mx.port, proxy_src=src, greet=False, timeout=5)
    t = c._line()
    c.close()
    return t


mx = mt.Mxgate(cfg('1h'), 'pg-cache')
first, r = patient('198.18.60.1', 'p1')
mt.check(first is not None and first.startswith('220-') and r[0] == 250,
         'a new client gets the teaser and waits; it passes: %r %r' % (first, r))
t = first_line('198.18.60.1')
mt.check(t is not None and t.startswith('220 '), 'its next connection gets the greeting at once (no teaser): %r' % t)
mt.check(mx.wait_log(r'event=pregreet_skipped reason=pass_cache client=198\.18\.60\.1', 5) is not None,
         'logged: event=pregreet_skipped reason=pass_cache')
t = first_line('198.18.60.2')
mt.check(t is not None and t.startswith('220-'), 'another client is tested: %r' % t)
# a client that talks early is not remembered
c = mt.Client(mx.port, proxy_src='198.18.61.1', greet=False, timeout=10)
c.send(b'EHLO early.example\r\n')
mt.check(mx.wait_log(r'event=pregreet client=198\.18\.61\.1', 5) is not None, 'the early talker is seen')
while True:
    line = c._line()
    if line is None or line.startswith('220 '):
        break
c.close()
t = first_line('198.18.61.1')
mt.check(t is not None and t.startswith('220-'), 'a client that talked early is tested again: %r' % t)

# `flush passcache` empties it too (and says how many it held)
r = subprocess.run([CTL, '-s', SOCK, '--json', 'flush', 'passcache'], capture_output=True, text=True,
                   timeout=mt.slack(30))
j = json.loads(r.stdout) if r.returncode == 0 else {}
mt.check(j.get('flushed') == 'passcache' and j.get('pregreet_entries') == 1,
         'flush passcache: the pregreet pass cache held 1 client: %r %r' % (r.stdout, r.stderr))
t = first_line('198.18.60.1')
mt.check(t is not None and t.startswith('220-'), 'after the flush the client is tested again: %r' % t)
first, r = patient('198.18.60.1', 'p2')
mt.check(r[0] == 250, 'and passes again: %r' % (r,))
t = first_line('198.18.60.1')
mt.check(t is not None and t.startswith('220 '), 'and is remembered again: %r' % t)

start = mx.log_size()
mx.reload(cfg('0s'))
mt.check(mx.wait_log(r'event=reloaded', 10, start) is not None, 'reloaded')
t = first_line('198.18.60.1')
mt.check(t is not None and t.startswith('220-'), 'pass_ttl 0 after a reload: the passed client is tested again: %r' % t)
mx.stop()

rc, out = mt.config_check(cfg('-1s'), 'neg')
mt.check(rc != 0 and 'pregreet.pass_ttl' in out, 'mxgate -t refuses a bad pass_ttl: %s' % out.strip()[-200:])
mt.finish()
