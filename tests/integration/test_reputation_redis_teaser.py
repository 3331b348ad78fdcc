#!/usr/bin/env python3
"""A client Redis reputation refuses at connect, with the pregreet test on: the teaser goes
out while Redis answers (docs/smtp-edge.md: reputation with a Redis store is asked while
the teaser's delay runs), so what the client hears after it must still be the documented
refusal and the documented log line.

A real redis-server holding a poor record for each client (20 rejected messages, score
-0.87 <= bad_threshold -0.5); one mxgate per bad_action:
- tempfail: `421 4.7.0 poor reputation of IP, try again later` (after the teaser's line,
  the greeting ended first or not at all — one code per reply), closed;
  `event=reputation ... class=bad action=tempfail`;
- reject: greeted, the MAIL refused `550 5.7.1 poor reputation of IP`;
- drop: `521 5.7.1 poor reputation of IP`, closed.
No timing decides a check."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
be = mt.Backend()


def seed(ip):
    now = int(time.time() * 1000)
    mt.redis_cmd(red.port, 'HSET', 'mxgate:rep:ip:' + ip, 'a', '0', 'r', '20', 't', '0', 's', '0', 'v', '0',
                 'ts', str(now))


for n, action in enumerate(('tempfail', 'reject', 'drop')):
    ip = '198.18.99.%d' % (n + 1)
    seed(ip)
    mx = mt.Mxgate(mt.proxied_config([be.url], pregreet={'delay': '2s', 'action': 'reject'},
                                     reputation={'store': 'redis://127.0.0.1:%d' % red.port, 'timeout': '3s',
                                                 'bad_action': action}), 'mx-' + action)
    if action == 'reject':
        c = mt.Client(mx.port, proxy_src=ip, greet=False, timeout=mt.slack(15))
        lines = []
        while True:
            line = c._line()
            if line is None:
                break
            lines.append(line)
            if line.startswith('220 '):
                break
        mt.check(lines and lines[-1].startswith('220 '), 'reject: greeted (%r)' % lines)
        r = c.cmd('EHLO client.test')
        r = c.cmd('MAIL FROM:<a@client.test>')
        mt.check(r[0] == 550 and 'poor reputation of %s' % ip in r[1],
                 'reject: MAIL refused 550 5.7.1 poor reputation of %s (%r)' % (ip, r))
        c.close()
    else:
        heard = mt.proxy_hears(mx.port, ip, 15)
        lines = heard.splitlines()
        code = '421 4.7.0 poor reputation of %s, try again later' % ip if action == 'tempfail' else \
            '521 5.7.1 poor reputation of %s' % ip
        mt.check(lines and lines[-1].startswith(code),
                 '%s: the last reply is %r (%r)' % (action, code, heard))
        mt.check(all(x.startswith('220') for x in lines[:-1]) and
                 (len(lines) == 1 or lines[-2].startswith('220 ')),
                 '%s: before it at most the greeting, ended (one code per reply) (%r)' % (action, heard))
    mt.check(mx.wait_log(r'event=reputation client=%s score=-0\.\d+ class=bad action=%s' % (ip.replace('.', r'\.'), action),
                         5) is not None, '%s: logged event=reputation ... class=bad action=%s' % (action, action))
    mx.stop()
mt.finish()
