#!/usr/bin/env python3
"""Every refusal the log shows is counted: /metrics' mxgate_refusal_events_total{event,stage,
reason} equals the number of `event=reject` / `event=tempfail` lines of each event, stage and
reason, whatever refused (mxgate's own checks, the HELO filter, a backend, the BDAT reader,
the connection limits, XCLIENT). One table below provokes each refusal once; the comparison is
over every refusal line in the log, so a refusal added later without its count fails here,
and so does a `log_event` that writes one by hand (the source scan at the end: every such
line goes through opstats_refusal, proxy/opstats.c).

Until session 23 the MAIL/RCPT checks' lines (non_fqdn_sender, size, param, relay_denied ...),
the spool lines, nul, BDAT's, XCLIENT's and a worker's reserve fd_limit refusal were logged
and not counted (refusals_total and the status views missed them); a MAIL or RCPT the parser
refused (an unbalanced path, 501 5.1.7 / 5.1.3), BDAT without a size (421 4.5.4) and the
command-order errors (503) were not logged at all. relay_denied's line lacked code= and reply=,
and so did the DATA stage's size, bare_lf, nul and spool lines; a backend's refusal of MAIL went to
the client with no line at all (now event=reject stage=mail reason=backend, backend=, code=, reply=).
Until session 24 the connect stage's 421s (max_connections_per_ip here) were event=reject lines
counted in tempfails_total: now event=tempfail, and each event's lines equal its counter.

Command-order errors: the first of a session is logged (reason=bad_sequence), the rest are
not: a client sending fifty writes one line."""
import collections
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

be = mt.Backend(reject_rcpt={'bounce@example.test'}, tempfail_rcpt={'later@example.test'})
mx = mt.Mxgate(mt.config([be.url], limits={'max_message_size': 20480, 'max_recipients': 2, 'max_errors': 100,
                                           'max_connections_per_ip': 2, 'bare_lf': 'reject'},
                         accept_domains=['example.test'], reject_non_fqdn_sender=True,
                         reject_non_fqdn_recipient=True,
                         helo_checks={'enabled': True, 'not_fqdn': {'action': 'reject'}, 'fcrdns': {'enabled': False}},
                         metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}))


def session(lines, ehlo='client.example.org'):
    """A session sending lines (str, or bytes sent as they are with no reply awaited but the
    last's); returns the codes of the replies, then QUIT."""
    c = mt.Client(mx.port)
    codes = []
    if ehlo:
        codes.append(c.ehlo(ehlo)[0])
    for ln in lines:
        if isinstance(ln, bytes):
            c.send(ln)
            codes.append(c.reply()[0])
        else:
            codes.append(c.cmd(ln)[0])
    try:
        c.cmd('QUIT')
    except OSError:
        pass        # closed by the server (BDAT without a size)
    # the server's close seen: the session no longer counts toward max_connections_per_ip
    # (session_close releases it before the socket closes), the connect test below is exact
    try:
        closed = c.is_closed(10)
    except OSError:
        closed = True   # reset: the QUIT came after the server's close
    mt.check(closed, 'the session closed after QUIT')
    c.close()
    return codes


def txn(*lines):
    return ['MAIL FROM:<s@example.org>', 'RCPT TO:<r@example.test>'] + list(lines) + ['RSET']


def data(body):
    return ['DATA', mt.stuff(body)]


def with_mode(mode, lines):
    be.mode = mode
    try:
        return session(lines)
    finally:
        be.mode = 'ok'


