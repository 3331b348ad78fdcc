#!/usr/bin/env python3
"""milter client against a real python3-milter filter (tests/peers/mx_milter.py) and
scripted faulty milters: reject, tempfail, discard, rejected recipient, headers added
exactly once, macros, header/envelope/body changes, quarantine, progress keep-alive, a
stall past the timeout (bounded), two milters in a chain, and garbage / oversized frame /
disconnect / stall costing one verdict each."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
t.need_python_milter()


def gate(plugins, name='mxgate'):
    return t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=plugins), name=name)


def milter(address, on_error, timeout):
    return {'name': 'milter', 'address': address, 'on_error': on_error, 'timeout': timeout}


def msg(tag, body='', headers=()):
    return t.message(tag, 'body of %s\r\n%s\r\n' % (tag, body), headers=headers)


def send(port, data, rcpts=('b@example.test',), client=None):
    return t.send_mail(port, 'a@example.org', list(rcpts), data, ehlo='client.example.org',
                       client=client, timeout=30)


mi = t.milter(stall=10)
mi2 = t.milter(stall=10)
be = t.Backend()
m = gate([milter('inet:127.0.0.1:%s' % mi.port, 'accept', '3s'),
          milter('inet:%s@127.0.0.1' % mi2.port, 'tempfail', '3s')])

code, text = send(m.port, msg('clean1'))
got = be.find('body of clean1')
t.check(code == 250 and len(got) == 1, 'clean message delivered once: %s %s' % (code, text))
if got:
    d = got[0]['data']
    t.check(d.count(b'X-Test-Milter: passed') == 2, 'each milter header reaches the backend exactly once (2 milters): %s'
            % d.count(b'X-Test-Milter:'))
    t.check(b'qid=None' not in d, 'queue id macro i sent')
    qid = re.search(rb'qid=(\S+)', d)
    t.check(qid is not None and (b'eoh:i=' + qid.group(1)) in d,
            'the queue id macro i at end of headers too, as Postfix sends it (%s)' % re.findall(rb'eoh:i=\S+', d))
    for mac in (b'j=mx.example.test', b'{client_addr}=127.0.0.1', b'{mail_addr}=a@example.org',
                b'{rcpt_addr}=b@example.test', b'{daemon_name}=mxgate', b'_='):
        t.check(mac in d, 'macro %s seen by the filter' % mac.decode())

for word, want in (('REJECTME', 550), ('TEMPFAILME', 451)):
    code, text = send(m.port, msg('m' + word, word))
    t.check(code == want and 'mx test milter' in text, '%s -> %s (want %s) %s' % (word, code, want, text))
    t.check(not be.find('body of m' + word), '%s not delivered' % word)

code, text = send(m.port, msg('disc1', 'DISCARDME'))
t.check(code == 250 and not be.find('body of disc1'), 'discard: 250 to the client, delivered nowhere (%s)' % code)
t.check('disc' in m.log(), 'discard logged')

r = send(m.port, msg('rcpt1'), rcpts=('reject@example.test', 'b@example.test'))
code, text, rc = r[0], r[1], r.rcpt_codes
t.check(rc == [550, 250] and code == 250, 'recipient rejected by the milter, other kept: %s %s' % (rc, code))
got = be.find('body of rcpt1')
t.check(len(got) == 1 and got[0]['rcpt'] == ['b@example.test'], 'delivered to the remaining recipient only')

code, text = send(m.port, msg('chg1', 'CHANGEME', ('X-Drop: me',)),
                       rcpts=('b@example.test', 'c@example.test'))
got = be.find('replaced body')
t.check(code == 250 and len(got) == 1, 'modified message delivered once: %s %s' % (code, text))
if got:
    d, env = got[0]['data'], got[0]
    t.check(b'Subject: changed by milter' in d and b'Subject: test chg1' not in d, 'Subject changed')
    t.check(b'X-Drop' not in d, 'header deleted')
    t.check(d.startswith(b'X-Inserted: at the top') or b'\nX-Inserted: at the top' in d, 'header inserted')
    t.check(b'body of chg1' not in d, 'body replaced')
    t.check(env['from'] == 'changed@example.test', 'sender changed: %s' % env['from'])
    t.check('added@example.test' in env['rcpt'] and 'b@example.test' not in env['rcpt'] and 'c@example.test' in env['rcpt'],
            'recipients added/removed: %s' % env['rcpt'])

code, text = send(m.port, msg('inj1', 'INJECTME'))
got = be.find('body of inj1')
t.check(code == 250 and len(got) == 1, 'message with hostile changes delivered: %s' % code)
if got:
    d, env = got[0]['data'], got[0]
    t.check(b'\r\nX-Injected:' not in d and b'X-Evil: a X-Injected: yes' in d, 'bare CRLF in a header value neutralised')
    t.check(re.search(rb'X-Folded: first(\r\n\t| )second\r\n', d) is not None, 'a genuine fold kept (or refolded)')
    t.check(env['rcpt'] == ['b@example.test'] and env['from'] == 'a@example.org',
            'recipient/sender with CRLF or space refused: %s %s' % (env['rcpt'], env['from']))

# The milter sleeps 4 s (a progress a second) after it has the end of the message, so the
# answer cannot come sooner (a lower bound load cannot break); no timeout may be logged.
mark = m.log_size()
start = time.monotonic()
code, text = send(m.port, msg('prog1', 'PROGRESSME'))
took = time.monotonic() - start
t.check(code == 250 and took > 3.5 and be.find('body of prog1') and m.count_log(r'event=plugin_error', mark) == 0,
        'progress replies keep a 4 s filter alive past a 3 s timeout: %s after %.1fs, no plugin_error' % (code, took))

# A stall past the timeout: milter 1 (on_error accept) -> delivered without its header;
# milter 2 (on_error tempfail) -> 451. What bounds them is each one's timeout (the milters
# stall 10 s): the daemon's event=plugin_error error=timeout with the on_error applied.
mm = gate([milter('inet:127.0.0.1:%s' % mi.port, 'accept', '2s')], 'mx-stall')
code, text = send(mm.port, msg('slow1', 'SLOWME'))
t.check(code == 250 and be.find('body of slow1') and
        mm.count_log(r'event=plugin_error plugin=\S+ stage=eom error=timeout on_error=accept') == 1,
        'stalled milter, on_error accept: %s, cut by its timeout (logged error=timeout on_error=accept)' % code)
mm.stop()
mark = m.log_size()
code, text = send(m.port, msg('slow2', 'SLOWME'))
timeouts = re.findall(r'event=plugin_error plugin=\S+ stage=eom error=timeout on_error=(\w+)', m.log()[mark:])
t.check(code == 451 and not be.find('body of slow2') and timeouts == ['accept', 'tempfail'],
        'stalled milters in a chain, second on_error tempfail: %s, each cut by its timeout (%s)' % (code, timeouts))

# A stall costs that message's verdict only: the next transaction of the same session
# reconnects to the filter (connect and helo replayed) and gets its header again.
mm = gate([milter('inet:127.0.0.1:%s' % mi.port, 'tempfail', '2s')], 'mx-reconnect')
c = t.Client(mm.port, timeout=30)
c.ehlo('client.example.org')
codes = [send(mm.port, msg(tag, body), client=c)[0] for tag, body in (('rc1', 'SLOWME'), ('rc2', ''), ('rc3', ''))]
c.close()
got2, got3 = be.find('body of rc2'), be.find('body of rc3')
t.check(codes == [451, 250, 250], 'stalled message tempfailed, later ones in the session pass: %s' % codes)
t.check(len(got2) == 1 and got2[0]['data'].count(b'X-Test-Milter: passed') == 1 and
        len(got3) == 1 and got3[0]['data'].count(b'X-Test-Milter: passed') == 1,
        'after the reconnect the filter runs again, header once per message')
t.check(b'j=mx.example.test' in (got2[0]['data'] if got2 else b''), 'connect macros replayed on reconnect')
t.check('event=milter_reconnect' in mm.log(), 'reconnect logged')
mm.stop()

# Misbehaving milters: each costs one verdict, the daemon keeps serving. Those failing at
# connect (negotiation) tempfail in place of the greeting, where only 421 is a code.
for mode in ('milter-garbage', 'milter-oversized', 'milter-disconnect', 'milter-stall',
             'milter-eom-garbage', 'milter-eom-close'):
    bp = t.bad_peer(mode)
    for on_error, want in (('tempfail', 451 if '-eom-' in mode else 421), ('accept', 250)):
        mid = '%s-%s' % (mode, on_error)
        mm = gate([milter('inet:127.0.0.1:%s' % bp.port, on_error, '2s')], 'mx-' + mid)
        code, text = send(mm.port, msg(mid))
        t.check(code == want, '%s, on_error %s -> %s (want %s)' % (mode, on_error, code, want))
        code2, _ = send(mm.port, msg(mid + '-again'))
        t.check(mm.alive() and code2 == want, '%s: daemon alive, next session same verdict' % mode)
        mm.stop()
    t.stop_proc(bp)

# A milter on a unix socket.
mu = t.milter(unix=True)
mm = gate([milter('unix:' + mu.sock, 'tempfail', '3s')], 'mx-unix')
code, text = send(mm.port, msg('unix1'))
got = be.find('body of unix1')
t.check(code == 250 and len(got) == 1 and got[0]['data'].count(b'X-Test-Milter: passed') == 1,
        'milter over a unix socket: %s' % code)
mm.stop()

# A milter down at connect with on_error reject: the greeting, the EHLO answered (not judged
# again by the milter that failed at connect), and every MAIL refused with the connect
# refusal (Postfix's "Command rejected"), never "send HELO first".
mm = gate([milter('inet:127.0.0.1:%d' % t.dead_port(), 'reject', '2s')], 'mx-down-reject')
c = t.Client(mm.port)
ehlo = c.ehlo('client.example.org')
mails = [c.cmd('MAIL FROM:<a@example.org>') for _ in range(2)]
c.close()
t.check(c.greeting[0] == 220 and ehlo[0] == 250, 'milter down, on_error reject: greeting %s, EHLO %s' % (c.greeting[0], ehlo[0]))
t.check(all(m[0] == 550 and 'Command rejected' in m[1] for m in mails), 'every MAIL gets the connect refusal: %s' % mails)
t.check(mm.count_log(r'event=plugin_error plugin=milter stage=helo') == 0, 'the failed milter is not asked again at HELO')
mm.stop()

# The filter going away mid-session.
t.stop_proc(mi)
code, text = send(m.port, msg('down1'))
got = be.find('body of down1')
t.check(code == 250 and len(got) == 1 and got[0]['data'].count(b'X-Test-Milter') == 1,
        'first milter down (on_error accept), second still adds its header: %s' % code)
t.stop_proc(mi2)
code, text = send(m.port, msg('down2'))
t.check(code == 421 and not be.find('body of down2'), 'second milter down (on_error tempfail) -> 421 greeting: %s' % code)
m.stop()
t.finish()
