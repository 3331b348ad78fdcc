#!/usr/bin/env python3
"""A HELO-keyed connection limit refuses the HELO name for the whole session: a client
whose EHLO was refused (451 4.7.1 rate limit exceeded for helo NAME) used to pass by
saying HELO (or EHLO) NAME again, because only the session's first HELO was checked. A
HELO is still counted once per session when it is admitted (an EHLO then a HELO fallback
with the same name is one connection), and a refused one consumes nothing. Local table
and Redis alike; with action reject the refusal is 550 5.7.1, and the session over its
limit can still RSET, NOOP and QUIT."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
be = mt.Backend()

for store in ('local', 'redis://127.0.0.1:%d' % red.port):
    kind = store.split(':')[0]
    name = '%s.example.org' % kind
    n = mt.Mxgate(mt.proxied_config([be.url], ratelimit={'store': store, 'rules': [
        {'key': 'helo', 'count': 'connections', 'limit': '2/1h', 'action': 'tempfail'}]}), 'node-' + kind)

    # an EHLO then a HELO with the same name in one session: one connection of the name
    c = mt.Client(n.port, proxy_src='198.18.98.1')
    mt.check(c.ehlo(name)[0] == 250 and c.cmd('HELO ' + name)[0] == 250, '%s: EHLO then HELO in one session' % kind)
    c.close()
    c = mt.Client(n.port, proxy_src='198.18.98.2')
    mt.check(c.ehlo(name)[0] == 250, '%s: the second session of %s is admitted (2/1h)' % (kind, name))
    c.close()

    c = mt.Client(n.port, proxy_src='198.18.98.3')
    code, text = c.ehlo(name)
    mt.check(code == 451 and '4.7.1 rate limit exceeded for helo %s: 2/1h' % name in text,
             '%s: the third session of %s: EHLO refused %s %r' % (kind, name, code, text))
    again = [c.cmd('HELO ' + name)[0], c.ehlo(name.upper())[0]]
    mt.check(again == [451, 451], '%s: HELO / EHLO %s again in the same session: still refused %s' % (kind, name, again))
    mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 503, '%s: no MAIL without an admitted HELO' % kind)
    mt.check([c.cmd(x)[0] for x in ('RSET', 'NOOP')] == [250, 250], '%s: RSET and NOOP still answered' % kind)
    # another name is another count (the client chooses it): admitted, and the session goes on
    mt.check(c.ehlo('other.example.org')[0] == 250, '%s: EHLO with another name admitted' % kind)
    r = mt.send_mail(n.port, 'a@example.org', ['b@example.test'], mt.message('helo-' + kind), client=c)
    mt.check(r[0] == 250, '%s: and its mail delivered: %r' % (kind, r))
    mt.check(c.cmd('QUIT')[0] == 221, '%s: QUIT' % kind)
    c.close()
    mt.check(n.count_log(r'event=ratelimit key=helo value=%s ' % name.replace('.', r'\.')) == 3,
             '%s: three refusals logged' % kind)
    n.stop()
mt.finish()
