#!/usr/bin/env python3
"""test_bayes — the learning classifier in the real daemon.

LMDB: `mxgate learn spam MAILDIR` and `learn ham MBOX` teach it offline (counts printed,
learning again is a no-op); below min_spam/min_ham it abstains (no BAYES symbol); POST
/learn/spam on the metrics listener teaches the running daemon (learned / already / moved,
404 for other paths, 400 for an empty message; 403 outside learn_from (also over
max_learn_size: an outsider is not told the limit), 503 without a classifier); then a spammy message reaches the backend with BAYES_99 in
X-Spam-Status and a hammy one with BAYES_00 (the BAYES_xx rules of rules/default.rules,
eval:check_bayes). The control socket: `mxgatectl learn spam|ham FILE` (a message, an mbox,
--json) teaches the running daemon by the same path as `mxgate learn`.
Autolearn: spam with 20 body and 4 header points is learned, with 20 body points alone not
(SpamAssassin's 3 + 3 rule); a 0-point message as ham (the classifier abstaining); a
message learned before (by hand as the other class, or autolearned) is not moved and says
autolearn=unavailable, a learn the store fails (an LMDB map too small) autolearn=failed, on
LMDB and on Redis.
bayes_ignore_header lines of the rule files: the named header is neither learned nor scored.
Redis: two daemons share one store: what one learned through its POST endpoint, the other
classifies. Peers: the recording Backend, redis-server (skipped when missing, a failure in
CI)."""
import json
import os
import re
import subprocess
import sys
import socket
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
N = 24                # messages per class (min_spam / min_ham 20)
SPAM_WORDS = ('cheap replica watches casino bonus winner pills pharmacy discount unsubscribe '
              'limited offer click guaranteed')
HAM_WORDS = ('meeting agenda project review schedule minutes budget release notes patch '
             'build kernel thanks regards')


def msg(kind, i, words, extra=''):
    return ('From: %s%d@example.org\r\nTo: user@example.test\r\nSubject: %s %d\r\n'
            'Message-ID: <%s-%d@bayes.test>\r\n\r\n%s %s word%s%d\r\n'
            % (kind, i, words.split()[i % len(words.split())], i, kind, i, words, extra, kind, i)).encode()


def status(data):
    """The tests= list of the message's X-Spam-Status, or None. Unfolded as RFC 5322 2.2.3
    says (the line break goes, the white space stays: a fold may stand for the space between
    two fields, `required=5.0 CRLF TAB tests=...`); inside the tests list a fold comes after
    a comma (SpamAssassin's wrapping), so its white space is dropped there."""
    head = re.split(rb'\r?\n\r?\n', data, 1)[0].decode('latin-1')
    head = re.sub(r'\r?\n(?=[ \t])', '', head)
    m = re.search(r'^X-Spam-Status:\s*(\S+)\s+score=\S+\s+required=\S+\s+tests=(.*?)'
                  r'(?:\s+autolearn=|\s+version=|$)', head, re.M)
    return [t for t in re.sub(r'\s+', '', m.group(2)).split(',') if t] if m else None


# The helper itself (it once joined folds without a space: `required=5.0` folded before
# `tests=` read as no X-Spam-Status at all).
mt.check(status(b'X-Spam-Status: Yes, score=7.5 required=5.0\r\n\ttests=A,B,\r\n\tC'
                b' autolearn=no\r\n version=x\r\nSubject: s\r\n\r\nbody') == ['A', 'B', 'C'],
         'status() unfolds X-Spam-Status as RFC 5322 2.2.3 says')
mt.check(status(b'X-Spam-Status: No, score=0.0 required=5.0 tests=none autolearn=disabled\r\n\r\n')
         == ['none'], 'status() of an unfolded field')


def post(port, path, data):
    req = urllib.request.Request('http://127.0.0.1:%d%s' % (port, path), data=data, method='POST')
    try:
        with urllib.request.urlopen(req, timeout=mt.slack(10)) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode().strip()


def read_all(sk):
    """What the server sends until it closes."""
    resp = b''
    while True:
        chunk = sk.recv(4096)
        if not chunk:
            return resp
        resp += chunk


def rules_cfg(store, metrics_port=None):
    return {'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
            'bayes': {'enabled': True, 'store': store, 'min_spam': 20, 'min_ham': 20}}


