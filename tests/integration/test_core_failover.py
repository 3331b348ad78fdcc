#!/usr/bin/env python3
"""Proxy core, failure handling: "a client gets 250 only after a backend said 250".

- a backend killed mid-run under smtp-source load plus counting clients: nothing lost
  (every message a client saw 250 for is in a sink's dump), failover keeps delivering,
  the dead server is logged down and comes back when restarted.
- a backend dying inside a transaction (after MAIL, after RCPT): replay or 4xx, no crash
  (once a use-after-free, fixed: relay_set_owner).
- every backend down: 4xx, never 250 (swaks and raw clients).
- a scripted backend that drops the connection after DATA's payload, answers 451 or is slow
  past backends.data_timeout: 4xx alone, delivered elsewhere when a healthy server exists.
- a backend refusing at greeting or MAIL: failover; a backend's 554 after DATA reaches the client.
- hostile backends (binary noise, never greeting, a 200 KB reply line): 4xx, the daemon lives,
  and with a good server in the pool every message is delivered."""
import os
import re
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'smtp-source', 'swaks')

FROM = 'sender@example.org'
RCPT = 'rcpt@example.test'


def dead_url():
    return 'smtp://127.0.0.1:%d' % mt.dead_port()


# ---------------------------------------------------------------- a backend killed under load
sa, sb = mt.Sink(name='killA'), mt.Sink(name='killB')
mx = mt.Mxgate(mt.config([sa.url, sb.url], backends={'max_attempts': 3}), name='mx-kill')
results = {}          # tag -> (code, text)
lock = threading.Lock()
stop_at = time.time() + 6


def sender(k):
    i = 0
    while time.time() < stop_at:
        tag = 'k%d-%d' % (k, i)
        res = mt.send_mail(mx.port, FROM, [RCPT], mt.message(tag, size=2000))
        with lock:
            results[tag] = res
        i += 1


def load():
    load.r = mt.smtp_source(mx.port, '-s', '5', '-m', '4000', '-l', '2048', '-f', FROM, '-t', RCPT, timeout=90)
    load.end = time.time()


threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)] + [threading.Thread(target=load)]
for t in threads:
    t.start()
time.sleep(1.0)
before_kill = sa.count()
sa.kill()
killed_at = time.time()
for t in threads:
    t.join(mt.slack(120))
codes = [c for c, _ in results.values()]
n250 = codes.count(250)
bad = [(k, v) for k, v in results.items() if v[0] != 250 and (v[0] is None or v[0] < 400 or v[0] >= 500)]
at_sinks = mt.message_ids(open(f, 'rb').read() for f in sa.files() + sb.files())
lost = sorted(k for k, v in results.items() if v[0] == 250 and k not in at_sinks)
print('load: %d client messages, %d got 250, %d other; sink A %d (killed after %d), sink B %d; smtp-source rc=%s' % (
    len(results), n250, len(results) - n250, sa.count(), before_kill, sb.count(), getattr(load, 'r', None) and load.r.returncode))
mt.check(before_kill > 0, 'sink A took mail before it was killed (%d)' % before_kill)
mt.check(len(results) >= 20, 'the counting clients sent a fair number of messages (%d)' % len(results))
mt.check(not lost, 'nothing lost: every message the client saw 250 for is in a sink dump (%d lost: %s)' % (len(lost), lost[:5]))
mt.check(not bad, 'every non-250 answer was a 4xx tempfail (%s)' % bad[:3])
mt.check(n250 >= len(results) * 0.95,
         'failover: at least 95%% of the messages still delivered after the kill (%d/%d)' % (n250, len(results)))
after = [k for k, v in results.items() if v[0] == 250]
mt.check(sb.count() > 0 and mx.wait_log(r'event=backend_down backend=%s' % sa.url, 5) is not None,
         'the killed server is logged down (event=backend_down backend=%s)' % sa.url)
mt.check(load.end > killed_at, 'smtp-source load was still running when the server was killed')
mt.check(load.r.returncode == 0 or 'Connection refused' not in load.r.stderr,
         'smtp-source kept talking to mxgate throughout (rc=%s %s)' % (load.r.returncode, load.r.stderr[-150:]))
mark = mx.log_size()
sa.start()
mt.check(mx.wait_log(r'event=backend_up backend=%s' % sa.url, 8, start=mark) is not None,
         'a restarted server comes back (event=backend_up)')
