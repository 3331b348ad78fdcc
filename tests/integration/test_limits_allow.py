#!/usr/bin/env python3
"""ratelimit.allow: networks no rate limit counts nor refuses (connections, concurrency,
messages, recipients, bytes), as Postfix exempts $mynetworks from anvil's limits
(smtpd_client_event_limit_exceptions) and rspamd's ratelimit has whitelisted_ip. Before,
the only way around a limit was reputation.allow, which skips the connect stage's checks
only: an allowed client still hit the message and recipient limits. A client outside the
list is limited as before; a reload changes the list."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()


def cfg(allow):
    return mt.proxied_config([be.url], ratelimit={'store': 'local', 'allow': allow, 'rules': [
        {'key': 'ip', 'count': 'connections', 'limit': '3/1h'},
        {'key': 'ip', 'count': 'concurrency', 'limit': 1},
        {'key': 'ip', 'count': 'messages', 'limit': '1/1h'},
        {'key': 'sender', 'count': 'recipients', 'limit': '1/1h', 'action': 'reject'}]})


n = mt.Mxgate(cfg(['198.18.72.0/24', '2001:db8:72::/48']), 'node')


def session_codes(src, tag):
    """Two sessions at once, each with two messages of two recipients."""
    a, b = mt.Client(n.port, proxy_src=src), mt.Client(n.port, proxy_src=src)
    codes = [a.greeting[0], b.greeting[0]]
    for i, c in enumerate((a, b)):
        if c.greeting[0] != 220:
            continue
        c.ehlo('client.example.org')
        for j in range(2):
            r = mt.send_mail(n.port, 'a@example.org', ['r1@example.test', 'r2@example.test'],
                             mt.message('%s-%d-%d' % (tag, i, j)), client=c)
            codes.append((r[0], tuple(r.rcpt_codes)))
    for c in (a, b):
        c.close()
    return codes


ok = [(250, (250, 250))] * 4
got = session_codes('198.18.72.1', 'allowed')
mt.check(got == [220, 220] + ok, 'an allowed client: two sessions at once, 4 messages of 2 recipients: %s' % got)
mt.check(n.count_log(r'event=ratelimit ') == 0, 'no rate limit logged for it')
got = session_codes('198.18.73.1', 'other')
mt.check(got[:2] == [220, 421] and got[2] == (250, (250, 550)) and got[3][0] == 550,
         'a client outside the list is limited (concurrency 1, recipients 1/1h): %s' % got)

# a reload takes the client out of the list: limited from the next session on
start = n.log_size()
n.reload(cfg(['2001:db8:72::/48']))
mt.check(n.wait_log(r'event=reloaded', 10, start) is not None, 'reloaded')
got = session_codes('198.18.72.1', 'after')
mt.check(got[:2] == [220, 421], 'after the reload the client is counted: %s' % got)

rc, out = mt.config_check(mt.config([be.url], listen=['127.0.0.1:2525'], ratelimit={'allow': ['198.18.300.0/24'], 'rules': [
    {'key': 'ip', 'count': 'concurrency', 'limit': 1}]}), 'bad')
mt.check(rc == 1 and 'ratelimit.allow' in out, 'mxgate -t names a bad CIDR: %r' % out)
n.stop()
mt.finish()