def daemon(be, store, name):
    mport = mt.hold_port().port
    cfg = mt.config([be.url], rules=rules_cfg(store), metrics={'listen': '127.0.0.1:%d' % mport})
    return mt.Mxgate(cfg, name=name), mport


def deliver(mx, be, data):
    n = len(be.messages)
    code, text = mt.send_mail(mx.port, 'a@example.org', ['user@example.test'], data)
    mt.check(code == 250, 'delivered: %s %s' % (code, text))
    mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(10))
    return status(be.messages[-1]['data']) if len(be.messages) > n else None


# ---- offline learning into LMDB: a maildir of spam, an mbox of ham
store = 'lmdb:' + os.path.join(mt.TMP, 'bayes')
cli_cfg = os.path.join(mt.TMP, 'learn.yaml')
with open(cli_cfg, 'w') as f:
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}],
                                 rules=rules_cfg(store))))
maildir = os.path.join(mt.TMP, 'Maildir')
for sub in ('cur', 'new', 'tmp'):
    os.makedirs(os.path.join(maildir, sub))
for i in range(N - 4):
    with open(os.path.join(maildir, 'cur' if i % 2 else 'new', '%d.host:2,S' % i), 'wb') as f:
        f.write(msg('spam', i, SPAM_WORDS))
mbox = os.path.join(mt.TMP, 'ham.mbox')
with open(mbox, 'wb') as f:
    for i in range(N):
        f.write(b'From ham%d@example.org Mon Jan  1 00:00:00 2024\n' % i)
        f.write(msg('ham', i, HAM_WORDS, extra='\r\n>From the list archive\r\n').replace(b'\r\n', b'\n'))
        f.write(b'\n')

r = mt.run_mxgate('-c', cli_cfg, 'learn', 'spam', maildir)
mt.check(r.returncode == 0 and 'learned %d spam' % (N - 4) in r.stdout,
         'learn spam from a maildir: %s %s' % (r.stdout.strip(), r.stderr.strip()))
mt.check('below min_spam/min_ham' in r.stdout, 'says it abstains without ham: %s' % r.stdout)
r = mt.run_mxgate('-c', cli_cfg, 'learn', 'ham', mbox)
mt.check(r.returncode == 0 and 'learned %d ham' % N in r.stdout,
         'learn ham from an mbox: %s %s' % (r.stdout.strip(), r.stderr.strip()))
r = mt.run_mxgate('-c', cli_cfg, 'learn', 'ham', mbox)
mt.check('learned 0 ham (%d already known' % N in r.stdout, 'learning again is a no-op: %s'
         % r.stdout.strip())
mt.check('not enabled' not in r.stderr, 'with rules.bayes.enabled no note about it (%r)' % r.stderr.strip())
# learning first and enabling later works (docs/classifier.md), but an operator who forgot the
# key is told: the daemon does not read this store until it is set
off_cfg = os.path.join(mt.TMP, 'learn-off.yaml')
with open(off_cfg, 'w') as f:
    rc_off = rules_cfg('lmdb:' + os.path.join(mt.TMP, 'bayes-off'))
    rc_off['bayes']['enabled'] = False
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}], rules=rc_off)))
r = mt.run_mxgate('-c', off_cfg, 'learn', 'ham', mbox)
mt.check(r.returncode == 0 and 'learned %d ham' % N in r.stdout and 'rules.bayes.enabled' in r.stderr,
         'learning into a store the config has not enabled: learned, with a note naming rules.bayes.enabled (%r)'
         % r.stderr.strip())
r = mt.run_mxgate('-c', cli_cfg, 'learn', 'spam', os.path.join(mt.TMP, 'missing'))
mt.check(r.returncode == 1 and 'missing' in r.stderr, 'a missing path is an error: %s'
         % r.stderr.strip())
# rules.bayes.timeout bounds every wait on the store (pool threads too): 100ms .. 5m
for bad in ('0', '50ms', '30d'):
    bc = rules_cfg('lmdb:' + os.path.join(mt.TMP, 'bayes-bounds'))
    bc['bayes']['timeout'] = bad
    rc, out = mt.config_check(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}],
                                        rules=bc), name='bayes-timeout')
    mt.check(rc != 0 and 'rules.bayes.timeout: must be between 100ms and 5m' in out,
             'rules.bayes.timeout %s is refused: %s' % (bad, out))