na = sa.count()
for i in range(10):
    mt.send_mail(mx.port, FROM, [RCPT], mt.message('back%d' % i))
mt.check(sa.count() > na, 'the restarted server receives mail again (%d new)' % (sa.count() - na))
bad_lines = mx.malformed_log_lines()
mt.check(not bad_lines, 'under load and failover every log line is key=value (%s)' % bad_lines[:3])
mx.stop()

# ---------------------------------------------------------------- a backend dying inside one transaction
# When the backend connection of an open transaction closes, the session must not use the
# freed relay at its next RCPT or at end of data (this was once a heap-use-after-free in
# relay_command / relay_send_message).
for when in ('after MAIL', 'after RCPT'):
    pair = [mt.Backend(name='mid%d' % i) for i in range(2)]
    mx = mt.Mxgate(mt.config([b.url for b in pair], workers=1, backends={'health_check': {'interval': '60s'}}),
                   name='mx-mid-' + when.split()[1].lower())
    sender = 'mid-%s@example.org' % when.split()[1].lower()
    c = mt.Client(mx.port)
    c.ehlo()
    c.cmd('MAIL FROM:<%s>' % sender)
    if when == 'after RCPT':
        c.cmd('RCPT TO:<%s>' % RCPT)
    used = [b for b in pair if any(sender in x for x in b.commands)]
    other = [b for b in pair if b not in used]
    mt.check(len(used) == 1, '%s: the transaction is open on one backend' % when)
    if len(used) == 1:
        used[0].stop()
        time.sleep(mt.slack(0.3))
        if when == 'after MAIL':
            code, text = c.cmd('RCPT TO:<%s>' % RCPT)
            mt.check(code == 250 or (code is not None and 400 <= code < 500),
                     'backend killed %s: RCPT gets 250 (replayed) or 4xx (%s)' % (when, text))
        code, text = c.cmd('DATA')
        if code == 354:
            c.send(mt.stuff(mt.message('mid-' + when.split()[1])))
            code, text = c.reply()
        mt.check(code == 250 and len(other[0].messages) == 1 or (code is not None and 400 <= code < 500 and not other[0].messages),
                 'backend killed %s: the message goes to the other backend, or the client gets 4xx (%s)' % (when, text))
        mt.check(mx.alive(), 'backend killed %s: mxgate lives' % when)
    c.close()
    mx.stop()

# ---------------------------------------------------------------- every backend down
gone = mt.Sink(name='gone')
gone.kill()
mx = mt.Mxgate(mt.config([dead_url(), dead_url(), gone.url]), name='mx-down')
codes = [mt.send_mail(mx.port, FROM, [RCPT], mt.message('down%d' % i))[0] for i in range(6)]
mt.check(250 not in codes and all(c is not None and 400 <= c < 500 for c in codes),
         'all backends down: 4xx every time, never 250 (%s)' % codes)
r = mt.swaks(mx.port, '--from', FROM, '--to', RCPT)
mt.check(' 250 2.0.0' not in r.stdout and r.returncode != 0 and '<** 4' in r.stdout,
         'all backends down: swaks sees a 4xx (rc=%d)' % r.returncode)
mt.check(mx.wait_log(r'event=tempfail stage=\w+ reason=no_backend', 3) is not None, 'tempfail logged with reason=no_backend')
mx.stop()

# ---------------------------------------------------------------- misbehaving scripted backends alone
cases = [
    ('drop_after_data', {}, 'drops the connection after the DATA payload'),
    ('tempfail_data', {}, 'answers 451 after the DATA payload'),
    ('ok', {'delay': 3}, 'is slower than backends.data_timeout'),
]
for mode, kw, what in cases:
    be = mt.Backend(mode=mode, name='alone-' + mode, **kw)
    mx = mt.Mxgate(mt.config([be.url], backends={'data_timeout': '1s', 'max_attempts': 2}), name='mx-' + mode)
    t0 = time.time()
    code, text = mt.send_mail(mx.port, FROM, [RCPT], mt.message('alone'))
    took = time.time() - t0
    mt.check(code is not None and 400 <= code < 500, 'the only backend %s: client gets 4xx (%s)' % (what, text))
    mt.check(len(be.attempts) >= 1, '... after the backend really received the payload (%d attempts)' % len(be.attempts))
    mx.stop()
    if kw.get('delay'):
        # data_timeout's work, seen as its log line, not with the clock (it was "< 2.9 s"
        # against a 1 s timeout and a 3 s reply, which a loaded machine can miss): the slow
        # reply would have been a 250, so a 4xx logged as the timeout is the timer's.
        n = len(re.findall(r'event=backend_error backend=%s .*reason="[^"]*timeout' % re.escape(be.url), mx.log()))
        mt.check(n >= 1, '... at data_timeout, not after the slow reply: event=backend_error reason="timeout" '
                 '(%d such lines, answered after %.1fs)' % (n, took))
    be.stop()

