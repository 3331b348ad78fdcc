#!/usr/bin/env python3
"""`mxgatectl ratelimit reset` between a charge and its refund, with the local store and with
a real redis-server. An RCPT
the rate limit admitted and greylisting then refused keeps its charge aside until the
session moves on; it is given back then. When a reset came in between, the refund script
took the charge off the bucket the reset had emptied, i.e. off charges made after the
reset: the client had one more recipient than its limit. The refund now carries the time
of its charge, and a reset's time stamp (mxgate:rlreset:<bucket>, in Redis and in the local
table) drops it, as Redis's drops a charge queued through an outage."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
mt.mxgatectl()                  # skipped when not built
red = mt.redis()
SRC = '198.18.97.1'
KEY = 'mxgate:rl:recipients:ip:3/1h:' + SRC
be = mt.Backend()


def script_calls():
    """Scripts Redis has run (EVAL and EVALSHA), from INFO commandstats."""
    n = 0
    for line in mt.redis_cmd(red.port, 'INFO', 'commandstats').decode().splitlines():
        if line.startswith(('cmdstat_eval:', 'cmdstat_evalsha:')):
            n += int(line.split('calls=')[1].split(',')[0])
    return n


def run(store):
    sock = os.path.join(mt.TMP, 'ctl-%s.sock' % store[:5])
    gw = mt.Mxgate(mt.proxied_config([be.url], workers=1, control={'socket': sock},
                   greylist={'enabled': True, 'delay': '0s', 'retry_window': '1h'},
                   ratelimit={'store': store, 'timeout': '2s',
                              'rules': [{'key': 'ip', 'count': 'recipients', 'limit': '3/1h'}]}),
                   'mxgate-' + store[:5])
    redis = store.startswith('redis')
    if redis:
        mt.redis_cmd(red.port, 'FLUSHALL')

    def rcpt(rcpt_to):
        return mt.rcpt_code(gw.port, SRC, 'a@example.org', rcpt_to)

    # greylist.delay 0: a triplet's first attempt is refused, its retry passes (charged).
    # Four triplets get their first attempt now (each charged, given back at once).
    for i in range(4):
        mt.check(rcpt('u%d@example.test' % i) == 451, '%s: first attempt of u%d greylisted' % (store, i))
    if redis:
        # the refund is sent after the 451 (not waited for): under load it may land later
        mt.check(mt.wait_for(lambda: mt.redis_cmd(red.port, 'EXISTS', KEY) == 0, timeout=5),
                 'refused RCPTs consumed nothing')

    # the held RCPT: charged by the rate limit, refused by greylisting; its charge is given
    # back when its session goes on (here: at QUIT, after the reset)
    held = mt.Client(gw.port, proxy_src=SRC)
    held.ehlo('mail.example.org')
    held.cmd('MAIL FROM:<a@example.org>')
    code = held.cmd('RCPT TO:<held@example.test>')[0]
    mt.check(code == 451, '%s: the held RCPT is greylisted: %r' % (store, code))
    if redis:
        mt.check(mt.redis_cmd(red.port, 'EXISTS', KEY) == 1, 'its charge is in Redis')

    rc, out, err = mt.ctl(sock, 'ratelimit', 'reset', 'ip', SRC)
    mt.check(rc == 0 and 'reset' in out, '%s: reset: %r %r' % (store, out, err))

    codes = [rcpt('u%d@example.test' % i) for i in range(3)]
    mt.check(codes == [250, 250, 250], '%s: after the reset the whole limit: %s' % (store, codes))
    calls = script_calls() if redis else 0
    held.cmd('QUIT')
    held.close()
    if redis:   # the refund goes through the write queue: wait until Redis ran it
        mt.check(mt.wait_for(lambda: script_calls() > calls, timeout=mt.slack(10)),
                 'the refund script ran')
    r = mt.Client(gw.port, proxy_src=SRC)
    r.ehlo('mail.example.org')
    r.cmd('MAIL FROM:<a@example.org>')
    code, text = r.cmd('RCPT TO:<u3@example.test>')
    r.cmd('QUIT')
    r.close()
    mt.check(code == 451 and 'greylist' not in text,
             '%s: a fourth recipient is over the limit (the refund of a charge from before the '
             'reset gave nothing back): %r %r' % (store, code, text))
    gw.stop()


run('local')
run('redis://127.0.0.1:%d' % red.port)
mt.finish()