# a Redis store that refuses: the command's own error, not the daemon's line about the
# classifier abstaining until a next try (a one-shot command makes no next try)
dead_cfg = os.path.join(mt.TMP, 'learn-dead.yaml')
with open(dead_cfg, 'w') as f:
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}],
                                 rules=rules_cfg('redis://127.0.0.1:1'))))
r = mt.run_mxgate('-c', dead_cfg, 'learn', 'spam', maildir)
mt.check(r.returncode == 1 and 'mxgate: learn: store redis://127.0.0.1:1' in r.stderr
         and 'next try' not in r.stderr and 'event=bayes_error' not in r.stderr,
         'learn with a refused store: only its error (%r)' % r.stderr.strip())

# ---- the daemon: 20 spam learned < min_spam... no: 20 = min_spam, so teach 4 more by POST
be = mt.Backend()
mx, mport = daemon(be, store, 'mxgate')
code, text = post(mport, '/learn/spam', msg('spam', N - 4, SPAM_WORDS))
mt.check((code, text) == (200, 'learned'), 'POST /learn/spam: %s %s' % (code, text))
code, text = post(mport, '/learn/spam', msg('spam', N - 4, SPAM_WORDS))
mt.check((code, text) == (200, 'already'), 'the same again: %s %s' % (code, text))
code, text = post(mport, '/learn/ham', msg('spam', N - 4, SPAM_WORDS))
mt.check((code, text) == (200, 'moved'), 'as ham: moved: %s %s' % (code, text))
code, text = post(mport, '/learn/spam', msg('spam', N - 4, SPAM_WORDS))
mt.check((code, text) == (200, 'moved'), 'back to spam: %s %s' % (code, text))
for i in range(N - 3, N):
    post(mport, '/learn/spam', msg('spam', i, SPAM_WORDS))
code, text = post(mport, '/learn/other', b'x')
mt.check(code == 404, 'other paths: 404 (%s)' % code)

# curl sends "Expect: 100-continue" with a body over 1 KiB and waits for the interim 100
# (a second when none comes) before it sends the body
body = msg('spam', N - 1, SPAM_WORDS)
with socket.create_connection(('127.0.0.1', mport), timeout=mt.slack(5)) as sk:
    sk.sendall(b'POST /learn/spam HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n'
               b'Expect: 100-continue\r\n\r\n' % len(body))
    try:
        interim = sk.recv(100)
    except socket.timeout:
        interim = b''
    mt.check(interim.startswith(b'HTTP/1.1 100 Continue\r\n\r\n'),
             'Expect: 100-continue: the interim 100 comes before the body (%r)' % interim[:40])
    sk.sendall(body)
    resp = read_all(sk)
    resp = resp[len(b'HTTP/1.1 100 Continue\r\n\r\n'):] if resp.startswith(b'HTTP/1.1 100') else resp
    mt.check(resp.startswith(b'HTTP/1.0 200') and resp.rstrip().endswith(b'already'),
             'Expect: 100-continue: then the answer (%r)' % resp[:60])
for empty in (b'', b'\r\n\r\n'):
    code, text = post(mport, '/learn/spam', empty)
    mt.check(code == 400, 'an empty message is not learned: 400 (%s %s)' % (code, text))


# A POST head's Content-Length is the digits on its own line (RFC 9112 6.3): an empty one
# took the digits of the next line or the body (sscanf skipped the line end), "3x" was 3,
# two that differ took the first; each is a 400 now. A Transfer-Encoding (chunked) is not
# implemented: 501, not a body read by the Content-Length beside it.
def raw_post(head, body):
    with socket.create_connection(('127.0.0.1', mport), timeout=mt.slack(5)) as sk:
        sk.sendall(b'POST /learn/spam HTTP/1.1\r\nHost: x\r\n' + head + b'\r\n' + body)
        return read_all(sk).split(b'\r\n', 1)[0]


spam = msg('spam', N - 2, SPAM_WORDS)
for head, body, want in ((b'Content-Length:\r\n', b'%d\r\n' % (len(spam) - 4) + spam, b'400'),
                         (b'Content-Length: %dx\r\n' % len(spam), spam, b'400'),
                         (b'Content-Length: %d\r\nContent-Length: 5\r\n' % len(spam), spam, b'400'),
                         (b'Transfer-Encoding: chunked\r\nContent-Length: %d\r\n' % len(spam), spam, b'501')):
    got = raw_post(head, body)
    mt.check(got.startswith(b'HTTP/1.0 ' + want), 'POST with %r: %s (%r)' % (head, want.decode(), got))

