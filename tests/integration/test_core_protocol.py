#!/usr/bin/env python3
"""Proxy core, the SMTP server side (RFC 5321 and extensions) driven by a raw client.

- EHLO extensions, HELO, NOOP, RSET, VRFY (252), HELP, unknown commands, bad sequences.
- PIPELINING (RFC 2920): a whole transaction in one write, replies in order.
- a session written byte by byte arrives intact.
- SMTP smuggling: \\n.\\n, \\r.\\r, \\n.\\r\\n, \\r\\n.\\n, \\r.\\r\\n, \\r\\n.\\r never yield two messages;
  bare_lf normalize -> exactly one message, CRLF only; bare_lf reject -> 550 5.6.0, nothing
  delivered, the rest of the message never read as commands.
- limits: over-long command lines (500 5.5.2), max_errors (421 + disconnect), SIZE at MAIL and
  the real size after DATA (552, nothing delivered, session usable), max_recipients (452), max_connections
  and max_connections_per_ip (421), command_timeout (421 4.4.2) and data_timeout.
- 8BITMIME bodies pass byte-exact; SMTPUTF8 addresses pass through.
- junk commands, clients vanishing mid-transaction (RST), 150 concurrent sessions; IPv6 listener."""
import os
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()

FROM = 'sender@example.org'
RCPT = 'rcpt@example.test'

be = mt.Backend(name='proto')
mx = mt.Mxgate(mt.config([be.url], limits={
    'max_errors': 4, 'max_recipients': 3, 'max_message_size': '10K', 'command_timeout': '3s',
    'data_timeout': '3s', 'bare_lf': 'reject'}), name='mx-proto')


def ids():
    return mt.message_ids(m['data'] for m in be.messages)


# ---------------------------------------------------------------- basic verbs
c = mt.Client(mx.port)
mt.check(c.greeting[0] == 220 and 'mx.test' in c.greeting[1], 'greeting 220 with the hostname (%s)' % (c.greeting,))
code, text = c.ehlo()
exts = [l[4:].split(' ')[0].upper() for l in text.split('\n')[1:]]
for e in ('PIPELINING', 'SIZE', '8BITMIME', 'ENHANCEDSTATUSCODES'):
    mt.check(e in exts, 'EHLO announces %s' % e)
mt.check('SIZE 10240' in text, 'SIZE announces max_message_size (10K = 10240)')
mt.check('STARTTLS' not in exts, 'no STARTTLS on a plain listener')
mt.check(c.cmd('NOOP')[0] == 250, 'NOOP 250')
mt.check(c.cmd('RSET')[0] == 250, 'RSET 250')
mt.check(c.cmd('VRFY postmaster')[0] == 252, 'VRFY 252')
mt.check(c.cmd('HELP')[0] == 214, 'HELP 214')
mt.check(c.cmd('RCPT TO:<%s>' % RCPT)[0] == 503, 'RCPT before MAIL: 503')
mt.check(c.cmd('DATA')[0] == 503, 'DATA before MAIL: 503')
mt.check(c.cmd('MAIL FROM:<%s>' % FROM)[0] == 250, 'MAIL 250')
mt.check(c.cmd('MAIL FROM:<%s>' % FROM)[0] == 503, 'nested MAIL: 503')
mt.check(c.cmd('QUIT')[0] == 221 and c.is_closed(), 'QUIT 221 and close')
c.close()
c = mt.Client(mx.port)
mt.check(c.cmd('HELO old.client.test')[0] == 250, 'HELO 250')
code, text = mt.send_mail(mx.port, FROM, [RCPT], mt.message('helo1'), client=c)
mt.check(code == 250, 'a transaction after HELO delivers (%s)' % text)
c.close()
c = mt.Client(mx.port)
mt.check(c.cmd('MAIL FROM:<%s>' % FROM)[0] == 503, 'MAIL before EHLO: 503')
mt.check(c.cmd('EHLO')[0] == 501, 'EHLO without a domain: 501')
c.close()

