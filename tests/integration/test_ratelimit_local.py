#!/usr/bin/env python3
"""store: local on one mxgate with two workers: connection rate (421 4.7.0 at the greeting),
concurrency (slots given back when sessions end), recipients per sender domain (reject
550 5.7.1 at RCPT), bytes per IP (451 at end of data), limits per client independent, and
the delay action holding a reply (tarpit), and an invalid rule refused by `mxgate -t`."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
ratelimit = {'store': 'local', 'rules': [
    {'key': 'ip', 'count': 'connections', 'limit': '5/60s', 'action': 'tempfail'},
    {'key': 'ip_prefix', 'count': 'concurrency', 'limit': 2, 'prefix_v4': 24},
    {'key': 'sender_domain', 'count': 'recipients', 'limit': '3/60s', 'action': 'reject'},
    {'key': 'ip', 'count': 'bytes', 'limit': '2K/60s'},
    {'key': 'recipient', 'count': 'recipients', 'limit': '1/1h', 'action': 'delay', 'delay': '1500ms'}]}
n = mt.Mxgate(mt.proxied_config([be.url], ratelimit=ratelimit), 'node')
port = n.port


def client(src):
    return mt.Client(port, proxy_src=src, timeout=15)


def disconnects(src):
    return n.count_log(r'event=disconnect client=%s ' % src.replace('.', r'\.'))


# connections 5/60s for 198.18.1.1: five greetings, then 421 4.7.0
codes = []
for i in range(7):
    c = client('198.18.1.1')
    code, text = c.greeting
    codes.append(code)
    if code == 421:
        mt.check('4.7.0 rate limit exceeded for ip 198.18.1.1: 5/60s' in text, 'connect refusal text: %r' % text)
    c.close()
    # the session ends (its concurrency slot is given back) before the next one starts
    mt.wait_for(lambda: disconnects('198.18.1.1') > i, 10)
mt.check(codes == [220] * 5 + [421] * 2, 'connections 5/60s: greetings %s' % codes)

# concurrency 2 per /24: a third simultaneous client of 198.18.2.0/24 is refused, a slot
# comes back when a session ends
a, b = client('198.18.2.1'), client('198.18.2.2')
mt.check(a.greeting[0] == 220 and b.greeting[0] == 220, 'first two concurrent sessions served')
c = client('198.18.2.3')
code, text = c.greeting
mt.check(code == 421 and 'concurrency' in n.log(), 'third concurrent session of the /24 refused: %s %r' % (code, text))
c.close()
a.cmd('QUIT')
a.close()
mt.check(mt.wait_for(lambda: disconnects('198.18.2.1') == 1, 10), 'the first session ended')
d = client('198.18.2.4')
mt.check(d.greeting[0] == 220, 'the slot was given back when a session ended: %s' % (d.greeting,))
d.close()
b.close()

# recipients 3/60s per sender domain, reject: the 4th RCPT for example.net gets 550 5.7.1
c = client('198.18.3.1')
c.ehlo('client.example.org')
c.cmd('MAIL FROM:<x@Example.NET>')
rc = [c.cmd('RCPT TO:<r%d@example.test>' % i) for i in range(5)]
mt.check([x[0] for x in rc] == [250, 250, 250, 550, 550], 'recipients 3/60s: %r' % rc)
mt.check('5.7.1 rate limit exceeded for sender_domain example.net: 3/60s' in rc[3][1],
         'recipient refusal text: %r' % (rc[3][1],))
c.cmd('RSET')
c.cmd('MAIL FROM:<x@example.org>')
mt.check(c.cmd('RCPT TO:<ok@example.test>')[0] == 250, 'another sender domain is not limited')
c.close()

# delay (tarpit): recipients 1/1h per recipient; the recipient's second RCPT still passes,
# its reply held 1.5 s (every other recipient here is distinct, so nothing else is held)
c = client('198.18.5.1')
c.ehlo('slow.example.org')
c.cmd('MAIL FROM:<a@tarpit.example>')
r1 = c.cmd('RCPT TO:<tarpit@example.test>')
c.cmd('RSET')
c.cmd('MAIL FROM:<a@tarpit.example>')
t = time.time()
r2 = c.cmd('RCPT TO:<tarpit@example.test>')
slow = time.time() - t
c.close()
mt.check(r1[0] == 250 and r2[0] == 250 and slow >= 1.4,
         'delay action: %r, then %r held %.2fs (want 1.5 s)' % (r1, r2, slow))
mt.check(n.count_log(r'event=ratelimit .*action=delay') == 1, 'only the second RCPT was delayed')

# bytes 2K/60s per IP: a 1.5K message passes, the next one is refused at end of data
big = 'x' * 1500 + '\r\n'
r1 = mt.send_mail(port, 'a@example.org', ['by1@example.test'], mt.message('bytes1', big), proxy_src='198.18.4.1')
r2 = mt.send_mail(port, 'a@example.org', ['by2@example.test'], mt.message('bytes2', big), proxy_src='198.18.4.1')
mt.check(r1[0] == 250 and r2[0] == 451 and r2.stage == 'eom', 'bytes 2K/60s: %r then %r (%s)' % (r1, r2, r2.stage))
mt.check(n.alive(), 'mxgate alive after a refusal at end of data')

# the config check refuses a rate for concurrency and a connection count keyed by sender
bad = {'rules': [{'key': 'ip', 'count': 'concurrency', 'limit': '10/60s'},
                 {'key': 'sender', 'count': 'connections', 'limit': '10/60s'},
                 {'key': 'ip', 'count': 'messages'}]}
rc, out = mt.config_check(mt.config([be.url], listen=['127.0.0.1:2525'], ratelimit=bad), 'bad')
mt.check(rc == 1 and out.count('ratelimit.rules') >= 3, 'mxgate -t on bad rules: rc=%s %r' % (rc, out))
n.stop()
mt.finish()