tests = deliver(mx, be, msg('spam', 1000, SPAM_WORDS))
mt.check(tests is not None and 'BAYES_99' in tests, 'spam gets BAYES_99: %s' % tests)
tests = deliver(mx, be, msg('ham', 1000, HAM_WORDS))
mt.check(tests is not None and 'BAYES_00' in tests, 'ham gets BAYES_00: %s' % tests)
mt.check(mx.wait_log(r'event=rules .*bayes=0\.\d+', timeout=5) is not None,
         'the rules log line carries the probability')
with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=mt.slack(10)) as r:
    text = r.read().decode()
m = re.search(r'^mxgate_bayes_scanned_total (\d+)', text, re.M)
mt.check(m is not None and int(m.group(1)) >= 2, 'metrics: mxgate_bayes_scanned_total %s'
         % (m.group(1) if m else 'missing'))
m = re.search(r'^mxgate_bayes_learned_spam_total (\d+)', text, re.M)
mt.check(m is not None and int(m.group(1)) >= 4, 'metrics: mxgate_bayes_learned_spam_total %s'
         % (m.group(1) if m else 'missing'))
mx.stop()

# ---- POST /learn refusals: a client outside learn_from (403, whatever its size), a
# daemon without a classifier (503); none of them learns
ref = rules_cfg('lmdb:' + os.path.join(mt.TMP, 'refused'))
ref['bayes'].update({'learn_from': ['10.0.0.0/8'], 'max_learn_size': '1K'})
mport4 = mt.hold_port().port
mx4 = mt.Mxgate(mt.config([be.url], rules=ref, metrics={'listen': '127.0.0.1:%d' % mport4}),
                name='mxgate-refused')
code, text = post(mport4, '/learn/spam', msg('spam', 0, SPAM_WORDS))
mt.check(code == 403, 'a client outside learn_from: 403 (%s %s)' % (code, text))
code, text = post(mport4, '/learn/spam', msg('spam', 0, SPAM_WORDS) + b'x' * 4096)
# the same client over max_learn_size: still 403, not told the size limit (a client it
# teaches gets 413: test_metrics_learn_announced)
mt.check(code == 403, 'outside learn_from, over max_learn_size: 403, not 413 (%s %s)' % (code, text))
mt.check(mx4.count_log(r'event=bayes_learn ') == 0, 'neither was learned')
mx4.stop()
mport5 = mt.hold_port().port
mx5 = mt.Mxgate(mt.config([be.url], rules={'files': rules_cfg('x')['files']},
                          metrics={'listen': '127.0.0.1:%d' % mport5}), name='mxgate-nobayes')
code, text = post(mport5, '/learn/spam', msg('spam', 0, SPAM_WORDS))
mt.check(code == 503, 'no classifier configured: 503 (%s %s)' % (code, text))
mx5.stop()

# ---- the control socket: `mxgatectl learn spam|ham FILE` (a message, or an mbox)
CTL = os.path.join(os.path.dirname(mt.BIN), 'mxgatectl')
sock = os.path.join(mt.TMP, 'control.sock')
bec = mt.Backend()
mxc = mt.Mxgate(mt.config([bec.url], rules=rules_cfg('lmdb:' + os.path.join(mt.TMP, 'ctl')),
                          control={'socket': sock}), name='mxgate-ctl')


def ctl(*args):
    rc, out, err = mt.ctl(sock, *args)
    return rc, out.strip(), err.strip()


one = os.path.join(mt.TMP, 'one-spam.eml')
with open(one, 'wb') as f:
    f.write(msg('spam', 0, SPAM_WORDS))
rc, out, err = ctl('learn', 'spam', one)
mt.check(rc == 0 and out.startswith('learned 1 spam (0 already known'),
         'mxgatectl learn spam FILE: %s %s' % (out, err))
rc, out, err = ctl('learn', 'spam', one)
mt.check(rc == 0 and out.startswith('learned 0 spam (1 already known'),
         'the same message again: already known (%s)' % out)
rc, out, err = ctl('learn', 'ham', mbox)
mt.check(rc == 0 and out.startswith('learned %d ham' % N), 'mxgatectl learn ham MBOX: %s %s'
         % (out, err))
