#!/usr/bin/env python3
"""Greylisting and callouts. A sender or recipient callout (Exim's `verify = sender/callout`
and `recipient/callout`, made by the world's MTAs to the MX of your users' domains: MAIL
FROM:<>, RCPT, then RSET or QUIT, never DATA) was greylisted like a message: its RCPT got
451, the verifying MTA deferred its own client (Exim: "451 Could not complete recipient
verify callout"), and each new verifier met it again. Greylisting now judges the null
sender at DATA by default (greylist.null_sender: data), as Exim's greylisting recipes do:

- a callout (<>, RCPT, QUIT) is answered by the backend, not deferred (failed first on main:
  451 4.7.1 greylisted at RCPT);
- a bounce (<>, RCPT, DATA) is greylisted at DATA by its first recipient: 451 4.7.1 to DATA,
  event=greylist ... stage=data, nothing reaches the backend; its retry passes and is
  delivered; with BDAT the first chunk is refused the same way;
- a sender other than <> is greylisted at RCPT as before;
- null_sender: rcpt keeps the old behaviour (postgrey's): the callout gets 451 at RCPT;
- the same with store: redis and lmdb.
Each case comes from its own /24 (the triplet's network). A deferral at DATA is not the
client's error (limits.max_errors), as at RCPT.
Peers: a scripted backend; clients with public-looking addresses over PROXY v2."""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
be = mt.Backend(name='gl-callouts')


def cfg(**gl):
    g = {'enabled': True, 'store': 'local', 'delay': '0s', 'retry_window': '1h'}
    g.update(gl)
    return mt.proxied_config([be.url], accept_domains=['example.test'], greylist=g)


CALLOUT = ['MAIL FROM:<>', 'RCPT TO:<user@example.test>']
BOUNCE = ['MAIL FROM:<>', 'RCPT TO:<user@example.test>', 'DATA']

mx = mt.Mxgate(cfg(), name='mx-gl-data')
got = mt.session_codes(mx.port, '198.18.41.1', CALLOUT, ehlo='verifier.example')
mt.check(got == [250, 250], 'a callout (MAIL FROM:<>, RCPT, QUIT) is not greylisted (got %s)' % got)
got = mt.session_codes(mx.port, '198.18.42.1', CALLOUT + ['RSET'] + CALLOUT, ehlo='verifier.example')
mt.check(got == [250, 250, 250, 250, 250], 'nor one ended by RSET and made again (got %s)' % got)
mt.check(mx.count_log(r'event=greylist ') == 0, 'no greylist line for the callouts')

n0 = len(be.messages)
got = mt.session_codes(mx.port, '198.18.43.1', BOUNCE, mt.message('bounce-1'), ehlo='verifier.example')
mt.check(got == [250, 250, 451], 'a bounce is greylisted at DATA (got %s)' % got)
mt.check(mx.wait_log(r'event=greylist client=198\.18\.43\.1 from=<> rcpt=<user@example\.test> wait=\d+ store=local stage=data', 5),
         'the log names the stage and the first recipient')
mt.check(len(be.messages) == n0, 'nothing reached the backend')
got = mt.session_codes(mx.port, '198.18.43.1', BOUNCE, mt.message('bounce-2'), ehlo='verifier.example')
mt.check(got == [250, 250, 354, 250], 'its retry passes and is delivered (got %s)' % got)
mt.check(mt.wait_for(lambda: len(be.messages) == n0 + 1, 5), 'the backend has the bounce once')

c = mt.Client(mx.port, proxy_src='198.18.44.1')
c.ehlo('verifier.example')
codes = [c.cmd(l)[0] for l in CALLOUT]
c.send('BDAT 4 LAST\r\nhi\r\n')
reply = c.reply()
c.close()
mt.check(codes == [250, 250] and reply[0] == 451, 'a bounce sent with BDAT is greylisted at its first chunk (got %s %s)' % (codes, reply))

c = mt.Client(mx.port, proxy_src='198.18.47.1')
c.ehlo('bounces.example')
codes = []
for i in range(12):       # more than limits.max_errors (10)
    codes += [c.cmd(l)[0] for l in ('MAIL FROM:<>', 'RCPT TO:<u%d@example.test>' % i, 'DATA')]
c.close()
mt.check(codes == [250, 250, 451] * 12, 'twelve bounces greylisted at DATA in one session are no errors: '
         'no 421 (got %s)' % codes[-6:])

got = mt.session_codes(mx.port, '198.18.45.1', ['MAIL FROM:<someone@sender.example>', 'RCPT TO:<user@example.test>'],
                       ehlo='verifier.example')
mt.check(got == [250, 451], 'a sender other than <> is greylisted at RCPT as before (got %s)' % got)

mx.stop()
mx = mt.Mxgate(cfg(null_sender='rcpt'), name='mx-gl-rcpt')
got = mt.session_codes(mx.port, '198.18.46.1', CALLOUT, ehlo='verifier.example')
mt.check(got == [250, 451], 'null_sender: rcpt greylists the callout at RCPT, as postgrey does (got %s)' % got)

# the same decisions through Redis and LMDB (a DATA-stage call takes their paths as a RCPT's)
red = mt.redis()
for i, store in enumerate(('redis://127.0.0.1:%d' % red.port, 'lmdb:' + os.path.join(mt.TMP, 'gl-lmdb'))):
    kind = store.split(':')[0]
    mx.stop()
    mx = mt.Mxgate(cfg(store=store, timeout='2s'), name='mx-gl-' + kind)
    src = '198.18.%d.1' % (50 + i)
    got = mt.session_codes(mx.port, src, CALLOUT, ehlo='verifier.example')
    mt.check(got == [250, 250], '%s: the callout passes (got %s)' % (kind, got))
    got = mt.session_codes(mx.port, src, BOUNCE, mt.message('bounce-%s-1' % kind), ehlo='verifier.example')
    mt.check(got == [250, 250, 451] and mx.wait_log(r'event=greylist client=%s .*store=%s stage=data' % (re.escape(src), kind), 5),
             '%s: the bounce is greylisted at DATA (got %s)' % (kind, got))
    got = mt.wait_for(lambda: mt.session_codes(mx.port, src, BOUNCE, mt.message('bounce-%s-2' % kind),
                                               ehlo='verifier.example') == [250, 250, 354, 250], 10, 0.3)
    mt.check(got, '%s: its retry is delivered' % kind)

rc, out = mt.config_check(cfg(null_sender='never'), 'bad')
mt.check(rc != 0 and 'greylist.null_sender' in out, 'mxgate -t names a bad greylist.null_sender: %s' % out.strip()[-200:])

mt.finish()