# ---------------------------------------------------------------- pipelining
c = mt.Client(mx.port)
data = mt.message('pipe1')
c.send('EHLO pipe.test\r\nMAIL FROM:<%s>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n' % FROM)
replies = [c.reply() for _ in range(5)]
mt.check([r[0] for r in replies] == [250, 250, 250, 250, 354],
         'PIPELINING: EHLO MAIL RCPT RCPT DATA in one write -> 250 250 250 250 354 in order (%s)' % [r[0] for r in replies])
c.send(mt.stuff(data) + b'MAIL FROM:<%s>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n' % FROM.encode())
replies = [c.reply() for _ in range(4)]
mt.check([r[0] for r in replies] == [250, 250, 250, 354], 'PIPELINING: the dot and the next MAIL RCPT DATA in one write (%s)' % [r[0] for r in replies])
c.send(mt.stuff(mt.message('pipe2')) + b'QUIT\r\n')
replies = [c.reply() for _ in range(2)]
mt.check([r[0] for r in replies] == [250, 221], 'PIPELINING: the second message and QUIT -> 250 221')
c.close()
c = mt.Client(mx.port)
whole = (b'EHLO pipe.test\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n' % (FROM.encode(), RCPT.encode())
         + mt.stuff(mt.message('pipe3')) + b'QUIT\r\n')
c.send(whole)
replies = [c.reply()[0] for _ in range(6)]
mt.check(replies == [250, 250, 250, 354, 250, 221],
         'a whole session (EHLO to QUIT, message included) in one write: replies in order (%s)' % replies)
c.close()
got = ids()
mt.check({'pipe1', 'pipe2', 'pipe3'} <= got, 'the pipelined messages were delivered (%s)' % sorted(got))
pipe1 = [m for m in be.messages if b'<pipe1@' in m['data']]
mt.check(len(pipe1) == 1 and pipe1[0]['accepted_rcpts'] == ['a@example.test', 'b@example.test'],
         'the pipelined message went once with both recipients')

# ---------------------------------------------------------------- byte by byte
c = mt.Client(mx.port)
c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
data = mt.message('bytes', body='line one\r\n.dotted\r\nline three\r\n')
session = (b'EHLO bytes.test\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\n' % (FROM.encode(), RCPT.encode()))
for i in range(len(session)):
    c.send(session[i:i + 1])
    time.sleep(0.001)
rs = [c.reply()[0] for _ in range(3)]
c.send(b'D')
time.sleep(0.01)
c.send(b'ATA\r')
time.sleep(0.01)
c.send(b'\n')
rs.append(c.reply()[0])
payload = mt.stuff(data)
for i in range(len(payload)):
    c.send(payload[i:i + 1])
    if i % 4 == 0:
        time.sleep(0.001)
rs.append(c.reply()[0])
mt.check(rs == [250, 250, 250, 354, 250], 'a session written one byte at a time: 250 250 250 354 250 (%s)' % rs)
got = [m for m in be.messages if b'<bytes@' in m['data']]
mt.check(len(got) == 1 and got[0]['data'].endswith(data), 'the byte-by-byte message arrives once and byte-exact')
c.close()

# ---------------------------------------------------------------- smuggling helper
VARIANTS = [b'\n.\n', b'\r.\r', b'\n.\r\n', b'\r\n.\n', b'\r.\r\n', b'\r\n.\r']


def smuggle(port, variant, tag):
    """One message carrying `variant` followed by a second, smuggled transaction; returns the
    reply to the final dot and whatever else the server said within a short wait."""
    c = mt.Client(port)
    c.ehlo('smuggler.test')
    c.cmd('MAIL FROM:<%s>' % FROM)
    c.cmd('RCPT TO:<%s>' % RCPT)
    c.cmd('DATA')
    body = (b'Subject: %s\r\nMessage-ID: <%s@mxtest.example>\r\n\r\nhello' % (tag.encode(), tag.encode()) + variant +
            b'MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n'
            b'Subject: smuggled\r\nMessage-ID: <%s-evil@mxtest.example>\r\n\r\nevil\r\n.\r\n' % tag.encode())
    c.send(body)
    first = c.reply()
    extra = c.pending(0.5)
    c.send(b'QUIT\r\n')
    c.close()
    return first, extra