rc, out, err = ctl('--json', 'learn', 'ham', one)
mt.check(rc == 0 and json.loads(out) == {'class': 'ham', 'learned': 1, 'already': 0,
                                         'moved': 1, 'too_big': 0, 'errors': 0,
                                         'stopped': False},
         'learn --json: a spam learned as ham moves (%s)' % out)
rc, out, err = ctl('learn', 'spam', mt.TMP)
mt.check(rc != 0 and 'directory' in err.lower(), 'learn spam DIRECTORY: an error, not "learned 0" '
         '(%s %s %s)' % (rc, out, err))
rc, out, err = ctl('learn', 'other', one)
mt.check(rc != 0 and 'usage' in (out + err), 'learn other: usage (%s %s)' % (out, err))
mt.check(mxc.wait_log(r'event=bayes_learn via=control class=ham learned=%d' % N, timeout=5)
         is not None, 'the control learn is logged')
mxc.stop()

# a big mbox through the control socket is learned off the main loop: the metrics listener
# (same loop as the control socket, the health checks, /readyz) keeps answering and shows
# the learning under way — a learned count strictly between 0 and the mbox's
NBIG = 3000
bmport = mt.hold_port().port
bsock = os.path.join(mt.TMP, 'control-big.sock')
mxbig = mt.Mxgate(mt.config([bec.url], rules=rules_cfg('lmdb:' + os.path.join(mt.TMP, 'big')),
                            control={'socket': bsock},
                            metrics={'listen': '127.0.0.1:%d' % bmport}), name='mxgate-ctl-big')
bigmbox = os.path.join(mt.TMP, 'big.mbox')
with open(bigmbox, 'wb') as f:
    for i in range(NBIG):
        f.write(b'From x@example.org  Mon Jan  1 00:00:00 2024\n' + msg(
            'big', i, SPAM_WORDS + ' ' + ' '.join('w%dx%d' % (i, j) for j in range(150))) + b'\n')
learner = subprocess.Popen([CTL, '-s', bsock, '-t', str(mt.slack(300)), 'learn', 'spam', bigmbox],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
seen = set()


def learned_so_far():
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % bmport,
                                timeout=mt.slack(60)) as r:
        m = re.search(r'^mxgate_bayes_learned_spam_total (\d+)', r.read().decode(), re.M)
    seen.add(int(m.group(1)) if m else -1)
    return learner.poll() is not None


mt.wait_for(learned_so_far, timeout=mt.slack(300))
out, err = learner.communicate(timeout=mt.slack(60))
mt.check(learner.returncode == 0 and out.startswith('learned %d spam' % NBIG),
         'mxgatectl learn of %d messages: %s %s' % (NBIG, out.strip(), err.strip()))
mt.check(any(0 < v < NBIG for v in seen), 'the metrics listener answered while the control '
         'socket was learning (learned counts seen: %s)' % sorted(seen)[:8])
mxbig.stop()

# ---- below min_learned: no symbol
be2 = mt.Backend()
mx2, _ = daemon(be2, 'lmdb:' + os.path.join(mt.TMP, 'empty'), 'mxgate-empty')
tests = deliver(mx2, be2, msg('spam', 2000, SPAM_WORDS))
mt.check(tests is not None and not any(t.startswith('BAYES_') for t in tests),
         'an untrained classifier abstains: %s' % tests)
mt.check(mx2.wait_log(r'bayes=untrained', timeout=5) is not None, 'logged bayes=untrained')
# `mxgate learn` into the store of the running daemon (a second process on the LMDB
# environment): the daemon classifies with it at once, no restart or reload
live_cfg = os.path.join(mt.TMP, 'learn-live.yaml')
with open(live_cfg, 'w') as f:
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}],
                                 rules=rules_cfg('lmdb:' + os.path.join(mt.TMP, 'empty')))))
for cls, src in (('spam', maildir), ('ham', mbox)):
    r = mt.run_mxgate('-c', live_cfg, 'learn', cls, src)
    mt.check(r.returncode == 0, 'learn %s while the daemon runs: %s %s' % (
        cls, r.stdout.strip(), r.stderr.strip()))
