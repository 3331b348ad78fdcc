#!/usr/bin/env python3
"""limits.filter_deadline: the end-of-data chain as a whole, against real milters
(tests/peers/mx_milter.py). Each milter has its own `timeout` per reply; three of them each
answering just within it used to hold the client for the sum (here 3 x 2 s = 6 s; five
milters at 30 s each: 2.5 minutes, past what many clients wait after the final dot), and a
milter's SMFIR_PROGRESS restarted its timeout without end. Now the chain stops at the
deadline: the milter running is given up, the message gets filter_deadline_action (451
4.3.0 by default, or accept: delivered without the filters left), logged event=filter_deadline
with the milter's name. Progress restarts a milter's own timeout, never the deadline."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
t.need_python_milter()

slow = [t.milter(stall=2) for _ in range(3)]
be = t.Backend()


def start(name, action, milters, timeout, deadline):
    cfg = t.config([be.url], hostname='mx.example.test',
                   plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m.port, 'on_error': 'accept',
                             'timeout': '%ds' % timeout} for m in milters])
    cfg.setdefault('limits', {}).update({'filter_deadline': '%ds' % deadline, 'filter_deadline_action': action})
    return t.Mxgate(cfg, name=name)


def send(mx, tag, word):
    t0 = time.monotonic()
    r = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message(tag, '%s\r\n' % word),
                    timeout=t.slack(30))
    return r.code, r.text, time.monotonic() - t0


# The milters' own times (2 s stall, a progress a second) are the peer's, not scaled under
# ASan: the figures keep a second's margin each way. When the answer came is not checked: the
# daemon's event=filter_deadline line and the 451 (the milters alone would pass it) are.
S = 1
mx = start('mx-slow', 'tempfail', slow, 3 * S, 5 * S)
code, text, took = send(mx, 'dl-slow', 'SLOWME')
t.check(code == 451 and text.startswith('451 4.3.0') and not be.find('Message-ID: <dl-slow@'),
        'three milters each 2 s within their 3 s timeout, deadline 5 s: 451 4.3.0, not relayed (%s %s)' % (code, text))
# Each milter answers within its own timeout (on_error accept if one did not), so only the
# deadline can refuse the message: after the sum all three would have passed it (250). The
# daemon's line names the deadline.
t.say('dl-slow answered after %.1f s' % took)
t.check(mx.count_log(r'event=filter_deadline stage=eom plugin=milter elapsed_ms=\d+ deadline_ms=%d action=tempfail'
                     % (5 * S * 1000)) == 1, 'answered at the deadline, not after the sum: logged with the filter '
        'that was running')
# the same session goes on: the milters given up reconnect for its next message
c = t.Client(mx.port, timeout=t.slack(30))
c.ehlo('client.test')
r1 = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('dl-s1', 'SLOWME\r\n'), client=c,
                 timeout=t.slack(30))
r2 = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('dl-s2', 'hello\r\n'), client=c,
                 timeout=t.slack(30))
c.close()
got = be.find('Message-ID: <dl-s2@')
t.check(r1.code == 451 and r2.code == 250 and got and got[0]['data'].count(b'X-Test-Milter: passed') == 3,
        'in one session: the message past the deadline 451, the next one through all three milters (%s, %s)'
        % (r1.code, r2.code))
code, text, took = send(mx, 'dl-ok', 'hello')
got = be.find('Message-ID: <dl-ok@')
t.check(code == 250 and got and got[0]['data'].count(b'X-Test-Milter: passed') == 3,
        'fast milters: every one of them ran, relayed (%s %s)' % (code, text))
mx.stop()

# Progress restarts a milter's own timeout (2 s, a progress every second for 4 s), never the
# deadline (3 s).
mx = start('mx-prog', 'tempfail', slow[:1], 2 * S, 3 * S)
code, text, took = send(mx, 'dl-prog', 'PROGRESSME')
t.check(code == 451 and text.startswith('451 4.3.0') and not be.find('Message-ID: <dl-prog@'),
        'a milter reporting progress for 4 s, its timeout 2 s, deadline 3 s: 451 4.3.0 (%s %s, %.1f s)'
        % (code, text, took))
mx.stop()

# A timeout not below the deadline: -t says the deadline ends that call first.
cfg = t.config([be.url], listen=[{'address': '127.0.0.1:2525'}],
               plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % slow[0].port, 'timeout': '10m'}])
code, out = t.config_check(cfg, name='long-timeout')
t.check(code == 0 and 'warning: plugins[0] (milter): timeout 600000ms is not below limits.filter_deadline (300000ms)'
        in out, '-t warns of a timeout the default deadline (5m) cuts short (rc %s):\n%s' % (code, out))

mx = start('mx-acc', 'accept', slow, 3 * S, 5 * S)
code, text, took = send(mx, 'dl-acc', 'SLOWME')
got = be.find('Message-ID: <dl-acc@')
t.check(code == 250 and got and got[0]['data'].count(b'X-Test-Milter: passed') == 2,
        'filter_deadline_action accept: relayed with the first two milters\' work, the third given up (%s %s)'
        % (code, text))
t.check(mx.count_log(r'event=filter_deadline stage=eom plugin=milter .*action=accept') == 1, 'logged')
mx.stop()
t.finish()
