#!/usr/bin/env python3
"""Nothing delivered twice (docs/operations.md "LMTP backends: one reply per recipient"): an
LMTP server that answers some recipients after the dot and then drops the connection, or goes
silent, has delivered to those; the replay carries only the others. Real daemon, a scripted
LMTP server (hostile_peer) in front of a good backup backend (mt.Backend), mxctl's counters.

- drop: 250 for the first of three recipients after the dot, then the connection closes. The
  client gets 250; the backup gets the message for the other two only; logged lmtp_partial
  delivered=1 tempfailed=2, lmtp_rcpt_tempfail for the two by name, event=delivered rcpts=2;
  `top recipients` counts each recipient delivered once. (Before: one code 0 for the whole
  message, the first recipient got a second copy from the backup.)
- silent: the same, the server going silent after the one reply (backends.data_timeout).
- 250, 550, then the drop: the refused one is not the first's; the first gets no second copy.
- plain SMTP, the 250 and the close in one write; and a 250 said twice: delivered once, no
  replay, the client's 250.
- replay550: r1 taken, the drop, the backup refuses r2 at RCPT (550): r2 alone dropped
  (event=replay_rcpt_refused), r3 gets it, the client 250; replay550all: both refused.
- a quarantine release through such an LMTP server, alone (its replays fail the same way
  until max_attempts): the held file names only the recipients without their copy.
"""
import glob
import json
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
from hostile_peer import scripted, hang  # noqa: E402

FROM = 's@example.org'
SOCK = os.path.join(mt.TMP, 'control.sock')
R = ['r1@example.test', 'r2@example.test', 'r3@example.test']

mt.need()


def top_rcpts():
    rc, out, err = mt.ctl(SOCK, '--json', 'top', 'recipients')
    try:
        js = json.loads(out)
    except ValueError:
        js = {}
    mt.check(rc == 0, 'mxgatectl --json top recipients (%s %r)' % (rc, err[:200]))
    return {r['recipient']: r['count'] for r in js.get('delivered', [])}


def answer_some(replies, then):
    """A 'dot' hook: the LMTP replies given (one line each, for the first recipients), what
    the 250s took recorded in srv.messages, then `then` (False: the connection closes; hang:
    silent until the test ends)."""
    def dot(srv, p, arg):
        rcpts, body = arg
        took = [a for a, line in zip(rcpts, replies) if line.startswith('2')]
        with srv.lock:
            srv.messages.append((took, body))
        p.send(''.join('%s\r\n' % line.replace('%s', a) for a, line in zip(rcpts, replies)))
        return then(srv, p, arg) if callable(then) else then
    return dot


def copies(tag, bad, good):
    """Recipient -> how many copies of message tag it got, from both servers."""
    n = {}
    for rcpts, body in bad.messages:
        if tag in mt.message_ids([body]):
            for a in rcpts:
                n[a] = n.get(a, 0) + 1
    for m in good.by_tag(tag):
        for a in m['accepted_rcpts']:
            n[a] = n.get(a, 0) + 1
    return n


def lmtp_case(title, replies, then, rcpts=R, expect_copies=None, backends=None):
    bad = scripted(title, {'dot': answer_some(replies, then)}, lmtp=True)
    good = mt.Backend(lmtp=True, name='good-' + title)
    b = {'max_attempts': 2}
    b.update(backends or {})
    mx = mt.Mxgate(mt.config([bad.url, {'address': good.url, 'backup': True}], workers=1, backends=b,
                             control={'socket': SOCK}), name='mx-' + title)
    code, text = mt.send_mail(mx.port, FROM, rcpts, mt.message(title), timeout=30)
    mt.check(code == 250, '%s: the client gets 250 (%s %s)' % (title, code, text))
    got = copies(title, bad, good)
    want = expect_copies or {a: 1 for a in rcpts}
    mt.check(got == want, '%s: each recipient has one copy, none a second (%s, want %s)' % (title, got, want))
    mt.check(len(good.by_tag(title)) == 1 and good.by_tag(title)[0]['rcpts'] == rcpts[1:],
             '%s: the replay names only the recipients still owed (%s)' %
             (title, [m['rcpts'] for m in good.by_tag(title)]))
    mt.check(re.search(r'event=backend_tempfail [^\n]* code=0 ', mx.log()) is not None,
             '%s: backend_tempfail names the failure (code=0), not the first recipient\'s 250' % title)
    line = mx.wait_log(r'event=lmtp_partial [^\n]*', 10)
    mt.check(line is not None and ' delivered=1 ' in line.group(0),
             '%s: lmtp_partial delivered=1 (%s)' % (title, line and line.group(0)))
    temps = re.findall(r'event=lmtp_rcpt_tempfail [^\n]*rcpt=<([^>]*)>', mx.log())
    mt.check(rcpts[0] not in temps and temps == rcpts[1:], '%s: the one delivered is not logged as deferred (%s)' % (title, temps))
    line = mx.wait_log(r'event=delivered [^\n]*', 10)
    mt.check(line is not None and ' rcpts=%d ' % (len(rcpts) - 1) in line.group(0),
             '%s: event=delivered counts what the backup took (%s)' % (title, line and line.group(0)))
    dlv = top_rcpts()
    mt.check(dlv == {a: 1 for a in rcpts}, '%s: top recipients counts each delivered once (%s)' % (title, dlv))
    mt.check(mx.alive(), '%s: daemon alive' % title)
    mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
    mx.stop()
    bad.stop()
    good.stop()
    return mx


