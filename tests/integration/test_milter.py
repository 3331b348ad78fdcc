#!/usr/bin/env python3
"""milter client against a real python3-milter filter (tests/peers/mx_milter.py) and
scripted faulty milters: reject, tempfail, discard, rejected recipient, headers added
exactly once, macros, header/envelope/body changes, quarantine, progress keep-alive, a
stall past the timeout (bounded), two milters in a chain, and garbage / oversized frame /
disconnect / stall costing one verdict each."""
import os, re, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'peers'))
import mxpeers as t

mi = t.milter(stall=10)
mi2 = t.milter(stall=10)
be = t.Backend()
m = t.mxgate('  - { name: milter, address: "inet:127.0.0.1:%d", on_error: accept, timeout: 3s }\n'
             '  - { name: milter, address: "inet:%d@127.0.0.1", on_error: tempfail, timeout: 3s }'
             % (mi.port, mi2.port), be.port)

code, text, _ = t.send(m.port, t.message('clean1'))
got = be.find('body of clean1')
t.check(code == 250 and len(got) == 1, 'clean message delivered once: %d %s' % (code, text))
if got:
    d = got[0]['data']
    t.check(d.count(b'X-Test-Milter: passed') == 2, 'each milter header reaches the backend exactly once (2 milters): %d'
            % d.count(b'X-Test-Milter:'))
    t.check(b'qid=None' not in d, 'queue id macro i sent')
    for mac in (b'j=mx.example.test', b'{client_addr}=127.0.0.1', b'{mail_addr}=a@example.org',
                b'{rcpt_addr}=b@example.test', b'{daemon_name}=mxgate', b'_='):
        t.check(mac in d, 'macro %s seen by the filter' % mac.decode())

for word, want in (('REJECTME', 550), ('TEMPFAILME', 451)):
    code, text, _ = t.send(m.port, t.message('m' + word, word))
    t.check(code == want and 'mx test milter' in text, '%s -> %d (want %d) %s' % (word, code, want, text))
    t.check(not be.find('body of m' + word), '%s not delivered' % word)

code, text, _ = t.send(m.port, t.message('disc1', 'DISCARDME'))
t.check(code == 250 and not be.find('body of disc1'), 'discard: 250 to the client, delivered nowhere (%d)' % code)
t.check('disc' in t.logtext('mxgate'), 'discard logged')

code, text, rc = t.send(m.port, t.message('rcpt1'), rcpts=('reject@example.test', 'b@example.test'))
t.check(rc == [550, 250] and code == 250, 'recipient rejected by the milter, other kept: %s %d' % (rc, code))
got = be.find('body of rcpt1')
t.check(len(got) == 1 and got[0]['rcpt'] == ['b@example.test'], 'delivered to the remaining recipient only')

code, text, _ = t.send(m.port, t.message('chg1', 'CHANGEME', 'X-Drop: me\r\n'),
                       rcpts=('b@example.test', 'c@example.test'))
got = be.find('replaced body')
t.check(code == 250 and len(got) == 1, 'modified message delivered once: %d %s' % (code, text))
if got:
    d, env = got[0]['data'], got[0]
    t.check(b'Subject: changed by milter' in d and b'Subject: test chg1' not in d, 'Subject changed')
    t.check(b'X-Drop' not in d, 'header deleted')
    t.check(d.startswith(b'X-Inserted: at the top') or b'\nX-Inserted: at the top' in d, 'header inserted')
    t.check(b'body of chg1' not in d, 'body replaced')
    t.check(env['from'] == 'changed@example.test', 'sender changed: %s' % env['from'])
    t.check('added@example.test' in env['rcpt'] and 'b@example.test' not in env['rcpt'] and 'c@example.test' in env['rcpt'],
            'recipients added/removed: %s' % env['rcpt'])

code, text, _ = t.send(m.port, t.message('inj1', 'INJECTME'))
got = be.find('body of inj1')
t.check(code == 250 and len(got) == 1, 'message with hostile changes delivered: %d' % code)
if got:
    d, env = got[0]['data'], got[0]
    t.check(b'\r\nX-Injected:' not in d and b'X-Evil: a X-Injected: yes' in d, 'bare CRLF in a header value neutralised')
    t.check(re.search(rb'X-Folded: first(\r\n\t| )second\r\n', d) is not None, 'a genuine fold kept (or refolded)')
    t.check(env['rcpt'] == ['b@example.test'] and env['from'] == 'a@example.org',
            'recipient/sender with CRLF or space refused: %s %s' % (env['rcpt'], env['from']))

