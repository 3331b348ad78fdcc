#!/usr/bin/env python3
"""store: local on one mxgate with two workers: connection rate (421 4.7.0 at the greeting),
concurrency (slots given back when sessions end), recipients per sender domain (reject
550 5.7.1 at RCPT), bytes per IP (451 at end of data), limits per client independent, and
the delay action holding a reply (tarpit), and an invalid rule refused by `mxgate -t`."""
import os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ratelimit_harness as h

h.need()
be = h.Backend()
extra = ('ratelimit:\n  store: local\n  rules:\n'
         '    - { key: ip, count: connections, limit: 5/60s, action: tempfail }\n'
         '    - { key: ip_prefix, count: concurrency, limit: 2, prefix_v4: 24 }\n'
         '    - { key: sender_domain, count: recipients, limit: 3/60s, action: reject }\n'
         '    - { key: ip, count: bytes, limit: 2K/60s }\n'
         '    - { key: recipient, count: recipients, limit: 1/1h, action: delay, delay: 1500ms }\n')
port = h.free_port()
n = h.mxgate(h.config(port, be.port, extra), 'node', port)

# connections 5/60s for 198.18.1.1: five greetings, then 421 4.7.0
codes = []
for i in range(7):
    c = h.Client(port, '198.18.1.1')
    code, text = c.reply()
    codes.append(code)
    if code == 421 and '4.7.0 rate limit exceeded for ip 198.18.1.1: 5/60s' not in text:
        h.fail('connect refusal text: %r' % text)
    c.close()
    time.sleep(0.05)          # let the session end (its concurrency slot is given back)
if codes != [220] * 5 + [421] * 2:
    h.fail('connections 5/60s: greetings %r' % codes)

# concurrency 2 per /24: a third simultaneous client of 198.18.2.0/24 is refused, a slot
# comes back when a session ends
a, b = h.Client(port, '198.18.2.1'), h.Client(port, '198.18.2.2')
if a.reply()[0] != 220 or b.reply()[0] != 220:
    h.fail('first two concurrent sessions refused')
c = h.Client(port, '198.18.2.3')
code, text = c.reply()
if code != 421 or 'concurrency' not in h.logtext('node'):
    h.fail('third concurrent session of the /24 got %d %r' % (code, text))
c.close()
a.cmd('QUIT')
a.close()
time.sleep(0.3)
d = h.Client(port, '198.18.2.4')
if d.reply()[0] != 220:
    h.fail('the slot was not given back when a session ended')
d.close()
b.close()

# recipients 3/60s per sender domain, reject: the 4th RCPT for example.net gets 550 5.7.1
c = h.Client(port, '198.18.3.1')
c.reply()
c.cmd('EHLO client.example.org')
c.cmd('MAIL FROM:<x@Example.NET>')
rc = [c.cmd('RCPT TO:<r%d@example.test>' % i) for i in range(5)]
if [x[0] for x in rc] != [250, 250, 250, 550, 550]:
    h.fail('recipients 3/60s: %r' % rc)
if '5.7.1 rate limit exceeded for sender_domain example.net: 3/60s' not in rc[3][1]:
    h.fail('recipient refusal text: %r' % (rc[3][1],))
c.cmd('RSET')
c.cmd('MAIL FROM:<x@example.org>')
if c.cmd('RCPT TO:<ok@example.test>')[0] != 250:
    h.fail('another sender domain was limited too')
c.close()

# delay (tarpit): recipients 1/1h per recipient; the recipient's second RCPT still passes,
# its reply late (every other recipient here is distinct, so nothing else is held)
c = h.Client(port, '198.18.5.1')
c.reply()
c.cmd('EHLO slow.example.org')
c.cmd('MAIL FROM:<a@tarpit.example>')
t = time.time()
r1 = c.cmd('RCPT TO:<tarpit@example.test>')
fast = time.time() - t
c.cmd('RSET')
c.cmd('MAIL FROM:<a@tarpit.example>')
t = time.time()
r2 = c.cmd('RCPT TO:<tarpit@example.test>')
slow = time.time() - t
c.close()
if r1[0] != 250 or r2[0] != 250 or fast > 1.0 or slow < 1.4:
    h.fail('delay action: %r in %.2fs then %r in %.2fs (want the second held 1.5s)' % (r1, fast, r2, slow))

# bytes 2K/60s per IP: a 1.5K message passes, the next one is refused at end of data
big = 'x' * 1500
r1 = h.send(port, '198.18.4.1', 'bytes1 ' + big, rcpts=('by1@example.test',))
r2 = h.send(port, '198.18.4.1', 'bytes2 ' + big, rcpts=('by2@example.test',))
if r1[0] != 250 or r2[0] != 451 or r2[2] != 'eom':
    h.fail('bytes 2K/60s: %r then %r' % (r1[:1], r2))

time.sleep(0.3)
if n.poll() is not None:
    h.fail('mxgate died (rc %r) after a refusal at end of data' % n.returncode)

# the config check refuses a rate for concurrency and a connection count keyed by sender
bad = h.config(port, be.port, 'ratelimit:\n  rules:\n    - { key: ip, count: concurrency, limit: 10/60s }\n'
               '    - { key: sender, count: connections, limit: 10/60s }\n    - { key: ip, count: messages }\n')
path = os.path.join(h.TMP, 'bad.yaml')
open(path, 'w').write(bad)
r = subprocess.run([h.BIN, '-t', '-c', path], capture_output=True, text=True, timeout=20)
out = r.stdout + r.stderr
if r.returncode != 1 or out.count('ratelimit.rules') < 3:
    h.fail('mxgate -t on bad rules: rc=%d %r' % (r.returncode, out))
h.ok('connections, concurrency, recipients, bytes limits and the tarpit enforced locally; bad rules refused by -t')