# ---------------------------------------------------------------- long lines, errors
c = mt.Client(mx.port)
c.ehlo()
code, text = c.cmd('NOOP ' + 'x' * 1200)
mt.check(code == 500 and '5.5.2' in text, 'a 1200-octet command line: 500 5.5.2 (%s)' % text[:60])
mt.check(c.cmd('NOOP')[0] == 250, 'the session goes on after an over-long line')
code, text = c.cmd('RCPT TO:<' + 'a' * 70000 + '@example.test>')
mt.check(code == 500, 'a 70000-octet line: 500 (%s)' % text[:40])
mt.check(c.cmd('NOOP')[0] == 250, 'still usable after a 70000-octet line')
c.close()
c = mt.Client(mx.port)
c.ehlo()
codes = []
for i in range(8):
    code = c.cmd('BOGUS%d' % i)[0]
    codes.append(code)
    if code != 500:
        break
mt.check(codes[:4] == [500] * 4, 'unknown commands: 500 5.5.2 (%s)' % codes)
mt.check(codes[-1] == 421 and len(codes) in (4, 5) and c.is_closed(),
         'max_errors 4: 421 and disconnect at the 4th or 5th error (%s)' % codes)
c.close()

# ---------------------------------------------------------------- size and recipients
c = mt.Client(mx.port)
c.ehlo()
code, text = c.cmd('MAIL FROM:<%s> SIZE=20000' % FROM)
mt.check(code == 552 and '5.3.4' in text, 'SIZE=20000 over a 10K limit: 552 5.3.4 at MAIL (%s)' % text)
mt.check(c.cmd('MAIL FROM:<%s> SIZE=2000' % FROM)[0] == 250, 'SIZE=2000 accepted')
codes = [c.cmd('RCPT TO:<r%d@example.test>' % i)[0] for i in range(4)]
mt.check(codes == [250, 250, 250, 452], 'max_recipients 3: the 4th RCPT gets 452 (%s)' % codes)
c.cmd('DATA')
c.send(mt.stuff(mt.message('rcpt3')))
mt.check(c.reply()[0] == 250, 'the message goes on with 3 recipients')
got = [m for m in be.messages if b'<rcpt3@' in m['data']]
mt.check(len(got) == 1 and len(got[0]['accepted_rcpts']) == 3, 'the backend got 3 recipients')
c.close()

# ---------------------------------------------------------------- 8BITMIME
c = mt.Client(mx.port)
c.ehlo()
data = mt.message('eight', body='caf\u00e9 \u00fcber \u65e5\u672c\r\n')
c.cmd('MAIL FROM:<%s> BODY=8BITMIME' % FROM)
c.cmd('RCPT TO:<%s>' % RCPT)
c.cmd('DATA')
c.send(mt.stuff(data))
code, _ = c.reply()
got = [m for m in be.messages if b'<eight@' in m['data']]
mt.check(code == 250 and len(got) == 1 and got[0]['data'].endswith(data), 'an 8-bit body (BODY=8BITMIME) passes byte-exact')
mt.check(bool(got) and 'BODY=8BITMIME' in got[0]['mail'].upper(), 'BODY=8BITMIME is passed on at MAIL (%s)' % (got[0]['mail'] if got else None))
c.close()

c = mt.Client(mx.port)
c.ehlo()
u_from, u_rcpt = '\u7528\u6237@example.org', 'j\u00f6rg@example.test'
r1 = c.cmd('MAIL FROM:<%s> SMTPUTF8' % u_from)
r2 = c.cmd('RCPT TO:<%s>' % u_rcpt)
c.cmd('DATA')
data = mt.message('utf8', headers=['X-Name: \u00fcber'])
c.send(mt.stuff(data))
code, text = c.reply()
got = [m for m in be.messages if b'<utf8@' in m['data']]
mt.check(r1[0] == 250 and r2[0] == 250 and code == 250 and len(got) == 1,
         'SMTPUTF8: UTF-8 addresses accepted and delivered (%s %s %s)' % (r1[0], r2[0], text))
