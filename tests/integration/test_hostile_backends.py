#!/usr/bin/env python3
"""Hostile backends: scripted SMTP/LMTP servers that misbehave in every way a real MTA (or a
broken middlebox) can, in front of a real mxgate. In every case the client sees 250 only when
some backend really accepted the message (else 4xx, or the backend's own 5xx verdict), the
daemon never crashes (no sanitizer report) and the client's wait is bounded by the configured
timeouts (backends.reply_timeout / connect_timeout / data_timeout = 2 s here).

The bound is observed as events, not with the clock (docs/testing.md "Timing": at load 28 a
2 s timeout answered after 3.3 s): a backend that never answers hangs until the test ends,
so the 4xx the client gets can only come from mxgate's own timer, which the log names
(event=backend_error reason="timeout"); and no session waits through more timeouts than
the case allows (one: the hostile backend is given up after one, then the next is tried).
The client itself waits CLIENT_WAIT, far past any of that: a relay with no timeout is seen
as no answer.
"""
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
from hostile_peer import scripted, send_then, hang, stall_after, garbage_at_reuse  # noqa: E402

T0 = time.time()
TIMEOUT = 2          # backends.{connect,reply,data}_timeout in seconds
CLIENT_WAIT = mt.slack(60)   # the client's own patience: only a relay that never answers meets it


def cfg(servers, **kw):
    """A config with 2 s backend timeouts and health checks that never mark a server down (so
    the hostile server is really tried by the relay, not skipped)."""
    b = {'connect_timeout': '%ds' % TIMEOUT, 'reply_timeout': '%ds' % TIMEOUT,
         'data_timeout': '%ds' % TIMEOUT, 'max_attempts': 3,
         'health_check': {'interval': '1h', 'timeout': '1s', 'fall': 100, 'rise': 1},
         # the scripted servers offer no XCLIENT (backends.require_xclient would refuse them
         # all: test_xclient_required)
         'client_identity': 'none'}
    b.update(kw.pop('backends', {}))
    return mt.config(servers, backends=b, workers=1, **kw)


def timed_mail(port, tag, rcpts=('rcpt@example.test',), size=0, client=None, timeout=CLIENT_WAIT):
    t = time.time()
    code, text = mt.send_mail(port, 'sender@example.org', list(rcpts), mt.message(tag, size=size),
                              client=client, timeout=timeout)
    return code, text, time.time() - t


timeouts = mt.backend_timeouts   # {session id: backend timeouts}; read after mx.stop()


def check_waits(mx, title, most):
    """The bound on a client's wait, as events: no session of mx met more than `most` backend
    timeouts (each one ends at a configured timeout, so the wait is at most that many)."""
    per = timeouts(mx)
    worst = max(per.values(), default=0)
    mt.check(worst <= most, '%s: no session waits through more than %d backend timeout(s) (most: %d, %s)'
             % (title, most, worst, per))


def tags_of(srv):
    return mt.message_ids(b for _, b in srv.messages)


# ----------------------------------------------------------------------------- the cases

def case(title, hooks, expect_alone, alone_phase='data', lmtp=False, rcpts=('rcpt@example.test',),
         with_good=True, per_conn=None, times_out=False):
    """Runs one hostile server alone (the client must get expect_alone's class: 4 or 5, never
    250, after at most one backend timeout; times_out: a server that never answers, the
    answer is mxgate's timeout, logged), then next to a good backend (every message delivered
    there, none after more than one timeout)."""
    if ONLY and title not in ONLY.split(','):
        return
    bad = scripted(title, hooks, lmtp=lmtp, per_conn=per_conn)
    mx = mt.Mxgate(cfg([bad.url]), name='mx-' + title)
    code, text, secs = timed_mail(mx.port, title + '-alone', rcpts)
    mt.check(code is not None and code // 100 == expect_alone,
             '%s alone: client gets %dxx (got %s %s)' % (title, expect_alone, code, text[:70].replace('\n', ' ')))
    mt.check(mx.alive(), '%s alone: daemon alive' % title)
    mx.stop()
    check_waits(mx, title + ' alone', 1)
    if times_out:
        mt.check(sum(timeouts(mx, bad.url).values()) == 1,
                 '%s alone: the 4xx is the backend timeout, logged (event=backend_error reason="timeout": %s)'
                 % (title, timeouts(mx, bad.url)))
    mt.say('%s alone: answered after %.1fs' % (title, secs))
    if not with_good:
        bad.stop()
        return
    good = mt.Backend(lmtp=lmtp)
    mx = mt.Mxgate(cfg([bad.url, good.url]), name='mx-' + title + '-2')
    tags, worst = [], 0
    for i in range(4):
        tag = '%s-%d' % (title, i)
        code, text, secs = timed_mail(mx.port, tag, rcpts)
        worst = max(worst, secs)
        if code == 250:
            tags.append(tag)
        else:
            mt.check(False, '%s + good backend: message %d delivered (got %s %s)' % (title, i, code, text[:70]))
    mt.check(len(tags) == 4, '%s + good backend: 4 of 4 delivered by failover' % title)
    got = mt.message_ids(m['data'] for m in good.messages)
    mt.check(set(tags) <= got, '%s + good backend: every 250 is at the good backend' % title)
    mx.stop()
    good.stop()
    bad.stop()
    check_waits(mx, title + ' + good backend', 1)
    mt.say('%s + good backend: slowest answer %.1fs' % (title, worst))