OK = '250 2.0.0 <%s> Ok: queued as L1'

if mt.case_wanted('drop'):
    lmtp_case('drop', [OK], False)

if mt.case_wanted('silent'):
    mx = lmtp_case('silent', [OK], hang, backends={'data_timeout': '2s'})
    mt.check(re.search(r'event=backend_error [^\n]*reason="timeout" limit=data_timeout', mx.log()) is not None,
             'silent: the LMTP server timed out (data_timeout)')

def replay_refused_case(title, refused):
    """The LMTP server takes r1 and drops; the backup refuses `refused` at RCPT with 550 on
    the replay. Those alone are dropped (event=replay_rcpt_refused by name), the others get
    theirs, the client hears 250: r1 has the message (main: the backup's 550 went to the
    client for the whole message, r3 was never tried)."""
    bad = scripted(title, {'dot': answer_some([OK], False)}, lmtp=True)
    good = mt.Backend(lmtp=True, name='good-' + title, reject_rcpt=set(refused))
    mx = mt.Mxgate(mt.config([bad.url, {'address': good.url, 'backup': True}], workers=1,
                             backends={'max_attempts': 2}, control={'socket': SOCK}), name='mx-' + title)
    code, text = mt.send_mail(mx.port, FROM, R, mt.message(title), timeout=30)
    mt.check(code == 250, '%s: the client gets 250, r1 has it (%s %s)' % (title, code, text))
    got = copies(title, bad, good)
    want = {a: 1 for a in R if a not in refused}
    mt.check(got == want, '%s: one copy each but for the refused (%s, want %s)' % (title, got, want))
    named = re.findall(r'event=replay_rcpt_refused [^\n]*rcpt=<([^>]*)> code=550 [^\n]*delivered=1 [^\n]*action=dropped',
                       mx.log())
    mt.check(named == list(refused), '%s: each refused one logged by name (%s)' % (title, named))
    line = mx.wait_log(r'event=delivered [^\n]*', 10)
    left = len(R) - 1 - len(refused)
    mt.check(line is not None and ' rcpts=%d ' % left in line.group(0),
             '%s: event=delivered counts what the backup took (%s)' % (title, line and line.group(0)))
    dlv = top_rcpts()
    mt.check(dlv == want, '%s: top recipients counts the delivered ones once (%s)' % (title, dlv))
    mt.check(mx.alive(), '%s: daemon alive' % title)
    mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
    mx.stop()
    bad.stop()
    good.stop()


if mt.case_wanted('replay550'):
    replay_refused_case('replay550', [R[1]])

if mt.case_wanted('replay550all'):
    # every recipient still owed refused: nothing left to send, r1's copy stands
    replay_refused_case('replay550all', R[1:])


def smtp_case(title, hooks, want_code=250, want_bad=1, want_good=0):
    """A plain SMTP server (hostile_peer) with a good backup: the client's answer, and where
    the message went (copies at each)."""
    bad = scripted(title, hooks)
    good = mt.Backend(name='good-' + title)
    mx = mt.Mxgate(mt.config([bad.url, {'address': good.url, 'backup': True}], workers=1,
                             # the scripted server offers no XCLIENT (require_xclient would refuse it)
                             backends={'max_attempts': 2, 'client_identity': 'none'}), name='mx-' + title)
    code, text = mt.send_mail(mx.port, FROM, R[:1], mt.message(title), timeout=30)
    mt.check(code == want_code, '%s: the client gets %s (%s %s)' % (title, want_code, code, text))
    nbad = sum(1 for _, body in bad.messages if title in mt.message_ids([body]))
    ngood = len(good.by_tag(title))
    mt.check((nbad, ngood) == (want_bad, want_good), '%s: copies at the server %d, at the backup %d (want %d, %d)'
             % (title, nbad, ngood, want_bad, want_good))
    mt.check(mx.alive(), '%s: daemon alive' % title)
    mx.stop()
    bad.stop()
    good.stop()
    return mx