for i in range(N - 4, N):        # min_spam 20: the maildir holds 20
    with open(os.path.join(maildir, 'new', 'more%d' % i), 'wb') as f:
        f.write(msg('spam', i, SPAM_WORDS))
r = mt.run_mxgate('-c', live_cfg, 'learn', 'spam', maildir)
tests = deliver(mx2, be2, msg('spam', 2001, SPAM_WORDS))
mt.check(tests is not None and 'BAYES_99' in tests,
         'the running daemon classifies with what mxgate learn taught it: %s' % tests)
mx2.stop()

# ---- autolearn: a confident verdict of the other tests is learned, the classifier's own never;
# spam only with 3 header and 3 body points (SpamAssassin's rule): 20 body points alone are not
# enough, with 4 header points they are
al = os.path.join(mt.TMP, 'autolearn.cf')
with open(al, 'w') as f:
    f.write('header AL_HEAD X-Al-Test =~ /yes/\nscore AL_HEAD 4\n'
            'body AL_BODY /alspamword/\nscore AL_BODY 20\n')
be3 = mt.Backend()
mport3 = mt.hold_port().port
rc3 = rules_cfg('lmdb:' + os.path.join(mt.TMP, 'auto'))
rc3['files'].append(al)
rc3['bayes'].update({'autolearn': True, 'min_spam': 1000, 'min_ham': 1000})
mx3 = mt.Mxgate(mt.config([be3.url], rules=rc3, metrics={'listen': '127.0.0.1:%d' % mport3}),
                name='mxgate-auto')


def al_msg(n, head, body):
    return ('From: friend@example.org\r\nTo: user@example.test\r\nSubject: %s\r\n'
            'Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <al-%d@bayes.test>\r\n%s\r\n'
            '%s\r\n' % ('lunch' if not body else 'offer', n, 'X-Al-Test: yes\r\n' if head else '',
                         'See you at noon.' if not body else 'buy alspamword now')).encode()


body_only, both, plain = al_msg(1, False, True), al_msg(2, True, True), al_msg(3, False, False)
deliver(mx3, be3, body_only)
deliver(mx3, be3, both)
deliver(mx3, be3, plain)
mt.check(mx3.wait_log(r'tests=AL_BODY,AL_HEAD.* autolearn=spam', timeout=5) is not None,
         '20 body + 4 header points: autolearned as spam')
mt.check(mx3.wait_log(r'autolearn=ham', timeout=5) is not None, 'a 0-point message autolearned as ham')
line = re.search(r'^.*event=rules .*tests=AL_BODY[ ,].*$', mx3.log(), re.M)
mt.check(line is not None and 'autolearn=' not in line.group(0),
         '20 body points and no header points: not autolearned (%s)' % (line and line.group(0)))
ok = mt.wait_for(lambda: post(mport3, '/learn/spam', both) == (200, 'already'), timeout=mt.slack(5))
mt.check(ok, 'the autolearned spam is in the seen-db')
ok = mt.wait_for(lambda: post(mport3, '/learn/ham', plain) == (200, 'already'), timeout=mt.slack(5))
mt.check(ok, 'the autolearned ham is in the seen-db')
mt.check(post(mport3, '/learn/spam', body_only) == (200, 'learned'),
         'the body-only spam was not learned before')


def al_status(be):
    """autolearn=VALUE of the last delivered message's X-Spam-Status (unfolded)."""
    head = re.split(rb'\r?\n\r?\n', be.messages[-1]['data'], 1)[0].decode('latin-1')
    m = re.search(r'^X-Spam-Status:.*?autolearn=(\S+)', re.sub(r'\r?\n[ \t]+', ' ', head), re.M)
    return m and m.group(1)


mt.check(al_status(be3) == 'ham', 'X-Spam-Status of the 0-point message: autolearn=ham (%s)'
         % al_status(be3))
# SpamAssassin's no_relearn (bug 3704): autolearn never moves a message learned before, by
# hand or by itself, to the other class, and X-Spam-Status says autolearn=unavailable (SA's
# auto_learn_status when the learner learned nothing); a learn that fails says =failed
by_hand = al_msg(4, True, True)
mt.check(post(mport3, '/learn/ham', by_hand) == (200, 'learned'), 'learned by hand as ham')
deliver(mx3, be3, by_hand)
mt.check(al_status(be3) == 'unavailable',
         'autolearn chose spam for a message learned by hand as ham: autolearn=unavailable (%s)'
         % al_status(be3))
