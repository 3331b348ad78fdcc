#!/usr/bin/env python3
"""limits.connection_limit_exceptions (Postfix's smtpd_client_connection_limit_exceptions):
a campus NAT behind one address is not capped by max_connections_per_ip. With
max_connections_per_ip 1, two concurrent PROXY v2 clients from a listed address (a file:
item) are both greeted; from an unlisted one the second gets 421 as before. The file is
re-read on SIGHUP: after listing the other network instead, the roles swap. An inline
IPv6 prefix exempts its clients too.
Peers: smtp-sink behind."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink(name='sink-connexc')
lst = os.path.join(mt.TMP, 'campus.cidr')
with open(lst, 'w') as f:
    f.write('# the campus NAT\n198.18.40.0/24\n')
cfg = mt.proxied_config([sink.url], limits={
    'max_connections_per_ip': 1,
    'connection_limit_exceptions': ['file:' + lst, '2001:db8:40::/48']})
mx = mt.Mxgate(cfg, 'mx-connexc')


def two(src):
    """Greetings of two concurrent sessions from src (both kept open until both answered)."""
    a = mt.Client(mx.port, proxy_src=src, timeout=15)
    b = mt.Client(mx.port, proxy_src=src, timeout=15)
    got = (a.greeting, b.greeting)
    a.close()
    b.close()
    return got


def disconnects(src):
    return mx.count_log(r'event=disconnect client=%s ' % src.replace('.', r'\.'))


def check_two(src, listed, what):
    before = disconnects(src)
    (ga, gb) = two(src)
    if listed:
        mt.check(ga[0] == 220 and gb[0] == 220, '%s: %s listed, both greeted: %r %r' % (what, src, ga, gb))
    else:
        mt.check(ga[0] == 220 and gb[0] == 421 and 'too many connections from %s' % src in gb[1],
                 '%s: %s unlisted, the second refused: %r %r' % (what, src, ga, gb))
    # both sessions gone (their slots given back) before the next pair
    mt.check(mt.wait_for(lambda: disconnects(src) >= before + 2, 10), '%s: %s sessions ended' % (what, src))


check_two('198.18.40.7', True, 'start')
check_two('198.18.41.7', False, 'start')
check_two('2001:db8:40::7', True, 'start')
check_two('2001:db8:41::7', False, 'start')

# the file now lists the other network: re-read on SIGHUP
with open(lst, 'w') as f:
    f.write('198.18.41.0/24\n')
start = len(mx.log())
mx.reload(cfg)
mt.check(mx.wait_log(r'event=reloaded', 10, start) is not None, 'reloaded')
check_two('198.18.41.7', True, 'after reload')
check_two('198.18.40.7', False, 'after reload')
mt.check(mx.alive(), 'mxgate alive')
mx.stop()
mt.finish()