mt.check(bool(got) and u_from in got[0]['mail'] and 'SMTPUTF8' in got[0]['mail'].upper() and got[0]['rcpts'] == [u_rcpt],
         'SMTPUTF8 passes through to a backend that offers it (%s)' % (got[0]['mail'] if got else None))
c.close()

# To a backend that does not announce SMTPUTF8, a UTF-8 address is refused (RFC 6531 3.4:
# 553 5.6.7), never relayed with the SMTPUTF8 parameter dropped.
ascii_be = mt.Backend(name='ascii', smtputf8=False)
mx2 = mt.Mxgate(mt.config([ascii_be.url]), name='mx-ascii')
c = mt.Client(mx2.port)
c.ehlo()
r1 = c.cmd('MAIL FROM:<%s> SMTPUTF8' % u_from)
r2 = c.cmd('RCPT TO:<%s>' % u_rcpt) if r1[0] == 250 else r1
code = r2[0]
if code == 250:
    c.cmd('DATA')
    c.send(mt.stuff(mt.message('utf8b')))
    code = c.reply()[0]
c.close()
mt.check(code is not None and code >= 500, 'SMTPUTF8 to a backend without it: refused with 5xx (%s)' % code)
mt.check(not any(u_from in x for x in ascii_be.commands), 'no UTF-8 address sent to a backend without SMTPUTF8')
mx2.stop()

# ---------------------------------------------------------------- timeouts
# The 421 can only come from a timer of the daemon's: the client says nothing more and waits
# far longer than command_timeout (the default, 300 s, would not answer in its patience). Which
# timer it was is the daemon's own log line: event=timeout in the command state, the bound
# limit=command_timeout (not session_deadline); no clock bounds it from above (a loaded machine
# answered late). The lower bound stays: load cannot make a 3 s timer fire early.
mark = mx.log_size()
c = mt.Client(mx.port, timeout=mt.slack(30))
c.ehlo()
t0 = time.time()
code, text = c.reply()
took = time.time() - t0
mt.check(code == 421 and '4.4.2' in text and 'timeout exceeded' in text,
         'command_timeout 3s: an idle client gets 421 4.4.2 timeout exceeded (%s)' % text)
mt.check(2 < took + 0.5, '... not before about command_timeout 3s (%.1fs)' % took)
mt.check(mx.wait_log(r'(?m) event=timeout state=command client=127\.0\.0\.1 limit=command_timeout$', 10,
                     start=mark) is not None,
         '... the command timer, logged: event=timeout state=command limit=command_timeout')
mt.check(c.is_closed(), '... and is disconnected')
c.close()
before = len(be.attempts)
c = mt.Client(mx.port)
c.ehlo()
c.cmd('MAIL FROM:<%s>' % FROM)
c.cmd('RCPT TO:<%s>' % RCPT)
c.cmd('DATA')
c.send(b'Subject: stalled\r\n\r\nhalf a message\r\n')
code, text = c.reply()
mt.check(code == 421, 'data_timeout 3s: a client stalling inside DATA gets 421 (%s)' % text)
mt.check(c.is_closed() and len(be.attempts) == before, '... is disconnected and nothing is delivered')
c.close()
mx.stop()

# ---------------------------------------------------------------- smuggling, bare_lf: normalize
nb = mt.Backend(name='normalize')
mx = mt.Mxgate(mt.config([nb.url], limits={'bare_lf': 'normalize'}), name='mx-normalize')
for n, v in enumerate(VARIANTS):
    before = len(nb.attempts)
    first, extra = smuggle(mx.port, v, 'smn%d' % n)
    new = nb.attempts[before:]
    mt.check(first[0] == 250 and not extra.strip(), 'bare_lf normalize, %r: one reply, 250 (%s, extra %r)' % (v, first, extra[:60]))
    mt.check(len(new) == 1, 'bare_lf normalize, %r: exactly one message at the backend (%d)' % (v, len(new)))
    if new:
        d = new[0]['data']
        mt.check(b'evil' in d and new[0]['mail'] == '<%s>' % FROM and new[0]['rcpts'] == [RCPT],
                 'bare_lf normalize, %r: the smuggled commands stay inside the one message' % v)
        mt.check(d.count(b'\r') == d.count(b'\n') == d.count(b'\r\n'),
                 'bare_lf normalize, %r: only CRLF line endings reach the backend' % v)
    mt.check(not any('evil@' in c for c in nb.commands), 'bare_lf normalize, %r: the smuggled MAIL never reached the backend' % v)