mt.check(mx3.wait_log(r'tests=AL_BODY,AL_HEAD.* autolearn=unavailable', timeout=5) is not None,
         'logged autolearn=unavailable')
mt.check(post(mport3, '/learn/ham', by_hand) == (200, 'already'),
         'the message learned by hand as ham is still ham (autolearn did not move it)')
deliver(mx3, be3, both)
mt.check(al_status(be3) == 'unavailable', 'an autolearned message again: autolearn=unavailable (%s)'
         % al_status(be3))
mx3.stop()
# a learn that fails (a store whose LMDB map is too small for the message's tokens)
be4 = mt.Backend()
rc4 = rules_cfg('lmdb:' + os.path.join(mt.TMP, 'tiny'))
rc4['files'].append(al)
rc4['bayes'].update({'autolearn': True, 'map_size': '64K'})
mx4 = mt.Mxgate(mt.config([be4.url], rules=rc4), name='mxgate-tiny')
big = al_msg(5, True, True).replace(b'buy alspamword now', b'buy alspamword now ' +
                                    b' '.join(b'word%dxq' % i for i in range(6000)))
deliver(mx4, be4, big)
mt.check(al_status(be4) == 'failed', 'the store failed while learning: autolearn=failed (%s)'
         % al_status(be4))
mt.check(mx4.wait_log(r'event=bayes_error op=autolearn', timeout=5) is not None,
         'logged event=bayes_error op=autolearn')
mx4.stop()

# ---- bayes_ignore_header lines of the rule files: neither `mxgate learn` nor the daemon
# tokenizes the named header. The same messages differ only in X-Campaign (spam) and are
# learned into two stores, with and without a rule file naming it; a message with only the
# spam's X-Campaign gets a BAYES_xx symbol from the first store alone.
ign = os.path.join(mt.TMP, 'ignore.cf')
with open(ign, 'w') as f:
    f.write('bayes_ignore_header X-Campaign\n')


def plain_msg(i, campaign):
    return ('From: a@example.org\r\nTo: user@example.test\r\nSubject: note\r\n'
            'Message-ID: <n%d@bayes.test>\r\n%s\r\ncommon words here\r\n'
            % (i, 'X-Campaign: zzqa zzqb zzqc zzqd\r\n' if campaign else '')).encode()


verdicts = {}
for name, files in (('kept', []), ('ignored', [ign])):
    istore = 'lmdb:' + os.path.join(mt.TMP, 'ign-' + name)
    irc = rules_cfg(istore)
    irc['files'] += files
    icfg = os.path.join(mt.TMP, 'ign-%s.yaml' % name)
    with open(icfg, 'w') as f:
        f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}],
                                     rules=irc)))
    for cls, campaign, base in (('spam', True, 0), ('ham', False, 100)):
        d = os.path.join(mt.TMP, 'ign-%s-%s' % (name, cls))
        os.makedirs(d)
        for i in range(N):
            with open(os.path.join(d, '%d.eml' % i), 'wb') as f:
                f.write(plain_msg(base + i, campaign))
        r = mt.run_mxgate('-c', icfg, 'learn', cls, d)
        mt.check(r.returncode == 0, 'learn %s (%s): %s %s' % (cls, name, r.stdout.strip(),
                                                             r.stderr.strip()))
    bei = mt.Backend()
    mxi = mt.Mxgate(mt.config([bei.url], rules=irc), name='mxgate-ign-' + name)
    verdicts[name] = deliver(mxi, bei, plain_msg(1000, True))
    mxi.stop()
# the daemon reads the line too: the store that learned X-Campaign, scored with the line
irc = rules_cfg('lmdb:' + os.path.join(mt.TMP, 'ign-kept'))
irc['files'].append(ign)
bei = mt.Backend()
mxi = mt.Mxgate(mt.config([bei.url], rules=irc), name='mxgate-ign-daemon')
verdicts['daemon'] = deliver(mxi, bei, plain_msg(1001, True))
mxi.stop()
mt.check(verdicts['kept'] is not None and any(t in verdicts['kept'] for t in
                                              ('BAYES_80', 'BAYES_95', 'BAYES_99')),
         'X-Campaign learned and scored without the rule line: %s' % verdicts['kept'])
