#!/usr/bin/env python3
"""An IPv6 client is one /64 (limits.client_ipv6_prefix), not one address, wherever a client
address is a key: limits.max_connections_per_ip, the rate limits' `ip` key (and its
concurrency), and reputation's per-client record. Before, each counted per /128, and a
client holding a /64 (every IPv6 customer does) rotated addresses to get around all of them.
IPv4 clients are still one address each. client_ipv6_prefix: 128 is the old behaviour.
Postfix 3.8+ does the same for anvil (smtpd_client_ipv6_prefix_length); greylisting has
grouped by network all along (greylist.prefix_v6)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
NET = '2001:db8:77:1::'
OTHER = '2001:db8:77:2::1'


def cfg(prefix=None, **kw):
    limits = {'max_connections_per_ip': 2}
    if prefix is not None:
        limits['client_ipv6_prefix'] = prefix
    return mt.proxied_config([be.url], limits=limits, **kw)


rc, out = mt.config_check(cfg(16), 'bad')
mt.check(rc != 0 and 'limits.client_ipv6_prefix: must be between 32 and 128' in out,
         'mxgate -t refuses client_ipv6_prefix 16: %s' % out.strip()[-160:])


def greet(mx, src):
    c = mt.Client(mx.port, proxy_src=src, timeout=15)
    return c, c.greeting


def send(mx, src, tag):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src, timeout=15)


# ---- max_connections_per_ip (default prefix: /64) and the rate limit key ip
mx = mt.Mxgate(cfg(ratelimit={'rules': [{'key': 'ip', 'count': 'messages', 'limit': '2/1h'}]}), 'conn')
held = []
for i in (1, 2):
    c, g = greet(mx, NET + '%d' % i)
    held.append(c)
    mt.check(g[0] == 220, 'session %d from the /64 greeted: %r' % (i, g))
c, g = greet(mx, NET + '3')
c.close()
mt.check(g[0] == 421, 'a third address of the same /64 is over max_connections_per_ip 2: %r' % (g,))
c, g = greet(mx, OTHER)
c.close()
mt.check(g[0] == 220, 'another /64 is another client: %r' % (g,))
c, g = greet(mx, '198.18.77.1')
held.append(c)
c, g2 = greet(mx, '198.18.77.2')
held.append(c)
c, g3 = greet(mx, '198.18.77.3')
held.append(c)
mt.check([g[0], g2[0], g3[0]] == [220] * 3, 'IPv4 clients are one address each: %s' % [g[0], g2[0], g3[0]])
for c in held:
    c.close()
mt.check(mt.wait_for(lambda: greet(mx, NET + '4')[1][0] == 220, timeout=10),
         'once the sessions ended the /64 is served again')
# messages 2/1h per ip: two addresses of the /64 use it up for the third
codes = [send(mx, NET + '%d' % (10 + i), 'rl%d' % i)[0] for i in range(3)]
mt.check(codes == [250, 250, 451], 'the rate limit key ip counts the /64: %s' % codes)
m = mx.wait_log(r'event=ratelimit key=ip value=(\S+) ', 5)
mt.check(m and m.group(1) == '2001:db8:77:1::/64', 'the key is the /64: %s' % (m and m.group(1)))
mt.check(send(mx, OTHER, 'rl-other')[0] == 250, 'another /64 has its own bucket')
mx.stop()

# ---- client_ipv6_prefix 128: per address, as before
mx = mt.Mxgate(cfg(128), 'per-address')
held = [greet(mx, NET + '%d' % i) for i in (1, 2, 3)]
mt.check([g[0] for _, g in held] == [220] * 3, 'with /128 three addresses of one /64 are three clients: %s'
         % [g[0] for _, g in held])
for c, _ in held:
    c.close()
mx.stop()

# ---- reputation: the client's record is its /64 (the network record weighs nothing here)
rep = {'store': 'lmdb:' + os.path.join(mt.TMP, 'rep'), 'flush_interval': '50ms', 'bad_action': 'tempfail',
       'bad_threshold': -0.45, 'prefix_weight': 0}
mx = mt.Mxgate(cfg(reputation=rep, ratelimit={'rules': [{'key': 'ip_prefix', 'prefix_v6': 0, 'prefix_v4': 0,
                                                         'count': 'bytes', 'limit': '1/1h', 'action': 'reject'}]}),
               'rep')
codes = []
deadline = time.time() + mt.slack(30)
while time.time() < deadline and len(codes) < 500 and (not codes or codes[-1] != 421):
    codes.append(send(mx, NET + '5', 'bad%d' % len(codes))[0])
mt.check(codes and codes[-1] == 421, 'a client whose messages are rejected turns bad: %s' % codes[-4:])
c, g = greet(mx, NET + '6')
c.close()
mt.check(g[0] == 421 and 'poor reputation of 2001:db8:77:1::6' in g[1],
         'another address of its /64 has its reputation: %r' % (g,))
c, g = greet(mx, OTHER)
c.close()
mt.check(g[0] == 220, 'another /64 does not: %r' % (g,))
mx.stop()
mt.finish()