ONLY = os.environ.get('MX_HOSTILE_ONLY')   # comma-separated case titles, for debugging
mt.need()

# Never greets: the greeting timeout (reply_timeout) fails it over, or 4xx.
case('nogreet', {'greet': hang}, 4, times_out=True)
# Greets 554.
case('greet554', {'greet': send_then(b'554 5.3.2 go away\r\n', False, 0.2)}, 4)
# A 10 MB multi-line reply to EHLO, and a 10 MB greeting line without a newline.
case('hugereply', {'ehlo': send_then((b'250-' + b'x' * 996 + b'\r\n') * 10240 + b'250 ok\r\n', True)}, 4)
case('hugeline', {'greet': send_then(b'220' + b'x' * (10 << 20), False, 5)}, 4)
# Garbage instead of replies (no digits).
case('garbage', {'greet': send_then(b'\x00\xffhello there\r\nwho are you\r\n', False, 1)}, 4)
case('garbage_mail', {'mail': send_then(b'OK FINE\r\n', False, 1)}, 4)
# A reply line longer than the relay's line buffer (1,023 octets; RFC 5321 4.5.3.1.5 allows
# 512): a backend fault, failed over or 4xx, never read cut off (main passed the 550 on as the
# backend's verdict and took the 250 after the dot as delivered, the rest of the line lost).
LONG = b'x' * 1100
case('longline_mail', {'mail': send_then(b'550 5.7.1 ' + LONG + b'\r\n', True)}, 4)
case('longline_dot', {'dot': send_then(b'250 2.0.0 queued ' + LONG + b'\r\n', True)}, 4)
case('longline_more', {'ehlo': send_then(b'250-ehlo.test ' + LONG + b'\r\n250 8BITMIME\r\n', True)}, 4)
if not ONLY or 'longline_limit' in ONLY.split(','):
    # A line of exactly 1,023 octets is still a reply, also when its CRLF comes in a later
    # read (the buffer is full then, and only the CR goes past it).
    def at_limit(srv, p, arg):
        line = b'250 2.1.0 ' + b'y' * (1023 - 10)
        p.send(line)
        time.sleep(0.3)
        p.send(b'\r\n')
        return True
    bad = scripted('longline_limit', {'mail': at_limit, 'rcpt': send_then(b'250 ' + b'z' * 1019 + b'\r\n', True)})
    mx = mt.Mxgate(cfg([bad.url]), name='mx-longline_limit')
    code, text, secs = timed_mail(mx.port, 'longline_limit')
    mt.check(code == 250 and 'longline_limit' in tags_of(bad),
             'reply lines of exactly 1,023 octets (one CRLF in a later read): delivered (got %s %s)'
             % (code, text[:70]))
    mx.stop()
    bad = scripted('longline_log', {'mail': send_then(b'550 5.7.1 ' + LONG + b'\r\n', True)})
    mx = mt.Mxgate(cfg([bad.url], backends={'max_attempts': 1}), name='mx-longline_log')
    code, text, secs = timed_mail(mx.port, 'longline_log')
    mt.check(code is not None and code // 100 == 4 and
             mx.count_log(r'event=backend_error .*reason="reply line too long"') >= 1,
             'a reply line too long: 4xx and event=backend_error reason="reply line too long" (got %s %s)'
             % (code, text[:70]))
    mx.stop()