for name in ('ignored', 'daemon'):
    mt.check(verdicts[name] is not None and
             not any(t.startswith('BAYES_') and t not in ('BAYES_40', 'BAYES_50')
                     for t in verdicts[name]),
             'bayes_ignore_header X-Campaign (%s): not scored: %s' % (
                 'learned without it' if name == 'daemon' else 'nor learned', verdicts[name]))

# ---- Redis: two daemons, one store
if not mt.tool('redis-server'):
    if os.environ.get('CI') == 'true':
        mt.fail('redis-server missing')
    mt.say('redis-server missing: the shared-store part is skipped')
    mt.finish()
rport = mt.hold_port().port
mt.spawn(['redis-server', '--bind', '127.0.0.1', '--port', str(rport), '--save', '',
          '--appendonly', 'no'], 'redis')
mt.wait_port(rport)
rstore = 'redis://127.0.0.1:%d' % rport
bea, beb = mt.Backend(), mt.Backend()
mxa, pa = daemon(bea, rstore, 'mxgate-a')
mxb, pb = daemon(beb, rstore, 'mxgate-b')
for i in range(N):
    post(pa, '/learn/spam', msg('spam', i, SPAM_WORDS))
    post(pa, '/learn/ham', msg('ham', i, HAM_WORDS))
code, text = post(pa, '/learn/spam', msg('spam', 0, SPAM_WORDS))
mt.check((code, text) == (200, 'already'), 'Redis seen-db: %s %s' % (code, text))
tests = deliver(mxb, beb, msg('spam', 3000, SPAM_WORDS))
mt.check(tests is not None and 'BAYES_99' in tests,
         'the other daemon classifies with what the first learned: %s' % tests)
tests = deliver(mxb, beb, msg('ham', 3000, HAM_WORDS))
mt.check(tests is not None and 'BAYES_00' in tests, 'and ham: %s' % tests)
r = subprocess.run(['redis-cli', '-p', str(rport), 'HGETALL', 'mxbayes:totals'],
                   capture_output=True, text=True) if mt.tool('redis-cli') else None
if r is not None:
    mt.check(r.stdout.split() == ['s', str(N), 'h', str(N)] or
             sorted(r.stdout.split()) == sorted(['s', str(N), 'h', str(N)]),
             'totals in Redis: %s' % r.stdout.split())
# `mxgate learn` offline into the cluster's store, the daemons running: the mbox's ham were
# learned by POST already (the seen-db is shared); Redis keeps no token count, and the
# summary must not claim "0 tokens" for a store that holds them
rcli = os.path.join(mt.TMP, 'learn-redis.yaml')
with open(rcli, 'w') as f:
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}],
                                 rules=rules_cfg(rstore))))
r = mt.run_mxgate('-c', rcli, 'learn', 'ham', mbox)
mt.check(r.returncode == 0 and 'learned 0 ham (%d already known' % N in r.stdout,
         'mxgate learn into Redis shares the seen-db: %s %s' % (r.stdout.strip(), r.stderr.strip()))
mt.check(' 0 tokens' not in r.stdout and '%d spam, %d ham' % (N, N) in r.stdout,
         'the Redis store summary: %s' % r.stdout.strip())
# autolearn into Redis (its Lua script): a message learned as ham through one daemon stays
# ham when another autolearns it as spam; a new one is learned
bec = mt.Backend()
rcc = rules_cfg(rstore)
rcc['files'].append(al)
rcc['bayes'].update({'autolearn': True, 'min_spam': 1000, 'min_ham': 1000})
mxc = mt.Mxgate(mt.config([bec.url], rules=rcc), name='mxgate-c')
mt.check(post(pa, '/learn/ham', al_msg(10, True, True)) == (200, 'learned'), 'learned as ham (Redis)')
deliver(mxc, bec, al_msg(10, True, True))
mt.check(al_status(bec) == 'unavailable', 'Redis: autolearn does not move it: %s' % al_status(bec))
mt.check(post(pa, '/learn/ham', al_msg(10, True, True)) == (200, 'already'), 'still ham (Redis)')
deliver(mxc, bec, al_msg(11, True, True))
mt.check(al_status(bec) == 'spam', 'Redis: a new message is autolearned: %s' % al_status(bec))
mt.check(post(pa, '/learn/spam', al_msg(11, True, True)) == (200, 'already'),
         'the autolearned spam is in the Redis seen-db')
mt.finish()