BIG = mt.message('big', size=30000)
# (event, stage, reason, the lines of a session that provokes it once, the refused reply's code)
REFUSALS = [
    ('reject', 'helo', 'helo', lambda: session([], ehlo='localname'), 504),
    ('reject', 'mail', 'non_fqdn_sender', lambda: session(['MAIL FROM:<a@localname>']), 504),
    ('reject', 'mail', 'size', lambda: session(['MAIL FROM:<a@example.org> SIZE=999999']), 552),
    ('reject', 'mail', 'param', lambda: session(['MAIL FROM:<a@example.org> FOO=BAR']), 555),
    ('reject', 'mail', 'syntax', lambda: session(['MAIL FROM:<a@example.org']), 501),
    ('reject', 'mail', 'backend', lambda: with_mode('reject_mail', ['MAIL FROM:<a@example.org>']), 550),
    ('reject', 'rcpt', 'non_fqdn_recipient', lambda: session(['MAIL FROM:<a@example.org>', 'RCPT TO:<b@localname>']),
     504),
    ('reject', 'rcpt', 'relay_denied', lambda: session(['MAIL FROM:<a@example.org>', 'RCPT TO:<b@other.test>']), 550),
    ('tempfail', 'rcpt', 'too_many_recipients',
     lambda: session(['MAIL FROM:<a@example.org>', 'RCPT TO:<1@example.test>', 'RCPT TO:<2@example.test>',
                      'RCPT TO:<3@example.test>']), 452),
    ('reject', 'rcpt', 'param', lambda: session(['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.test> NOTIFY=SOMETIMES']),
     501),
    ('reject', 'rcpt', 'syntax', lambda: session(['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.test']), 501),
    ('reject', 'rcpt', 'utf8', lambda: session(['MAIL FROM:<a@example.org>', 'RCPT TO:<b\u00e9@example.test>']), 553),
    ('reject', 'rcpt', 'backend', lambda: session(['MAIL FROM:<a@example.org>', 'RCPT TO:<bounce@example.test>']), 550),
    ('tempfail', 'rcpt', 'backend', lambda: session(['MAIL FROM:<a@example.org>', 'RCPT TO:<later@example.test>']),
     450),
    ('reject', 'data', 'size', lambda: session(txn(*data(BIG))), 552),
    ('reject', 'data', 'bare_lf', lambda: session(txn(*data(mt.message('lf', 'a\nb\r\n')))), 550),
    ('reject', 'data', 'nul', lambda: session(txn(*data(mt.message('nul', 'a\0b\r\n')))), 554),
    ('reject', 'data', 'backend', lambda: with_mode('reject_data', txn(*data(mt.message('rej'))))),
    ('tempfail', 'data', 'no_backend', lambda: with_mode('tempfail_data', txn(*data(mt.message('tmp'))))),
    ('reject', 'bdat', 'size', lambda: session(txn(b'BDAT 30000 LAST\r\n' + b'x' * 30000)), 552),
    ('tempfail', 'bdat', 'syntax', lambda: session(['BDAT x']), 421),
    ('reject', 'xclient', 'unauthorized', lambda: session(['XCLIENT ADDR=192.0.2.1']), 550),
    # command order: fifty in one session, one line
    ('reject', 'mail', 'bad_sequence', lambda: session(['MAIL FROM:<a@example.org>'] * 50, ehlo=None), 503),
    ('reject', 'rcpt', 'bad_sequence', lambda: session(['RCPT TO:<b@example.test>'] * 50), 503),
    ('reject', 'data', 'bad_sequence', lambda: session(['MAIL FROM:<a@example.org>'] + ['DATA'] * 50), 554),
    ('reject', 'bdat', 'bad_sequence', lambda: session([b'BDAT 3\r\nabc'] * 50), 503),
    ('reject', 'xclient', 'bad_sequence', lambda: session(['MAIL FROM:<a@example.org>'] + ['XCLIENT ADDR=192.0.2.1'] * 5),
     503),
]
# codes the row's session must have met (the refusal's; None: its own checks below)
for event, stage, reason, run, *code in REFUSALS:
    codes = run()
    if code:
        mt.check(code[0] in codes, '%s/%s/%s: the client got %d (%s)' % (event, stage, reason, code[0], codes))
    else:
        mt.check(any(c is not None and c // 100 in (4, 5) for c in codes[1:]),
                 '%s/%s/%s: refused (%s)' % (event, stage, reason, codes))

# the connection limit: a third connection from 127.0.0.1 while two are open
a, b = mt.Client(mx.port), mt.Client(mx.port)
sock, heard = mt.connect_answer(mx.port, 10)
sock.close()
mt.check(heard == '421', 'connect/max_connections_per_ip: the third connection hears 421 (%s)' % heard)
a.close()
b.close()
REFUSALS.append(('tempfail', 'connect', 'max_connections_per_ip', None))

# every session is over: its disconnect line is written after its last refusal line
mt.check(mt.wait_for(lambda: mx.count_log(r' event=disconnect ') >= len(REFUSALS) - 1 + 2, 10),
         'every session ended (%d disconnect lines)' % mx.count_log(r' event=disconnect '))

lines = collections.Counter(re.findall(r'^\S+ \w+ \S+ event=(reject|tempfail) stage=(\S+) reason=(\S+)',
                                       mx.log(), re.M))
status, text = mt.http_get(mx.metrics_port, '/metrics')
mt.check(status == 200, '/metrics answers (%s)' % status)
counted = {(e, s, r): float(v) for e, s, r, v in
           re.findall(r'^mxgate_refusal_events_total\{event="(\w+)",stage="([^"]*)",reason="([^"]*)"\} (\S+)$',
                      text, re.M)}

for event, stage, reason, *_ in REFUSALS:
    key = (event, stage, reason)
    mt.check(lines[key] == 1, '%s stage=%s reason=%s: one line (%d)' % (event, stage, reason, lines[key]))
for key in sorted(set(lines) | set(counted)):
    mt.check(counted.get(key, 0) == lines[key], '%s stage=%s reason=%s: /metrics counts the %d line(s) (%s)'
             % (key + (lines[key], counted.get(key))))
# The decisions' counters say what the lines say (no line here repeats a decision): each
# event=reject line is one of refusals_total, each event=tempfail line one of tempfails_total.
# Until session 24 the connect stage's 421 (max_connections_per_ip) was an event=reject line
# counted in tempfails_total.
for event, metric in (('reject', 'refusals_total'), ('tempfail', 'tempfails_total')):
    n = sum(v for k, v in lines.items() if k[0] == event)
    m = re.search(r'^mxgate_%s (\S+)$' % metric, text, re.M)
    mt.check(m is not None and float(m.group(1)) == n, 'mxgate_%s %s: the %d event=%s lines'
             % (metric, m and m.group(1), n, event))
# the connection limit's line: client=, a tempfail as its 421
mt.check(mx.count_log(r'(?m)info \S+ event=tempfail stage=connect reason=max_connections_per_ip client=127\.0\.0\.1$')
         == 1, 'connect/max_connections_per_ip: event=tempfail, as its 421 (%s)'
         % re.findall(r'.*reason=max_connections_per_ip.*', mx.log()))

# relay_denied in the common form of MAIL/RCPT refusals
mt.check(mx.count_log(r'(?m) event=reject stage=rcpt reason=relay_denied rcpt=<b@other\.test> domain=other\.test '
                      r'client=127\.0\.0\.1 code=550 reply="5\.7\.1 relaying denied"$') == 1,
         'relay_denied: rcpt=, domain=, client=, code=, reply=')
# a backend's refusal of the sender as its refusal of the message: backend=, code=, reply=
mt.check(mx.count_log(r'(?m) event=reject stage=mail reason=backend backend=%s code=550 '
                      r'reply="550 5\.7\.1 sender refused" client=127\.0\.0\.1$' % re.escape(be.url)) == 1,
         'mail/backend: backend=, code=, reply= as the DATA stage\'s backend line')
# the DATA stage's own refusals end in code= and reply= as every refusal line
for reason, code, reply in (('size', 552, '5.3.4 Message size exceeds fixed limit'),
                            ('bare_lf', 550, '5.6.0 Message contains bare CR or LF line endings, not allowed'),
                            ('nul', 554, '5.6.0 Message contains NUL characters, not allowed')):
    mt.check(mx.count_log(r'(?m) event=reject stage=data reason=%s .*client=127\.0\.0\.1 code=%d reply="%s"$'
                          % (reason, code, re.escape(reply))) == 1, 'data/%s: code= and reply=' % reason)
mt.check(mx.malformed_log_lines() == [], 'every log line in the house form')
mx.stop()

# The source: no refusal line is written but by opstats_refusal (which counts it).
by_hand = []
for top in ('proxy', 'filters', 'plugins', 'rules', 'store'):
    for root, _, files in os.walk(os.path.join(mt.SRC, top)):
        for f in files:
            if not f.endswith('.c') or (top == 'proxy' and f == 'opstats.c'):
                continue
            src = open(os.path.join(root, f), errors='replace').read()
            for m in re.finditer(r'log_event(?:_text)?\s*\([^;]*?"event=(?:reject|tempfail|%s stage)', src):
                by_hand.append('%s/%s:%d' % (top, f, src.count('\n', 0, m.start()) + 1))
mt.check(by_hand == [], 'no refusal line logged by hand, uncounted: %s' % by_hand)
mt.finish()