# RFC 5321 4.2.1: every line of a multi-line reply carries the same code. One whose code
# changes is no answer (the relay took the last line's: a 250 after a 550- was delivered, a
# 550 after a 250- was passed on as the backend's verdict): a backend fault, failed over or 4xx.
case('codechange_dot', {'dot': send_then(b'550-5.7.1 refused\r\n250 2.0.0 Ok: queued\r\n', True)}, 4)
case('codechange_mail', {'mail': send_then(b'250-2.1.0 Ok\r\n550 5.1.0 refused\r\n', True)}, 4)
# A code whose first digit is not 1-5 (RFC 5321 4.2.1) is no reply either: the relay passed
# "600" to the client as a reply code and read "000" as its own "no reply" code.
case('code600_rcpt', {'rcpt': send_then(b'600 6.0.0 what\r\n', True)}, 4)
case('code000_dot', {'dot': send_then(b'000 ok\r\n', True)}, 4)
if not ONLY or 'codechange_log' in ONLY.split(','):
    bad = scripted('codechange_log', {'dot': send_then(b'550-5.7.1 refused\r\n250 2.0.0 Ok\r\n', True)})
    mx = mt.Mxgate(cfg([bad.url], backends={'max_attempts': 1}), name='mx-codechange_log')
    code, text, secs = timed_mail(mx.port, 'codechange_log')
    mt.check(code is not None and code // 100 == 4 and
             mx.count_log(r'event=backend_error .*reason="reply code changes within a reply"') >= 1,
             'a reply whose code changes: 4xx and event=backend_error reason="reply code changes within '
             'a reply" (got %s %s)' % (code, text[:70]))
    mx.stop()
# 421 to MAIL (the backend is shutting down).
case('mail421', {'mail': send_then(b'421 4.3.2 shutting down\r\n', False)}, 4)
# Accepts DATA, then stalls past data_timeout (after reading the body / without reading it).
case('datastall', {'dot': hang}, 4, times_out=True)
case('datanoread', {'data': stall_after(b'354 go\r\n')}, 4, times_out=True)
# The relay's deadline moves later while its timer runs: reply_timeout (1 s) for MAIL, RCPT
# and DATA, then data_timeout from the message on. relay_arm leaves the earlier timer
# running and it starts again for the rest when it fires: a final reply 2 s after the dot
# must still be taken (a timer that failed the step at the first firing would give 4xx), and
# a backend that never answers must still time out (4xx at the timeout, logged). The 2 s
# are a lower bound (the 1 s timer has fired by then, however loaded the machine); the
# reply's data_timeout is 30 s, a margin no load eats (it was 5 s: 3 s for a loaded
# machine to pass the late reply on).
if not ONLY or 'dotlate' in ONLY.split(','):
    def dot_late(srv, p, arg):
        time.sleep(2)
        return None
    bad = scripted('dotlate', {'dot': dot_late})
    mx = mt.Mxgate(cfg([bad.url], backends={'reply_timeout': '1s', 'data_timeout': '30s', 'max_attempts': 1}),
                   name='mx-dotlate')
    code, text, secs = timed_mail(mx.port, 'dotlate')
    mt.check(code == 250, 'final reply 2 s after the dot, data_timeout 30 s, reply_timeout 1 s: 250 (got %s %s)'
             % (code, text[:70]))
    mt.check('dotlate' in tags_of(bad), 'dotlate: the 250 is at the backend')
    mx.stop()
    bad = scripted('dotnever', {'dot': hang})
    mx = mt.Mxgate(cfg([bad.url], backends={'reply_timeout': '1s', 'data_timeout': '3s', 'max_attempts': 1}),
                   name='mx-dotnever')
    code, text, secs = timed_mail(mx.port, 'dotnever')
    mt.check(code is not None and code // 100 == 4, 'no final reply, data_timeout 3 s: 4xx (got %s %s)'
             % (code, text[:70]))
    mt.check(mx.alive(), 'dotnever: daemon alive')
    mx.stop()
    bad.stop()
    mt.check(list(timeouts(mx, bad.url).values()) == [1],
             'dotnever: the 4xx is the one timeout, logged (event=backend_error reason="timeout": %s)'
             % timeouts(mx, bad.url))
# A backend that starts reading the message 3 s after its 354 (reply_timeout is 2 s,
# data_timeout 20 s): the socket fills and the relay's writes queue (relay_pump, also for
# the body's last piece, which it writes from the message buffer itself when the socket
# takes it at once). Every size must arrive byte for byte behind mxgate's Received field: the
# time for sending the message is data_timeout since the backend last took some of it
# (it was the DATA command's reply_timeout for the whole transfer: the 15 MB message, too
# big for the socket buffers, got 451 after 2 s).
if not ONLY or 'slowread' in ONLY.split(','):
    def slow_read(srv, p, arg):
        p.send('354 go ahead\r\n')
        time.sleep(3)
        return True
    bad = scripted('slowread', {'data': slow_read})
    mx = mt.Mxgate(cfg([bad.url], backends={'data_timeout': '20s'}), name='mx-slowread')
    for size in (20000, 200000, 3000000, 15000000):
        tag = 'slowread%d' % size
        data = mt.message(tag, size=size)
        # the client waits as long as the backend's data_timeout lets the transfer take:
        # under load the 15 MB one took 26 s and a 10 s client gave up before its 250
        code, text, secs = timed_mail(mx.port, tag, size=size, timeout=mt.slack(60))
        got = [b for _, b in bad.messages if b'<%s@' % tag.encode() in b]
        mt.check(code == 250 and len(got) == 1 and got[0].endswith(data) and got[0].startswith(b'Received: '),
                 'slow reader, %d octets: delivered byte-exact behind the Received field (%s %s)'
                 % (size, code, text[:60]))
    mt.check(mx.alive(), 'slowread: daemon alive')
    mx.stop()
