#!/usr/bin/env python3
"""A client the connect stage refuses at once, with the pregreet test on, hears the 421 alone.

Until session 25 the pregreet teaser (`220-`) went out before the connect stage ran: a client
refused there by a check that decides at once (a local rate limit's concurrency or connection
rate) heard the teaser, then the greeting's final `220 ` line (one code per reply, RFC 5321
4.2.1), then the `421` — a whole greeting before the refusal, where postscreen and anvil send
the 421 first. Now the teaser waits for the connect stage's synchronous part:

- ratelimit `count: concurrency`, the client's second connection: `421` alone, then closed;
  the log line is the one it was (event=tempfail stage=connect reason=ratelimit ... code=421)
- ratelimit `count: connections` past its rate: `421` alone
- limits.max_connections_per_ip (counted before the connect stage, as before): `421` alone
- a client not refused still gets the teaser, and the final line after the delay
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

be = mt.Backend()


def gate(name, **kw):
    return mt.Mxgate(mt.proxied_config([be.url], pregreet={'delay': '3s', 'action': 'reject'}, **kw), name)




def held(port, src):
    """A client from src that has read the teaser (its connect stage ran) and stays connected."""
    c = mt.Client(port, proxy_src=src, greet=False)
    first = c._line()
    mt.check(first is not None and first.startswith('220-'), 'the first client from %s is teased: %r' % (src, first))
    return c


def only_421(what, heard):
    lines = heard.splitlines()
    mt.check(len(lines) == 1 and lines[0].startswith('421 4.7.0'),
             '%s: the 421 alone, no teaser or greeting before it: %r' % (what, heard))


# ratelimit concurrency: a client's second connection while its first is open
mx = gate('mx-concurrency', ratelimit={'rules': [{'key': 'ip', 'count': 'concurrency', 'limit': 1}]})
first = held(mx.port, '198.18.95.1')
only_421('concurrency 1, the second connection', mt.proxy_hears(mx.port, '198.18.95.1', 10))
mt.check(mx.wait_log(r'event=tempfail stage=connect reason=ratelimit client=198\.18\.95\.1 code=421 '
                     r'reply="4\.7\.0 rate limit exceeded for ip 198\.18\.95\.1: 1, try again later"'),
         'logged as before: event=tempfail stage=connect reason=ratelimit ... code=421 reply=...')
# another client is tested as ever: the teaser, then the final line after the delay
f, last, waited, c = mt.teased(mx.port, '198.18.95.9')
mt.check(f is not None and f.startswith('220-') and last is not None and last.startswith('220 '),
         'a client not refused gets the teaser, then the final 220 line: %r %r' % (f, last))
c.ehlo('client.example.org')
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('teased'), client=c)
mt.check(r[0] == 250 and be.by_tag('teased'), 'and is served: %r' % (r,))
c.close()
first.close()
mx.stop()

# ratelimit connections: past the rate
mx = gate('mx-conn-rate', ratelimit={'rules': [{'key': 'ip', 'count': 'connections', 'limit': '1/1h',
                                                'action': 'tempfail'}]})
first = held(mx.port, '198.18.95.2')
only_421('connections 1/1h, the second connection', mt.proxy_hears(mx.port, '198.18.95.2', 10))
first.close()
mx.stop()

# limits.max_connections_per_ip (the session counts it before the connect stage runs)
mx = gate('mx-per-ip', limits={'max_connections_per_ip': 1})
first = held(mx.port, '198.18.95.3')
only_421('max_connections_per_ip 1, the second connection', mt.proxy_hears(mx.port, '198.18.95.3', 10))
mt.check(mx.wait_log(r'event=tempfail stage=connect reason=max_connections_per_ip client=198\.18\.95\.3'),
         'logged event=tempfail stage=connect reason=max_connections_per_ip')
first.close()
mx.stop()
mt.finish()