# ---------------------------------------------------------------- ... and next to a healthy server
for mode, kw, what in cases + [('tempfail_connect', {}, 'answers 421 at the greeting'),
                               ('drop_at_connect', {}, 'closes before the greeting'),
                               ('tempfail_mail', {}, 'answers 451 to MAIL')]:
    be = mt.Backend(mode=mode, name='pair-' + mode, **kw)
    good = mt.Sink(name='good-' + mode)
    # fall: 100 keeps the bad server in rotation: every message meets it first or second
    mx = mt.Mxgate(mt.config([be.url, good.url], workers=1,
                             backends={'data_timeout': '1s', 'health_check': {'interval': '60s', 'fall': 100}}),
                   name='mx-pair-' + mode)
    codes = [mt.send_mail(mx.port, FROM, [RCPT], mt.message('pair-%s-%d' % (mode, i)))[0] for i in range(4)]
    ids = mt.message_ids(open(f, 'rb').read() for f in good.files())
    mt.check(codes == [250] * 4 and len(ids) == 4,
             'a backend that %s beside a healthy one: 4/4 delivered via failover (%s, %d at the healthy sink)' % (what, codes, len(ids)))
    if mode not in ('tempfail_connect', 'drop_at_connect', 'tempfail_mail'):
        mt.check(len(be.attempts) >= 1, '... the failing backend was really tried first (%d)' % len(be.attempts))
    mx.stop()
    be.stop()

# ---------------------------------------------------------------- hostile backends
hostile = [mt.Backend(mode=m, name='hostile-' + m) for m in ('garbage', 'stall', 'huge_reply')]
for b in hostile:
    mx = mt.Mxgate(mt.config([b.url], backends={'connect_timeout': '1s', 'reply_timeout': '1s', 'max_attempts': 2}),
                   name='mx-' + b.name)
    t0 = time.time()
    code, text = mt.send_mail(mx.port, FROM, [RCPT], mt.message(b.name))
    mt.check(code is not None and 400 <= code < 500 and mx.alive(),
             'a backend sending %s: the client gets 4xx, mxgate lives (%s, %.1fs)' % (b.mode, text, time.time() - t0))
    c = mt.Client(mx.port)
    mt.check(c.ehlo()[0] == 250, '... and keeps serving new sessions')
    c.close()
    mx.stop()
good = mt.Sink(name='hostile-good')
mx = mt.Mxgate(mt.config([b.url for b in hostile] + [good.url], workers=1,
                         backends={'connect_timeout': '1s', 'reply_timeout': '1s', 'max_attempts': 4,
                                   'health_check': {'interval': '60s', 'fall': 100}}), name='mx-hostile-mix')
codes = [mt.send_mail(mx.port, FROM, [RCPT], mt.message('hmix%d' % i))[0] for i in range(4)]
mt.check(codes == [250] * 4 and good.count() == 4, 'three hostile backends and one good one: 4/4 delivered (%s)' % codes)
mx.stop()

# ---------------------------------------------------------------- a final 5xx is the backend's verdict
rej = mt.Backend(mode='reject_data', name='rejector')
mx = mt.Mxgate(mt.config([rej.url]), name='mx-reject')
code, text = mt.send_mail(mx.port, FROM, [RCPT], mt.message('rej'))
mt.check(code == 554 and '5.7.1' in text, "a backend's 554 5.7.1 after DATA reaches the client (%s)" % text)
mt.check(mx.wait_log(r'event=reject stage=data reason=backend', 3) is not None, 'logged as event=reject stage=data reason=backend')
mx.stop()

mt.finish()