# LMTP: one reply for three recipients, then the connection closes.
case('lmtpshort', {'dot': send_then(b'250 2.0.0 <r1@example.test> Ok\r\n', False)}, 4, lmtp=True,
     rcpts=('r1@example.test', 'r2@example.test', 'r3@example.test'))
# 5xx verdict after the dot is passed to the client as is.
if not ONLY or 'reject' in ONLY:
  bad = scripted('reject', {'dot': send_then(b'554 5.7.1 no thanks\r\n', True)})
  mx = mt.Mxgate(cfg([bad.url]), name='mx-reject')
  code, text, secs = timed_mail(mx.port, 'rej')
  mt.check(code == 554, "a backend's 5xx verdict reaches the client (got %s)" % code)
  mx.stop()


def pooled(title, hooks_for_conn, note):
    """Two messages 1 s apart through one backend whose connection n behaves per
    hooks_for_conn(n, state): both must be delivered (a fresh connection when the pooled one
    went bad), nothing lost."""
    if ONLY and title not in ONLY.split(','):
        return
    bad = scripted(title, per_conn=hooks_for_conn)
    mx = mt.Mxgate(cfg([bad.url]), name='mx-' + title)
    res = []
    for i in range(3):
        code, text, secs = timed_mail(mx.port, '%s-%d' % (title, i))
        res.append((code, text, secs))
        time.sleep(1)
    codes = [r[0] for r in res]
    mt.check(codes == [250, 250, 250], '%s: three messages 1 s apart all delivered (%s) %s' % (
        title, ', '.join('%s %s' % (c, t[:40]) for c, t, _ in res if c != 250) or codes, note))
    got = tags_of(bad)
    mt.check(all('%s-%d' % (title, i) in got for i in range(3) if codes[i] == 250),
             '%s: every 250 is at the backend' % title)
    mt.check(bad.n >= 2, '%s: a fresh connection was opened (%d connections)' % (title, bad.n))
    mx.stop()
    check_waits(mx, title, 1)


def idle_close(n):
    # The backend closes a pooled connection 0.3 s after RSET (a short idle timeout).
    return {'idle': lambda srv, p, a: time.sleep(0.3) or False}


def idle_chatter(n):
    # The backend says something while idle (421 idle timeout) and keeps the socket open.
    return {'idle': send_then(b'421 4.4.2 idle timeout, closing\r\n', True, 0.3)}


def close_at_reuse(n):
    # The backend keeps the pooled connection, but closes it without a word at the next MAIL
    # (it timed out the connection just as it was reused): a race every pool meets.
    st = {'txns': 0}

    def mail(srv, p, arg):
        st['txns'] += 1
        if st['txns'] > 1:
            return False
        return None
    return {'mail': mail}


# A protocol error on a reused pooled connection is the backend's fault: logged as what it is
# and counted as the backend's failure (it was renamed "stale pooled connection", not counted,
# as a connection the backend had closed while idle), and the message still goes on a fresh
# connection, not counted as an attempt (max_attempts 1 here).
if not ONLY or 'poolgarbage' in ONLY.split(','):
    bad = scripted('poolgarbage', per_conn=garbage_at_reuse)
    c = cfg([bad.url], backends={'max_attempts': 1})
    mport = mt.hold_port().port
    c['metrics'] = {'listen': '127.0.0.1:%d' % mport}
    mx = mt.Mxgate(c, name='mx-poolgarbage')
    res = []
    for i in range(3):
        res.append(timed_mail(mx.port, 'poolgarbage-%d' % i))
        time.sleep(0.5)
    codes = [r[0] for r in res]
    mt.check(codes == [250, 250, 250] and all('poolgarbage-%d' % i in tags_of(bad) for i in range(3)),
             'garbage on a reused connection: the three messages delivered on fresh connections (%s)' % codes)
    mt.check(mx.count_log(r'event=backend_error .*reason="malformed reply" pooled=reused retry=fresh') >= 1,
             'garbage on a reused connection: event=backend_error reason="malformed reply" pooled=reused')
    mt.check(mx.count_log(r'event=backend_error .*reason="stale pooled connection"') == 0,
             'garbage on a reused connection: not logged as a stale pooled connection')
    st, body = mt.http_get(mport, '/metrics')
    m = re.search(r'^mxgate_backend_failures_total (\d+)', body or '', re.M)
    mt.check(m is not None and int(m.group(1)) >= 1,
             'garbage on a reused connection: counted in mxgate_backend_failures_total (%s)'
             % (m.group(0) if m else 'no such line'))
    mx.stop()