start = time.time()
code, text, _ = t.send(m.port, t.message('prog1', 'PROGRESSME'))
took = time.time() - start
t.check(code == 250 and took > 3.5 and be.find('body of prog1'),
        'progress replies keep a 4 s filter alive past a 3 s timeout: %d after %.1fs' % (code, took))

# A stall past the timeout: milter 1 (on_error accept) -> delivered without its header;
# milter 2 (on_error tempfail) -> 451. Both bounded by the 3 s timeouts.
mm = t.mxgate('  - { name: milter, address: "inet:127.0.0.1:%d", on_error: accept, timeout: 2s }' % mi.port,
              be.port, name='mx-stall')
start = time.time()
code, text, _ = t.send(mm.port, t.message('slow1', 'SLOWME'))
took = time.time() - start
t.check(code == 250 and took < 5 and be.find('body of slow1'), 'stalled milter, on_error accept: %d after %.1fs' % (code, took))
t.stop(mm)
start = time.time()
code, text, _ = t.send(m.port, t.message('slow2', 'SLOWME'))
took = time.time() - start
t.check(code == 451 and took < 9 and not be.find('body of slow2'),
        'stalled milters in a chain, second on_error tempfail: %d after %.1fs' % (code, took))

# A stall costs that message's verdict only: the next transaction of the same session
# reconnects to the filter (connect and helo replayed) and gets its header again.
mm = t.mxgate('  - { name: milter, address: "inet:127.0.0.1:%d", on_error: tempfail, timeout: 2s }' % mi.port,
              be.port, name='mx-reconnect')
codes = t.send_many(mm.port, [t.message('rc1', 'SLOWME'), t.message('rc2'), t.message('rc3')])
got2, got3 = be.find('body of rc2'), be.find('body of rc3')
t.check(codes == [451, 250, 250], 'stalled message tempfailed, later ones in the session pass: %s' % codes)
t.check(len(got2) == 1 and got2[0]['data'].count(b'X-Test-Milter: passed') == 1 and
        len(got3) == 1 and got3[0]['data'].count(b'X-Test-Milter: passed') == 1,
        'after the reconnect the filter runs again, header once per message')
t.check(b'j=mx.example.test' in (got2[0]['data'] if got2 else b''), 'connect macros replayed on reconnect')
t.check('event=milter_reconnect' in t.logtext('mx-reconnect'), 'reconnect logged')
t.stop(mm)

# Misbehaving milters: each costs one verdict, the daemon keeps serving.
for mode in ('milter-garbage', 'milter-oversized', 'milter-disconnect', 'milter-stall',
             'milter-eom-garbage', 'milter-eom-close'):
    bp = t.bad_peer(mode)
    for on_error, want in (('tempfail', 451), ('accept', 250)):
        mid = '%s-%s' % (mode, on_error)
        mm = t.mxgate('  - { name: milter, address: "inet:127.0.0.1:%d", on_error: %s, timeout: 2s }'
                      % (bp.port, on_error), be.port, name='mx-' + mid)
        code, text, _ = t.send(mm.port, t.message(mid))
        t.check(code == want, '%s, on_error %s -> %d (want %d)' % (mode, on_error, code, want))
        code2, _, _ = t.send(mm.port, t.message(mid + '-again'))
        t.check(mm.poll() is None and code2 == want, '%s: daemon alive, next session same verdict' % mode)
        t.stop(mm)
    t.stop(bp)

# A milter on a unix socket.
mu = t.milter(unix=True)
mm = t.mxgate('  - { name: milter, address: "unix:%s", on_error: tempfail, timeout: 3s }' % mu.sock, be.port, name='mx-unix')
code, text, _ = t.send(mm.port, t.message('unix1'))
got = be.find('body of unix1')
t.check(code == 250 and len(got) == 1 and got[0]['data'].count(b'X-Test-Milter: passed') == 1,
        'milter over a unix socket: %d' % code)
t.stop(mm)

# The filter going away mid-session.
t.stop(mi)
code, text, _ = t.send(m.port, t.message('down1'))
got = be.find('body of down1')
t.check(code == 250 and len(got) == 1 and got[0]['data'].count(b'X-Test-Milter') == 1,
        'first milter down (on_error accept), second still adds its header: %d' % code)
t.stop(mi2)
code, text, _ = t.send(m.port, t.message('down2'))
t.check(code == 451 and not be.find('body of down2'), 'second milter down (on_error tempfail) -> %d' % code)
t.finish()
