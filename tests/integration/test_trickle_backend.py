#!/usr/bin/env python3
"""No backend can hold a session by trickling its replies (docs/operations.md, "Timeouts:
what bounds each peer"). Each backend is a scripted one on 127.0.0.1 that answers one step
at a trickle — an octet every TICK seconds, or a multi-line reply whose lines keep coming
and never end — well inside every idle timeout. The relay's timers run from the step's
start (the command sent, the connect), never from the last read, so each ends at its bound:
- the greeting: backends.connect_timeout (TCP connect and greeting together);
- the EHLO reply, MAIL's, the 354 to DATA: backends.reply_timeout;
- the reply to the final dot: backends.data_timeout;
- a backend reading the message at a trickle: each part it takes starts backends.data_timeout
  again (test_backend_slow_reader), backends.data_deadline bounds the whole;
- a health probe's greeting: backends.health_check.timeout.
The client is told a 4xx (never a 250 without the backend's), nothing is relayed. What ended
each case is the daemon's event=backend_error with the bound's reason ("timeout", or
"data_deadline" for the slow reader; a timer reset on every read would never fire, and the
peer's own end after LIMIT would be a closed connection, not a timeout) and the bound's config
key in limit= (connect_timeout, reply_timeout, data_timeout, data_deadline: before, "timeout"
alone did not say which), and the probe's
event=backend_down "timeout during greeting". Each case prints how long the client waited
(the figure in the docs' table), not checked: a loaded machine makes it what it makes it.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
import hostile_peer as hp  # noqa: E402

CONNECT, REPLY, DATA, DEADLINE = 1.0, 1.5, 2.0, 4.0
TICK = 0.3
LIMIT = 12.0        # a trickle no bound ends runs this long (then the check fails)
figures = {}
ONLY = os.environ.get('ONLY')     # a comma-separated list of cases to run


def never_ending(first):
    """A reply that starts with `first` and goes on, an octet every TICK, a new continuation
    line now and then, never its last line."""
    def hook(srv, p, arg):
        if arg is not None and isinstance(arg, tuple):
            pass
        t0 = time.time()
        data = first
        while time.time() - t0 < LIMIT + 5:
            if not mt.drip(p.sock, data, TICK, LIMIT + 5):
                return False
            data = b'250-still going\r\n'
        return False
    return hook


def case(name, hooks, bound, limit, reason='timeout', size=0, more=None):
    if ONLY and name not in ONLY.split(','):
        return
    bad = hp.scripted('bk-' + name, hooks)
    mx = mt.Mxgate(mt.config([bad.url], backends={'connect_timeout': '%dms' % (CONNECT * 1000),
                                                  'reply_timeout': '%dms' % (REPLY * 1000),
                                                  'data_timeout': '%dms' % (DATA * 1000),
                                                  'health_check': {'interval': '60s', 'timeout': '10s'},
                                                  # the scripted server offers no XCLIENT
                                                  # (require_xclient would refuse it)
                                                  'client_identity': 'none',
                                                  **(more or {})}),
                   name='mx-' + name)
    t0 = time.time()
    r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('trickle-' + name, size=size),
                     timeout=LIMIT + 5)
    took = time.time() - t0
    figures[name] = took
    mt.say('%s: %s %s (stage %s) after %.2fs (bound %.1fs)' % (name, r.code, r.text[:60], r.stage, took, bound))
    mt.check(r.code is not None and 400 <= r.code < 500, '%s: the client is told a 4xx (%s %s)' % (name, r.code, r.text))
    errs = mt.wait_for(lambda: re.findall(r'event=backend_error backend=\S+ state=\d+ reason="([^"]*)"(.*)', mx.log()), 5)
    mt.check([e[0] for e in errs or []] == [reason] and errs[0][1].endswith(' limit=' + limit),
             '%s: ended by its bound, logged event=backend_error reason="%s" ... limit=%s (%s)' % (name, reason, limit, errs))
    mt.check(not bad.messages, '%s: nothing relayed' % name)
    mt.check(mx.alive(), '%s: mxgate alive' % name)
    mx.stop()
    bad.stop()


case('greeting', {'greet': never_ending(b'220-backend.test\r\n')}, CONNECT, 'connect_timeout')
case('ehlo', {'ehlo': never_ending(b'250-backend.test\r\n')}, REPLY, 'reply_timeout')
case('mail', {'mail': never_ending(b'250-2.1.0 fine so far\r\n')}, REPLY, 'reply_timeout')
case('data_354', {'data': never_ending(b'354-go\r\n')}, REPLY, 'reply_timeout')


def dot(srv, p, arg):
    return never_ending(b'250-2.0.0 nearly\r\n')(srv, p, None)


case('final_reply', {'dot': dot}, DATA, 'data_timeout')

# ------------------------------------------------------------------- a backend reading at a trickle
# The backend takes the message 64 KB every TICK (a backend with a failing disk, a slow
# content scan in line): the 8 MB would take 40 s. Each part it takes starts
# backends.data_timeout again (a stall timeout, Postfix's smtp_data_xfer_timeout), so
# backends.data_deadline is what ends it.
case('slow_reader', {'data': hp.slow_reader(TICK, LIMIT + 5)}, DEADLINE, 'data_deadline', 'data_deadline', size=8 << 20,
     more={'data_deadline': '%ds' % DEADLINE})

# ------------------------------------------------------------------- health probes
# Every probe's greeting trickles: each probe fails at health_check.timeout, the backend is
# marked down after `fall` of them (and a probe never holds a connection past its timeout).
if ONLY and 'probe' not in ONLY.split(','):
    mt.finish()
bad = hp.scripted('bk-probe', {'greet': never_ending(b'220-backend.test\r\n')})
mx = mt.Mxgate(mt.config([bad.url], backends={'health_check': {'interval': '500ms', 'timeout': '1s',
                                                                'fall': 1, 'rise': 1}}), name='mx-probe')
t0 = time.time()
m = mx.wait_log(r'event=backend_down backend=\S+ reason="health check: ([^"]*)"', timeout=LIMIT)
took = time.time() - t0
figures['probe'] = took
mt.say('probe: backend_down after %.2fs (%s)' % (took, m.group(1) if m else None))
mt.check(m is not None and m.group(1) == 'timeout during greeting',
         'probe: a trickled greeting fails the probe at health_check.timeout (1s; took %.2fs: %s)'
         % (took, m.group(1) if m else mx.tail(5)))
mx.stop()
bad.stop()

mt.say('figures: ' + ' '.join('%s=%.2fs' % kv for kv in figures.items()))
mt.finish()