pooled('poolidleclose', idle_close, '(the backend closed the idle pooled connection)')
pooled('poolchatter', idle_chatter, '(the backend spoke on an idle connection)')
pooled('poolreuse', close_at_reuse, '(the pooled connection was dead at reuse)')

# The relay closes its connection under the session (EOF or an unsolicited reply while the
# session holds it between commands) and the session later uses the freed struct relay:
# heap-use-after-free in relay_command / relay_send_message.
UAF = 'relay closed while the session holds it (backend EOF or stray reply between commands) -> ' \
      'heap-use-after-free in relay_send_message/relay_command'


def uaf_case(title, hooks, steps):
    if ONLY and title not in ONLY.split(','):
        return
    bad = scripted(title, hooks)
    good = mt.Backend()
    mx = mt.Mxgate(cfg([bad.url, good.url], backends={'balance': 'round_robin'}), name='mx-' + title)
    c = mt.Client(mx.port, timeout=CLIENT_WAIT)
    c.ehlo()
    t = time.time()
    code, text = c.cmd('MAIL FROM:<s@example.org>')
    if 'pause_mail' in steps:
        time.sleep(0.8)
    if code == 250:
        code, text = c.cmd('RCPT TO:<rcpt@example.test>')
    if 'pause_rcpt' in steps:
        time.sleep(0.8)
    if code == 250:
        code, text = c.cmd('DATA')
        if code == 354:
            c.send(mt.stuff(mt.message(title)))
            code, text = c.reply()
    secs = time.time() - t
    delivered = title in mt.message_ids([m['data'] for m in good.messages] + [b for _, b in bad.messages])
    mt.check(code is not None and (code == 250) == delivered and (code == 250 or code // 100 == 4),
             '%s: 250 only when delivered, else 4xx (got %s %s, delivered=%s)' % (title, code, text[:60], delivered))
    mt.check(mx.alive(), '%s: daemon alive' % title)
    c.close()
    mx.stop()
    check_waits(mx, title, 2)
    mt.say('%s: answered after %.1fs' % (title, secs))


# Drops the connection right after accepting RCPT.
uaf_case('droprcpt', {'rcpt': send_then(b'250 2.1.5 Ok\r\n', False, 0.1)}, ('pause_rcpt',))
# Answers MAIL twice (one stray 250).
uaf_case('twice', {'mail': send_then(b'250 2.1.0 Ok\r\n250 2.1.0 Ok again\r\n', True)}, ('pause_mail',))
# Speaks between commands in a transaction.
def stray_later(srv, p, arg):
    p.send(b'250 2.1.0 Ok\r\n')
    threading.Timer(0.3, p.send, [b'220 hello, are you there?\r\n']).start()
    return True
uaf_case('chatter', {'mail': stray_later}, ('pause_mail',))

# The client leaves while the backend connection is still being opened (a slow greeting):
# the session is freed, then the relay's open callback runs on it (use-after-free in
# session_est_open_cb). The open must count as a pending operation of the session.
if (not ONLY or 'leaveopen' in ONLY) and True:
    def slow_greet(srv, p, arg):
        time.sleep(1.0)
        p.send('220 late ESMTP\r\n')
        return True
    bad = scripted('leaveopen', {'greet': slow_greet})
    mx = mt.Mxgate(cfg([bad.url]), name='mx-leaveopen')
    for i in range(3):
        s = socket.create_connection(('127.0.0.1', mx.port), 10)
        s.recv(512)
        s.sendall(b'EHLO x.test\r\nMAIL FROM:<a@example.org>\r\n')
        time.sleep(0.2)
        s.close()
    time.sleep(2.5)
    mt.check(mx.alive(), 'clients gone while backend connections open: daemon alive')
    code, text, secs = timed_mail(mx.port, 'leaveopen-after')
    mt.check(code == 250, '... and it still delivers (%s)' % code)
    mx.stop()

mt.say('took %.1fs' % (time.time() - T0))
mt.finish()