mx.stop()

# ---------------------------------------------------------------- smuggling, bare_lf: reject
rb = mt.Backend(name='reject')
mx = mt.Mxgate(mt.config([rb.url], limits={'bare_lf': 'reject', 'max_errors': 50}), name='mx-reject')
for n, v in enumerate(VARIANTS):
    if not mx.alive():
        mt.check(False, 'mxgate died during the smuggling attempts:\n' + mx.tail(20))
        break
    before = len(rb.attempts)
    try:
        first, extra = smuggle(mx.port, v, 'smr%d' % n)
    except OSError as e:
        mt.check(False, 'bare_lf reject, %r: connection failed (%s); mxgate alive: %s' % (v, e, mx.alive()))
        continue
    mt.check(first[0] == 550 and '5.6.0' in first[1], 'bare_lf reject, %r: 550 5.6.0 (%s)' % (v, first))
    mt.check(not extra.strip(), 'bare_lf reject, %r: no further replies: the rest is not read as commands (%r)' % (v, extra[:80]))
    mt.check(len(rb.attempts) == before, 'bare_lf reject, %r: nothing reached the backend' % v)
    mt.check(not any('evil@' in c for c in rb.commands), 'bare_lf reject, %r: the smuggled MAIL never reached the backend' % v)
mt.check(mx.wait_log(r'event=reject stage=data reason=bare_lf', 3) is not None, 'logged as reason=bare_lf')
mx.stop()

# ---------------------------------------------------------------- an undeclared oversized message
ob = mt.Backend(name='oversize')
mx = mt.Mxgate(mt.config([ob.url], limits={'max_message_size': '10K'}), name='mx-oversize')
c = mt.Client(mx.port)
c.ehlo()
code, text = mt.send_mail(mx.port, FROM, [RCPT], mt.message('big', size=30000), client=c)
extra = c.pending(0.5)
mt.check(code == 552, 'an undeclared 30K message over a 10K limit: 552 after DATA (%s)' % text)
mt.check(not extra.strip(), 'no further replies: the rest of the message is not read as commands (%r)' % extra[:80])
mt.check(not ob.attempts, 'the oversized message is not delivered')
if mx.alive():
    code, text = mt.send_mail(mx.port, FROM, [RCPT], mt.message('fits', size=8000), client=c)
    mt.check(code == 250 and ob.attempts, 'an 8K message is then delivered on the same session (%s)' % text)
c.close()
mx.stop()

# ---------------------------------------------------------------- hostile and vanishing clients
hb = mt.Backend(name='hostile-clients')
# non_smtp_command_action ignore: a line not starting with a letter would end the session
# (postscreen's /^[^A-Z]/, test_screen_non_letter.py); here each junk line is to be answered
mx = mt.Mxgate(mt.config([hb.url], limits={'max_errors': 100, 'max_connections_per_ip': 500},
                         pregreet={'non_smtp_command_action': 'ignore'}), name='mx-hostile')
c = mt.Client(mx.port)
c.ehlo()
for junk in (b'\x00\x00\x00\r\n', bytes(range(1, 256)).replace(b'\n', b'') + b'\r\n', b'\r\n', b' \r\n', b'MAIL FROM:<a@b> SIZE=99999999999999999999999\r\n', b'RCPT TO:<<<>>>\r\n'):
    c.send(junk)
    code, text = c.reply()
    mt.check(code is not None and code >= 400, 'junk %r: an error reply (%s)' % (junk[:20], text[:50]))