def took(reply, then):
    """A 'dot' hook: the message recorded as taken, reply sent (one write), then `then`."""
    def dot(srv, p, arg):
        rcpts, body = arg
        with srv.lock:
            srv.messages.append((list(rcpts), body))
        p.send(reply)
        return then
    return dot


if mt.case_wanted('smtp250close'):
    # the 250 and the close in one write: delivered there, never replayed
    smtp_case('smtp250close', {'dot': took(b'250 2.0.0 Ok: queued as Q1\r\n', False)})

if mt.case_wanted('smtp250twice'):
    # 250 said twice after the dot: the first is the answer, the second no reply to anything
    smtp_case('smtp250twice', {'dot': took(b'250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok: again\r\n', True)})

if mt.case_wanted('smtp250data'):
    # 250 to DATA (no 354; a reply said twice shifts the next one there): the server never
    # got the message, so that is no delivery: the backup takes it (before: the client got
    # 250 "queued" and the message was at neither server)
    def data250(srv, p, arg):
        p.send(b'250 2.0.0 Ok: queued as Q0\r\n')
        return True
    smtp_case('smtp250data', {'data': data250}, want_bad=0, want_good=1)

if mt.case_wanted('qrelease'):
    # A quarantine release through an LMTP server that takes the first of three and drops,
    # alone: the replay finds no other server, the release fails, and the held file names
    # only the two without their copy (before: all three, and the next release sent the
    # first a second copy).
    rules_file = os.path.join(mt.TMP, 'qdup.cf')
    with open(rules_file, 'w') as f:
        f.write('header QD_MID Subject =~ /\\bqdup/\nscore QD_MID 7\n')
    qdir = os.path.join(mt.TMP, 'quarantine')
    cut = {'on': True}

    def qdot(srv, p, arg):
        if not cut['on']:
            return None   # the normal replies: 250 for each
        return answer_some([OK], False)(srv, p, arg)
    lq = scripted('qdup', {'dot': qdot}, lmtp=True)
    mx = mt.Mxgate(mt.config([lq.url], workers=1, rules={'files': [rules_file], 'actions': {'quarantine': 6}},
                             quarantine='maildir:' + qdir, control={'socket': SOCK}, backends={'max_attempts': 2}),
                   name='mx-qdup')
    code, text = mt.send_mail(mx.port, FROM, R, mt.message('qdup1'), timeout=30)
    m = re.search(r'queued as (\S+)', text or '')
    mt.check(code == 250 and m is not None, 'qdup1: held (%s %s)' % (code, text))
    qid = m.group(1) if m else 'NONE'
    rc, out, err = mt.ctl(SOCK, 'quarantine', 'release', qid)
    mt.check(rc == 1 and 'delivered to 1 of 3 before: the held file now names only the 2 not delivered' in err,
             'release: fails after the LMTP server took r1, the file names the 2 others (%s %r %r)' % (rc, out, err))
    held = sorted(glob.glob(os.path.join(qdir, 'new', '*')))
    env = []
    if held:
        with open(held[0], 'rb') as f:
            head = f.read().split(b'X-Quarantine-ID:', 1)[0]
        em = re.search(rb'^X-Envelope-To: (.*?)\r\n(?=\S)', head, re.M | re.S)
        env = re.findall(rb'<([^>]*)>', em.group(1)) if em else []
    mt.check(len(held) == 1 and env == [a.encode() for a in R[1:]],
             'the held file names only r2 and r3 (%s)' % env)
    cut['on'] = False
    rc, out, err = mt.ctl(SOCK, 'quarantine', 'release', qid)
    n = {}
    for rcpts, body in lq.messages:
        if 'qdup1' in mt.message_ids([body]):
            for a in rcpts:
                n[a] = n.get(a, 0) + 1
    mt.check(rc == 0 and n == {a: 1 for a in R},
             'released again: r2 and r3 get theirs, r1 no second copy (%s %r %s)' % (rc, err, n))
    mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
    mx.stop()
    lq.stop()

mt.finish()
