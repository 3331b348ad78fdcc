#!/usr/bin/env python3
"""key: recipient_domain (a hosting provider keeps one customer's flood off the others):
counts per recipient domain in accept_domains' normal form (lower-cased, one root dot
removed), in the local table and in Redis. recipients 4/1h reject: the fifth RCPT to a.test
(written A.Test.) is 550 5.7.1 while b.test in the same transaction is still accepted and
the message delivered; messages 2/1h tempfail: two recipients of c.test in one message count
it once, the third message's RCPT to c.test is 451 4.7.1 while d.test in the same
transaction is accepted. `mxgate -t` refuses recipient_domain with bytes.
Peers: smtp-sink behind, redis-server."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'redis-server')
sink = mt.Sink(name='sink-rcptdom')
red = mt.redis()
RULES = [{'key': 'recipient_domain', 'count': 'recipients', 'limit': '4/1h', 'action': 'reject'},
         {'key': 'recipient_domain', 'count': 'messages', 'limit': '2/1h', 'action': 'tempfail'}]


def data(c, tag):
    code = c.cmd('DATA')[0]
    if code != 354:
        return code
    c.send(mt.stuff(mt.message(tag)))
    return c.reply()[0]


for store in ('local', 'redis://127.0.0.1:%d' % red.port):
    name = 'local' if store == 'local' else 'redis'
    cfg = mt.config([sink.url], accept_domains=['a.test', 'b.test', 'c.test', 'd.test'],
                    limits={'max_errors': 1000}, ratelimit={'store': store, 'rules': RULES})
    mx = mt.Mxgate(cfg, 'mx-rcptdom-' + name)
    c = mt.Client(mx.port, timeout=15)
    c.ehlo('mta.example.org')
    # recipients per domain: a.test's fifth is refused, b.test in the same transaction is not
    c.cmd('MAIL FROM:<s@example.org>')
    got = [c.cmd('RCPT TO:<a%d@a.test>' % i) for i in range(4)]
    over = c.cmd('RCPT TO:<a4@A.Test.>')
    other = c.cmd('RCPT TO:<b1@b.test>')
    mt.check([g[0] for g in got] == [250] * 4, '%s: four recipients of a.test accepted: %r' % (name, got))
    mt.check(over[0] == 550 and '5.7.1 rate limit exceeded for recipient_domain a.test: 4/1h' in over[1],
             '%s: the fifth (A.Test., the same domain) refused: %r' % (name, over))
    mt.check(other[0] == 250, '%s: b.test in the same session still accepted: %r' % (name, other))
    mt.check(data(c, 'rcptdom-a-' + name) == 250, '%s: the message to the accepted ones delivered' % name)
    mt.check(mx.wait_log(r'event=ratelimit key=recipient_domain value=a\.test count=recipients '
                         r'limit=4/1h action=reject store=%s' % name), '%s: the refusal is logged' % name)
    # messages per domain: one message with two c.test recipients counts once
    c.cmd('MAIL FROM:<s@example.org>')
    got = [c.cmd('RCPT TO:<c1@c.test>')[0], c.cmd('RCPT TO:<c2@C.TEST>')[0]]
    mt.check(got == [250, 250] and data(c, 'rcptdom-c1-' + name) == 250,
             '%s: a message to two c.test recipients: %r' % (name, got))
    c.cmd('MAIL FROM:<s@example.org>')
    mt.check(c.cmd('RCPT TO:<c3@c.test>')[0] == 250 and data(c, 'rcptdom-c2-' + name) == 250,
             '%s: the second message to c.test is within 2/1h' % name)
    c.cmd('MAIL FROM:<s@example.org>')
    d1 = c.cmd('RCPT TO:<d1@d.test>')
    c4 = c.cmd('RCPT TO:<c4@c.test>')
    mt.check(d1[0] == 250 and c4[0] == 451 and
             '4.7.1 rate limit exceeded for recipient_domain c.test: 2/1h' in c4[1],
             '%s: the third message: d.test %r, c.test %r' % (name, d1, c4))
    mt.check(data(c, 'rcptdom-d-' + name) == 250, '%s: the third message delivered to d.test' % name)
    c.cmd('QUIT')
    c.close()
    if name == 'redis':
        keys = sorted(k.decode() for k in mt.redis_cmd(red.port, 'KEYS', 'mxgate:rl:*'))
        mt.check('mxgate:rl:recipients:recipient_domain:4/1h:a.test' in keys and
                 'mxgate:rl:messages:recipient_domain:2/1h:c.test' in keys,
                 'redis: the buckets are keyed by the normal form (%s)' % keys)
    mt.check(mx.alive(), '%s: mxgate alive' % name)
    mx.stop()

rc, out = mt.config_check(dict(cfg, listen=[{'address': '127.0.0.1:2525'}],
                               ratelimit={'rules': [{'key': 'recipient_domain', 'count': 'bytes',
                                                     'limit': '1M/1h'}]}), 'rcptdom-bad')
mt.check(rc == 1 and 'ratelimit.rules[0]: recipient_domain is judged at RCPT' in out,
         'mxgate -t: recipient_domain with bytes is refused (%s)' % out[:300])
mt.finish()