mt.check(c.cmd('RSET')[0] == 250, 'the session survives the junk')
c.close()
for stage in ('mail', 'rcpt', 'data', 'half'):
    c = mt.Client(mx.port)
    c.ehlo()
    if stage in ('mail', 'rcpt', 'data', 'half'):
        c.cmd('MAIL FROM:<%s>' % FROM)
    if stage in ('rcpt', 'data', 'half'):
        c.cmd('RCPT TO:<%s>' % RCPT)
    if stage in ('data', 'half'):
        c.cmd('DATA')
    if stage == 'half':
        c.send(b'Subject: gone\r\n\r\nhalf a mess')
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
    c.close()       # RST
time.sleep(mt.slack(0.5))
mt.check(mx.alive() and not hb.attempts, 'clients vanishing after MAIL, RCPT, DATA and mid-message: nothing delivered, daemon alive')
many = []
for i in range(150):
    try:
        many.append(mt.Client(mx.port))
    except OSError:
        break
mt.check(len(many) == 150 and all(x.greeting[0] == 220 for x in many), '150 concurrent sessions greeted (%d)' % len(many))
for x in many:
    x.send(b'EHLO many.test\r\n')
mt.check(all(x.reply()[0] == 250 for x in many), '... and all answer EHLO')
for x in many:
    x.close()
code, _ = mt.send_mail(mx.port, FROM, [RCPT], mt.message('after-storm'))
mt.check(code == 250 and hb.attempts, 'a normal message afterwards is delivered')
mx.stop()

# ---------------------------------------------------------------- IPv6 listener
v6 = mt.Backend(name='v6')
try:
    mx = mt.Mxgate(mt.config([v6.url], listen=[{'address': '[::1]:0'}]), name='mx-v6')
except Exception as e:  # noqa: BLE001
    mx = None
    mt.check(False, 'an IPv6 listener [::1] starts (%s)' % e)
if mx:
    c = mt.Client(mx.port, host='::1')
    c.ehlo()
    code, text = mt.send_mail(mx.port, FROM, [RCPT], mt.message('v6'), client=c)
    c.close()
    mt.check(code == 250 and v6.messages and '::1' in v6.messages[0]['xclient'].get('ADDR', ''),
             'IPv6 listener [::1]: delivers, XCLIENT ADDR names ::1 (%s)' % (v6.messages[0]['xclient'] if v6.messages else text))
    mx.stop()

# ---------------------------------------------------------------- connection limits
cb = mt.Backend(name='conn')
mx = mt.Mxgate(mt.config([cb.url], limits={'max_connections': 4, 'max_connections_per_ip': 2}), name='mx-conn')
a = [mt.Client(mx.port, source='127.0.0.2') for _ in range(2)]
mt.check(all(x.greeting[0] == 220 for x in a), 'two sessions from 127.0.0.2 greeted')
x = mt.Client(mx.port, source='127.0.0.2')
mt.check(x.greeting[0] == 421 and x.is_closed(), 'max_connections_per_ip 2: a third from 127.0.0.2 gets 421 (%s)' % (x.greeting,))
x.close()
b = [mt.Client(mx.port, source='127.0.0.3') for _ in range(2)]
mt.check(all(y.greeting[0] == 220 for y in b), 'another IP is still welcome')
x = mt.Client(mx.port, source='127.0.0.4')
mt.check(x.greeting[0] == 421 and x.is_closed(), 'max_connections 4: the fifth session gets 421 (%s)' % (x.greeting,))
x.close()
a[0].cmd('QUIT')
a[0].close()
time.sleep(mt.slack(0.3))
x = mt.Client(mx.port, source='127.0.0.4')
mt.check(x.greeting[0] == 220, 'after one session ends a new one is greeted')
code, _ = mt.send_mail(mx.port, FROM, [RCPT], mt.message('conn1'), client=x) if x.ehlo()[0] == 250 else (None, '')
mt.check(code == 250, '... and can deliver')
for y in a[1:] + b + [x]:
    y.close()
mt.check(mx.wait_log(r'reason=max_connections_per_ip', 2) is not None and mx.wait_log(r'reason=max_connections ', 2) is not None,
         'both refusals logged with their reason')
mx.stop()

mt.finish()
